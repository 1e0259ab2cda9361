"""The durable store of visual blueprints: LanceDB tables, FAISS hot indexes, embedders."""

from .errors import ContinuityError
from .library import Library
from .schema import Entity, Reference, Rights, ShotRecord, TokenRow
from .shots import ShotLog
from .store import Store, default_db


def open_library(db: str | None = None, library: str = "default", *, create: bool = True) -> Library:
    """Open (or create) the store at ``db`` and return one of its libraries."""
    return Library(Store.open(db, create=create), library)


__all__ = [
    "ContinuityError",
    "Entity",
    "Library",
    "Reference",
    "Rights",
    "ShotLog",
    "ShotRecord",
    "Store",
    "TokenRow",
    "default_db",
    "open_library",
]
