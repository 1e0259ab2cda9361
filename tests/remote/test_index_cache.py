"""The FAISS cache of a remote store: on local disk per (store URI and endpoint, library, column,
table version), extended from Lance when the table moved on, and written by one atomic rename so
that processes sharing the cache never load a half-written file."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from memstore.index import VectorIndex
from memstore.store import Store
from tests.conftest import solid
from tests.memstore.workers.harness import ROOT
from tests.remote.cache_writer import VERSION, FixedSource

COLUMN = "color_histogram_rgb8"


def test_cache_per_version_is_extended_when_the_table_moves_on(s3):
    lib = Store.init(s3.uri).library()
    lib.register("Harbor", "location", images=[solid((20, 60, 200))])
    first = Store.open(s3.uri)
    index = first.index("default", COLUMN)
    folder = first.index_dir() / "default"
    assert index.cached_versions() == [index.version] and index.cache_path(index.version).exists()
    assert first.index_dir() != Store(f"s3://{s3.bucket}/other", first.db).index_dir()  # keyed by the store URI

    lib.register("Forest", "location", images=[solid((20, 160, 40))])
    node = Store.open(s3.uri)  # another process of this node: loads the cache, then extends it
    extended = node.index("default", COLUMN)
    assert (extended.rebuilds, extended.appends) == (0, 1) and extended.ntotal == 2
    assert extended.version == node.references.version and extended.version > index.version
    assert extended.cached_versions()[0] == extended.version

    lib.remove("Harbor")
    rebuilt = Store.open(s3.uri).index("default", COLUMN)
    assert (rebuilt.rebuilds, rebuilt.ntotal) == (1, 1)
    assert len(rebuilt.cached_versions()) == 2  # older versions pruned
    assert not [p for p in folder.iterdir() if p.suffix == ".tmp"]


def test_cache_of_another_endpoint_is_another_cache(s3, monkeypatch):
    store = Store.init(s3.uri)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint.replace("127.0.0.1", "localhost"))
    assert Store(s3.uri, store.db).index_dir() != store.index_dir()


@pytest.mark.slow  # two Python processes start (~30 s on 2 busy cores)
def test_two_writers_never_leave_a_half_written_cache(tmp_path):
    folder = tmp_path / "cache"
    env = {"PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.remote.cache_writer", str(folder), "25", str(seed)], cwd=ROOT, env=env
        )
        for seed in (1, 2)
    ]
    loads = 0
    try:
        deadline = time.monotonic() + 120
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            reader = VectorIndex(FixedSource(1, 0), folder, versioned=True)
            reader._load_cache(VERSION)
            if reader.index is not None:  # whatever it loaded is one whole save
                loads += 1
                assert reader.ntotal == len(reader.keys) == len(reader.entity_codes) in (200, 250, 300, 350, 400)
                assert reader.entity_of(reader.keys[-1:]) == [f"e{reader.keys[-1]}"]
    finally:
        for w in writers:
            w.wait(timeout=120)
    assert [w.returncode for w in writers] == [0, 0] and loads > 0
    assert not [p.name for p in folder.iterdir() if not p.name.endswith(".index.npz")]  # no temp file left


def test_a_crash_while_saving_keeps_the_previous_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    index = VectorIndex(FixedSource(200, 1), folder, versioned=True)
    index.rebuild(VERSION)

    def torn_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", torn_savez)
    with pytest.raises(OSError):
        index.rebuild(VERSION + 1)
    monkeypatch.undo()
    assert index.cached_versions() == [VERSION] and [p.name for p in folder.iterdir()] == [
        index.cache_path(VERSION).name
    ]
    again = VectorIndex(FixedSource(200, 1), folder, versioned=True)
    again._load_cache(VERSION + 1)
    assert again.version == VERSION and again.ntotal == 200
