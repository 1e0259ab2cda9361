"""Embedders: registry and backends (colour histogram, open_clip, face identity)."""
from .base import Embedder, Embedding, get_embedder, list_embedders, normalize_rows, register_embedder

__all__ = ["Embedder", "Embedding", "get_embedder", "list_embedders", "normalize_rows", "register_embedder"]
