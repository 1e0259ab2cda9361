"""Story context: who is on screen and where, carried from shot to shot.

- A continuation shot (``cut=False``) keeps the previous shot's location and on-screen characters.
- Pronouns ("he", "she", "they") and definite descriptions ("the queen", "the old man") resolve
  to the cast: a character whose description, aliases or attributes carry the matching gender or
  role word, most recently seen first; with no such word known, the most recent character.
- An explicit cast or location on the query overrides all inference.

Call :meth:`StoryContext.update` with each shot's result, in story order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from memstore.schema import Entity

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
_WORD = re.compile(r"[^\W_]+")
_DEFINITE = re.compile(r"\b(?:the|this|that)((?:\s+[a-z]+){1,3})", re.IGNORECASE)


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


def role_words(entity: Entity) -> set[str]:
    role = str(entity.attributes.get("role", ""))
    return set(_words(" ".join([entity.name, *entity.aliases, entity.description[:400], role])))


@dataclass(frozen=True)
class Resolution:
    entity_id: str
    signal: str  # "carried" | "pronoun" | "cast"
    evidence: float
    reason: str


@dataclass
class StoryContext:
    """Who and where, from shot to shot. Mutable on purpose: one per story run."""

    on_screen: list[str] = field(default_factory=list)  # character ids of the previous shot
    location: str | None = None  # location id of the previous shot
    recent: list[str] = field(default_factory=list)  # characters, most recently seen first
    shots: int = 0

    def update(self, result: RetrievalResult) -> None:
        """Record what a shot retrieved (a :class:`retrieval.query.RetrievalResult`)."""
        chars = [h.entity.id for h in result.hits if h.entity.kind == "character"]
        locs = [h.entity.id for h in result.hits if h.entity.kind == "location"]
        self.on_screen = chars
        if locs:
            self.location = locs[0]
        elif getattr(result.query, "cut", True):
            self.location = None  # a cut to somewhere we could not name: carry nothing stale
        self.recent = chars + [c for c in self.recent if c not in chars]
        self.shots += 1

    def resolve(
        self, prompt: str, characters: dict[str, Entity], *, cut: bool, mentioned: Sequence[str] = ()
    ) -> list[Resolution]:
        """Entities the prompt refers to without naming them (pronouns, roles), and what a
        continuation shot carries over. ``characters`` are the library's characters by id;
        ``mentioned`` are ids already named in this prompt."""
        out: list[Resolution] = []
        named = set(mentioned)
        if not cut:
            for eid in self.on_screen:
                if eid in characters:
                    out.append(Resolution(eid, "carried", 1.0, "carried from previous shot (no cut)"))
            if self.location is not None:
                out.append(Resolution(self.location, "carried", 1.0, "carried from previous shot (no cut)"))
        pool = [c for c in self.recent if c in characters]
        pool += [c for c in self.on_screen if c in characters and c not in self.recent]
        # definite descriptions may also name someone not seen yet ("the old man" of the cast list)
        everyone = pool + [c for c in characters if c not in pool]
        words = _words(prompt)
        wanted = {PRONOUNS[w] for w in words if w in PRONOUNS}
        named_genders = {gender_of(characters[e]) for e in named if e in characters}
        for gender in sorted(wanted - {"plural"}) if pool else ():
            if gender in named_genders:
                continue  # "Aria draws her sword": "her" is Aria
            match = next((c for c in pool if gender_of(characters[c]) == gender), None)
            if match is None:
                match = next((c for c in pool if gender_of(characters[c]) is None), None)
            if match is not None and match not in named:
                pronoun = next(w for w in words if PRONOUNS.get(w) == gender)
                reason = f"'{pronoun}' resolved to {characters[match].name} (story context)"
                out.append(Resolution(match, "pronoun", 1.0, reason))
        if "plural" in wanted and not named:
            for eid in self.on_screen[:3]:
                if eid in characters:
                    reason = f"'they' resolved to {characters[eid].name} (on screen)"
                    out.append(Resolution(eid, "pronoun", 0.8, reason))
        for found in _DEFINITE.finditer(prompt):
            phrase_words = _words(found.group(1))
            heads = [i for i, w in enumerate(phrase_words) if w in ROLE_NOUNS]
            if not heads:
                continue
            head = phrase_words[heads[-1]]  # "the old man": head "man", modifier "old"
            want = set(phrase_words[: heads[-1] + 1])
            best = None
            for c in everyone:
                words_c = role_words(characters[c])
                hit = len(want & words_c)
                if (
                    head in words_c
                    or (head in MALE and gender_of(characters[c]) == "male")
                    or (head in FEMALE and gender_of(characters[c]) == "female")
                ):
                    if best is None or hit > best[1]:  # ties: the earlier, i.e. most recent, wins
                        best = (c, hit)
            if best is not None and best[0] not in named:
                phrase = " ".join(["the", *phrase_words[: heads[-1] + 1]])
                reason = f"'{phrase}' resolved to {characters[best[0]].name} (story context)"
                out.append(Resolution(best[0], "pronoun", 0.9, reason))
        return out
