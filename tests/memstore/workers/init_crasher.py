"""Crash worker for store creation: ``python -m tests.memstore.workers.init_crasher FOLDER``
creates stores FOLDER/0, FOLDER/1, ... in a loop until killed, so a kill lands inside ``Store.init``."""

from __future__ import annotations

import sys
from pathlib import Path

from memstore.store import Store


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    print("ready", flush=True)
    i = 0
    while True:
        Store.init(folder / str(i))
        i += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
