"""What a folder holds for ingest: one entity per subfolder, its images and description.

The same layout and rules as ``continuity import-folder``, except that a problem inside one entity's
folder (an unreadable description.txt) fails that entity only, with its reason, instead of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memstore.errors import InvalidInputError
from memstore.validation import MAX_DESCRIPTION_LENGTH

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class EntityFolder:
    """One subfolder: the entity's name, its image paths (sorted), its description, or why it cannot land."""

    name: str
    images: tuple[str, ...] = ()
    description: str = ""
    problem: str | None = None


def folder_plan(folder: Path) -> list[EntityFolder]:
    """Every entity subfolder of ``folder`` (hidden ones skipped), refusing a folder with none."""
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder; give a folder with one subfolder per entity")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise InvalidInputError(f"{folder} has no subfolders; put each entity's images in a subfolder named after it")
    return [_entity_folder(sub) for sub in subdirs]


def _entity_folder(sub: Path) -> EntityFolder:
    images = tuple(sorted(str(p.resolve()) for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
    try:
        description = _description(sub / "description.txt")
    except InvalidInputError as exc:
        return EntityFolder(sub.name, images, problem=str(exc))
    return EntityFolder(sub.name, images, description)


def _description(about: Path) -> str:
    """An entity folder's description.txt as text ('' when there is none)."""
    if not about.exists():
        return ""
    if not about.is_file():
        raise InvalidInputError(f"{about} is not a file; make description.txt a UTF-8 text file or remove it")
    if about.stat().st_size > 4 * MAX_DESCRIPTION_LENGTH:  # the most UTF-8 bytes the limit allows
        raise InvalidInputError(
            f"{about} is larger than a description may be ({MAX_DESCRIPTION_LENGTH} characters); shorten it"
        )
    try:
        return about.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{about} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
