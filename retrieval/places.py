"""Reading a shot prompt the way an assistant director reads a script line: where is the shot set,
which places are only seen or left, and what is named but not on screen.

Film prompts set their place with a locative ("Inside a spacecraft cabin", "walks down the long
corridor", "arrives at Thornfield Hall"); they name places that are not the shot's place as views
("gazes toward the Moon", "looking out at the garden", "overlooking the city") or as where someone
comes from ("He exits the library", "After leaving Thornfield"); and they name things that are not
on screen ("remembering the fox", "now without the braces"). The words below are English function
words and verbs of looking and moving, not words of any one story; the place nouns are the sets a
shot can stand in (rooms, buildings, outdoor places), not fixtures inside them (a window, a table).

Everything here is pure text processing over one prompt; :mod:`retrieval.signals.place` turns it
into evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Role = Literal["setting", "plain", "view", "source"]

#: sets a shot can stand in; fixtures (window, table, door, bench) and parts (floor, corner) are not places
PLACE_NOUNS = frozenset(
    """
    room bedroom kitchen bathroom attic basement cellar hallway corridor corridors hall library study office
    studio workshop lab laboratory factory warehouse garage shop store supermarket market mall restaurant
    cafe bar pub diner apartment flat house home mansion manor palace castle tower cottage cabin hut tent
    farmhouse farm barn stable church temple cathedral monastery shrine school classroom university campus
    hospital prison station airport platform train bus car ship boat deck spacecraft spaceship cockpit
    street road alley avenue lane highway bridge square plaza courtyard yard garden park playground
    field meadow farmland countryside village town city metropolis skyline rooftop roof terrace balcony
    porch forest woods jungle rainforest grove orchard desert dune dunes beach shore coast harbor harbour
    port pier dock sea ocean lake river stream pond waterfall island mountain mountains hill hills valley
    canyon cliff cave cavern ruins chamber crypt tomb vault throne arena stadium theater theatre stage
    gallery museum underwater reef planet asteroid moon kingdom realm pod pods gate gates
    entrance
    """.split()
)
#: a few spelling variants of one place ("rooftop" is on the "roof")
PLACE_VARIANTS = {
    "rooftop": "roof",
    "hallway": "corridor",
    "corridors": "corridor",
    "woods": "forest",
    "rainforest": "jungle",
    "harbour": "harbor",
    "theatre": "theater",
    "dunes": "dune",
    "mountains": "mountain",
    "hills": "hill",
    "pods": "pod",
    "spaceship": "spacecraft",
    "flat": "apartment",
    "gates": "gate",
}

#: words right before a place that put the shot in it
SETTING_CUES = frozenset(
    """
    in inside into at on onto upon through throughout along across down within around over enters
    entering enter arrives arrive arriving reaches reaching returns return returning back by near beside
    beneath under amid among aboard
    """.split()
)
#: words that look at a place from elsewhere (or head for it without being there yet)
VIEW_CUES = frozenset("toward towards overlooking visible beyond nears nearing view".split())
#: verbs of looking: "<look verb> ... at/out/over/across <place>" is a view
LOOK_VERBS = frozenset(
    """
    look looks looking looked gaze gazes gazing gazed stare stares staring stared watch watches watching
    watched glance glances glancing glanced peer peers peering see sees seeing
    """.split()
)
#: words that leave a place: the shot is where the move goes, not where it starts
SOURCE_CUES = frozenset("exits exit exiting leaves leave leaving left departs departing outside".split())
#: words of moving into a place: the shot is now there, whatever the scene showed before
ARRIVAL_CUES = frozenset(
    "enters entering enter into onto arrives arrive arriving reaches reaching returns return returning back "
    "aboard lands landing".split()
)
#: "a vision of the shore", "a map of the world": the place is shown in a picture, not stood in
DEPICTIONS = frozenset(
    "vision visions image images picture pictures photo photograph painting drawing map reflection".split()
)
#: prepositions that end a cue's reach: "toward the sea from the ship" - "toward" is about the sea
_STOPPERS = frozenset("of with to for about than".split())
#: words after which what is named is not on screen ("remembering the fox", "without the braces")
ABSENT_CUES = (
    "remembering",
    "remembers",
    "remembered",
    "recalling",
    "recalls",
    "thinking of",
    "thinking about",
    "thinks of",
    "thinks about",
    "dreaming of",
    "dreams of",
    "dreaming about",
    "misses",
    "missing",
    "longing for",
    "imagining",
    "imagines",
    "without",
    "no longer",
)
#: what ends a clause (a cue reaches no further)
_CLAUSE_END = re.compile(r"[.,;:!?\u2014]|\s-\s|\b(?:while|as|and then|but|where|when)\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+(?:'s)?", re.IGNORECASE)
_DETERMINERS = frozenset("the a an his her their its this that distant far".split())
#: how many words back a cue may stand from the place ("walks down the long, narrow corridor")
CUE_WINDOW = 5


@dataclass(frozen=True)
class PlaceWord:
    """One place noun of the prompt and how the sentence uses it."""

    noun: str  # base form, casefolded ("corridor")
    start: int
    end: int
    role: Role
    phrase: str  # the words from the cue to the noun, as written ("down the long corridor")
    indefinite: bool = False  # "a planet": a place of that kind, introduced as new
    modifier: bool = False  # "ocean breeze", "park path": the noun qualifies the next one


@dataclass(frozen=True)
class Reading:
    """Where a prompt sets the shot, and which of its spans name what is not on screen."""

    places: tuple[PlaceWord, ...]
    absent: tuple[tuple[int, int, str], ...]  # (start, end, cue) of "remembering the fox and the rose"

    def setting_nouns(self) -> set[str]:
        return {p.noun for p in self.places if p.role == "setting"}

    def is_absent(self, start: int, end: int) -> str | None:
        """The cue whose span holds [start, end), if any."""
        return next((cue for a, b, cue in self.absent if a <= start and end <= b), None)


@lru_cache(maxsize=1 << 16)
def base(word: str) -> str:
    """A place noun's base form: casefolded, possessive and plural dropped, variants merged."""
    w = word.casefold().removesuffix("'s").removesuffix("\u2019s")
    if w in PLACE_VARIANTS:
        return PLACE_VARIANTS[w]
    if w not in PLACE_NOUNS:
        for cut in ("es", "s"):
            if w.endswith(cut) and w[: -len(cut)] in PLACE_NOUNS:
                return PLACE_VARIANTS.get(w[: -len(cut)], w[: -len(cut)])
    return w


#: what :func:`base` may return for a place: the nouns and their variants' merged forms
_PLACE_BASES = PLACE_NOUNS | frozenset(PLACE_VARIANTS.values())


def is_place(word: str) -> bool:
    return base(word) in _PLACE_BASES


def role_at(text: str, start: int) -> tuple[Role, str]:
    """How the words before ``start`` (within its clause) use what stands there, and the phrase."""
    clause_start = 0
    for m in _CLAUSE_END.finditer(text, 0, start):
        clause_start = m.end()
    before = list(_WORD.finditer(text, clause_start, start))[-CUE_WINDOW:]
    words = [w.group(0).casefold() for w in before]
    for i in range(len(words) - 1, -1, -1):
        w = words[i]
        phrase = text[before[i].start() : start].strip()
        if w == "of" and i > 0 and words[i - 1] in DEPICTIONS:
            return "view", phrase
        if w in _STOPPERS and not (w == "of" and i > 0 and words[i - 1] == "out"):
            return "plain", ""
        if w in LOOK_VERBS and all(x in _DETERMINERS for x in words[i + 1 :]):
            return "view", phrase  # "watches the Moon fade away"
        if w == "from":  # "from the ship's deck" after a look: the vantage point; otherwise where a move starts
            told = [e.group(0).casefold() for e in _WORD.finditer(text, clause_start, before[i].start())]
            looking = any(e in LOOK_VERBS or e in VIEW_CUES for e in told)
            return ("setting" if looking else "source"), phrase
        if w in VIEW_CUES:
            return "view", phrase
        if w in SOURCE_CUES or (w == "of" and i > 0 and words[i - 1] == "out"):
            return "source", phrase
        if w in SETTING_CUES:
            earlier = list(_WORD.finditer(text, clause_start, before[i].start()))
            if w in ("at", "out", "over", "across", "into", "on") and any(
                e.group(0).casefold() in LOOK_VERBS for e in earlier[-3:]
            ):
                return "view", text[earlier[-1].start() : start].strip() if earlier else phrase
            return "setting", phrase
    return "plain", ""


#: any absence cue at all: most prompts have none, and then one search replaces one per cue
_ANY_ABSENT_CUE = re.compile(r"\b(?:" + "|".join(ABSENT_CUES) + r")\b", re.IGNORECASE)


def absent_spans(text: str) -> list[tuple[int, int, str]]:
    if not _ANY_ABSENT_CUE.search(text):
        return []
    out = []
    for cue in ABSENT_CUES:
        for m in re.finditer(rf"\b{cue}\b", text, re.IGNORECASE):
            end = _CLAUSE_END.search(text, m.end())
            out.append((m.end(), end.start() if end else len(text), cue))
    return out


def read(text: str) -> Reading:
    """The place words of a prompt with their roles, and its off-screen spans."""
    places = []
    words = list(_WORD.finditer(text))
    for n, m in enumerate(words):
        if is_place(m.group(0)):
            role, phrase = role_at(text, m.start())
            phrase_words = [w.casefold() for w in _WORD.findall(phrase)]
            indefinite = any(w in ("a", "an") for w in phrase_words)
            nxt = words[n + 1] if n + 1 < len(words) else None
            modifier = (
                nxt is not None
                and not m.group(0).endswith("'s")
                and not _CLAUSE_END.search(text, m.end(), nxt.start())
                and text[m.end() : nxt.start()].strip() == ""
                and nxt.group(0).casefold() in COMMON_NOUN_AFTER
            )
            found = PlaceWord(
                base(m.group(0)), m.start(), m.end(), role, f"{phrase} {m.group(0)}".strip(), indefinite, modifier
            )
            places.append(found)
    return Reading(tuple(places), tuple(absent_spans(text)))


#: nouns that a place noun often qualifies ("ocean breeze", "kitchen island", "park path", "city lights")
COMMON_NOUN_AFTER = frozenset(
    """
    breeze wind air light lights lighting sounds sound noise path paths floor floors wall walls window windows
    door doors table tables island counter chair bench view views breezes smell streets street lamp lamps
    skyline traffic life people crowd waves water spray mist fog dust ambience background rock rocks stone
    stones bench benches sign signs gate
    """.split()
)


def words_of(text: str) -> set[str]:
    """Every word of a text in its base form (place nouns merged with their variants)."""
    return {base(w.group(0)) for w in _WORD.finditer(text)}


def head_of(name: str) -> str | None:
    """The last word of a name, in base form: "Thornfield Garden" -> "garden"."""
    words = _WORD.findall(name)
    return base(words[-1]) if words else None
