"""The embedder interface and its registry.

An embedder turns images (and, where it has a text tower, texts) into L2-normalised float32
vectors. Each is a pydantic config, so a store can record it as JSON and build it again; the model
behind it loads lazily on first use.

The registry is one table, :data:`BUILTIN_EMBEDDERS`: name -> "module:Class" and the extra whose
packages the backend needs. Listing names imports no backend; a backend module is imported when its
embedder is first built, and one that fails to import is a :class:`MissingExtraError` that names the
missing package and the extra, never "unknown embedder". Plugins add embedders with
``@register_embedder(name)``, which also sets the class's ``type_name``.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, PrivateAttr

from ..errors import EmbedderError, MissingExtraError


@dataclass
class Embedding:
    """What an embedder says of one image: its vector (None when, e.g., no face was found),
    an optional face box (x0, y0, x1, y1 in pixels) and an optional quality score in [0, 1]."""

    vector: np.ndarray | None
    face_box: list[float] | None = None
    quality: float | None = None


class Embedder(BaseModel, ABC):
    """Base of every embedder. Subclasses set ``type_name`` and implement the two hooks."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    type_name: ClassVar[str] = ""
    #: "image" embedders index whole images; "face" embedders index the largest face in them.
    modality: ClassVar[str] = "image"
    column: str | None = None
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
        """A string naming model and weights, recorded with the column
        (e.g. ``open-clip:ViT-B-32:laion2b``)."""

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


@dataclass(frozen=True)
class EmbedderEntry:
    """One embedder: where its class lives and which extra brings the libraries it needs."""

    name: str
    target: str | type[Embedder]  # "module:Class", or the class itself once registered
    extra: str | None = None  # e.g. "clip" -> pip install 'continuity[clip]'; None: core dependencies


BUILTIN_EMBEDDERS: tuple[EmbedderEntry, ...] = (
    EmbedderEntry("color-histogram", "memstore.embedders.histogram:ColorHistogramEmbedder"),
    EmbedderEntry("open-clip", "memstore.embedders.clip:OpenClipEmbedder", extra="clip"),
    EmbedderEntry("dlib", "memstore.embedders.face:DlibFaceEmbedder", extra="face"),
    EmbedderEntry("insightface", "memstore.embedders.face:InsightFaceEmbedder", extra="face"),
)
_ENTRIES: dict[str, EmbedderEntry] = {entry.name: entry for entry in BUILTIN_EMBEDDERS}


E = TypeVar("E", bound="type[Embedder]")


def add_embedder(entry: EmbedderEntry) -> None:
    """Add or replace a table entry; a "module:Class" target is imported only when first built."""
    if isinstance(entry.target, str) and not all(entry.target.partition(":")[::2]):
        raise EmbedderError(f"embedder {entry.name!r} target must be 'module:Class', got {entry.target!r}")
    _ENTRIES[entry.name] = entry


def register_embedder(name: str) -> Callable[[E], E]:
    """Class decorator: make an embedder constructible by name from a config (adds or replaces
    the table entry; the backends' own modules use it too, which sets ``type_name``)."""

    def wrap(cls: E) -> E:
        cls.type_name = name
        old = _ENTRIES.get(name)
        add_embedder(EmbedderEntry(name, cls, extra=old.extra if old else None))
        return cls

    return wrap


def list_embedders() -> list[str]:
    """Known embedder names, sorted; imports no backend."""
    return sorted(_ENTRIES)


def embedder_entry(name: str) -> EmbedderEntry:
    """The table entry for ``name``; an unknown name says so and lists the known ones."""
    entry = _ENTRIES.get(name)
    if entry is None:
        raise EmbedderError(f"unknown embedder {name!r}; known: {', '.join(list_embedders())}")
    return entry


def embedder_class(name: str) -> type[Embedder]:
    """The class registered as ``name``, importing its backend module on first use."""
    entry = embedder_entry(name)
    if not isinstance(entry.target, str):
        return entry.target
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except MissingExtraError:
        raise  # the backend already named its extra
    except ImportError as err:
        raise _import_failed(entry, module_name, err) from err
    cls = getattr(module, attr, None)
    if cls is None:
        raise EmbedderError(f"embedder {name!r} points at {entry.target!r}; {module_name} has no {attr!r}")
    return cls


def _import_failed(entry: EmbedderEntry, module_name: str, err: ImportError) -> MissingExtraError:
    missing = err.name or module_name
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    install = f"pip install 'continuity[{entry.extra}]'" if entry.extra else "pip install continuity"
    return MissingExtraError(
        f"embedder {entry.name!r} cannot be loaded: {missing!r} failed to import ({first}); install it: {install}"
    )


def get_embedder(config: str | dict[str, Any] | Embedder) -> Embedder:
    """Build an embedder from a name (``"color-histogram"``), a config dict (``{"type": ..., ...}``)
    or return it unchanged when already an embedder."""
    if isinstance(config, Embedder):
        return config
    if isinstance(config, str):
        config = {"type": config}
    if not isinstance(config, dict) or "type" not in config:
        raise EmbedderError(f"embedder config must name a 'type', got {config!r}")
    params = dict(config)
    name = params.pop("type")
    cls = embedder_class(name)
    try:
        return cls(**params)
    except Exception as exc:  # pydantic ValidationError and friends
        raise EmbedderError(f"bad config for embedder {name!r}: {exc}") from None
