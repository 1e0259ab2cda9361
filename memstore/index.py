"""FAISS hot index of one library's vector column, kept in step with the Lance table.

The index is built from a factory string, on inner product over normalised vectors, with the
reference's stable 63-bit key as FAISS id. ``auto`` picks by size: ``Flat`` (exact) up to 50k rows,
``PQ<d/4>x4fs,RFlat`` (fast-scan product-quantizer codes, re-ranked exactly) up to 2M,
``IVF<n>,Flat`` above (n ~ 2*sqrt(rows), a power of two); the measured reasons are above
:data:`AUTO_QUANTIZED_ABOVE`, and benchmarks/bench_retrieval_scale.py measures them.

Beside the FAISS ids it keeps sidecar arrays in memory (kind and entity of every key), so a
search maps hits to entities without reading Lance. It is saved beside the table with a sidecar
recording the Lance version it reflects. On :meth:`sync`: same version -> nothing; new keys -> they
are appended; keys gone -> they are marked removed (``removed``, kept in the saved sidecar) and every
search drops them, until more than :data:`REMOVED_SHARE` of the rows are removed -> a rebuild (FAISS's
fast-scan and HNSW indexes cannot delete a row, and a rebuild at 1M rows takes ~20 s: deleting one
character must not stall the next retrieve for that). Search can be restricted to a kind with an ID
selector. The version check itself is cheap: a held table handle, and for local stores a stat of
the table's ``_versions`` folder first (see :class:`memstore.store.VersionWatch`). Rows come through
a :class:`RowSource`, so this module knows no store.

For a remote store (``versioned``) the index is a cache on local disk that many processes of one
node share: ONE file per table version (``<column>.v<version>.index.npz``: the FAISS bytes, the
sidecar arrays and the meta together), written to a temp file and renamed, so a reader sees a
whole cache of one version or none. A process loads the newest cache at or below the table's
version and extends it (or rebuilds) from Lance; the two newest versions are kept.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from .errors import InvalidInputError, VectorError
from .scan import ThreadedScan, thread_count
from .validation import KINDS

#: The ``auto`` rule, by size only (never by a data set's queries). Measured with
#: benchmarks/bench_retrieval_scale.py's data (512-d; "clustered": 4000 centres, noise 1;
#: "overlapping": noise 2, the clusters drowned, near-uniform), entity recall@10 of a k=64 search on
#: one thread, knobs chosen on the tune queries (benchmarks/results/retrieval_scale.json):
#: - Flat (exact) up to 50k rows: recall 1.0, a few ms at 50k, no build.
#: - ``PQ<d/4>x4fs,RFlat`` up to 2M (fast-scan PQ codes of every row, the best k_factor*k re-ranked
#:   exactly). 100k: recall 1.0 clustered / 0.98 overlapping, FAISS 1-2 ms, built in 3-4 s. 1M
#:   overlapping (quiet machine): k_factor 4 recall 0.988 in 10.6 ms, built in 7.4 s; a second
#:   thread does not speed up one query. It scans every code (~1 ms per 100k rows), so it stops at
#:   2M (~21 ms). It replaced HNSW32 (100k overlapping: 0.83 at efSearch 64, 0.97 needs ~1024 and
#:   26 ms; 1.5-8 min build per 100k on 2 cores) and IVF below 2M: IVF2048 at 1M meets 1.9 ms on
#:   clustered data (nprobe 4) but its recall on overlapping data follows the share of lists
#:   scanned (0.56 at the default nprobe 32, 0.93 at 1024 in 162 ms), and it builds in ~1 min.
#:   Recall that holds whatever the embeddings' distribution is worth ~9 ms a shot here. From 500k
#:   rows one query scans on ``search_threads`` threads (:mod:`memstore.scan`): in the benchmark at
#:   1M (memory read 7.3-7.7 GB/s, commit c4f3344) FAISS took 5.6 / 5.1 ms against 8.8 / 10.4 ms on
#:   one thread (clustered / overlapping); an IVF of 4096 lists reached only 0.91 on overlapping
#:   data at nprobe 64 (flat k-means, a 7-minute build) and 0.59 with two-level k-means.
#: - IVF above 2M, where a full scan would cost tens of ms: probe more (``nprobe``) for recall.
#: (HNSW32 stays the rule for a dimension not divisible by 4; any factory can be set per library.)
AUTO_QUANTIZED_ABOVE = 50_000
AUTO_IVF_ABOVE = 2_000_000
#: defaults of the search/build knobs; a library overrides them with config["index_params"]
#: (``search_threads``: threads one query of a re-ranked PQ index scans on, see :mod:`memstore.scan`)
DEFAULT_PARAMS = {
    "efConstruction": 40,
    "efSearch": 64,
    "nprobe": 32,
    "train_per_list": 64,
    "k_factor": 4,
    "search_threads": 2,
}
#: rows a product quantizer (``PQ<m>x4fs``) trains on (what the figures above were measured with)
PQ_TRAIN_ROWS = 65_536
#: a kind-filtered search of a re-ranked (``,RFlat``) index fetches this many times k, then filters:
#: FAISS's fast-scan codes take no ID selector
KIND_OVERFETCH = 8
#: removed rows an index keeps (dropped from every search) before it is rebuilt, as a share of its rows:
#: each search fetches about k / (1 - share) rows, so a 5% share costs a k=64 search ~10 more rows
REMOVED_SHARE = 0.05
#: new rows (or rows without a vector) a sync checks one by one for a vector; above it, one read of
#: which rows have one (the whole vector column) is cheaper
CHECK_EACH_BELOW = 20_000
#: versioned caches kept per column: the newest, and the one before for a process still loading it
CACHE_VERSIONS_KEPT = 2


def choose_factory(factory: str, count: int, dim: int) -> str:
    """The FAISS factory for ``count`` rows of ``dim``-d vectors (``auto``: see the rule above)."""
    if factory != "auto":
        return factory
    if count > AUTO_IVF_ABOVE:
        nlist = 1 << int(round(np.log2(2 * np.sqrt(count))))
        return f"IVF{nlist},Flat"
    if count > AUTO_QUANTIZED_ABOVE:
        return f"PQ{dim // 4}x4fs,RFlat" if dim % 4 == 0 and dim >= 8 else "HNSW32,Flat"
    return "Flat"


def _auto_family(factory: str) -> str:
    """``auto`` rebuilds only when the family changes (Flat/HNSW/IVF), not on every IVF size step."""
    return factory.split(",")[0].rstrip("0123456789") if factory else ""


class RowSource(Protocol):
    """Where an index reads its rows: one vector column of one library, and the version of the
    table that holds it. The store provides it (:class:`memstore.store.ReferenceColumn`); the index
    knows no store, table layout or SQL."""

    column: str
    dim: int
    spec: str

    def version(self) -> int:
        """The table version the rows are read at (cheap; called on every sync)."""
        ...

    def key_table(self) -> pa.Table:
        """``key`` (int64) and ``kind`` of every row that has a vector in the column."""
        ...

    def row_keys(self) -> np.ndarray:
        """``key`` of every row, with a vector in the column or not: no vector is read (telling
        which rows have one reads the whole column, 3 s at 1M rows)."""
        ...

    def vector_table(self, keys: np.ndarray | None) -> pa.Table:
        """``key``, ``kind``, ``entity_id`` and the vector column: of all rows, or of these keys."""
        ...


class VectorIndex:
    """One FAISS index; use :meth:`Store.index` to get one that is in step."""

    def __init__(
        self,
        source: RowSource,
        folder: Path,
        *,
        factory: str = "auto",
        params: dict[str, Any] | None = None,
        versioned: bool = False,
    ):
        self.source = source
        self.versioned = versioned
        self.folder = folder
        self.column = source.column
        self.factory = factory
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.ef_search = int(self.params["efSearch"])
        self.nprobe = int(self.params["nprobe"])
        self.k_factor = int(self.params["k_factor"])  # candidates re-ranked exactly: k_factor * k
        self.search_threads = min(int(self.params["search_threads"]), os.cpu_count() or 1)
        self.dim = int(source.dim)
        self.path = folder / f"{self.column}.faiss"
        self.meta_path = folder / f"{self.column}.json"
        # keys, kinds, entity codes and entity ids in ONE file: written by one atomic rename, so a
        # reader can never pair the keys of one save with the entity list of another
        self.keys_path = folder / f"{self.column}.sidecar.npz"
        self.index: Any = None
        self.keys = np.zeros(0, dtype=np.int64)
        self.kinds = np.zeros(0, dtype=np.int8)
        # entity of each key, as a code into ``entity_ids`` (1M refs: 4 MB instead of 128 MB of str)
        self.entity_codes = np.zeros(0, dtype=np.int32)
        self.entity_ids: list[str] = []
        # keys still in FAISS whose rows the table no longer has (sorted): every search drops them
        self.removed = np.zeros(0, dtype=np.int64)
        self._entity_code: dict[str, int] = {}
        self._row_of: tuple[np.ndarray, np.ndarray] | None = None
        self.version: int | None = None
        self.built_factory: str | None = None
        self._selectors: dict[str, Any] = {}
        self._param_cache: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        self._scan: ThreadedScan | None = None  # a re-ranked PQ index's threaded search view, made on first search
        self.rebuilds = 0
        self.appends = 0

    # --- reading the table --------------------------------------------------------------------
    def _table_keys(self) -> tuple[np.ndarray, np.ndarray]:
        table = self.source.key_table()
        keys = table.column("key").to_numpy().astype(np.int64)
        return keys, _kind_codes(table.column("kind"))

    def _codes(self, entity_ids: Any) -> np.ndarray:
        """Entity id strings -> int codes into ``entity_ids`` (new ids get new codes)."""
        out = np.empty(len(entity_ids), dtype=np.int32)
        for i, eid in enumerate(entity_ids):
            code = self._entity_code.get(eid)
            if code is None:
                code = self._entity_code[eid] = len(self.entity_ids)
                self.entity_ids.append(eid)
            out[i] = code
        return out

    def _vectors_for(self, keys: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        table = self.source.vector_table(keys)
        if table.num_rows == 0:
            return _no_rows(self.dim)
        flat = table.column(self.column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = np.ascontiguousarray(flat.reshape(-1, self.dim), dtype=np.float32)
        ks = table.column("key").to_numpy().astype(np.int64)
        # dictionary-encode first: a million entity ids become a few thousand Python strings
        encoded = table.column("entity_id").combine_chunks().dictionary_encode()
        lookup = self._codes(encoded.dictionary.to_pylist())
        codes = lookup[encoded.indices.to_numpy(zero_copy_only=False)] if len(lookup) else np.zeros(0, np.int32)
        return vectors, ks, _kind_codes(table.column("kind")), codes.astype(np.int32)

    # --- building -----------------------------------------------------------------------------
    def _new_index(self, count: int) -> Any:
        import faiss

        factory = choose_factory(self.factory, count, self.dim)
        _check_fits(factory, self.dim)
        inner = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        if hasattr(inner, "hnsw"):
            inner.hnsw.efConstruction = int(self.params["efConstruction"])
        self.built_factory = factory
        return faiss.IndexIDMap2(inner) if not factory.startswith("IDMap") else inner

    def rebuild(self, version: int) -> None:
        self.entity_ids, self._entity_code = [], {}
        vectors, keys, kinds, codes = self._vectors_for(None)
        index = self._new_index(len(keys))
        if not index.is_trained:
            nlist = int(getattr(faiss_inner(index), "nlist", 0))
            least = nlist or 16  # k-means needs a point per centroid: nlist lists, or a 4-bit PQ's 16
            if len(keys) < least:
                raise InvalidInputError(
                    f"index factory {self.built_factory!r} trains on at least {least} vectors and the column has "
                    f"{len(keys)}; add references first or use auto (exact search until the library is large)"
                )
            # IVF k-means on a sample (64 per list is what FAISS itself asks for) keeps build time flat
            rows = int(self.params["train_per_list"]) * nlist if nlist else PQ_TRAIN_ROWS
            sample = vectors
            if len(vectors) > rows:
                pick = np.random.default_rng(0).choice(len(vectors), rows, replace=False)
                sample = vectors[np.sort(pick)]
            index.train(sample)
        if len(keys):
            index.add_with_ids(vectors, keys)
        self.index, self.keys, self.kinds, self.entity_codes = index, keys, kinds, codes
        self.removed = np.zeros(0, dtype=np.int64)
        self._row_of = None
        self.version = version
        self._selectors.clear()
        self._param_cache.clear()
        self._scan = None
        self.rebuilds += 1
        self._save()

    def sync(self) -> None:
        """Bring the index in step with the table (see module docstring)."""
        version = self.source.version()
        if self.index is None:
            self._load_cache(version) if self.versioned else self._load()
        if self.index is not None and self.version == version:
            return
        if self.index is None:
            self.rebuild(version)
            return
        every, added = self._table_and_new_keys()
        held = self._sorted_keys()
        gone = held[~_contains(every, held)]  # sorted: the removed rows now
        # a removed key back in the table: its FAISS row may hold an older vector
        revived = self.removed[_contains(every, self.removed)]
        factory_now = choose_factory(self.factory, len(held) - len(gone) + len(added), self.dim)
        family_changed = _auto_family(factory_now) != _auto_family(self.built_factory or "")
        if family_changed or len(revived) or len(gone) > REMOVED_SHARE * len(self.keys):
            self.rebuild(version)
            return
        self.removed = gone
        vectors, keys, kinds, codes = self._vectors_for(added) if len(added) else _no_rows(self.dim)
        rows_changed = bool(len(keys))  # candidates without a vector add nothing
        if rows_changed:
            self.index.add_with_ids(vectors, keys)
            if self._scan is not None:
                self._scan.append(vectors, keys)
            self.keys = np.concatenate([self.keys, keys])
            self.kinds = np.concatenate([self.kinds, kinds])
            self.entity_codes = np.concatenate([self.entity_codes, codes])
            self._row_of = None
            self._selectors.clear()
            self._param_cache.clear()
            self.appends += 1
        self.version = version
        self._save(rows_changed)

    def _table_and_new_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """(the table's keys, those of them the index does not hold), sorted. The keys of every row
        are cheap to read and the new ones are checked for a vector by :meth:`_vectors_for`; when
        there are many, the table's keys are read again as only those of rows with a vector (the
        whole vector column is read). A vector is never cleared in place, so a held key still in
        the table still has one. Set differences on sorted arrays: np.setdiff1d's hashing took
        2.7 s for two at 1M keys, this 0.04 s."""
        held = self._sorted_keys()
        every = _sorted_unique(self.source.row_keys())
        new = every[~_contains(held, every)]
        if len(new) > CHECK_EACH_BELOW:
            every = _sorted_unique(self._table_keys()[0])
            new = every[~_contains(held, every)]
        return every, new

    # --- persistence --------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "lance_version": self.version,
            "factory": self.built_factory,
            "count": len(self.keys),
            "dim": self.dim,
            "column": self.column,
            "spec": self.source.spec,
        }

    def _save(self, rows_changed: bool = True) -> None:
        """Write the index, its sidecar and its meta. ``rows_changed=False`` (rows only marked removed):
        the FAISS file on disk holds the same rows, so it is not written again (2 GB at 1M rows, 3.6 s)."""
        if self.versioned:
            self._save_cache()
            return
        import faiss

        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = self._meta()
        files = [
            (self.path, lambda p: faiss.write_index(self.index, str(p))),
            (self.keys_path, lambda p: _save_sidecar(p, self._sidecar())),
            (self.meta_path, lambda p: Path(p).write_text(json.dumps(meta))),
        ]
        if not rows_changed and self.path.exists():
            files = files[1:]
        # Write each file to a temp name and rename, meta last: a reader never sees a torn index.
        for target, write in files:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=target.suffix)
            os.close(fd)
            try:
                write(tmp)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def _sidecar(self) -> dict[str, np.ndarray]:
        """The arrays saved beside the FAISS bytes (one file, so they always come from one save)."""
        return {
            "keys": self.keys,
            "kinds": self.kinds.astype(np.int8),
            "codes": self.entity_codes.astype(np.int32),
            "entity_ids": np.array(self.entity_ids, dtype="S64"),
            "removed": self.removed,
        }

    # --- the versioned cache of a remote store --------------------------------------------------
    def cache_path(self, version: int) -> Path:
        return self.folder / f"{self.column}.v{version:012d}.index.npz"

    def cached_versions(self) -> list[int]:
        """Table versions with a whole cache file on disk, newest first."""
        pattern = re.compile(rf"^{re.escape(self.column)}\.v(\d{{12}})\.index\.npz$")
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return sorted((int(m.group(1)) for n in names if (m := pattern.match(n))), reverse=True)

    def _save_cache(self) -> None:
        import faiss

        assert self.version is not None, "a cache is saved after a build"
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{self.column}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:  # one file: its rename publishes index, sidecar and meta at once
                np.savez(
                    f,
                    index=faiss.serialize_index(self.index),
                    meta=np.frombuffer(json.dumps(self._meta()).encode(), dtype=np.uint8),
                    **self._sidecar(),  # type: ignore[arg-type]  # numpy's stub fears a key allow_pickle
                )
            os.replace(tmp, self.cache_path(self.version))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for old in self.cached_versions()[CACHE_VERSIONS_KEPT:]:
            try:
                self.cache_path(old).unlink()
            except OSError:  # another process pruned it first
                pass

    def _load_cache(self, version: int) -> None:
        """Load the newest whole cache at or below ``version`` (a newer one is of a table that was
        made again); :meth:`sync` then extends it from Lance."""
        import faiss

        for cached in self.cached_versions():
            if cached > version:
                continue
            try:
                with np.load(self.cache_path(cached), allow_pickle=False) as side:
                    meta = json.loads(side["meta"].tobytes())
                    index = faiss.deserialize_index(side["index"])
                    keys = side["keys"].astype(np.int64)
                    kinds = side["kinds"].astype(np.int8)
                    codes = side["codes"].astype(np.int32)
                    entity_ids = [e.decode() for e in side["entity_ids"].tolist()]
                    removed = _removed_of(side)
            except (OSError, ValueError, KeyError, RuntimeError):
                continue  # pruned by another process meanwhile, or not ours: try an older one
            if meta.get("spec") != self.source.spec or meta.get("dim") != self.dim or index.ntotal != len(keys):
                continue
            self.index, self.keys, self.kinds, self.entity_codes = index, keys, kinds, codes
            self.entity_ids, self.removed = entity_ids, removed
            self._entity_code = {e: i for i, e in enumerate(entity_ids)}
            self._row_of = None
            self._scan = None
            self.version = cached
            self.built_factory = meta.get("factory")
            return

    def _load(self) -> None:
        import faiss

        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("spec") != self.source.spec or meta.get("dim") != self.dim:
                return
            index = faiss.read_index(str(self.path))
            with np.load(self.keys_path, allow_pickle=False) as side:
                keys = side["keys"].astype(np.int64)
                kinds = side["kinds"].astype(np.int8)
                codes = side["codes"].astype(np.int32)
                entity_ids = [e.decode() for e in side["entity_ids"].tolist()]
                removed = _removed_of(side)
            if index.ntotal != len(keys) or meta.get("count") != len(keys):
                return  # files from different saves: rebuild
            if len(codes) and int(codes.max()) >= len(entity_ids):
                return
            if hasattr(index, "id_map") and not np.array_equal(faiss.vector_to_array(index.id_map), keys):
                return  # the FAISS file and the sidecar come from different saves: rebuild
        except (OSError, ValueError, KeyError, RuntimeError, IndexError):
            return
        self.index, self.keys, self.kinds, self.entity_codes = index, keys, kinds, codes
        self.entity_ids, self.removed = entity_ids, removed
        self._entity_code = {e: i for i, e in enumerate(entity_ids)}
        self._row_of = None
        self._scan = None
        self.version = meta.get("lance_version")
        self.built_factory = meta.get("factory")

    # --- searching ----------------------------------------------------------------------------
    def _selector(self, kind: str) -> Any:
        import faiss

        if kind not in self._selectors:
            wanted = self.keys[self.kinds == KINDS.index(kind)]
            self._selectors[kind] = (faiss.IDSelectorBatch(wanted), wanted)  # keep the array alive
        return self._selectors[kind][0]

    def search(self, queries: Any, k: int = 10, *, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) like FAISS: ``queries`` is one vector or an (n, dim) array."""

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
        if kind is not None and kind not in KINDS:
            raise InvalidInputError(f"kind {kind!r} is unknown; expected one of {KINDS}")
        if self.ntotal == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        k = min(k, self.ntotal)
        if len(self.removed):
            return self._search_live(q, k, kind)
        return self._search_rows(q, k, kind)

    def _search_live(self, q: np.ndarray, k: int, kind: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Search past the removed rows: fetch about k / (1 - their share) and drop them."""
        share = len(self.removed) / int(self.index.ntotal)
        first = int(np.ceil(k / (1 - share) + 3 * np.sqrt(k * share))) + 1
        return self._fetch_kept(
            q, k, first, 2, lambda one, n: self._search_rows(one, n, kind), lambda ids: ~self._is_removed(ids)
        )

    def _fetch_kept(
        self,
        q: np.ndarray,
        k: int,
        first: int,
        grow: int,
        search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
        keep: Callable[[np.ndarray], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per query: ``search`` ``first`` rows and keep the ids ``keep`` accepts, asking ``grow``
        times more while fewer than k are kept and the index could return more."""
        total = int(self.index.ntotal)
        scores_out = np.full((len(q), k), -np.inf, np.float32)
        ids_out = np.full((len(q), k), -1, np.int64)
        for row in range(len(q)):
            fetch = min(total, first)
            while True:
                scores, ids = search(q[row : row + 1], fetch)
                found = ids[0] >= 0
                kept = found & keep(ids[0])
                if kept.sum() >= k or fetch >= total or found.sum() < fetch:
                    break
                fetch = min(total, fetch * grow)
            picked = np.flatnonzero(kept)[:k]
            scores_out[row, : len(picked)], ids_out[row, : len(picked)] = scores[0][picked], ids[0][picked]
        return scores_out, ids_out

    def _is_removed(self, ids: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(self.removed, ids), len(self.removed) - 1)
        return self.removed[pos] == ids

    def _search_rows(self, q: np.ndarray, k: int, kind: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The index's own search, removed rows included."""
        if kind is None:
            return self._search_all_kinds(q, k)
        if _is_refined(faiss_inner(self.index)):
            return self._search_filtered(q, k, kind)
        return self.index.search(q, k, params=self._params(kind, k))

    @property
    def scan_threads(self) -> int:
        """Threads one query's scan runs on now (1 unless a threaded scan applies)."""
        scan = self._threaded_scan() if self.index is not None else None
        return scan.threads if scan is not None else 1

    def _threaded_scan(self) -> ThreadedScan | None:
        """The threaded search view of a re-ranked PQ index large enough to be worth it, else None."""
        threads = thread_count(int(self.index.ntotal), self.search_threads)
        if self._scan is not None and self._scan.ntotal == self.index.ntotal and self._scan.threads == threads:
            return self._scan
        self._scan = None
        inner = faiss_inner(self.index)
        if threads > 1 and _is_refined(inner) and _is_fast_scan(inner.base_index) and hasattr(self.index, "id_map"):
            self._scan = ThreadedScan(self.index, threads)
        return self._scan

    def _search_filtered(self, q: np.ndarray, k: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """A kind filter by fetching more and dropping other kinds (fast-scan takes no selector),
        fetching again with more until k of the kind are found or the whole index was asked."""
        code = KINDS.index(kind)
        return self._fetch_kept(
            q, k, k * KIND_OVERFETCH, 4, self._search_all_kinds, lambda ids: self.kind_codes_of(ids) == code
        )

    def _search_all_kinds(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scan = self._threaded_scan()
        if scan is not None:
            return scan.search(q, k, self.k_factor)
        return self.index.search(q, k, params=self._params(None, k))

    def _params(self, kind: str | None, k: int) -> Any:
        """Search parameters, made once per (kind, efSearch) and reused: building them per query
        costs more than an HNSW search of 100k vectors takes."""
        import faiss

        inner = faiss_inner(self.index)
        ef = max(self.ef_search, k)
        key = (kind, ef if hasattr(inner, "hnsw") else 0, self.nprobe, self.k_factor)
        cached = self._param_cache.get(key)
        if cached is not None and cached[0] is self.index:
            return cached[1]
        if _is_refined(inner):
            params = faiss.IndexRefineSearchParameters(k_factor=float(self.k_factor))
        elif hasattr(inner, "hnsw"):
            params = faiss.SearchParametersHNSW(efSearch=ef)
        elif hasattr(inner, "nprobe"):
            params = faiss.SearchParametersIVF(nprobe=min(self.nprobe, int(inner.nlist)))
        else:
            params = faiss.SearchParameters()
        if kind is not None:
            params.sel = self._selector(kind)
        self._param_cache[key] = (self.index, params)
        return params

    # --- sidecar lookups (no Lance read) ------------------------------------------------------
    def entity_codes_of(self, ids: Any) -> np.ndarray:
        """Entity code (an index into ``entity_ids``) of each FAISS id; -1 where none."""
        rows, found = self._rows_of(ids)
        return np.where(found, self.entity_codes[rows].astype(np.int64), -1) if len(rows) else np.full(len(found), -1)

    def kind_codes_of(self, ids: Any) -> np.ndarray:
        """Kind code (an index into ``KINDS``) of each FAISS id; -1 where none."""
        rows, found = self._rows_of(ids)
        return np.where(found, self.kinds[rows].astype(np.int64), -1) if len(rows) else np.full(len(found), -1)

    def _sorted_keys(self) -> np.ndarray:
        return self._key_order()[0]

    def _key_order(self) -> tuple[np.ndarray, np.ndarray]:
        """The keys sorted, and the sidecar row of each: 16 bytes a key, no dict of a million."""
        if self._row_of is None:
            order = np.argsort(self.keys, kind="stable")
            self._row_of = (self.keys[order], order)
        return self._row_of

    def _rows_of(self, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Sidecar row of each FAISS id, and whether the index holds it."""
        sorted_keys, rows = self._key_order()
        wanted = np.asarray(ids, dtype=np.int64).ravel()
        if len(sorted_keys) == 0:
            return np.zeros(0, np.int64), np.zeros(len(wanted), bool)
        pos = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
        return rows[pos], sorted_keys[pos] == wanted

    def entity_of(self, ids: Any) -> list[str | None]:
        """Entity id of each FAISS id (None for -1 or a key the index does not hold)."""
        return [self.entity_ids[c] if c >= 0 else None for c in self.entity_codes_of(ids).tolist()]

    def live_keys(self) -> np.ndarray:
        """The keys a search can return: the table's, once in step (``keys`` holds the removed too)."""
        return np.setdiff1d(self.keys, self.removed) if len(self.removed) else self.keys

    @property
    def ntotal(self) -> int:
        """Rows a search can return: the index's, less the removed ones."""
        return 0 if self.index is None else int(self.index.ntotal) - len(self.removed)


def _save_sidecar(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a bare temp name
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub fears a key allow_pickle


def _no_rows(dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What :meth:`VectorIndex._vectors_for` gives for no rows: vectors, keys, kinds, entity codes."""
    return np.zeros((0, dim), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int32)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    ordered = np.sort(np.asarray(values, dtype=np.int64))
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if len(ordered) else ordered


def _contains(sorted_haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Whether each needle is in the sorted haystack (a mask the shape of ``needles``)."""
    if len(sorted_haystack) == 0:
        return np.zeros(len(needles), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_haystack, needles), len(sorted_haystack) - 1)
    return sorted_haystack[pos] == needles


def _removed_of(side: Any) -> np.ndarray:
    """The removed keys of a saved sidecar (none in one saved before they were kept)."""
    return side["removed"].astype(np.int64) if "removed" in side.files else np.zeros(0, np.int64)


def _check_fits(factory: str, dim: int) -> None:
    """A product quantizer cuts each vector into m sub-vectors: m must divide the dimension
    (FAISS would abort the build with a C++ assertion instead)."""
    match = re.match(r"^PQ(\d+)x4fs", factory)
    if match and dim % int(match.group(1)):
        raise InvalidInputError(
            f"index factory {factory!r} needs the dimension ({dim}) to be a multiple of {match.group(1)}; "
            f"use auto or PQ{max(dim // 4, 1)}x4fs,RFlat"
        )


def _is_refined(inner: Any) -> bool:
    """An index that re-ranks its candidates by exact vectors (factory ``...,RFlat``)."""
    import faiss

    return isinstance(inner, faiss.IndexRefine)


def _is_fast_scan(index: Any) -> bool:
    import faiss

    return isinstance(faiss.downcast_index(index), faiss.IndexPQFastScan)


def faiss_inner(index: Any) -> Any:
    """The index inside an ``IndexIDMap`` wrapper, downcast to its concrete type."""
    import faiss

    return faiss.downcast_index(index.index) if hasattr(index, "index") else index


def _kind_codes(column: Any) -> np.ndarray:
    encoded = column.combine_chunks().dictionary_encode()
    lookup = np.array([KINDS.index(k) for k in encoded.dictionary.to_pylist()], dtype=np.int8)
    return lookup[encoded.indices.to_numpy(zero_copy_only=False)] if len(lookup) else np.zeros(0, np.int8)
