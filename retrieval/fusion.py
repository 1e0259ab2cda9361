"""Fusing signals into one score per entity, budgets per kind, and MMR diversity of references.

Fusion is by calibrated weights combined as a noisy-OR: every signal turns its raw value into
evidence e in [0, 1], has a weight w (how far that signal alone can be trusted), and an entity's
score is 1 - prod(1 - w * e). Why not reciprocal rank fusion: RRF needs only ranks, which is its
strength for merging long ranked lists, but a shot needs a yes/no per entity (is she in the
shot?) and a minimum score; ranks carry no such information (the top BM25 hit of a prompt with
nobody in it is still rank 1). Calibrated evidence keeps absolute strength, agrees with intuition
(a name in the prompt alone passes; weak BM25 alone does not; weak BM25 plus a weak CLIP match
can), and every term is printable as a reason.

Some terms speak against an entity: "remembering the fox" (the fox is not on screen), "gazes toward
the Moon" (the Moon is seen, not the shot's place). Their weight is negative; such a term damps the
score instead of adding to it: score = (1 - prod(1 - w * e)) * prod(1 - |w_damp| * e_damp), and its
reason says why. The weights below were set by hand on the tune split of this project's annotation
(benchmarks/bench_retrieval_quality.py; its held-out split is never tuned on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .signals.base import Term

#: how far each signal alone can be trusted (its evidence is scaled by it)
WEIGHTS = {
    "cast": 1.0,  # listed in the shot's explicit cast/location
    "name": 0.95,
    "alias": 0.9,
    "carried": 0.75,  # on screen in the previous shot, and this shot is no cut
    "pronoun": 0.7,  # "he", "the queen" resolved through the story context
    "bm25": 0.5,
    "clip_image": 0.6,
    "clip_text": 0.5,
    "scene": 0.75,  # the place of this scene's earlier shots: a cut inside a scene keeps the place
    "story_place": 0.45,  # a new scene whose prompt names no place at all: the last place, weakly
    "place": 0.6,  # a place noun of the location in a setting phrase ("walks down the long corridor")
    "introduced": 0.7,  # "an astronaut" introducing a cast member not yet seen
    # damping terms (negative): evidence that the entity is not on screen or not the shot's place
    "off_screen": -0.95,  # "remembering the fox", "without the braces"
    "owner": -0.7,  # "the Little Prince's planet": named as a place's owner, not seen in it
    "elsewhere": -0.9,  # a place seen or left ("toward the Moon", "after leaving Thornfield")
    "moved": -0.85,  # the scene's place, but the prompt sets the shot somewhere else
    "unseen_prop": -0.8,  # a prop no word of the prompt names (only its description matched)
    "container": -0.9,  # a prop the shot is inside of ("the spacecraft" seen from its cabin)
    "insert": -0.85,  # carried into a close-up of an object that shows no one
}
#: most entities of each kind in one result: one entry per kind of memstore.validation.KINDS
DEFAULT_BUDGETS = {"character": 3, "location": 1, "prop": 2, "style": 1}
DEFAULT_MIN_SCORE = 0.35
#: BM25 evidence saturates: s / (s + BM25_HALF) is 0.5 at BM25_HALF
BM25_HALF = 1.0
#: cosine ranges mapped linearly onto evidence 0..1 (CLIP ViT-B text->image cosines sit ~0.15-0.35)
CLIP_IMAGE_RANGE = (0.18, 0.34)
CLIP_TEXT_RANGE = (0.55, 0.9)


def bm25_evidence(score: float, top: float) -> float:
    """Relative to the prompt's best BM25 hit, damped by an absolute saturation."""
    if top <= 0 or score <= 0:
        return 0.0
    return float((score / top) * (score / (score + BM25_HALF)))


def cosine_evidence(cos: float, span: tuple[float, float]) -> float:
    lo, hi = span
    return _unit((cos - lo) / (hi - lo))


def _unit(value: float) -> float:
    """``value`` clipped to [0, 1] (plain floats: np.clip costs ~10 us a call, and fusion makes hundreds)."""
    value = float(value)
    return 0.0 if value < 0.0 else (1.0 if value > 1.0 else value)


@dataclass
class Evidence:
    """Everything known of one candidate entity for one shot."""

    entity_id: str
    terms: dict[str, float] = field(default_factory=dict)  # signal -> evidence in [0, 1]
    reasons: list[str] = field(default_factory=list)
    raw: dict[str, float] = field(default_factory=dict)  # signal -> raw value, for Hit.signals
    reason_of: dict[str, str] = field(default_factory=dict)  # signal -> the reason of its kept term

    def add(self, signal: str, evidence: float, reason: str, raw: float | None = None) -> None:
        evidence = _unit(evidence)
        if evidence <= self.terms.get(signal, 0.0):
            return
        if signal not in self.terms:
            self.reasons.append(reason)
        else:  # a stronger instance of the same signal replaces the weaker reason
            old = self.reason_of.get(signal)
            self.reasons = [r for r in self.reasons if r != old and not r.startswith(_prefix(signal))] + [reason]
        self.terms[signal] = evidence
        self.reason_of[signal] = reason
        self.raw[signal] = float(evidence if raw is None else raw)

    def score(self, weights: Mapping[str, float] = WEIGHTS) -> float:
        miss, kept = 1.0, 1.0
        for signal, e in self.terms.items():
            w = weights.get(signal, 0.0)
            if w < 0:
                kept *= 1.0 + w * e  # a damping term: what speaks against the entity
            else:
                miss *= 1.0 - w * e
        return (1.0 - miss) * kept


#: how the reason of a term that may come again stronger starts (the weaker reason is then replaced)
_REASON_PREFIX = {"bm25": "BM25", "clip_image": "CLIP text->image", "clip_text": "CLIP text->text"}


def _prefix(signal: str) -> str:
    return _REASON_PREFIX.get(signal, "\0")


def fuse(terms: Iterable[Term]) -> dict[str, Evidence]:
    """One :class:`Evidence` per entity, its terms added in the order the signals gave them (that
    order is the order of its reasons, and breaks ties between equal scores)."""
    evidence: dict[str, Evidence] = {}
    for t in terms:
        evidence.setdefault(t.entity_id, Evidence(t.entity_id)).add(t.signal, t.evidence, t.reason, t.raw)
    return evidence


def rank(
    evidence: Mapping[str, Evidence], kind_of: Callable[[str], str], weights: Mapping[str, float] = WEIGHTS
) -> list[tuple[str, str, float]]:
    """(entity_id, kind, fused score) of every entity with at least one term, for :func:`apply_budgets`."""
    return [
        (eid, kind_of(eid), e.score(weights))
        for eid, e in evidence.items()
        if any(weights.get(s, 0.0) >= 0 for s in e.terms)
    ]


def apply_budgets(
    ranked: Sequence[tuple[str, str, float]],
    *,
    k: int,
    budgets: Mapping[str, int],
    min_score: float,
    always: frozenset[str] = frozenset(),
) -> list[tuple[str, str, float]]:
    """Keep (entity_id, kind, score) best first, at most ``budgets[kind]`` per kind and ``k`` in
    all, dropping scores under ``min_score``. Ids in ``always`` (an explicit cast) bypass the
    budget and the minimum, since the user asked for them."""
    taken: dict[str, int] = {}
    out: list[tuple[str, str, float]] = []
    for eid, kind, score in sorted(ranked, key=lambda t: (t[0] not in always, -t[2])):
        if eid not in always:
            if score < min_score or taken.get(kind, 0) >= budgets.get(kind, k):
                continue
            if len(out) >= k:
                break
        taken[kind] = taken.get(kind, 0) + 1
        out.append((eid, kind, score))
    return sorted(out, key=lambda t: -t[2])


def mmr(relevance: Sequence[float], vectors: np.ndarray | None, n: int, *, lam: float = 0.7) -> list[int]:
    """Maximal marginal relevance: indices of ``n`` items, each maximising
    lam * relevance - (1 - lam) * max cosine to those already picked. Without vectors: by relevance."""
    rel = np.asarray(relevance, dtype=np.float64)
    if len(rel) == 0 or n <= 0:
        return []
    if len(rel) == 1:
        return [0]  # one reference: nothing to spread (the most common case, worth no vector maths)
    if vectors is None or len(vectors) != len(rel):
        return [int(i) for i in np.argsort(-rel, kind="stable")[:n]]
    return mmr_by_similarity(rel, cosine_similarities(vectors), n, lam=lam)


def cosine_similarities(vectors: np.ndarray) -> np.ndarray:
    """Every pair's cosine (float64): what :func:`mmr` penalises; kept by a caller that spreads
    the same items again (the reference cache does, per recurring entity)."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return v @ v.T


def mmr_by_similarity(
    relevance: Sequence[float] | np.ndarray, similarity: np.ndarray, n: int, *, lam: float = 0.7
) -> list[int]:
    """:func:`mmr` given the items' pairwise cosines (:func:`cosine_similarities`)."""
    rel = np.asarray(relevance, dtype=np.float64)
    if len(rel) == 0 or n <= 0:
        return []
    picked: list[int] = []
    best_sim = np.full(len(rel), -np.inf)
    for _ in range(min(n, len(rel))):
        penalty = np.where(np.isfinite(best_sim), best_sim, 0.0)
        value = lam * rel - (1 - lam) * penalty
        value[picked] = -np.inf
        i = int(np.argmax(value))
        picked.append(i)
        best_sim = np.maximum(best_sim, similarity[i])
    return picked
