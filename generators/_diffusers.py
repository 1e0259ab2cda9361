"""Shared plumbing for adapters that drive a diffusers pipeline (imported only by those adapters).

Calling conventions differ between image pipelines (SD, SDXL: one picture) and video pipelines
(AnimateDiff, Wan: ``num_frames``); ``call_pipeline`` hides that and always returns uint8 frames
of the shot's size and length.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from memstore.errors import InvalidInputError, MissingWeightsError

from .base import ShotSpec, fit_frames, require_diffusers, to_uint8_frames


def accepts(pipeline: Any, name: str) -> bool:
    """Whether ``pipeline.__call__`` takes the keyword ``name``."""
    try:
        params = inspect.signature(pipeline.__call__).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def guidance_of(pipeline: Any, explicit: Any = None) -> float:
    """The guidance scale a call will use: the given one, else the pipeline's own default."""
    if explicit is not None:
        return float(explicit)
    try:
        default = inspect.signature(pipeline.__call__).parameters["guidance_scale"].default
    except (KeyError, TypeError, ValueError):
        return 7.5
    return float(default) if isinstance(default, (int, float)) else 7.5


def torch_generator(pipeline: Any, seed: int) -> Any:
    """A CPU generator: the same seed gives the same initial noise on any device."""
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)


def pipeline_size(shot: ShotSpec, multiple: int) -> tuple[int, int]:
    """The shot's size rounded down to the backbone's latent multiple (at least one multiple)."""
    return (max(multiple, shot.width // multiple * multiple), max(multiple, shot.height // multiple * multiple))


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in frames])


def size_multiple(pipeline: Any) -> int:
    """Latent downsampling times patch size: what width and height must be divisible by."""
    spatial = getattr(pipeline, "vae_scale_factor_spatial", None) or getattr(pipeline, "vae_scale_factor", None) or 8
    transformer = getattr(pipeline, "transformer", None)
    patch = getattr(getattr(transformer, "config", None), "patch_size", None)
    if isinstance(patch, (list, tuple)) and len(patch) >= 2:
        return int(spatial) * int(patch[-1])
    return int(spatial)


def call_pipeline(
    pipeline: Any,
    shot: ShotSpec,
    seed: int,
    *,
    prompt: str,
    negative_prompt: str = "",
    num_inference_steps: int = 25,
    guidance_scale: float | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run a diffusers pipeline for ``shot``; returns (uint8 T x H x W x 3 frames, facts for metadata)."""
    width, height = pipeline_size(shot, size_multiple(pipeline))
    # a shot's own steps and guidance (story script ``options``) win over the adapter's settings
    num_inference_steps = shot.steps if shot.steps is not None else num_inference_steps
    guidance_scale = shot.guidance if shot.guidance is not None else guidance_scale
    call: dict[str, Any] = {
        "prompt": prompt,
        "height": height,
        "width": width,
        "num_inference_steps": num_inference_steps,
        "generator": torch_generator(pipeline, seed),
        "output_type": "np",
    }
    if negative_prompt:
        call["negative_prompt"] = negative_prompt
    if guidance_scale is not None:
        call["guidance_scale"] = guidance_scale
    video = accepts(pipeline, "num_frames")
    if video:
        call["num_frames"] = _valid_num_frames(pipeline, shot.num_frames)
    call.update(kwargs)
    out = pipeline(**call)
    raw = getattr(out, "frames", None)
    if raw is None:
        raw = getattr(out, "images", None)
    if raw is None:
        raw = out[0]
    frames = to_uint8_frames(raw)
    produced = len(frames)
    frames = fit_frames(resize_frames(frames, shot.width, shot.height), shot.num_frames)
    return frames, {
        "pipeline": type(pipeline).__name__,
        "render_size": [width, height],
        "frames_rendered": produced,
        "steps": num_inference_steps,
        "video": video,
    }


def _valid_num_frames(pipeline: Any, num_frames: int) -> int:
    """Wan wants 4k+1 frames (its VAE compresses time by 4); others take any count."""
    temporal = getattr(pipeline, "vae_scale_factor_temporal", None)
    if temporal and temporal > 1:
        return max(1, (num_frames - 1 + temporal - 1) // temporal * temporal + 1)
    return num_frames


def model_id_of(pipeline: Any, default: str) -> str:
    name = getattr(getattr(pipeline, "config", None), "_name_or_path", None)
    return str(name) if name else default


def load_pipeline(class_name: str, model_id_or_folder: str, *, allow_download: bool = False, **kwargs: Any) -> Any:
    """``<class_name>.from_pretrained`` from a local folder or the local HF cache; MissingWeightsError if absent."""
    require_diffusers()
    import diffusers

    cls = getattr(diffusers, class_name, None)
    if cls is None:
        raise InvalidInputError(f"diffusers {diffusers.__version__} has no {class_name}; expected a newer diffusers")
    local = Path(str(model_id_or_folder)).expanduser()
    looked = str(local) if local.exists() else f"{model_id_or_folder!r} in the local Hugging Face cache"
    try:
        return cls.from_pretrained(
            str(local) if local.exists() else model_id_or_folder, local_files_only=not allow_download, **kwargs
        )
    except (OSError, ValueError) as err:
        raise MissingWeightsError(
            f"weights for {class_name} not found: looked at {looked}; download them where there is network "
            f"(huggingface-cli download {model_id_or_folder} --local-dir DIR) and pass DIR ({type(err).__name__})"
        ) from err
