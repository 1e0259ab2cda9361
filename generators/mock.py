"""MockGenerator: the test double. ``fn(shot, conditioning, seed) -> frames`` decides the pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .base import ConditionedEntity, Conditioning, GeneratorAdapter, ShotOutput, ShotSpec, to_uint8_frames

FramesFn = Callable[[ShotSpec, Conditioning, int], Any]


def _default_fn(shot: ShotSpec, conditioning: Conditioning, seed: int) -> np.ndarray:
    """Deterministic noise from the seed and the prompt: different shots look different."""
    import zlib

    rng = np.random.default_rng([seed, zlib.crc32(conditioning.prompt.encode())])
    return rng.integers(0, 256, (shot.num_frames, shot.height, shot.width, 3), dtype=np.uint8)


class MockGenerator(GeneratorAdapter):
    """Records what it was asked; ``calls`` lists (shot, conditioning, seed) per generate()."""

    name = "mock"

    def __init__(self, fn: FramesFn | None = None, *, model_id: str = "mock"):
        self.fn = fn or _default_fn
        self._model_id = model_id
        self.calls: list[tuple[ShotSpec, Conditioning, int]] = []

    @property
    def model_id(self) -> str:
        return self._model_id

    def prepare(self, shot: ShotSpec, result: Any) -> Conditioning:
        entities = [
            ConditionedEntity(h.entity.name, h.entity.id, h.entity.kind, tuple(r.id for r in h.references))
            for h in result.hits
        ]
        return Conditioning(
            self.name, shot.prompt, shot.negative_prompt, entities=entities, memory_ids=[r.id for r in result.memory]
        )

    def generate(self, shot: ShotSpec, conditioning: Conditioning, seed: int | None = None) -> ShotOutput:
        seed = shot.seed if seed is None else seed
        self.calls.append((shot, conditioning, seed))
        frames = to_uint8_frames(self.fn(shot, conditioning, seed))
        return ShotOutput(frames, shot.fps, self.metadata(shot, conditioning, seed))
