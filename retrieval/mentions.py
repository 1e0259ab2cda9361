"""Names and aliases of registered entities in a prompt.

A name matches whatever its case ("aria", "ARIA"), as a possessive ("Aria's", "Aria’s", "James'"),
as a plural ("the knights"), across hyphen/space variants ("Jean-Luc" = "Jean Luc"), with "Mr." or
"Mr" alike, and only on word boundaries ("Ariadne" is not "Aria"). The longest match wins where
two overlap ("Queen Mary" over "Mary").

A character whose name is also a common word ("Hope", "Rose", "Will") is guarded: the word must be
capitalised, and at the start of a sentence (where every word is capitalised) it also needs a
cue: a possessive, a following verb-like word from a short list, or the character already being
on screen in the story.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memstore.schema import Entity

#: English words that are also given names; a character named one of these is guarded.
COMMON_WORD_NAMES = frozenset(
    """
    hope rose will faith grace joy mark bill sue jack pat ray dawn summer may june april august
    amber sky river stone hunter king queen prince princess duke earl major page rich frank
    chase lane reed wood lily ivy iris daisy holly heather violet poppy olive hazel ginger honey
    candy crystal pearl ruby jade opal storm rain snow winter autumn spring star sunny angel
    baby buddy champ chip max rocky rusty sandy scout shadow smoky sparky tiny trip victor
    guy don art gene sky bob cliff dean drew grant jay lance miles nick rob rod sterling wade
    ward belle bliss charity destiny harmony liberty melody mercy patience prudence serenity
    trinity unity verity felicity constance carol noel eve day bean moon sun
    """.split()
)

#: words after a sentence-initial name that show it is a name ("Hope smiles", "Will said").
CUE_WORDS = frozenset(
    """
    says said asks asked smiles smiled looks looked walks walked runs ran turns turned stands stood
    sits sat nods nodded laughs laughed cries cried shouts shouted whispers whispered grins grinned
    frowns frowned stares stared watches watched holds held takes took reaches reached enters entered
    leaves left opens opened points pointed steps stepped glances glanced raises raised waves waved

    """.split()
)

_SENTENCE_END = re.compile(r"[.!?:;\n]\s*$")


@dataclass(frozen=True)
class Mention:
    """One occurrence of an entity's name or alias in a prompt."""

    entity_id: str
    name: str  # the registered name or alias that matched
    text: str  # the text as written in the prompt
    start: int
    end: int
    is_alias: bool

    def reason(self) -> str:
        return f"alias '{self.name}' in prompt" if self.is_alias else f"name '{self.name}' in prompt"


def normalize(text: str) -> str:
    """NFC, with typographic apostrophes and dashes made plain (offsets are kept: 1 char -> 1 char)."""
    text = unicodedata.normalize("NFC", text)
    return text.translate(_PLAIN)


_PLAIN = str.maketrans(dict.fromkeys("’‘", "'") | dict.fromkeys("‐‑–—", "-"))


_TOKEN = re.compile(r"[^\W_]+(?:'s\b|s'(?!\w)|'(?!\w))?", re.IGNORECASE)
_GAP = re.compile(r"^[\s\-.]*$")  # what may separate the words of one name
MAX_NAME_TOKENS = 8


def name_tokens(name: str) -> tuple[str, ...]:
    """A name's words, casefolded: "Mr. Jean-Luc" -> ("mr", "jean", "luc")."""
    return tuple(t.casefold() for t in re.findall(r"[^\W_]+", normalize(name)))[:MAX_NAME_TOKENS]


def _forms(word: str) -> list[str]:
    """Base forms of a prompt word: possessive dropped, then plural endings tried."""
    w = word.casefold()
    for end in ("'s", "s'", "'"):
        if w.endswith(end):
            w = w[: -len(end)] + ("s" if end == "s'" else "")
            break
    forms = [w]
    if w.endswith("es") and len(w) > 3:
        forms.append(w[:-2])
    if w.endswith("s") and len(w) > 2:
        forms.append(w[:-1])
    return forms


class NameMatcher:
    """All names and aliases of a set of entities, looked up by word n-grams of a prompt.

    Built once per entities-table version; a lookup costs O(words x longest name), not one regex
    per entity, so it stays fast for libraries of many thousands of entities."""

    def __init__(self, entities: Iterable[Entity]):
        self.table: dict[tuple[str, ...], list[tuple[Entity, str, bool]]] = {}
        # every proper prefix of a name's words: a span whose head is none of them can grow into no name
        self.prefixes: set[tuple[str, ...]] = set()
        self.longest = 1
        for entity in entities:
            for is_alias, name in [(False, entity.name)] + [(True, a) for a in entity.aliases]:
                key = name_tokens(name)
                if key:
                    self.table.setdefault(key, []).append((entity, name, is_alias))
                    self.prefixes.update(key[:m] for m in range(1, len(key)))
                    self.longest = max(self.longest, len(key))

    def find(self, prompt: str, *, on_screen: Sequence[str] = ()) -> list[Mention]:
        text = normalize(prompt)
        present = set(on_screen)
        words = list(_TOKEN.finditer(text))
        folded = [w.group(0).casefold() for w in words]
        forms = [_forms(w) for w in folded]
        candidates: list[Mention] = []
        for i in range(len(words)):
            for n in range(1, min(self.longest, len(words) - i) + 1):
                last_word = i + n - 1
                head = tuple(folded[i:last_word])
                if n > 1:
                    if not _GAP.match(text[words[last_word - 1].end() : words[last_word].start()]):
                        break  # "Aria, Bram" is not the name "Aria Bram"
                    before = folded[last_word - 1]
                    if before[-1:] == "'" or before.endswith("'s"):
                        break  # a possessive ends a name (the words before it were checked at shorter n)
                    if head not in self.prefixes:
                        break  # no name starts with these words: a longer span matches none either
                for last in forms[last_word]:
                    for entity, name, is_alias in self.table.get(head + (last,), ()):
                        start, end = words[i].start(), words[last_word].end()
                        if _accept(entity, name, text, start, end, present):
                            written = prompt[start:end]
                            candidates.append(Mention(entity.id, name, written, start, end, is_alias))
        # Longest first, then earliest, names before aliases; drop anything overlapping a kept one.
        candidates.sort(key=lambda m: (-(m.end - m.start), m.start, m.is_alias))
        kept: list[Mention] = []
        seen: set[tuple[str, int]] = set()
        for m in candidates:
            if (m.entity_id, m.start) in seen:
                continue
            if all(m.end <= k.start or m.start >= k.end for k in kept):
                kept.append(m)
                seen.add((m.entity_id, m.start))
        kept.sort(key=lambda m: m.start)
        return kept


def is_guarded(entity: Entity, name: str) -> bool:
    """True when ``name`` is a character's one-word name that is also a common word."""
    words = normalize(name).casefold().split()
    return entity.kind == "character" and len(words) == 1 and words[0].strip(".") in COMMON_WORD_NAMES


def _sentence_start(prompt: str, start: int) -> bool:
    before = prompt[:start]
    return not before.strip() or bool(_SENTENCE_END.search(before)) or before.rstrip().endswith(('"', "'"))


def _cued(prompt: str, start: int, end: int) -> bool:
    written = prompt[start:end]
    if written.endswith(("'s", "'")):
        return True
    following = re.match(r"\s*,?\s*(\w+)", prompt[end:])
    return bool(following and following.group(1).casefold() in CUE_WORDS)


def _accept(entity: Entity, name: str, prompt: str, start: int, end: int, on_screen: set[str]) -> bool:
    if not is_guarded(entity, name):
        return True
    if not prompt[start : start + 1].isupper():
        return False  # "hope", "will", "rose": the word, not the character
    if not _sentence_start(prompt, start):
        return True  # "... and Hope ..." mid-sentence capitalised: a name
    return entity.id in on_screen or _cued(prompt, start, end)


def find_mentions(prompt: str, entities: Iterable[Entity], *, on_screen: Sequence[str] = ()) -> list[Mention]:
    """Every non-overlapping mention of a name or alias of ``entities`` in ``prompt``, in order.

    ``on_screen`` (entity ids) relaxes the common-word guard at sentence starts. For repeated
    queries over the same entities build a :class:`NameMatcher` once."""
    return NameMatcher(entities).find(prompt, on_screen=on_screen)
