"""Story context: who is on screen and where, carried from shot to shot.

- A continuation shot (``cut=False``) keeps the previous shot's location and on-screen characters,
  except into an insert ("Close-up of the toaster.") that shows no one.
- Shots of one scene (``ShotQuery.scene``) share its place: a cut inside a scene is not a change
  of place (:meth:`StoryContext.scene_place`); whether the prompt moves is read by
  :mod:`retrieval.signals.place`.
- Definite and possessive descriptions ("the queen", "the old man", "his mother") resolve to the
  cast member whose description, aliases or attributes carry the role word, however long ago seen;
  then pronouns ("he", "she", "they") resolve to the most recently seen character of the matching
  gender not already named or described in the prompt. A pronoun used only for something off
  screen ("alerted by her cries") brings no one.
- An indefinite role ("an astronaut", "a little girl") introduces a cast member who carries that
  role word and has not been seen yet, as scripts introduce characters; once everyone who fits has
  been seen, "a man" is someone new, and "a stranger" or "another man" never is a cast member.
- An explicit cast or location on the query overrides all inference.

Call :meth:`StoryContext.update` with each shot's result, in story order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from memstore.schema import Entity

from .places import PLACE_NOUNS

if TYPE_CHECKING:
    from .query import RetrievalResult

MALE = frozenset(
    """
    he him his himself man men boy boys gentleman guy king prince father dad son brother husband
    uncle grandfather mr sir lord male monk wizard
    """.split()
)
FEMALE = frozenset(
    """
    she her hers herself woman women girl girls lady queen princess mother mom daughter sister wife
    aunt grandmother mrs ms miss madam female witch
    """.split()
)
PRONOUNS = {
    "he": "male",
    "him": "male",
    "his": "male",
    "himself": "male",
    "she": "female",
    "her": "female",
    "hers": "female",
    "herself": "female",
    "they": "plural",
    "them": "plural",
    "their": "plural",
    "themselves": "plural",
}
#: head nouns of definite descriptions that may name a cast member ("the queen", "the old man")
ROLE_NOUNS = frozenset(
    """
    man woman boy girl child kid king queen prince princess knight soldier guard detective doctor
    scientist teacher student robot dog cat puppy kitten bird horse monkey astronaut explorer
    captain artist painter stranger hero heroine villain wizard witch monk lady gentleman mother
    father son daughter brother sister husband wife grandmother grandfather boss officer sailor
    pilot chef farmer creature alien mermaid fox wolf dragon baby
    """.split()
)
#: nouns that say only a gender: "the man" may be any male character, "the prince" only one called so
GENDER_NOUNS = frozenset("man men woman women boy boys girl girls lady gentleman guy".split())
_WORD = re.compile(r"[^\W_]+")
_DEFINITE = re.compile(r"\b(?:the|this|that|his|her|their)((?:\s+[a-z]+){1,3})", re.IGNORECASE)
_INDEFINITE = re.compile(r"\b(?:a|an)((?:\s+[a-z-]+){1,3})", re.IGNORECASE)
#: words that make an indefinite person someone new: "a stranger", "another man", "a second girl"
NEW_PERSON = frozenset("stranger strangers another other second third new unknown someone somebody passerby".split())
#: possessed things that are no view of their owner: "alerted by her cries" does not show her
OFF_SCREEN_NOUNS = frozenset(
    "cries cry voice voices call calls scream screams shout shouts laughter name memory memories absence message "
    "letter song words footsteps".split()
)
#: an insert shot's opening: "Close-up of the toaster", "A close-up shot of the jar"
_INSERT = re.compile(
    r"^\s*(?:an?\s+)?(?:extreme\s+)?(?:close-?up|insert|detail)(?:\s+shot)?\s+(?:of|on)\s+(?:the|a|an)\s+([a-z]+)",
    re.IGNORECASE,
)
#: parts of a person: a close-up of them still shows someone
BODY_WORDS = frozenset(
    "hand hands face faces eyes eye fingers finger feet foot arm arms head lips mouth shoulder shoulders".split()
)


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def gender_of(entity: Entity) -> str | None:
    """'male', 'female' or None, from attributes first, then aliases and description words."""
    attr = str(entity.attributes.get("gender", "") or entity.attributes.get("sex", "")).casefold()
    if attr in ("male", "man", "m", "boy"):
        return "male"
    if attr in ("female", "woman", "f", "girl"):
        return "female"
    words = _words(" ".join([entity.name, *entity.aliases, entity.description[:400]]))
    male = sum(w in MALE for w in words)
    female = sum(w in FEMALE for w in words)
    if male > female:
        return "male"
    if female > male:
        return "female"
    return None


_SEGMENT = re.compile(r"[,;]|\band\b|\bwith\b|\bwho\b|\bin\b|\bof\b|\bfrom\b|\bat\b", re.IGNORECASE)


def role_heads(entity: Entity) -> set[str]:
    """The nouns a script may call a character by: the last word of each alias and of each phrase
    of its description ("an old man, the village blacksmith" -> man, blacksmith)."""
    heads = {_words(a)[-1] for a in entity.aliases if _words(a)}
    for part in _SEGMENT.split(entity.description[:400]):
        words = _words(part)
        if len(words) > 1 and words[0] in ("a", "an", "the") and words[-1] not in PLACE_NOUNS:
            heads.add(words[-1])  # a noun phrase of its own: "the village blacksmith"
    role = _words(str(entity.attributes.get("role", "")))
    return heads | set(role[-1:])


def role_words(entity: Entity) -> set[str]:
    role = str(entity.attributes.get("role", ""))
    return set(_words(" ".join([entity.name, *entity.aliases, entity.description[:400], role])))


@dataclass(frozen=True)
class Resolution:
    entity_id: str
    signal: str  # "carried" | "pronoun" | "cast"
    evidence: float
    reason: str


def _is_insert(prompt: str, characters: dict[str, Entity], words: list[str]) -> bool:
    """A close-up of an object ("Close-up of the toaster") with no person word in the prompt."""
    found = _INSERT.match(prompt)
    if found is None or found.group(1).casefold() in BODY_WORDS:
        return False
    # "launching them into the air": a plural pronoun of an insert is the object's
    person = {p for p, g in PRONOUNS.items() if g != "plural"} | ROLE_NOUNS | MALE | FEMALE
    names = {w for c in characters.values() for w in _words(" ".join([c.name, *c.aliases]))}
    return not any(w in person or w in names for w in words)


def _pronouns_on_screen(words: list[str]) -> list[str]:
    """Pronouns of the prompt except those that only own something off screen ("her cries")."""
    out = []
    for i, w in enumerate(words):
        if w not in PRONOUNS:
            continue
        if w in ("his", "her", "their") and i + 1 < len(words) and words[i + 1] in OFF_SCREEN_NOUNS:
            continue
        out.append(w)
    return out


@dataclass
class StoryContext:
    """Who and where, from shot to shot. Mutable on purpose: one per story run."""

    on_screen: list[str] = field(default_factory=list)  # character ids of the previous shot
    location: str | None = None  # location id of the previous shot
    recent: list[str] = field(default_factory=list)  # characters, most recently seen first
    shots: int = 0
    scene: int | None = None  # the scene of the previous shot (ShotQuery.scene)
    scene_location: str | None = None  # the place this scene has shown so far
    last_location: str | None = None  # the last place shown, whatever came between
    shown_locations: set[str] = field(default_factory=set)  # every place shown so far

    def update(self, result: RetrievalResult) -> None:
        """Record what a shot retrieved (a :class:`retrieval.query.RetrievalResult`)."""
        chars = [h.entity.id for h in result.hits if h.entity.kind == "character"]
        locs = [h.entity.id for h in result.hits if h.entity.kind == "location"]
        self.on_screen = chars
        if locs:
            self.location = locs[0]
            self.last_location = locs[0]
            self.shown_locations.add(locs[0])
        elif getattr(result.query, "cut", True):
            self.location = None  # a cut to somewhere we could not name: carry nothing stale
        scene = getattr(result.query, "scene", None)
        if scene != self.scene:
            self.scene, self.scene_location = scene, None
        if locs and scene is not None:
            self.scene_location = locs[0]
        self.recent = chars + [c for c in self.recent if c not in chars]
        self.shots += 1

    def scene_place(self, scene: int | None) -> str | None:
        """The place of the scene's earlier shots when ``scene`` is the scene still running."""
        if scene is None or scene != self.scene:
            return None
        return self.scene_location

    def resolve(
        self, prompt: str, characters: dict[str, Entity], *, cut: bool, mentioned: Sequence[str] = ()
    ) -> list[Resolution]:
        """Entities the prompt refers to without naming them (descriptions, pronouns, introductions),
        and what a continuation shot carries over. ``characters`` are the library's characters by id;
        ``mentioned`` are ids already named in this prompt."""
        out: list[Resolution] = []
        named = set(mentioned)
        words = _words(prompt)
        if not cut:
            if not _is_insert(prompt, characters, words):
                for eid in self.on_screen:
                    if eid in characters:
                        out.append(Resolution(eid, "carried", 1.0, "carried from previous shot (no cut)"))
            if self.location is not None:
                out.append(Resolution(self.location, "carried", 1.0, "carried from previous shot (no cut)"))
        pool = [c for c in self.recent if c in characters]
        pool += [c for c in self.on_screen if c in characters and c not in self.recent]
        # descriptions may also name someone not seen yet ("the old man" of the cast list)
        everyone = pool + [c for c in characters if c not in pool]
        described = self._descriptions(prompt, characters, everyone, named)
        out += described
        named |= {r.entity_id for r in described}
        introduced = self._introductions(prompt, characters, pool, named | {r.entity_id for r in out})
        strangers = _new_people(prompt, characters, {r.entity_id for r in introduced})
        out += self._pronouns(words, characters, pool, named, strangers)
        return out + introduced

    def _descriptions(
        self, prompt: str, characters: dict[str, Entity], everyone: list[str], named: set[str]
    ) -> list[Resolution]:
        """ "the old man", "his mother": the best-described cast member, the most recent on ties."""
        out: list[Resolution] = []
        for found in _DEFINITE.finditer(prompt):
            phrase_words = _words(found.group(1))
            heads = [i for i, w in enumerate(phrase_words) if w in ROLE_NOUNS or _is_role_head(w, characters)]
            if not heads:
                continue
            best = _best_described(phrase_words[: heads[-1] + 1], characters, everyone)
            if best is not None and best not in named and all(r.entity_id != best for r in out):
                phrase = " ".join([found.group(0).split()[0].casefold(), *phrase_words[: heads[-1] + 1]])
                reason = f"'{phrase}' resolved to {characters[best].name} (story context)"
                out.append(Resolution(best, "pronoun", 0.9, reason))
        return out

    def _pronouns(
        self, words: list[str], characters: dict[str, Entity], pool: list[str], named: set[str], strangers: set[str]
    ) -> list[Resolution]:
        """``strangers``: genders of new unnamed people in the prompt ("a stranger ... he"): theirs
        are the pronouns of that gender, not a cast member's."""
        out: list[Resolution] = []
        used = _pronouns_on_screen(words)
        wanted = {PRONOUNS[w] for w in used}
        named_genders = {gender_of(characters[e]) for e in named if e in characters} | strangers
        for gender in sorted(wanted - {"plural"}) if pool else ():
            if gender in named_genders:
                continue  # "Aria draws her sword": "her" is Aria
            match = next((c for c in pool if gender_of(characters[c]) == gender), None)
            if match is None:
                match = next((c for c in pool if gender_of(characters[c]) is None), None)
            if match is not None and match not in named:
                pronoun = next(w for w in used if PRONOUNS.get(w) == gender)
                reason = f"'{pronoun}' resolved to {characters[match].name} (story context)"
                out.append(Resolution(match, "pronoun", 1.0, reason))
        if "plural" in wanted and not named:
            for eid in self.on_screen[:3]:
                if eid in characters:
                    reason = f"'they' resolved to {characters[eid].name} (on screen)"
                    out.append(Resolution(eid, "pronoun", 0.8, reason))
        return out

    def _introductions(
        self, prompt: str, characters: dict[str, Entity], pool: list[str], named: set[str]
    ) -> list[Resolution]:
        """ "an astronaut": a cast member with that role word, not seen yet."""
        out: list[Resolution] = []
        unseen = [c for c in characters if c not in pool and c not in named]
        for found in _INDEFINITE.finditer(prompt):
            phrase_words = _words(found.group(1))
            heads = [i for i, w in enumerate(phrase_words) if w in ROLE_NOUNS or _is_role_head(w, characters)]
            if not heads or NEW_PERSON & set(phrase_words[: heads[0] + 1]):
                continue
            head = phrase_words[heads[0]]
            if any(head in role_words(characters[c]) for c in named if c in characters):
                continue  # "Neo, a young man in a black T-shirt": it describes who is named
            fits = [c for c in unseen if head in role_words(characters[c]) and c not in {r.entity_id for r in out}]
            if len(fits) != 1:
                continue  # nobody, or more than one who fits: not unambiguous
            reason = f"'{found.group(0).strip()}' introduces {characters[fits[0]].name} (not seen before)"
            out.append(Resolution(fits[0], "introduced", 1.0, reason))
        return out


def _new_people(prompt: str, characters: dict[str, Entity], introduced: set[str]) -> set[str]:
    """Genders of the new unnamed people of a prompt: "a stranger", "another man", "a woman" no
    cast member was introduced by."""
    intro_genders = {gender_of(characters[c]) for c in introduced}
    out = set()
    for found in _INDEFINITE.finditer(prompt):
        phrase_words = _words(found.group(1))
        person = [w for w in phrase_words if w in ROLE_NOUNS or w in NEW_PERSON]
        if not person:
            continue
        gender = "male" if MALE & set(phrase_words) else "female" if FEMALE & set(phrase_words) else None
        # "a stranger ... he": a person of no stated gender may be either
        out |= ({gender} if gender else {"male", "female"}) - intro_genders
    return out


def _is_role_head(word: str, characters: dict[str, Entity]) -> bool:
    """True when some character may be called by ``word`` ("blacksmith", "astronaut")."""
    return any(word in role_heads(c) for c in characters.values())


def _best_described(want_words: list[str], characters: dict[str, Entity], everyone: list[str]) -> str | None:
    head = want_words[-1]
    want = set(want_words)
    best: tuple[str, int] | None = None
    for c in everyone:
        words_c = role_words(characters[c])
        hit = len(want & words_c)
        if (
            head in words_c
            or (head in GENDER_NOUNS & MALE and gender_of(characters[c]) == "male")
            or (head in GENDER_NOUNS & FEMALE and gender_of(characters[c]) == "female")
        ):
            if best is None or hit > best[1]:  # ties: the earlier, i.e. most recent, wins
                best = (c, hit)
    return best[0] if best is not None else None
