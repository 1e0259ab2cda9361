"""The two stages of ingest that run on Ray workers, and the row layout they share with the driver.

``read_and_check`` reads each image file and checks it by the store's own rules
(:func:`memstore.images.load_image`: size, format, truncation, pixel limit), so a bad image is a row
with its reason, never a failed job. ``EmbedWorker`` is a callable class: Ray Data keeps one per
worker, so each embedder's model loads once per worker and embeds batch after batch.

Rows are columns of numpy arrays. Each embedder column ``c`` comes back as ``vec:c`` (N x dims,
NaN where the embedder found nothing, e.g. no face), ``box:c`` (N x 4, NaN without a face box) and
``quality:c`` (NaN without a score); :func:`embeddings_of_row` turns one row back into the
:class:`~memstore.embedders.Embedding` objects ``Library.prepare(embeddings=...)`` takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from memstore.embedders import Embedder, Embedding, get_embedder
from memstore.errors import ImageError
from memstore.images import decode, load_image

Batch = dict[str, np.ndarray]


def read_and_check(batch: Batch) -> Batch:
    """Columns ``path`` in; ``data`` (the bytes the store would keep), ``sha256`` and ``reason``
    (empty when the image is good) out."""
    data, digests, reasons = [], [], []
    for path in batch["path"]:
        try:
            encoded = load_image(str(path))
        except ImageError as exc:
            data.append(b"")
            digests.append("")
            reasons.append(str(exc).splitlines()[0])
            continue
        data.append(encoded.data)
        digests.append(encoded.sha256)
        reasons.append("")
    return {
        "path": np.asarray(batch["path"], dtype=object),
        "data": np.asarray(data, dtype=object),
        "sha256": np.asarray(digests, dtype=object),
        "reason": np.asarray(reasons, dtype=object),
    }


class EmbedWorker:
    """Embeds the good images of each batch with every configured embedder (faces for characters only)."""

    def __init__(self, embedder_configs: Sequence[Mapping[str, Any]], kind: str):
        self.embedders: list[Embedder] = [get_embedder(dict(config)) for config in embedder_configs]
        if kind != "character":  # the store's rule: face embedders index characters only
            self.embedders = [e for e in self.embedders if e.modality != "face"]

    def __call__(self, batch: Batch) -> Batch:
        good = [i for i, reason in enumerate(batch["reason"]) if not reason]
        images = [decode(batch["data"][i]) for i in good]
        out = dict(batch)
        count = len(batch["reason"])
        for emb in self.embedders:
            vectors = np.full((count, emb.ndims), np.nan, dtype=np.float32)
            boxes = np.full((count, 4), np.nan, dtype=np.float64)
            quality = np.full(count, np.nan, dtype=np.float64)
            for i, result in zip(good, emb.embed(images) if images else [], strict=True):
                if result.vector is not None:
                    vectors[i] = np.asarray(result.vector, dtype=np.float32)
                if result.face_box is not None:
                    boxes[i] = result.face_box
                if result.quality is not None:
                    quality[i] = result.quality
            out[f"vec:{emb.column_name}"] = vectors
            out[f"box:{emb.column_name}"] = boxes
            out[f"quality:{emb.column_name}"] = quality
        return out


def embeddings_of_row(row: Mapping[str, Any]) -> dict[str, Embedding]:
    """Column -> the Embedding a worker made of this row's image."""
    out = {}
    for key, value in row.items():
        if not key.startswith("vec:"):
            continue
        column = key.removeprefix("vec:")
        vector = np.asarray(value, dtype=np.float32)
        box = np.asarray(row[f"box:{column}"], dtype=np.float64)
        quality = float(row[f"quality:{column}"])
        out[column] = Embedding(
            vector=None if np.isnan(vector).all() else vector,
            face_box=None if np.isnan(box).any() else [float(x) for x in box],
            quality=None if np.isnan(quality) else quality,
        )
    return out
