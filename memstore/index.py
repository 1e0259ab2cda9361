"""FAISS hot index of one library's vector column, kept in step with the Lance table.

The index is built from a factory string (``Flat`` below 50k rows and ``HNSW32,Flat`` above when
the factory is ``auto``), on inner product over normalised vectors, with the reference's stable
63-bit key as FAISS id. It is saved beside the table with a sidecar recording the Lance version it
reflects. On :meth:`sync`: same version -> nothing; only new keys -> they are appended; any key gone
-> a rebuild. Search can be restricted to a kind with an ID selector.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import InvalidInputError, VectorError
from .validation import KINDS, sql_in, sql_str

AUTO_HNSW_ABOVE = 50_000
FETCH_CHUNK = 2_000


def choose_factory(factory: str, count: int) -> str:
    if factory != "auto":
        return factory
    return "HNSW32,Flat" if count > AUTO_HNSW_ABOVE else "Flat"


class VectorIndex:
    """One FAISS index; use :meth:`Store.index` to get one that is in step."""

    def __init__(self, store: Any, library: str, column: str, *, factory: str = "auto", ef_search: int = 96):
        self.store = store
        self.library = library
        self.column = column
        self.factory = factory
        self.ef_search = ef_search
        self.dim = int(store.vector_columns()[column]["dim"])
        folder = store.index_dir() / library
        self.path = folder / f"{column}.faiss"
        self.meta_path = folder / f"{column}.json"
        self.keys_path = folder / f"{column}.keys.npy"
        self.index: Any = None
        self.keys = np.zeros(0, dtype=np.int64)
        self.kinds = np.zeros(0, dtype=np.int8)
        self.version: Optional[int] = None
        self.built_factory: Optional[str] = None
        self._selectors: dict[str, Any] = {}
        self.rebuilds = 0
        self.appends = 0

    # --- reading the table --------------------------------------------------------------------
    def _where(self) -> str:
        return f"library = {sql_str(self.library)} AND {self.column} IS NOT NULL"

    def _table_keys(self) -> tuple[np.ndarray, np.ndarray]:
        table = self.store.references.to_lance().to_table(columns=["key", "kind"], filter=self._where())
        keys = table.column("key").to_numpy().astype(np.int64)
        kinds = np.array([KINDS.index(k) for k in table.column("kind").to_pylist()], dtype=np.int8)
        return keys, kinds

    def _vectors_for(self, keys: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lance = self.store.references.to_lance()
        columns = ["key", "kind", self.column]
        parts = []
        if keys is None:
            parts.append(lance.to_table(columns=columns, filter=self._where()))
        else:
            for start in range(0, len(keys), FETCH_CHUNK):
                chunk = ", ".join(str(int(k)) for k in keys[start : start + FETCH_CHUNK])
                parts.append(lance.to_table(columns=columns, filter=f"{self._where()} AND key IN ({chunk})"))
        if not parts or sum(p.num_rows for p in parts) == 0:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int8)
        import pyarrow as pa

        table = pa.concat_tables(parts)
        flat = table.column(self.column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = np.ascontiguousarray(flat.reshape(-1, self.dim), dtype=np.float32)
        ks = table.column("key").to_numpy().astype(np.int64)
        kinds = np.array([KINDS.index(k) for k in table.column("kind").to_pylist()], dtype=np.int8)
        return vectors, ks, kinds

    # --- building -----------------------------------------------------------------------------
    def _new_index(self, count: int) -> Any:
        import faiss

        factory = choose_factory(self.factory, count)
        inner = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        if hasattr(inner, "hnsw"):
            inner.hnsw.efConstruction = 80
        self.built_factory = factory
        return faiss.IndexIDMap2(inner) if not factory.startswith("IDMap") else inner

    def rebuild(self, version: int) -> None:
        vectors, keys, kinds = self._vectors_for(None)
        index = self._new_index(len(keys))
        if not index.is_trained:
            if len(keys) == 0:
                raise InvalidInputError(f"factory {self.built_factory!r} needs training data; the column is empty")
            index.train(vectors)
        if len(keys):
            index.add_with_ids(vectors, keys)
        self.index, self.keys, self.kinds = index, keys, kinds
        self.version = version
        self._selectors.clear()
        self.rebuilds += 1
        self._save()

    def sync(self) -> None:
        """Bring the index in step with the table (see module docstring)."""
        version = self.store.references.version
        if self.index is None:
            self._load()
        if self.index is not None and self.version == version:
            return
        if self.index is None:
            self.rebuild(version)
            return
        table_keys, _ = self._table_keys()
        gone = np.setdiff1d(self.keys, table_keys, assume_unique=False)
        added = np.setdiff1d(table_keys, self.keys, assume_unique=False)
        factory_now = choose_factory(self.factory, len(table_keys))
        if len(gone) or factory_now != self.built_factory:
            self.rebuild(version)
            return
        if len(added):
            vectors, keys, kinds = self._vectors_for(added)
            self.index.add_with_ids(vectors, keys)
            self.keys = np.concatenate([self.keys, keys])
            self.kinds = np.concatenate([self.kinds, kinds])
            self._selectors.clear()
            self.appends += 1
        self.version = version
        self._save()

    # --- persistence --------------------------------------------------------------------------
    def _save(self) -> None:
        import faiss

        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "lance_version": self.version,
            "factory": self.built_factory,
            "count": int(len(self.keys)),
            "dim": self.dim,
            "column": self.column,
            "spec": self.store.vector_columns()[self.column]["spec"],
        }
        # Write each file to a temp name and rename, meta last: a reader never sees a torn index.
        for target, write in (
            (self.path, lambda p: faiss.write_index(self.index, str(p))),
            (self.keys_path, lambda p: np.save(p, np.stack([self.keys, self.kinds.astype(np.int64)]))),
            (self.meta_path, lambda p: Path(p).write_text(json.dumps(meta))),
        ):
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=target.suffix)
            os.close(fd)
            try:
                write(tmp)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def _load(self) -> None:
        import faiss

        try:
            meta = json.loads(self.meta_path.read_text())
            spec = self.store.vector_columns()[self.column]["spec"]
            if meta.get("spec") != spec or meta.get("dim") != self.dim:
                return
            index = faiss.read_index(str(self.path))
            both = np.load(self.keys_path)
            keys, kinds = both[0].astype(np.int64), both[1].astype(np.int8)
            if index.ntotal != len(keys) or meta.get("count") != len(keys):
                return  # files from different saves: rebuild
        except (OSError, ValueError, KeyError, RuntimeError):
            return
        self.index, self.keys, self.kinds = index, keys, kinds
        self.version = meta.get("lance_version")
        self.built_factory = meta.get("factory")

    # --- searching ----------------------------------------------------------------------------
    def _selector(self, kind: str) -> Any:
        import faiss

        if kind not in self._selectors:
            wanted = self.keys[self.kinds == KINDS.index(kind)]
            self._selectors[kind] = (faiss.IDSelectorBatch(wanted), wanted)  # keep the array alive
        return self._selectors[kind][0]

    def search(self, queries: Any, k: int = 10, *, kind: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) like FAISS: ``queries`` is one vector or an (n, dim) array."""
        import faiss

        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise VectorError(f"query vector has shape {q.shape}, expected (n, {self.dim}) for column {self.column!r}")
        if not np.isfinite(q).all():
            raise VectorError("query vector contains NaN or inf")
        if k <= 0:
            raise InvalidInputError(f"k must be positive, got {k}")
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        if self.index is None or self.index.ntotal == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        k = min(k, int(self.index.ntotal))
        inner = faiss.downcast_index(self.index.index) if hasattr(self.index, "index") else self.index
        is_hnsw = hasattr(inner, "hnsw")
        params = None
        if kind is not None:
            if kind not in KINDS:
                raise InvalidInputError(f"kind {kind!r} is unknown; expected one of {KINDS}")
            sel = self._selector(kind)
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.ef_search, k)) if is_hnsw else faiss.SearchParameters(sel=sel)
        elif is_hnsw:
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        scores, ids = self.index.search(q, k, params=params)
        return scores, ids

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)
