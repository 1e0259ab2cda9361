"""How often the watermark survives what happens to published media: an MP4 re-encode at the
encoder's default quality, JPEG at quality 75, a half-size copy, a 10% crop (centred, and at odd
pixel offsets anywhere in the frame). Used by the tests and by ``benchmarks/bench_provenance.py``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .watermark import decode_image, embed_frames

Transform = Callable[[np.ndarray], np.ndarray]  # T x H x W x 3 -> T x H' x W' x 3
X264_DEFAULT_CRF = 23

CROP_SEED = 15  # the offsets of crop_10_offset: fixed, so the figures repeat

__all__ = ["TRANSFORMS", "crop_10", "crop_10_offset", "half_size", "jpeg_75", "mp4_reencode", "survival_rates"]


def mp4_reencode(frames: np.ndarray, clip: int = 6) -> np.ndarray:
    """Each frame as a short still clip (a shot: ``clip`` frames), written as the story loop writes
    a shot, decoded, encoded again at x264's default CRF and decoded; the clip's middle frame."""
    from ..video import read_frames, write_mp4

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "shot.mp4", Path(tmp) / "copy.mp4"
        for frame in frames:
            write_mp4(first, np.repeat(frame[None], clip, axis=0), fps=12)
            write_mp4(second, read_frames(first), fps=12, quality=X264_DEFAULT_CRF)
            out.append(read_frames(second)[clip // 2])
    return np.stack(out)


def jpeg_75(frames: np.ndarray) -> np.ndarray:
    import cv2

    out = []
    for frame in frames:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 75])
        out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return np.stack(out)


def half_size(frames: np.ndarray) -> np.ndarray:
    import cv2

    height, width = frames.shape[1:3]
    return np.stack([cv2.resize(f, (width // 2, height // 2), interpolation=cv2.INTER_AREA) for f in frames])


def crop_10(frames: np.ndarray) -> np.ndarray:
    """A centred crop that keeps 90% of the width and of the height."""
    height, width = frames.shape[1:3]
    dy, dx = int(height * 0.05), int(width * 0.05)
    return np.ascontiguousarray(frames[:, dy : height - dy, dx : width - dx])


def crop_10_offset(frames: np.ndarray, seed: int = CROP_SEED) -> np.ndarray:
    """Crops that keep 90% of the width and of the height, each frame at its own odd pixel offset
    (drawn from ``seed``), so neither the 8-pixel block grid nor the pixel pairs line up."""
    height, width = frames.shape[1:3]
    keep_h, keep_w = int(height * 0.9), int(width * 0.9)
    rng = np.random.default_rng(seed)
    out = []
    for frame in frames:
        dy = int(rng.integers(0, (height - keep_h) // 2)) * 2 + 1
        dx = int(rng.integers(0, (width - keep_w) // 2)) * 2 + 1
        out.append(frame[dy : dy + keep_h, dx : dx + keep_w])
    return np.ascontiguousarray(np.stack(out))


TRANSFORMS: dict[str, Transform] = {
    "none": lambda frames: frames,
    "mp4_reencode": mp4_reencode,
    "jpeg_75": jpeg_75,
    "half_size": half_size,
    "crop_10": crop_10,
    "crop_10_offset": crop_10_offset,
}


def survival_rates(
    frames: Sequence[np.ndarray] | np.ndarray, wid: str, names: Sequence[str] | None = None
) -> dict[str, float]:
    """Per transform, the share of frames (each marked with ``wid``) whose watermark reads back as ``wid``."""
    marked = embed_frames(np.asarray(frames), wid)
    rates = {}
    for name in names or list(TRANSFORMS):
        changed = TRANSFORMS[name](marked)
        rates[name] = float(np.mean([decode_image(frame) == wid for frame in changed]))
    return rates
