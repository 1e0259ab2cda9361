"""The embedder interface and its registry.

An embedder turns images (and, where it has a text tower, texts) into L2-normalised float32
vectors. Each is a pydantic config, so a store can record it as JSON and build it again; the model
behind it loads lazily on first use. Registered by name with :func:`register_embedder`.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, PrivateAttr

from ..errors import EmbedderError

_REGISTRY: dict[str, type["Embedder"]] = {}


@dataclass
class Embedding:
    """What an embedder says of one image: its vector (None when, e.g., no face was found),
    an optional face box (x0, y0, x1, y1 in pixels) and an optional quality score in [0, 1]."""

    vector: Optional[np.ndarray]
    face_box: Optional[list[float]] = None
    quality: Optional[float] = None


class Embedder(BaseModel, ABC):
    """Base of every embedder. Subclasses set ``type_name`` and implement the two hooks."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    type_name: ClassVar[str] = ""
    #: "image" embedders index whole images; "face" embedders index the largest face in them.
    modality: ClassVar[str] = "image"
    column: Optional[str] = None
    batch_size: int = 16

    _model: Any = PrivateAttr(default=None)

    # --- what subclasses provide -------------------------------------------------------------
    @property
    @abstractmethod
    def ndims(self) -> int:
        """Dimension of the vectors this embedder makes."""

    @property
    @abstractmethod
    def spec(self) -> str:
        """A string naming model and weights, recorded with the column (e.g. ``open-clip:ViT-B-32:laion2b``)."""

    @abstractmethod
    def _embed_batch(self, images: Sequence[Any]) -> list[Embedding]:
        """Embed one batch of RGB PIL images."""

    # --- shared behaviour --------------------------------------------------------------------
    @property
    def has_text(self) -> bool:
        return False

    @property
    def column_name(self) -> str:
        """The references-table column this embedder writes (``column`` or one derived from spec)."""
        if self.column:
            return self.column
        return re.sub(r"[^a-z0-9]+", "_", self.spec.lower()).strip("_")[:60]

    def embed(self, images: Sequence[Any], progress: Any = None) -> list[Embedding]:
        """Embed images in batches; ``progress(n)`` is called after each batch when given."""
        out: list[Embedding] = []
        for start in range(0, len(images), max(1, self.batch_size)):
            batch = list(images[start : start + self.batch_size])
            out.extend(self._embed_batch(batch))
            if progress is not None:
                progress(len(batch))
        return out

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """(N, ndims) float32; rows of NaN where nothing was embedded (e.g. no face)."""
        result = np.full((len(images), self.ndims), np.nan, dtype=np.float32)
        for i, emb in enumerate(self.embed(images)):
            if emb.vector is not None:
                result[i] = emb.vector
        return result

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise EmbedderError(f"embedder {self.type_name!r} has no text tower; use a CLIP embedder for text queries")

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type_name, **self.model_dump(exclude_defaults=True)}


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def register_embedder(name: str):
    """Class decorator: make an embedder constructible by name from a config."""

    def wrap(cls: type[Embedder]) -> type[Embedder]:
        cls.type_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_embedders() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_embedder(config: "str | dict[str, Any] | Embedder") -> Embedder:
    """Build an embedder from a name (``"color-histogram"``), a config dict (``{"type": ..., ...}``)
    or return it unchanged when already an embedder."""
    _load_builtin()
    if isinstance(config, Embedder):
        return config
    if isinstance(config, str):
        config = {"type": config}
    if not isinstance(config, dict) or "type" not in config:
        raise EmbedderError(f"embedder config must name a 'type', got {config!r}")
    params = dict(config)
    name = params.pop("type")
    if name not in _REGISTRY:
        raise EmbedderError(f"unknown embedder {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**params)
    except Exception as exc:  # pydantic ValidationError and friends
        raise EmbedderError(f"bad config for embedder {name!r}: {exc}") from None


def _load_builtin() -> None:
    # Importing the backend modules registers them; they import heavy libraries lazily.
    from . import histogram  # noqa: F401

    for module in ("clip", "face"):
        try:
            __import__(f"{__package__}.{module}")
        except ImportError:
            pass
