"""'Did you mean' for typos in scripts and names: one place, so every message suggests alike."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, candidates: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'X'?)`` for the closest candidate (case-insensitive), or ``""``."""
    by_key = {c.casefold(): c for c in candidates}
    close = difflib.get_close_matches(word.casefold(), list(by_key), n=1, cutoff=cutoff)
    return f" (did you mean {by_key[close[0]]!r}?)" if close else ""
