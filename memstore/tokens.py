"""Conditioning-token cache: (reference, encoder spec) -> the tensor a generator conditions on.

Encoding a reference with a real image tower (ViT-H-14 for IP-Adapter) costs seconds per image
on a CPU; a shot that reuses the same references should pay that once. Rows live in the store's
``tokens`` table (schema :data:`memstore.schema.TOKEN_SCHEMA`), stored as float16 bytes with
their shape and dtype, keyed by reference id and encoder spec, and tagged with the reference's
image hash: a row whose hash no longer matches is stale and is recomputed. Rows are deleted with
their reference or entity (:meth:`Library.remove`, :meth:`Library.remove_references`).

An encoder is any object with ``spec: str`` (naming model, weights and layer) and
``encode(images: list[PIL.Image]) -> np.ndarray`` whose first axis is the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from .errors import EmbedderError, InvalidInputError
from .schema import Reference, TokenRow
from .validation import sql_in, sql_str

STORED_DTYPES = ("float16", "float32")


class TokenEncoder(Protocol):
    spec: str

    def encode(self, images: list[Any]) -> np.ndarray: ...


class TokenCache:
    """The token cache of one library. ``dtype`` is how arrays are stored (float16 halves the
    bytes; values beyond float16's range are stored as float32 instead of turning into inf)."""

    def __init__(self, library: Any, *, dtype: str = "float16"):
        if dtype not in STORED_DTYPES:
            raise InvalidInputError(f"dtype must be one of {STORED_DTYPES}, got {dtype!r}")
        self.library = library
        self.store = library.store
        self.dtype = dtype

    # --- reading ------------------------------------------------------------------------------
    def _where(self, *clauses: str) -> str:
        return " AND ".join([f"library = {sql_str(self.library.name)}", *clauses])

    def _rows(self, ids: Sequence[str], spec: str) -> dict[str, TokenRow]:
        out: dict[str, TokenRow] = {}
        ids = list(dict.fromkeys(ids))
        for start in range(0, len(ids), 500):
            where = self._where(f"spec = {sql_str(spec)}", sql_in("reference_id", ids[start : start + 500]))
            for row in self.store.tokens.search().where(where).limit(None).to_list():
                out[row["reference_id"]] = TokenRow.model_construct(**row)
        return out

    @staticmethod
    def _decode(row: TokenRow) -> np.ndarray:
        return row.array().astype(np.float32)

    def get(self, reference_id: str, spec: str) -> np.ndarray | None:
        """The cached array (float32) for a reference and spec; None when absent or stale."""
        _check_spec(spec)
        rows = self._rows([reference_id], spec)
        row = rows.get(reference_id)
        if row is None:
            return None
        current = (
            self.store.references.search()
            .where(self._where(f"id = {sql_str(reference_id)}"))
            .select(["sha256"])
            .limit(1)
            .to_list()
        )
        if not current or current[0]["sha256"] != row.ref_sha256:
            return None  # the reference changed or is gone: the tokens describe another image
        return self._decode(row)

    def count(self, spec: str | None = None) -> int:
        return self.store.tokens.count_rows(self._where(*([f"spec = {sql_str(spec)}"] if spec else [])))

    # --- writing ------------------------------------------------------------------------------
    def _row(self, reference: Reference, spec: str, array: Any) -> TokenRow:
        try:
            arr = np.asarray(array, dtype=np.float32)
        except (TypeError, ValueError):
            raise EmbedderError(f"tokens for {spec} must be numbers, got {type(array).__name__}") from None
        if arr.size == 0 or not np.isfinite(arr).all():
            raise EmbedderError(
                f"tokens for {spec} are empty or contain NaN/inf (shape {arr.shape}); the encoder is broken"
            )
        with np.errstate(over="ignore"):
            stored = arr.astype(self.dtype)
        if not np.isfinite(stored).all():  # beyond float16's range: keep full precision
            stored = arr
        return TokenRow(
            reference_id=reference.id,
            library=self.library.name,
            entity_id=reference.entity_id,
            spec=spec,
            ref_sha256=reference.sha256,
            dtype=str(stored.dtype),
            shape=list(stored.shape),
            data=np.ascontiguousarray(stored).tobytes(),
        )

    def _write(self, records: list[TokenRow]) -> None:
        """Upsert rows in one commit, skipping references removed meanwhile (no orphan tokens)."""
        if not records:
            return
        with self.store.write_lock():
            ids = [r.reference_id for r in records]
            live = {
                r["id"]
                for r in self.store.references.search()
                .where(self._where(sql_in("id", ids)))
                .select(["id"])
                .limit(None)
                .to_list()
            }
            rows = [r.model_dump() for r in records if r.reference_id in live]
            if not rows:
                return
            table = self.store.tokens
            self.store.retry(
                lambda: (
                    table.merge_insert(["reference_id", "spec"])
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(rows)
                )
            )
            self.store.maybe_compact("tokens")

    def put(self, reference: Reference, spec: str, array: Any) -> None:
        """Store (or replace) the array of one reference for one encoder spec."""
        _check_spec(spec)
        self._check_reference(reference)
        self._write([self._row(reference, spec, array)])

    def _check_reference(self, reference: Any) -> None:
        if not isinstance(reference, Reference):
            raise InvalidInputError(f"expected a Reference, got {type(reference).__name__}")
        if reference.library != self.library.name:
            raise InvalidInputError(
                f"reference {reference.id} belongs to library {reference.library!r}, not {self.library.name!r}; "
                "use that library's TokenCache"
            )

    # --- the verb generators use --------------------------------------------------------------
    def get_or_compute(self, references: list[Reference], encoder: Any) -> list[np.ndarray]:
        """Arrays (float32) for each reference, in order: cached ones read, missing or stale ones
        encoded in one batch and stored. Cached and fresh results are identical (both pass
        through the stored dtype)."""
        spec = _check_spec(getattr(encoder, "spec", None))
        references = list(references)
        for ref in references:
            self._check_reference(ref)
        rows = self._rows([r.id for r in references], spec)
        result: dict[str, np.ndarray] = {}
        missing: dict[str, Reference] = {}
        for ref in references:
            row = rows.get(ref.id)
            if row is not None and row.ref_sha256 == ref.sha256:
                result[ref.id] = self._decode(row)
            else:
                missing.setdefault(ref.id, ref)
        if missing:
            todo = list(missing.values())
            arrays = self._encode(encoder, todo)
            new_rows = [self._row(ref, spec, arr) for ref, arr in zip(todo, arrays, strict=False)]
            self._write(new_rows)
            for row in new_rows:
                result[row.reference_id] = self._decode(row)
        return [result[r.id] for r in references]

    def _encode(self, encoder: Any, refs: list[Reference]) -> np.ndarray:
        need_images = [r.id for r in refs if r.image is None]
        loaded = (
            {r.id: r for r in self.library.references(ids=need_images, with_images=True, with_vectors=False)}
            if need_images
            else {}
        )
        images = []
        for ref in refs:
            source = ref if ref.image is not None else loaded.get(ref.id)
            if source is None:
                raise InvalidInputError(f"reference {ref.id} has no image and is not in library {self.library.name!r}")
            images.append(source.pil().convert("RGB"))
        out = np.asarray(encoder.encode(images))
        if out.ndim < 1 or out.shape[0] != len(images):
            raise EmbedderError(
                f"encoder {encoder.spec} returned shape {out.shape} for {len(images)} images; expected one row per image"
            )
        return out


def _check_spec(spec: object) -> str:
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"an encoder spec must be a non-empty string, got {spec!r}")
    return spec


class OpenClipTokenEncoder:
    """IP-Adapter image conditioning from an :class:`~memstore.embedders.clip.OpenClipEmbedder`.

    ``layer="pooled"``: the projected image embedding, not normalised (N, embed_dim), what base
    IP-Adapters read; ``layer="penultimate"``: the penultimate block's hidden states with the class
    token (N, 1 + patches, width), what IP-Adapter Plus reads.
    """

    LAYERS = ("pooled", "penultimate")

    def __init__(self, embedder: Any, layer: str = "penultimate"):
        if layer not in self.LAYERS:
            raise InvalidInputError(f"layer must be one of {self.LAYERS}, got {layer!r}")
        if not hasattr(embedder, "image_tokens"):
            raise InvalidInputError(f"OpenClipTokenEncoder needs an open-clip embedder, got {type(embedder).__name__}")
        self.embedder = embedder
        self.layer = layer
        self.spec = f"open_clip:{embedder.model}:{embedder.weights_label}:{layer}"

    def encode(self, images: list[Any]) -> np.ndarray:
        if self.layer == "pooled":
            return self.embedder.image_features(images, normalize=False)
        return self.embedder.image_tokens(images)

    def negative(self) -> np.ndarray:
        """The unconditional embedding for classifier-free guidance, as diffusers makes it:
        zeros for pooled embeddings, the tokens of an all-zero pixel input for Plus."""
        if self.layer == "pooled":
            return np.zeros((self.embedder.ndims,), dtype=np.float32)
        return self.embedder.tokens_from_pixels(self.embedder.negative_pixels(1))[0]
