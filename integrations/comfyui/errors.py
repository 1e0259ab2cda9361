"""One line in ComfyUI's error box, never a stack of internals.

ComfyUI shows ``str(exc)`` of whatever a node raises. The project's typed errors already say, in one
line, what was wrong and what to do; a node re-raises that line as a :class:`ContinuityNodeError`
with the chain cut (``from None``). Anything else is a bug: its traceback goes to the ComfyUI
console through logging and the node still raises one line naming it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar, cast

log = logging.getLogger("continuity.comfyui")
F = TypeVar("F", bound=Callable[..., object])


class ContinuityNodeError(Exception):
    """A plain exception whose message is the project's one-line typed message.

    ``kind`` keeps the name of the typed error (``EntityNotFoundError``, ``ImageError``, ...) for
    whoever wants to branch on it without importing the project."""

    def __init__(self, message: str, kind: str = "ContinuityError"):
        super().__init__(message)
        self.kind = kind


def one_line(exc: BaseException, limit: int = 400) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reported(fn: F) -> F:
    """Run a node function; re-raise any failure as one line (see the module docstring)."""

    @functools.wraps(fn)
    def run(*args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)
        except ContinuityNodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line; see below
            raise _node_error(exc) from None

    return cast(F, run)


PROJECT_PACKAGES = ("memstore", "retrieval", "generators", "continuity")
NOT_INSTALLED = (
    "continuity is not installed in ComfyUI's Python; install it with that Python "
    "(python -m pip install continuity, or -e /path/to/the/repo) and restart ComfyUI"
)


def _node_error(exc: Exception) -> ContinuityNodeError:
    try:
        from memstore.errors import ContinuityError
    except ImportError:
        return ContinuityNodeError(NOT_INSTALLED, "MissingExtraError")
    if isinstance(exc, ContinuityError):
        return ContinuityNodeError(one_line(exc), type(exc).__name__)
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] in PROJECT_PACKAGES:
        return ContinuityNodeError(NOT_INSTALLED, "MissingExtraError")
    log.error("continuity node failed unexpectedly", exc_info=exc)
    return ContinuityNodeError(
        f"continuity: unexpected {type(exc).__name__}: {one_line(exc)} (the traceback is in the ComfyUI console)",
        type(exc).__name__,
    )
