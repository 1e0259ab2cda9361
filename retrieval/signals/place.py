"""Where the shot is set and what is truly on screen, read from the prompt (:mod:`retrieval.places`).

Terms for locations: "place" when a setting phrase uses a location's own place noun ("walks down
the long corridor" for "Hogwarts Corridor") or a place noun of its description (weaker), also read
from the script's first-frame prompt; "story_place" for the last place shown when a new scene's
prompt names no place at all; damping "elsewhere" for a location only seen or left ("gazes toward
the Moon", "after leaving Thornfield" where the shot stands on a road) and "moved" for the scene's
carried place when the prompt sets the shot in another one.

Terms for anything named: damping "off_screen" when every mention stands in a span such as
"remembering ..." or "without ...". For props: damping "unseen_prop" when no word of the prompt
names the prop (a similar description word is not the prop on screen), and "container" when the
shot is inside the prop ("the spacecraft" seen from the "Spacecraft Cabin").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from memstore.schema import Entity

from .. import places
from ..fusion import WEIGHTS
from .base import SignalInput, Term

#: evidence of a place noun by how the sentence uses it, for a location's own noun / a described one
OWN = {"setting": 1.0, "plain": 0.4}
DESCRIBED = {"setting": 0.6, "plain": 0.2}
#: the first-frame prompt describes the same shot, at the start: its place words count a little less
FIRST_FRAME = 0.8
#: where two locations own the same noun and nothing else tells them apart, each gets this share
SHARED_NOUN = 0.5
#: words of a vehicle or building's outside: "steps out of the spacecraft" shows it from outside
EXTERIOR_CUES = frozenset("outside exterior out exits exit lands landed touches approaches".split())


#: terms that only say the prompt shares words with an entity's text
LEXICAL_ONLY = frozenset({"bm25"})


@dataclass(frozen=True)
class Nouns:
    """A location's place nouns: its own (the heads of its name and aliases) and its description's."""

    own: frozenset[str]
    described: frozenset[str]
    words: frozenset[str]  # every word of its name and aliases, for telling apart two owners of a noun

    def belongs(self, noun: str) -> bool:
        return noun in self.own or noun in self.described


def _moves(word: places.PlaceWord, carried: Nouns, known_elsewhere: Callable[[str], bool]) -> bool:
    """Does this place word take the shot away from the carried place? Into a place that another
    location owns or describes ("walks down the long corridor"; ``known_elsewhere(noun)``), or by a
    verb of arriving ("enters a barn"); a place word the carried one shares or that no location
    knows ("runs across an open field" of the park) is taken as a part of it."""
    if carried.belongs(word.noun) or word.role == "view" or word.role == "source":
        return False
    if word.role != "setting":
        return False  # "bathing the room in green": a plain place word sets nothing
    if known_elsewhere(word.noun):
        return True
    phrase = {w.casefold() for w in word.phrase.split()}
    return word.role == "setting" and bool(phrase & places.ARRIVAL_CUES)


def _owned_place(prompt: str, end: int) -> str | None:
    """The place noun right after a possessive name: "the Little Prince's planet" -> "planet"."""
    if not prompt[:end].endswith(("'s", "\u2019s")):
        return None
    nxt = prompt[end:].split(maxsplit=1)
    word = nxt[0].strip(".,;:!?") if nxt else ""
    return places.base(word) if places.is_place(word) else None


@lru_cache(maxsize=4096)
def _nouns(name: str, aliases: tuple[str, ...], description: str) -> Nouns:
    own = {h for h in (places.head_of(n) for n in (name, *aliases)) if h}
    described = {w for w in places.words_of(description) if w in places.PLACE_NOUNS} - own
    words = set().union(*(places.words_of(n) for n in (name, *aliases)))
    return Nouns(frozenset(own), frozenset(described), frozenset(words))


def nouns_of(entity: Entity) -> Nouns:
    return _nouns(entity.name, tuple(entity.aliases), entity.description)


class PlaceIndex:
    """The place nouns of every location of one entities snapshot, by noun: a place word of the
    prompt costs a dict lookup instead of a pass over the library's locations (hundreds of them).
    Built once per snapshot; the lists keep the snapshot's order of locations."""

    def __init__(self, entities: Mapping[str, Entity], version: int, location_ids: Sequence[str]):
        self.entities = entities
        self.version = version
        self.ids = tuple(location_ids)
        self.own: dict[str, list[str]] = {}
        self.described: dict[str, list[str]] = {}
        for i in self.ids:
            nouns = nouns_of(entities[i])
            for noun in nouns.own:
                self.own.setdefault(noun, []).append(i)
            for noun in nouns.described:
                self.described.setdefault(noun, []).append(i)
        self.id_set = frozenset(self.ids)

    def fits(self, given: SignalInput) -> bool:
        # the same mapping object: a catalog snapshot is never changed in place
        return self.entities is given.entities and self.version == given.version


class Locations(Mapping[str, Entity]):
    """The locations one query allows (a view of a :class:`PlaceIndex`, nothing copied)."""

    def __init__(self, index: PlaceIndex, allowed: frozenset[str]):
        self.index = index
        self.allowed = allowed

    def owners(self, noun: str) -> list[str]:
        """Allowed locations whose name or alias ends in this place noun."""
        return [i for i in self.index.own.get(noun, ()) if i in self.allowed]

    def describing(self, noun: str) -> list[str]:
        """Allowed locations whose description names this place noun (and whose name does not)."""
        return [i for i in self.index.described.get(noun, ()) if i in self.allowed]

    def __getitem__(self, eid: str) -> Entity:
        if eid in self.index.id_set and eid in self.allowed:
            return self.index.entities[eid]
        raise KeyError(eid)

    def __contains__(self, eid: object) -> bool:
        return eid in self.index.id_set and eid in self.allowed

    def __iter__(self) -> Iterator[str]:
        return (i for i in self.index.ids if i in self.allowed)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return any(i in self.allowed for i in self.index.ids)


class PlaceReading:
    """Locations from place words and the scene's structure; damping for what is not on screen.
    A reader (:class:`retrieval.retriever.Reader`): it runs after the signals and sees their terms."""

    weights = {
        k: WEIGHTS[k]
        for k in ("place", "story_place", "elsewhere", "moved", "off_screen", "owner", "unseen_prop", "container")
    }

    def __init__(self) -> None:
        self._index: PlaceIndex | None = None
        self._lock = threading.Lock()

    def _locations(self, given: SignalInput) -> Locations:
        with self._lock:
            if self._index is None or not self._index.fits(given):
                self._index = PlaceIndex(given.entities, given.version, given.of_kind("location"))
            return Locations(self._index, given.allowed)

    def terms(self, given: SignalInput, found: Sequence[Term] = ()) -> Iterator[Term]:
        query = given.query
        reading = places.read(query.prompt)
        locations = self._locations(given)
        yield from self._off_screen(given, reading)
        yield from self._props(given, locations, found)
        if query.location or not locations:
            return  # the script says where: nothing to read
        shown = given.context.shown_locations if given.context is not None else set()
        yield from self._place_words(reading, locations, shown, 1.0, "")
        if query.first_frame_prompt:
            first = places.read(query.first_frame_prompt)
            yield from self._place_words(first, locations, shown, FIRST_FRAME, "first frame: ")
        yield from self._elsewhere(given, reading, locations)
        yield from self._moved_or_story(given, reading, locations)

    # --- locations ----------------------------------------------------------------------------------
    def _place_words(
        self, reading: places.Reading, locations: Locations, shown: set[str], scale: float, where: str
    ) -> Iterator[Term]:
        prompt_words = {p.noun for p in reading.places}
        for word in reading.places:
            if word.role not in OWN or (word.role == "plain" and word.modifier):
                continue  # "the soft ocean breeze" says nothing of where the shot stands
            owners = locations.owners(word.noun)
            if word.indefinite and not word.modifier and owners and all(i in shown for i in owners):
                # "lands on a planet": scripts say "a" of a place not seen yet; the known one is "the", "his"
                for i in owners:
                    why = f"{where}'{word.phrase}': another place of that kind, not {locations[i].name} (shown before)"
                    yield Term(i, "elsewhere", 1.0, why)
                continue
            if owners:
                # "along a street lined with cherry trees": the owner whose other words are there too
                fit = {i: len(nouns_of(locations[i]).words & prompt_words) for i in owners}
                best = max(fit.values())
                top = [i for i in owners if fit[i] == best]
                share = 1.0 if len(top) == 1 else SHARED_NOUN
                for i in top:
                    reason = f"{where}'{word.phrase}': the place noun of {locations[i].name} ({word.role})"
                    yield Term(i, "place", OWN[word.role] * share * scale, reason)
                continue
            for i in locations.describing(word.noun):
                reason = f"{where}'{word.phrase}': a place of {locations[i].name}'s description ({word.role})"
                yield Term(i, "place", DESCRIBED[word.role] * scale, reason)

    def _elsewhere(self, given: SignalInput, reading: places.Reading, locations: Locations) -> Iterator[Term]:
        """A location only seen, or left while the prompt sets the shot in another place."""
        prompt = given.query.prompt
        uses: dict[str, list[tuple[places.Role, str]]] = {}
        for m in given.mentions:
            if m.entity_id in locations:
                uses.setdefault(m.entity_id, []).append(places.role_at(prompt, m.start))
        for word in reading.places:
            for i in locations.owners(word.noun):
                uses.setdefault(i, []).append((word.role, word.phrase))
        for i, roles in uses.items():
            if any(role in OWN for role, _ in roles):
                continue
            phrase = roles[0][1]
            if all(role == "view" for role, _ in roles):
                yield Term(i, "elsewhere", 1.0, f"'{phrase}': {locations[i].name} is seen, not the shot's place")
                continue
            other = [w for w in reading.places if w.role == "setting" and not nouns_of(locations[i]).belongs(w.noun)]
            if other:
                why = f"'{phrase}' then '{other[0].phrase}': the shot has left {locations[i].name}"
                yield Term(i, "elsewhere", 1.0, why)

    def _moved_or_story(self, given: SignalInput, reading: places.Reading, locations: Locations) -> Iterator[Term]:
        context = given.context
        if context is None:
            return
        query = given.query
        carried = (None if query.cut else context.location) or context.scene_place(query.scene)
        named_places = [m for m in given.mentions if m.entity_id in locations]
        if carried is not None and carried in locations:
            nouns = nouns_of(locations[carried])
            named_here = any(
                m.entity_id == carried and places.role_at(query.prompt, m.start)[0] in OWN for m in named_places
            )

            def known_elsewhere(noun: str) -> bool:
                return any(i != carried for i in (*locations.owners(noun), *locations.describing(noun)))

            away = [w for w in reading.places if _moves(w, nouns, known_elsewhere)]
            if away and not named_here and not any(nouns.belongs(w.noun) for w in reading.places):
                why = f"'{away[0].phrase}': the shot moves on from {locations[carried].name}"
                yield Term(carried, "moved", 1.0, why)
            return
        last = context.last_location
        # only where the script says which shots make a scene: a bare cut carries nothing
        new_scene = query.scene is not None and query.scene != context.scene
        props = set(given.of_kind("prop"))
        # "Back in the sleigh": a vehicle or thing the shot is set in is a place of its own
        in_prop = any(
            m.entity_id in props and places.role_at(query.prompt, m.start)[0] == "setting" for m in given.mentions
        )
        said = [w for w in reading.places if w.role != "view" and not (w.role == "plain" and w.modifier)]
        if (
            last is not None
            and last in locations
            and query.cut
            and new_scene
            and not said
            and not named_places
            and not in_prop
        ):
            why = f"no place named in a new scene: the last place shown, {locations[last].name}"
            yield Term(last, "story_place", 1.0, why)

    # --- what is not on screen ----------------------------------------------------------------------
    def _off_screen(self, given: SignalInput, reading: places.Reading) -> Iterator[Term]:
        cues: dict[str, list[str | None]] = {}
        owned: dict[str, list[str]] = {}
        prompt = given.query.prompt
        for m in given.mentions:
            cues.setdefault(m.entity_id, []).append(reading.is_absent(m.start, m.end))
            place = _owned_place(prompt, m.end) if given.entities[m.entity_id].kind == "character" else None
            owned.setdefault(m.entity_id, []).append(place or "")
        for eid, found in cues.items():
            if eid not in given.allowed:
                continue
            name = given.entities[eid].name
            if all(found):
                yield Term(eid, "off_screen", 1.0, f"'{found[0]} ... {name}': named, not on screen")
            elif all(owned[eid]):
                why = f"'{name}'s {owned[eid][0]}': named as the owner of a place, not seen in it"
                yield Term(eid, "owner", 1.0, why)

    def _props(self, given: SignalInput, locations: Locations, found: Sequence[Term]) -> Iterator[Term]:
        # what else than a description word speaks for a prop: its name, the cast, a CLIP match, the story
        props = [
            (eid, e)
            for eid in dict.fromkeys(t.entity_id for t in found)
            if (e := given.entities.get(eid)) is not None and e.kind == "prop" and eid in given.allowed
        ]
        if not props:
            return
        support = {t.entity_id for t in found if t.signal not in LEXICAL_ONLY}
        prompt_words = places.words_of(given.query.prompt) | places.words_of(given.query.first_frame_prompt or "")
        mentioned = {m.entity_id for m in given.mentions}
        context = given.context
        around = set(mentioned)
        if context is not None:
            around |= {i for i in (context.location, context.scene_place(given.query.scene)) if i is not None}
        inside = [locations[i] for i in around if i in locations]
        exterior = bool(EXTERIOR_CUES & prompt_words)
        # only props some term speaks for: damping one that nothing found changes no result
        # (and the library's other props, hundreds of them, would cost a term each per shot)
        # (their evidence entries exist already: the order of these terms changes no order)
        for eid, e in props:
            heads = {h for h in (places.head_of(n) for n in (e.name, *e.aliases)) if h}
            if eid not in mentioned and eid not in support and not heads & prompt_words:
                why = f"no word of the prompt names {e.name} (a description word alone is no prop on screen)"
                yield Term(eid, "unseen_prop", 1.0, why)
                continue
            own = places.words_of(e.name)
            container = next((loc for loc in inside if own and own < places.words_of(loc.name)), None)
            if container is not None and not exterior:
                yield Term(eid, "container", 1.0, f"the shot is inside {e.name} ({container.name}), not facing it")
