"""Drives the worker processes and checks a store afterwards; used by the tests and the benchmark.

Every check reads the raw Lance tables (not only the Library API) so that a bug in the API cannot
hide a bug in what was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
COLUMN = "color_histogram_rgb8"


def spawn(module: str, *args: Any, stdin: bool = False) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-m", f"tests.memstore.workers.{module}", *map(str, args)],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_ready(proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    line = proc.stdout.readline()
    if line.strip() != "ready" or time.time() > deadline:
        proc.kill()
        raise RuntimeError(f"worker did not start: {line!r} {proc.stderr.read()[-2000:]}")


# --- concurrency -----------------------------------------------------------------------------------
def run_workers(
    db: Path | str,
    mode: str,
    *,
    workers: int,
    ops: int,
    seed: int,
    reader: bool,
    timeout: float = 600,
    logs: Path | None = None,
) -> dict:
    """Start ``workers`` writers (and a reader), release them at once, wait, return their logs.
    ``db`` is a store folder or URI (an ``s3://`` one needs ``logs``, the folder for the workers' logs)."""
    from memstore.store import Store

    Store.init(db)
    folder, stem = (logs, "store") if logs is not None else (Path(db).parent, Path(db).name)
    outs = [folder / f"{stem}-{mode}-{i}.json" for i in range(workers)]
    procs = [spawn("writer", mode, db, i, ops, seed * 1000 + i, out, stdin=True) for i, out in enumerate(outs)]
    reader_out = folder / f"{stem}-reader.json"
    if reader:
        procs.append(spawn("writer", "reader", db, 99, 0, seed, reader_out, stdin=True))
    try:
        for proc in procs:
            _wait_ready(proc)
        started = time.perf_counter()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs[:workers]:
            proc.wait(timeout=timeout)
        seconds = time.perf_counter() - started
        if reader:
            Path(str(reader_out) + ".stop").touch()
            procs[-1].wait(timeout=max(120, timeout / 3))
        for proc in procs:
            if proc.returncode != 0:
                raise RuntimeError(f"worker failed ({proc.returncode}): {proc.stderr.read()[-3000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    logs = [json.loads(out.read_text()) for out in outs]
    return {
        "logs": logs,
        "reader": json.loads(reader_out.read_text()) if reader else None,
        "seconds": seconds,
        "retries": sum(log["retries"] for log in logs),
    }


def raw_tables(db: Path) -> tuple[list[dict], list[dict]]:
    """Every entity row and every reference row (with image bytes) of the store, read raw."""
    from memstore.store import Store

    store = Store.open(db)
    ents = store.entities.to_lance().to_table().to_pylist()
    refs = store.references.to_lance().to_table().to_pylist()
    return ents, refs


def torn_references(refs: list[dict], dim: int = 512) -> list[str]:
    """References that are incomplete: a required field missing, bytes not matching the sha256,
    a vector of the wrong length or not finite."""
    import math

    torn = []
    for ref in refs:
        required = (
            "id",
            "key",
            "entity_id",
            "library",
            "kind",
            "era",
            "source",
            "image",
            "sha256",
            "width",
            "height",
            "created",
        )
        vec = ref.get(COLUMN)
        if (
            any(ref.get(f) is None for f in required)
            or hashlib.sha256(ref["image"]).hexdigest() != ref["sha256"]
            or vec is None
            or len(vec) != dim
            or not all(math.isfinite(x) for x in vec)
        ):
            torn.append(ref["id"])
    return torn


def check_mixed(db: Path, result: dict) -> dict:
    """Compare the store with what the workers say they did. Every count must be 0 but ``entities``."""
    from memstore.validation import name_key

    ents, refs = raw_tables(db)
    by_id = {e["id"]: e for e in ents}
    refs_of: dict[str, set[str]] = {}
    for ref in refs:
        refs_of.setdefault(ref["entity_id"], set()).add(ref["sha256"])
    expected: dict[str, set[str]] = {}
    removed: set[str] = set()
    wins: dict[str, int] = {}
    for log in result["logs"]:
        for item in log.get("registered", []) + log.get("won", []):
            expected[item["id"]] = set(item["shas"])
        for item in log.get("won", []):
            wins[item["name"]] = wins.get(item["name"], 0) + 1
        for item in log.get("added", []):
            expected.setdefault(item["entity_id"], set()).add(item["sha"])
        removed.update(log.get("removed", []))
    lost = [i for i in expected if i not in removed and i not in by_id]
    incomplete = [i for i, shas in expected.items() if i in by_id and refs_of.get(i, set()) != shas]
    resurrected = [i for i in removed if i in by_id or i in refs_of]
    unexpected = [i for i in by_id if i not in expected]
    keys = [name_key(e["name"]) for e in ents]
    duplicated_names = len(keys) - len(set(keys))
    duplicated_ids = len(ents) - len(by_id) + len(refs) - len({r["id"] for r in refs})
    orphans = [r["id"] for r in refs if r["entity_id"] not in by_id]
    lost_names = [
        n for n in {f"shared-{j}" for j in range(20)} | {f"race-{j}" for j in range(100)} if n in wins and wins[n] != 1
    ]
    # The FAISS index files, saved by several processes, must load into an index of the table's keys.
    from memstore.store import Store

    fresh = Store.open(db)
    table_keys = {r["key"] for r in refs if r.get(COLUMN) is not None}
    index_keys = set(fresh.index("default", COLUMN).live_keys().tolist()) if COLUMN in fresh.vector_columns() else set()
    return {
        "entities": len(ents),
        "references": len(refs),
        "index_mismatch": len(index_keys ^ table_keys),
        "lost": len(lost),
        "incomplete": len(incomplete),
        "resurrected": len(resurrected),
        "unexpected": len(unexpected),
        "duplicated_names": duplicated_names,
        "duplicated_ids": duplicated_ids,
        "orphans": len(orphans),
        "torn": len(torn_references(refs)),
        "names_won_twice": len(lost_names),
        "reader_violations": len((result.get("reader") or {}).get("violations", [])),
        "search_foreign": sum(log.get("search_foreign", 0) for log in result["logs"]),
    }


# --- crash safety ----------------------------------------------------------------------------------
def crash_trial(db: Path, seed: int, rng: random.Random, *, max_delay: float = 0.8) -> dict:
    """Run the crash worker on ``db``, kill -9 it after a random delay once it is writing, and
    return what it said it committed and removed before it died."""
    proc = spawn("crash_writer", db, seed)
    try:
        _wait_ready(proc)
        time.sleep(rng.uniform(0.0, max_delay))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    committed, removed, removing = set(), set(), set()
    compactions = 0
    for line in out.splitlines():
        if line.startswith("O "):
            compactions += 1
        elif line.startswith("C "):
            committed.update(line.split()[1:])
        elif line.startswith("R "):
            removed.add(line.split()[1])
        elif line.startswith("r "):
            removing.add(line.split()[1])
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError(f"crash worker ended by itself ({proc.returncode}): {err[-3000:]}")
    # a removal that started but never reported back may or may not have committed
    return {
        "committed": committed - (removing - removed),
        "removed": removed,
        "compactions": compactions,
        "lines": len(out.splitlines()),
    }


def check_crashed(db: Path, committed: set[str], removed: set[str]) -> dict:
    """After a kill: the store opens; every entity is whole; what was reported committed survived;
    orphans are invisible to reads and removed by repair; the FAISS index matches the table."""
    import numpy as np

    from memstore.store import Store

    store = Store.open(db)  # must open
    lib = store.library("default")
    ents, refs = raw_tables(db)
    by_id = {e["id"]: e for e in ents}
    refs_of: dict[str, set[str]] = {}
    for ref in refs:
        refs_of.setdefault(ref["entity_id"], set()).add(ref["sha256"])
    half = [e["id"] for e in ents if refs_of.get(e["id"], set()) != set(json.loads(e["attributes"])["base"])]
    lost = [i for i in committed - removed if i not in by_id]
    resurrected = [i for i in removed if i in by_id]
    orphans = {r["id"] for r in refs if r["entity_id"] not in by_id}
    visible = {r.id for r in lib.references(with_vectors=False)}
    orphans_visible = len(orphans & visible)
    has_column = COLUMN in store.vector_columns()
    index_keys = set(store.index(lib.name, COLUMN).live_keys().tolist()) if has_column else set()
    table_keys = {r["key"] for r in refs if r.get(COLUMN) is not None}
    index_mismatch = len(index_keys ^ table_keys)
    # Search must not return an orphan either.
    hits = lib.search(np.ones(512, dtype=np.float32), COLUMN, k=max(1, len(table_keys))) if table_keys else []
    orphans_searched = sum(1 for _, ref in hits if ref.id in orphans)
    repaired = store.repair()
    _, refs_after = raw_tables(db)
    left = sum(1 for r in refs_after if r["entity_id"] not in by_id)
    reopened = Store.open(db)  # a fresh process view: the index is loaded from its files
    index_after = set(reopened.index(lib.name, COLUMN).live_keys().tolist()) if has_column else set()
    table_after = {r["key"] for r in refs_after if r.get(COLUMN) is not None}
    return {
        "entities": len(ents),
        "half_written": len(half),
        "lost": len(lost),
        "resurrected": len(resurrected),
        "orphans_found": len(orphans),
        "orphans_repaired": repaired["references"],
        "orphans_left": left,
        "orphans_visible": orphans_visible,
        "orphans_searched": orphans_searched,
        "torn": len(torn_references(refs)),
        "index_mismatch": index_mismatch + len(index_after ^ table_after),
    }


def crash_init_trial(folder: Path, rng: random.Random, *, max_delay: float = 1.0) -> list[Path]:
    """Kill a loop of ``Store.init`` at a random point; return the store folders it left."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = spawn("init_crasher", folder)
    try:
        _wait_ready(proc)
        time.sleep(rng.uniform(0.05, max_delay))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    return sorted(p for p in folder.iterdir() if p.is_dir())


def wait_all(procs: list[subprocess.Popen], timeout: float | None = None) -> None:
    for proc in procs:
        proc.wait(timeout=timeout)
