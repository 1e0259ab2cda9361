"""From a shot prompt and story context to the blueprints the shot needs. Imports no torch."""
from .context import StoryContext
from .mentions import Mention, NameMatcher, find_mentions
from .query import Hit, RetrievalResult, ShotQuery
from .retriever import Retriever

__all__ = ["Hit", "Mention", "NameMatcher", "RetrievalResult", "Retriever", "ShotQuery", "StoryContext", "find_mentions"]
