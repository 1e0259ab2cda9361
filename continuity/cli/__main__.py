"""``python -m continuity.cli``: the same command line as the ``continuity`` script."""

from __future__ import annotations

from . import main

main()
