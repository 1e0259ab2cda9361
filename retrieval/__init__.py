"""From a shot prompt and story context to the blueprints the shot needs. Imports no torch."""
from .query import Hit, RetrievalResult, ShotQuery

__all__ = ["Hit", "RetrievalResult", "ShotQuery"]
