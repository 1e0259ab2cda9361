"""Embedders: one registry table and its backends (colour histogram, open_clip, face identity)."""

from .base import (
    BUILTIN_EMBEDDERS,
    Embedder,
    EmbedderEntry,
    Embedding,
    add_embedder,
    embedder_class,
    embedder_entry,
    get_embedder,
    list_embedders,
    normalize_rows,
    register_embedder,
)

__all__ = [
    "BUILTIN_EMBEDDERS",
    "Embedder",
    "EmbedderEntry",
    "Embedding",
    "add_embedder",
    "embedder_class",
    "embedder_entry",
    "get_embedder",
    "list_embedders",
    "normalize_rows",
    "register_embedder",
]
