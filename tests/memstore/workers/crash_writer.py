"""Crash worker: ``python -m tests.memstore.workers.crash_writer DB SEED``. Loops writes until it
is killed: batch registrations, removals, FAISS index syncs, compactions (``maybe_compact`` and
``optimize``) and repairs. It prints one line per write that returned (``C <ids>`` committed,
``R <id>`` removed, ``O <table>`` compacted) so the test knows what must survive, and ``r <id>``
before each removal starts (that entity may be gone or not, but never half-gone).
Each entity records the sha256 of its images in ``attributes['base']``: completeness is checkable.
"""

from __future__ import annotations

import os
import random
import sys

from memstore.store import Store

from .common import sha, tiny_png


def main(argv: list[str]) -> int:
    db, seed = argv[0], int(argv[1])
    rng = random.Random(seed)
    store = Store.open(db, create=True)
    lib = store.library("default")
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        r = rng.random()
        if r < 0.7:
            prepared = []
            for j in range(rng.randint(1, 3)):
                images = [tiny_png(rng) for _ in range(rng.randint(1, 3))]
                prepared.append(
                    lib.prepare(
                        f"p{os.getpid()}-{seed}-{i}-{j}",
                        "prop",
                        images=images,
                        attributes={"base": [sha(b) for b in images]},
                    )
                )
            done = lib.commit(prepared)
            print("C " + " ".join(e.id for e in done), flush=True)
        elif r < 0.82:
            ids = store.entities.to_lance().to_table(columns=["id"]).column("id").to_pylist()
            if ids:
                victim = rng.choice(ids)
                # the intent first: a kill after the delete commits but before "R" is printed
                # leaves a removal the harness must not count as a lost entity
                print(f"r {victim}", flush=True)
                lib.remove(victim)
                print(f"R {victim}", flush=True)
        elif r < 0.92:
            if "color_histogram_rgb8" in store.vector_columns():  # made by the first registration
                store.index(lib.name, "color_histogram_rgb8")
        elif r < 0.97:
            compact(store, rng)
        else:
            store.repair()


def compact(store: Store, rng: random.Random) -> None:
    """Compaction as writers run it (``maybe_compact``, on a low fragment limit so that it
    happens), or a full ``optimize`` of one table: a kill during either must lose nothing."""
    name = rng.choice(["entities", "references"])
    if rng.random() < 0.5:
        for _ in range(16):  # maybe_compact looks at the fragments every 16th call
            store.maybe_compact(name, max_fragments=2)
    else:
        table = store.table(name)
        with store.write_lock():
            store.retry(lambda: table.optimize())
    print(f"O {name}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
