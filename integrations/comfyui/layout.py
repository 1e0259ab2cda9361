"""Images of many sizes into one batch, and boxes into masks (numpy and PIL only).

A ComfyUI batch has one size. References of a library do not, so each is fitted into the batch
size (``pad``: letterboxed whole; ``crop``: cover and centre-crop; ``stretch``), and the same
transform carries its face box into the fitted frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

FITS = ("pad", "crop", "stretch")
Box = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class Fit:
    """Where a source image landed in the batch frame: scale per axis, then offset (pixels)."""

    sx: float
    sy: float
    ox: float
    oy: float

    def box(self, box: Sequence[float]) -> Box:
        x0, y0, x1, y1 = (float(v) for v in box)
        return (x0 * self.sx + self.ox, y0 * self.sy + self.oy, x1 * self.sx + self.ox, y1 * self.sy + self.oy)


def fit_image(image: Image.Image, width: int, height: int, mode: str = "pad") -> tuple[np.ndarray, Fit]:
    """``image`` fitted into ``width`` x ``height`` (uint8 H x W x 3) and the transform used."""
    from memstore.errors import InvalidInputError

    if mode not in FITS:
        raise InvalidInputError(f"fit {mode!r} is unknown; expected one of {', '.join(FITS)}")
    image = image.convert("RGB")
    w, h = image.size
    if mode == "stretch":
        sx, sy = width / w, height / h
    else:
        scale = (min if mode == "pad" else max)(width / w, height / h)
        sx = sy = scale
    size = (max(1, round(w * sx)), max(1, round(h * sy)))
    ox, oy = (width - size[0]) / 2, (height - size[1]) / 2
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image.resize(size, Image.LANCZOS), (round(ox), round(oy)))  # a negative offset crops
    return np.asarray(canvas), Fit(sx, sy, round(ox), round(oy))


def box_mask(box: Box | None, width: int, height: int) -> np.ndarray:
    """A float32 H x W mask: 1 inside ``box`` (pixels, clipped to the frame), all ones when None."""
    mask = np.zeros((height, width), dtype=np.float32)
    if box is None:
        mask[:] = 1.0
        return mask
    x0, y0, x1, y1 = box
    left, top = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    right, bottom = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    mask[top:bottom, left:right] = 1.0
    return mask


def same_size(frames: Sequence[np.ndarray], mode: str = "pad") -> list[np.ndarray]:
    """Frames brought to the size of the first one (memory keyframes of shots made at other sizes)."""
    if not frames:
        return []
    height, width = frames[0].shape[:2]
    return [
        f if f.shape[:2] == (height, width) else fit_image(Image.fromarray(f), width, height, mode)[0] for f in frames
    ]
