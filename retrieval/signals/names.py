"""Names and aliases of registered entities written in the prompt (see :mod:`retrieval.mentions`)."""

from __future__ import annotations

from collections.abc import Iterator

from ..fusion import WEIGHTS
from .base import SignalInput, Term


class NameMentions:
    """One term per entity named ("name") or called by an alias ("alias") in the prompt."""

    weights = {"name": WEIGHTS["name"], "alias": WEIGHTS["alias"]}

    def terms(self, given: SignalInput) -> Iterator[Term]:
        for m in given.mentions:
            if m.entity_id in given.allowed:
                yield Term(m.entity_id, "alias" if m.is_alias else "name", 1.0, m.reason())
