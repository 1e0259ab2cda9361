"""One documented exception hierarchy for the whole project.

Every error a user can cause is a subclass of :class:`ContinuityError`. Messages are one line and
say what was got, what was expected and what to do, so the command line can print them as they are.
"""

from __future__ import annotations


class ContinuityError(Exception):
    """Base of every error this project raises on purpose."""


class InvalidInputError(ContinuityError, ValueError):
    """An argument is malformed: a bad name, kind, filter value, era label or option."""


class InvalidNameError(InvalidInputError):
    """A name, alias or library name that cannot be stored safely."""


class FilterError(InvalidInputError):
    """A filter value that is not allowed (unknown kind, bad tag, injection attempt)."""


class NotFoundError(ContinuityError, KeyError):
    """Something asked for by name or id does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EntityNotFoundError(NotFoundError):
    """No entity of that name, alias or id in this library."""


class DuplicateEntityError(ContinuityError):
    """An entity of that name already exists in this library."""


class ImageError(InvalidInputError):
    """An image that cannot be stored."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """The image path does not exist."""


class NotAnImageError(ImageError):
    """The bytes are not an image format we can decode."""


class TruncatedImageError(ImageError):
    """The image is cut short or otherwise corrupt."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the limit (a decompression-bomb guard) or too many bytes."""


class EmptyImageError(ImageError):
    """A zero-byte file or an image of zero width or height."""


class VectorError(InvalidInputError):
    """A vector with NaN/inf values or the wrong dimension."""


class EmbedderError(ContinuityError):
    """An embedder is unknown, misconfigured, or disagrees with the column it writes to."""


class EmbedderMismatchError(EmbedderError):
    """A vector column was made by another embedder than the one configured now."""


class MissingWeightsError(EmbedderError, FileNotFoundError):
    """Model weights could not be found locally (nothing is downloaded at run time)."""


class MissingExtraError(ContinuityError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class StoreError(ContinuityError):
    """The store itself is missing, not a store, or in an unexpected state."""


class NotAStoreError(StoreError):
    """The path exists but is not a continuity store."""


class DiskFullError(StoreError):
    """A write ran out of disk space (ENOSPC); what was committed before it is kept."""


class ReadOnlyStoreError(StoreError):
    """The store cannot be written (a read-only file system or no write permission)."""


class UnreachableStoreError(StoreError):
    """An object-store URI whose endpoint cannot be reached or refuses the request."""


class BucketNotFoundError(UnreachableStoreError):
    """An object-store URI whose bucket (or container) does not exist."""


class StoreCredentialsError(UnreachableStoreError):
    """The object store refused the credentials (unknown key, bad signature, access denied)."""


class StoreBusyError(StoreError):
    """Another writer held the store's write lease for longer than a writer waits."""


class UnsafeCommitsError(StoreError):
    """The object store cannot make Lance commits atomic (no conditional PUT), so concurrent
    writers could overwrite each other's commits."""


class UnsafeCommitsWarning(UserWarning):
    """A store was opened on a backend whose commits were not verified to be atomic."""


class ArchiveError(ContinuityError):
    """An export archive is corrupt, of an unknown format, or conflicts with the target store."""


class ConsentError(ContinuityError):
    """An entity lacks consent or its rights expired, and no override was given."""


class ScriptError(InvalidInputError):
    """A story script does not validate; the message names the scene and shot."""


_DISK_FULL = ("no space left on device", "os error 28", "disk quota exceeded")
_READ_ONLY = ("read-only file system", "os error 30", "permission denied", "os error 13")


def store_error_of(exc: BaseException, where: str) -> StoreError | None:
    """The typed, one-line error for an OS-level failure while writing ``where`` (a disk that is
    full, a store that is read-only), or None when ``exc`` is neither. Lance reports these as
    OSError or RuntimeError with the OS error only in the text, so both are looked at."""
    import errno

    code = exc.errno if isinstance(exc, OSError) else None
    text = str(exc).lower()
    if code in (errno.ENOSPC, errno.EDQUOT) or any(s in text for s in _DISK_FULL):
        return DiskFullError(f"disk full while writing {where}; free some space and run the command again")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or any(s in text for s in _READ_ONLY):
        return ReadOnlyStoreError(f"{where} is read-only ({first_line(exc)}); reading works, writing needs permission")
    return None


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut to ``limit`` characters."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_extra(module: str, extra: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f"'{module}' is not installed; install the extra: pip install 'continuity[{extra}]'")
