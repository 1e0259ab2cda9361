"""Concurrent worker: ``python -m tests.memstore.workers.writer MODE DB WORKER OPS SEED OUT``.

MODE ``mixed``: registrations, image additions, contested registrations of shared names and
removals, each logged only after it returned. MODE ``race``: every worker registers the same names
in the same order. MODE ``reader``: reads until ``OUT + '.stop'`` exists and logs any torn view.
Each prints ``ready`` once open and starts on a line on stdin, so that all overlap. The log
(JSON) goes to OUT.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import numpy as np

from memstore.errors import DuplicateEntityError
from memstore.store import Store

from .common import RETRIES, count_retries, sha, tiny_png

SHARED_NAMES = 20


def mixed(lib, wid: int, ops: int, rng: random.Random) -> dict:
    log: dict = {"registered": [], "added": [], "won": [], "lost": [], "removed": []}
    mine: list[tuple[str, str]] = []  # (id, name) of entities this worker registered and still has
    for i in range(ops):
        r = rng.random()
        if r < 0.45 or not mine:
            images = [tiny_png(rng) for _ in range(rng.randint(1, 2))]
            ent = lib.register(f"w{wid}-{i}", "prop", images=images, attributes={"base": [sha(b) for b in images]})
            mine.append((ent.id, ent.name))
            log["registered"].append({"id": ent.id, "name": ent.name, "shas": [sha(b) for b in images]})
        elif r < 0.8 and r >= 0.75:
            # searches sync and save the FAISS index files from several processes at once
            query = np.frombuffer(rng.randbytes(512), dtype=np.uint8).astype(np.float32) + 1
            hits = lib.search(query, "color_histogram_rgb8", k=5)
            log["searches"] = log.get("searches", 0) + 1
            log["search_foreign"] = log.get("search_foreign", 0) + sum(1 for _, ref in hits if ref.library != lib.name)
        elif r < 0.8:
            ent_id, _ = rng.choice(mine)
            data = tiny_png(rng)
            refs = lib.add_images(ent_id, [data])
            log["added"].append({"entity_id": ent_id, "sha": sha(data), "ref_id": refs[0].id})
        elif r < 0.95:
            name = f"shared-{rng.randrange(SHARED_NAMES)}"
            data = tiny_png(rng)
            try:
                ent = lib.register(name, "character", images=[data], attributes={"base": [sha(data)]})
                log["won"].append({"id": ent.id, "name": name, "shas": [sha(data)]})
            except DuplicateEntityError:
                log["lost"].append(name)
        else:
            ent_id, _ = mine.pop(rng.randrange(len(mine)))
            lib.remove(ent_id)
            log["removed"].append(ent_id)
    return log


def race(lib, wid: int, names: int, rng: random.Random) -> dict:
    log: dict = {"won": [], "lost": []}
    for j in range(names):
        data = tiny_png(rng)
        try:
            ent = lib.register(f"race-{j}", "character", images=[data], attributes={"base": [sha(data)], "worker": wid})
            log["won"].append({"id": ent.id, "name": ent.name, "shas": [sha(data)]})
        except DuplicateEntityError:
            log["lost"].append(f"race-{j}")
    return log


def reader(lib, stop: str) -> dict:
    """Every view must be whole: a visible entity has all its registered references (they are
    committed before it), and every visible reference is complete and its bytes hash to its sha256."""
    log: dict = {"reads": 0, "violations": []}
    while not os.path.exists(stop):
        entities = {e.id: e for e in lib.list()}
        refs = lib.references(with_images=True)
        by_entity: dict[str, set[str]] = {}
        for ref in refs:
            by_entity.setdefault(ref.entity_id, set()).add(ref.sha256)
            if ref.image is None or sha(ref.image) != ref.sha256 or not ref.vectors:
                log["violations"].append(f"torn reference {ref.id}")
        for ent in entities.values():
            missing = set(ent.attributes.get("base", [])) - by_entity.get(ent.id, set())
            if missing and lib.find(ent.id) is not None:
                log["violations"].append(f"entity {ent.name} visible without {len(missing)} of its references")
        log["reads"] += 1
    return log


def main(argv: list[str]) -> int:
    mode, db, wid, ops, seed, out = argv
    wid, ops, seed = int(wid), int(ops), int(seed)
    count_retries()
    lib = Store.open(db).library("default")
    lib.list()  # warm the connection before the start signal
    rng = random.Random(seed)
    print("ready", flush=True)
    sys.stdin.readline()  # the start signal: every worker is open and goes at once
    t0 = time.perf_counter()
    if mode == "mixed":
        log = mixed(lib, wid, ops, rng)
    elif mode == "race":
        log = race(lib, wid, ops, rng)
    elif mode == "reader":
        log = reader(lib, out + ".stop")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    log["seconds"] = time.perf_counter() - t0
    log["retries"] = RETRIES["count"]
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(log, fh)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
