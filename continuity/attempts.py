"""Generate a shot until the continuity guard is satisfied: each retry changes the seed and raises
the failing characters' conditioning scale (for adapters that have per-entity scales); the best
attempt is kept; under ``strict`` a shot that never passes fails the run (which can resume)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generators import GeneratorAdapter

from .guard import ContinuityGuard, GuardConfig, GuardError, GuardVerdict
from .session import ShotPlan

#: distance between the seeds of two attempts (a prime: attempt seeds of neighbouring shots never collide)
SEED_STRIDE = 7919


@dataclass
class Attempt:
    number: int  # 1-based
    seed: int
    scales: dict[str, float]
    frames: np.ndarray
    fps: float
    model_id: str | None
    verdict: GuardVerdict | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "seed": self.seed,
            "scales": {k: round(v, 3) for k, v in self.scales.items()},
            "verdict": self.verdict.to_json() if self.verdict is not None else None,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class Outcome:
    best: Attempt
    attempts: list[Attempt] = field(default_factory=list)
    prepare_s: float = 0.0

    @property
    def verdict(self) -> GuardVerdict | None:
        return self.best.verdict


def generate_checked(
    generator: GeneratorAdapter, plan: ShotPlan, guard: ContinuityGuard | None, config: GuardConfig
) -> Outcome:
    """Up to ``max_attempts`` generations of one shot (one without a guard or under ``warn``)."""
    tries = config.max_attempts if guard is not None and config.policy in ("retry", "strict") else 1
    attempts: list[Attempt] = []
    prepare_s = 0.0
    for number in range(1, tries + 1):
        failing = attempts[-1].verdict.failing() if attempts and attempts[-1].verdict else []
        with _raised_scales(generator, [c.name for c in failing], config.scale_step * (number - 1)) as scales:
            t = time.perf_counter()
            plan.conditioning = generator.prepare(plan.spec, plan.result)
            prepare_s += time.perf_counter() - t
            seed = plan.seed + SEED_STRIDE * (number - 1)
            t = time.perf_counter()
            output = generator.generate(plan.spec, plan.conditioning, seed)
            frames = np.asarray(output.frames)
            verdict = guard.check(frames, plan.result) if guard is not None else None
            model_id = (output.metadata or {}).get("model_id") or generator.model_id
            attempts.append(
                Attempt(number, seed, scales, frames, output.fps, model_id, verdict, time.perf_counter() - t)
            )
        if verdict is None or verdict.passed:
            break
    best = max(attempts, key=lambda a: (a.verdict.passed, a.verdict.margin) if a.verdict else (True, 0.0))
    if config.policy == "strict" and best.verdict is not None and not best.verdict.passed:
        raise GuardError(
            f"shot {plan.index} failed the continuity guard after {len(attempts)} attempt(s): {best.verdict.explain()};"
            " lower the threshold (--guard-threshold NAME=VALUE), add references, or run with --guard warn"
        )
    return Outcome(best, attempts, prepare_s)


@contextmanager
def _raised_scales(generator: GeneratorAdapter, names: list[str], step: float) -> Iterator[dict[str, float]]:
    """Raise these entities' scales for one attempt on adapters with per-entity ``scales``
    (IP-Adapter, FaceID); the adapter's own scales are restored afterwards."""
    scales = getattr(generator, "scales", None)
    if not isinstance(scales, dict) or not names or step <= 0:
        yield {}
        return
    saved = dict(scales)
    base = float(getattr(generator, "scale", 1.0))
    raised = {n.casefold(): min(1.0, saved.get(n.casefold(), base) + step) for n in names}
    scales.update(raised)
    try:
        yield raised
    finally:
        scales.clear()
        scales.update(saved)
