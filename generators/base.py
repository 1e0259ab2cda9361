"""The adapter contract: a retrieval result becomes inspectable conditioning, conditioning becomes frames.

Two verbs, split on purpose: ``prepare`` does everything that depends on the references (decode,
crop, encode, cache) and ``generate`` only runs the backbone, so a shot can be re-rolled with
another seed without touching the encoders, and a test can inspect what was chosen before any
pixels exist. This module imports no torch.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from memstore.errors import InvalidInputError, MissingExtraError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from memstore.schema import Reference
    from retrieval.query import Hit, RetrievalResult

Box = tuple[float, float, float, float]  # x0, y0, x1, y1, normalized to [0, 1]


@dataclass(frozen=True)
class ShotSpec:
    """What one shot asks of a generator: the prompt, the size and length, the seed, optional regions.

    ``regions`` maps an entity name to a normalized box where that entity should appear; adapters
    that can place entities (animatic, IP-Adapter masks) honour it, the others ignore it.
    """

    prompt: str
    negative_prompt: str = ""
    num_frames: int = 16
    width: int = 512
    height: int = 288
    fps: float = 12
    seed: int = 0
    shot_index: int | None = None
    story_id: str | None = None
    regions: Mapping[str, Box] | None = None
    # per-shot overrides of the adapter's own settings (None: the adapter's value)
    steps: int | None = None
    guidance: float | None = None
    scales: Mapping[str, float] | None = None  # entity name -> conditioning strength

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise InvalidInputError(f"steps must be >= 1, got {self.steps}")
        if self.guidance is not None and not 0 <= self.guidance <= 50:
            raise InvalidInputError(f"guidance must be within 0..50, got {self.guidance}")
        if self.num_frames < 1:
            raise InvalidInputError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.width < 8 or self.height < 8:
            raise InvalidInputError(f"width and height must be >= 8, got {self.width}x{self.height}")
        if self.fps <= 0:
            raise InvalidInputError(f"fps must be > 0, got {self.fps}")
        for name, box in (self.regions or {}).items():
            check_box(box, f"region of {name!r}")


@dataclass(frozen=True)
class ConditionedEntity:
    """One entity as the adapter will use it: which references, how strongly, where."""

    name: str
    entity_id: str
    kind: str
    reference_ids: tuple[str, ...] = ()
    scale: float = 1.0
    region: Box | None = None
    description: str = ""


@dataclass
class Conditioning:
    """Everything ``generate`` needs, decided in ``prepare``; inspectable and summarizable.

    ``tensors`` holds named arrays or torch tensors (e.g. ``ip_adapter_image_embeds``); ``masks``
    is an (N, H, W) float array, one mask per conditioned entity, when the adapter uses masks;
    ``memory_ids`` are the episodic keyframes used; ``images`` are decoded PIL images that some
    adapters pass on to the backbone (reference images, memory keyframes).
    """

    generator: str
    prompt: str
    negative_prompt: str = ""
    entities: list[ConditionedEntity] = field(default_factory=list)
    tensors: dict[str, Any] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    masks: np.ndarray | None = None
    memory_ids: list[str] = field(default_factory=list)
    images: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_ids(self) -> list[str]:
        return [rid for e in self.entities for rid in e.reference_ids]

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (for provenance and logs); tensors by shape only."""
        return {
            "generator": self.generator,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "entities": [
                {
                    "name": e.name,
                    "entity_id": e.entity_id,
                    "kind": e.kind,
                    "references": list(e.reference_ids),
                    "scale": e.scale,
                    "region": list(e.region) if e.region else None,
                }
                for e in self.entities
            ],
            "tensors": {k: _shape_of(v) for k, v in self.tensors.items()},
            "scales": dict(self.scales),
            "masks": None if self.masks is None else list(self.masks.shape),
            "memory": list(self.memory_ids),
            "options": {k: v for k, v in self.options.items() if isinstance(v, (str, int, float, bool, type(None)))},
        }


@dataclass
class ShotOutput:
    """Frames (uint8, T x H x W x 3), their rate, and what made them."""

    frames: np.ndarray
    fps: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InvalidInputError(
                f"frames must be uint8 T x H x W x 3, got {frames.dtype} with shape {tuple(frames.shape)}"
            )
        self.frames = frames


class GeneratorAdapter(abc.ABC):
    """Base of every generator: ``prepare`` then ``generate``.

    Subclasses set ``name`` and implement both verbs; ``model_id`` names the weights for provenance.
    """

    name: str = "base"

    @property
    def model_id(self) -> str:
        return self.name

    @abc.abstractmethod
    def prepare(self, shot: ShotSpec, result: RetrievalResult) -> Conditioning:
        """Choose and encode the references of ``result`` for ``shot``. No sampling happens here."""

    @abc.abstractmethod
    def generate(self, shot: ShotSpec, conditioning: Conditioning, seed: int | None = None) -> ShotOutput:
        """Run the backbone with prepared conditioning; same inputs and seed give the same frames."""

    def call_arguments(self, shot: ShotSpec, conditioning: Conditioning) -> dict[str, Any]:
        """Keyword arguments for a diffusers pipeline call with this conditioning, for a user who
        loaded the pipeline (and its adapters) in their own script: ``pipe(**plan.call_arguments)``.
        Adapters add what their backbone takes (image embeddings, masks, reference or memory frames)."""
        args: dict[str, Any] = {
            "prompt": conditioning.prompt,
            "negative_prompt": conditioning.negative_prompt or None,
            "num_frames": shot.num_frames,
            "width": shot.width,
            "height": shot.height,
        }
        if shot.steps is not None:
            args["num_inference_steps"] = shot.steps
        if shot.guidance is not None:
            args["guidance_scale"] = shot.guidance
        return args

    def run(self, shot: ShotSpec, result: RetrievalResult, seed: int | None = None) -> ShotOutput:
        return self.generate(shot, self.prepare(shot, result), shot.seed if seed is None else seed)

    def metadata(self, shot: ShotSpec, conditioning: Conditioning, seed: int, **extra: Any) -> dict[str, Any]:
        return {
            "generator": self.name,
            "model": self.model_id,
            "seed": int(seed),
            "conditioning": conditioning.summary(),
            **extra,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.model_id!r})"


# --- helpers shared by adapters ------------------------------------------------------------------


def require_diffusers() -> None:
    """Raise MissingExtraError naming ``continuity[diffusers]`` when torch or diffusers is absent."""
    import importlib.util

    for module in ("torch", "diffusers", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(
                f"'{module}' is not installed; install the extra: pip install 'continuity[diffusers]'"
            )


def check_box(box: Sequence[float], what: str = "box") -> Box:
    if len(box) != 4:
        raise InvalidInputError(f"{what} must be (x0, y0, x1, y1), got {tuple(box)!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise InvalidInputError(f"{what} must be normalized with x0<x1, y0<y1 in [0, 1], got {tuple(box)!r}")
    return (x0, y0, x1, y1)


def ordered_characters(result: RetrievalResult) -> list[Hit]:
    """Characters in cast order: the query's explicit cast first (in its order), then by rank."""
    chars = list(result.characters)
    cast = [c.casefold() for c in (result.query.cast or ())]

    def key(item: tuple[int, Hit]) -> tuple[int, int]:
        rank, hit = item
        names = [n.casefold() for n in hit.entity.names]
        pos = min((cast.index(n) for n in names if n in cast), default=len(cast))
        return (pos, rank)

    return [h for _, h in sorted(enumerate(chars), key=key)]


def auto_regions(count: int, *, overlap: float = 0.0) -> list[Box]:
    """Left-to-right full-height columns, one per entity, optionally overlapping a little."""
    if count <= 0:
        return []
    width = 1.0 / count
    return [(max(0.0, i * width - overlap), 0.0, min(1.0, (i + 1) * width + overlap), 1.0) for i in range(count)]


def regions_for(shot: ShotSpec, hits: Sequence[Hit]) -> list[Box]:
    """The shot's region per hit (matched by name or alias), else the automatic left-to-right layout."""
    auto = auto_regions(len(hits))
    given = {k.casefold(): check_box(v, f"region of {k!r}") for k, v in (shot.regions or {}).items()}
    out = []
    for hit, fallback in zip(hits, auto, strict=False):
        box = next((given[n.casefold()] for n in hit.entity.names if n.casefold() in given), None)
        out.append(box or fallback)
    return out


def region_masks(boxes: Sequence[Box], width: int, height: int) -> np.ndarray:
    """Binary (N, H, W) float32 masks of normalized boxes."""
    masks = np.zeros((len(boxes), height, width), dtype=np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, round(y0 * height) : round(y1 * height), round(x0 * width) : round(x1 * width)] = 1.0
    return masks


def reference_image(ref: Reference) -> Image.Image:
    """Decode a reference's stored bytes; a clear error when it was read without its image."""
    if ref.image is None:
        raise InvalidInputError(
            f"reference {ref.id} has no image bytes; retrieve with images (with_images=True) to condition on it"
        )
    return ref.pil()


def face_crop(
    ref: Reference, image: Image.Image | None = None, *, margin: float = 0.6, aspect: float = 0.75
) -> Image.Image:
    """The face region of a reference (box grown by ``margin``, at ``aspect`` w/h), else a centred crop."""
    image = image if image is not None else reference_image(ref)
    w, h = image.size
    if ref.face_box and len(ref.face_box) == 4:
        x0, y0, x1, y1 = ref.face_box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        fh = max(1.0, (y1 - y0)) * (1 + 2 * margin)
        fw = max(1.0, (x1 - x0)) * (1 + 2 * margin)
        ch = max(fh, fw / aspect)
        cw = ch * aspect
        cy += 0.1 * ch  # a portrait shows some shoulders below the chin
    else:
        ch = min(h, w / aspect)
        cw = ch * aspect
        cx, cy = w / 2, h / 2
    shrink = min(1.0, w / cw, h / ch)  # keep the aspect when the box would leave the image
    cw, ch = cw * shrink, ch * shrink
    left = min(max(0.0, cx - cw / 2), w - cw)
    top = min(max(0.0, cy - ch / 2), h - ch)
    return image.crop((int(left), int(top), round(left + cw), round(top + ch)))


def to_uint8_frames(frames: Any) -> np.ndarray:
    """Pipeline output (float [0,1] or uint8; (T,H,W,3), (1,T,H,W,3), PIL list) -> uint8 (T,H,W,3)."""
    if (
        isinstance(frames, (list, tuple))
        and frames
        and not isinstance(frames[0], np.ndarray)
        and hasattr(frames[0], "size")
        and hasattr(frames[0], "mode")
    ):
        frames = np.stack([np.asarray(f.convert("RGB")) for f in frames])
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    arr = np.asarray(frames)
    while arr.ndim > 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InvalidInputError(f"pipeline frames must end in (H, W, 3), got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(np.nan_to_num(arr.astype(np.float32)) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def fit_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """Exactly ``num_frames`` frames: a still image is held, a longer clip is sampled evenly."""
    if len(frames) == num_frames:
        return frames
    idx = (
        np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
        if len(frames) > 1
        else np.zeros(num_frames, dtype=int)
    )
    return frames[idx]


def _shape_of(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_shape_of(v) for v in value]
    shape = getattr(value, "shape", None)
    return list(shape) if shape is not None else type(value).__name__
