"""From a shot prompt and story context to the blueprints the shot needs. Imports no torch."""

from __future__ import annotations

from .context import StoryContext
from .fusion import DEFAULT_BUDGETS, DEFAULT_MIN_SCORE, WEIGHTS
from .memory import POLICIES, MemoryFrame, group_frames, select_memory
from .mentions import Mention, NameMatcher, find_mentions
from .query import Hit, RetrievalResult, ShotQuery
from .retriever import MAX_PROMPT_CHARS, Reader, Retriever, default_readers, default_signals
from .signals import Signal, SignalInput, Term

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_MIN_SCORE",
    "MAX_PROMPT_CHARS",
    "POLICIES",
    "WEIGHTS",
    "Hit",
    "MemoryFrame",
    "Mention",
    "NameMatcher",
    "Reader",
    "RetrievalResult",
    "Retriever",
    "ShotQuery",
    "Signal",
    "SignalInput",
    "StoryContext",
    "Term",
    "default_readers",
    "default_signals",
    "find_mentions",
    "group_frames",
    "select_memory",
]
