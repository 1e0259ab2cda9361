"""The store as a whole: liveness (public) and the list of libraries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from memstore.store import FORMAT_VERSION

from ..auth import AccessDep
from ..state import StateDep

public_router = APIRouter(tags=["store"])
router = APIRouter(tags=["store"])


@public_router.get("/health")
def health(state: StateDep) -> dict[str, Any]:
    """Liveness and a cheap store read (no authentication)."""
    fmt = state.store.get_config("format", {}).get("version")
    return {"status": "ok", "format_version": fmt or FORMAT_VERSION}


@router.get("/libraries")
def libraries(state: StateDep, access: AccessDep) -> dict[str, Any]:
    """The libraries with their counts: only those the request's key reaches."""
    names = [name for name in state.store.libraries() if access.reaches(name)]
    return {"libraries": [{"name": name, **state.library(name).count()} for name in names]}
