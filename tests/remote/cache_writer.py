"""A node that keeps rebuilding and saving the FAISS cache of one table version:
``python -m tests.remote.cache_writer FOLDER ROUNDS SEED`` (the atomic-cache test runs two at once)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from memstore.index import VectorIndex

DIM = 16
VERSION = 7


class FixedSource:
    """A RowSource of ``rows`` random vectors at one table version."""

    column = "vec"
    dim = DIM
    spec = "test:fixed"

    def __init__(self, rows: int, seed: int):
        rng = np.random.default_rng(seed)
        self.keys = np.arange(1, rows + 1, dtype=np.int64)
        self.vectors = rng.normal(size=(rows, DIM)).astype(np.float32)

    def version(self) -> int:
        return VERSION

    def key_table(self) -> pa.Table:
        return pa.table({"key": self.keys, "kind": ["prop"] * len(self.keys)})

    def row_keys(self) -> np.ndarray:
        return self.keys

    def vector_table(self, keys: np.ndarray | None) -> pa.Table:
        pick = np.ones(len(self.keys), bool) if keys is None else np.isin(self.keys, keys)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(self.vectors[pick].ravel()), DIM)
        n = int(pick.sum())
        return pa.table(
            {
                "key": self.keys[pick],
                "kind": ["prop"] * n,
                "entity_id": [f"e{k}" for k in self.keys[pick]],
                "vec": vectors,
            }
        )


def main(argv: list[str]) -> int:
    folder, rounds, seed = Path(argv[0]), int(argv[1]), int(argv[2])
    for i in range(rounds):
        # sizes differ between writers and rounds: a torn mix of two saves could not pass the checks
        index = VectorIndex(FixedSource(200 + 50 * ((seed + i) % 5), seed), folder, versioned=True)
        index.rebuild(VERSION)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
