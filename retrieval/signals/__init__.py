"""One module per retrieval signal, each yielding :class:`Term` s from a :class:`SignalInput`."""

from __future__ import annotations

from .base import Signal, SignalInput, Term, TextEmbedder, embed_prompt, text_capable
from .cast import ExplicitCast
from .context import StoryContextSignal
from .dense import ClipDense, DenseHit, DenseIndex, EntityTextVectors, search_images
from .lexical import Bm25
from .names import NameMentions
from .place import PlaceReading

__all__ = [
    "Bm25",
    "ClipDense",
    "DenseHit",
    "DenseIndex",
    "EntityTextVectors",
    "ExplicitCast",
    "NameMentions",
    "PlaceReading",
    "Signal",
    "SignalInput",
    "StoryContextSignal",
    "Term",
    "TextEmbedder",
    "embed_prompt",
    "search_images",
    "text_capable",
]
