"""ComfyUI's tensors in and out: IMAGE is float32 B x H x W x C in [0, 1], MASK is float32 B x H x W.

torch is imported inside the functions: ComfyUI has it loaded already, and importing the pack (or
running these tests' declaration checks) must not pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: the stand-in for an empty batch (a first shot has no memory): one black 64 x 64 frame, because
#: ComfyUI's image nodes (and most packs) fail on a batch of zero
EMPTY_SIZE = 64


def frames_from_image(image: object, what: str = "images") -> np.ndarray:
    """A ComfyUI IMAGE batch -> uint8 B x H x W x 3 (alpha dropped; values clipped to [0, 1])."""
    from memstore.errors import InvalidInputError

    array = _as_numpy(image, what)
    if array.ndim != 4 or array.shape[-1] not in (3, 4) or 0 in array.shape:
        raise InvalidInputError(
            f"{what} must be a ComfyUI IMAGE batch B x H x W x 3 (float 0..1), got shape {tuple(array.shape)};"
            " connect an IMAGE output (Load Image, VAE Decode)"
        )
    array = array[..., :3].astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise InvalidInputError(
            f"{what} hold NaN or infinite values; fix the node that made them (e.g. a VAE decode overflowing in fp16)"
        )
    return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def _as_numpy(value: object, what: str) -> np.ndarray:
    from memstore.errors import InvalidInputError

    detach = getattr(value, "detach", None)
    if callable(detach):  # a torch tensor, on whichever device
        return detach().to("cpu").float().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise InvalidInputError(f"{what} must be a ComfyUI IMAGE tensor, got {type(value).__name__}")


def image_batch(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 H x W x 3 frames of one size -> a ComfyUI IMAGE batch (a black frame when empty)."""
    import torch

    if len(frames) == 0:
        return torch.zeros((1, EMPTY_SIZE, EMPTY_SIZE, 3), dtype=torch.float32)
    stacked = np.stack([np.asarray(f, dtype=np.uint8)[..., :3] for f in frames])
    return torch.from_numpy(stacked.astype(np.float32) / 255.0)


def mask_batch(masks: Sequence[np.ndarray], size: tuple[int, int] = (EMPTY_SIZE, EMPTY_SIZE)) -> torch.Tensor:
    """float H x W masks of one size -> a ComfyUI MASK batch (an empty mask of ``size`` (w, h) when none)."""
    import torch

    if not masks:
        return torch.zeros((1, size[1], size[0]), dtype=torch.float32)
    return torch.from_numpy(np.stack([np.asarray(m, dtype=np.float32) for m in masks]))
