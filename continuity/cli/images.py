"""``continuity export-images``: reference images (and face crops) as files, with a manifest, for
what reads files (a ComfyUI ``LoadImage``, a render node, another tool).

Each reference is written as stored (the bytes whose sha256 the store records) under
``<entity>-<era>-<reference id[:8]>.<format>``; with ``--faces`` a reference with a face box also
gets ``<same stem>.face.png``, cropped as the face adapters crop it. ``manifest.json`` lists every
file with its entity, reference id, era, view, source, sha256, face box and the file name it was
registered from (``original_name``; null for keyframes and for images registered from memory).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from memstore.errors import InvalidInputError

from .common import DbOption, JsonOption, LibraryOption, console, handle_errors, open_library, print_json

if TYPE_CHECKING:  # the store loads only when a command runs
    from memstore.library import Library
    from memstore.schema import Entity, Reference

MANIFEST = "manifest.json"
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}


def _slug(text: str) -> str:
    """A file-name-safe form of a name or era label (names may hold spaces, slashes, any script)."""
    return re.sub(r"[^\w.-]+", "_", text, flags=re.UNICODE).strip("._") or "entity"


def _publish(data: bytes, target: Path) -> None:
    """Write through a temporary file in the same folder, so a reader never sees half a file."""
    from memstore.files import publish

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        publish(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _face_png(ref: Reference) -> bytes:
    import io

    from generators.base import face_crop

    buffer = io.BytesIO()
    face_crop(ref).save(buffer, format="PNG")
    return buffer.getvalue()


def write_references(
    library: Library,
    chosen: Sequence[tuple[Entity, Sequence[Reference]]],
    out: Path,
    *,
    faces: bool = False,
) -> list[dict[str, Any]]:
    """Write each entity's references (and face crops) into ``out`` plus ``manifest.json``; returns
    the manifest's entries. References without their image bytes are read in one go."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} is a file; give a folder to write the images into")
    out.mkdir(parents=True, exist_ok=True)
    missing = [r.id for _, refs in chosen for r in refs if r.image is None]
    images = library.images(missing)
    entries: list[dict[str, Any]] = []
    for entity, refs in chosen:
        for ref in refs:
            data = ref.image if ref.image is not None else images.get(ref.id)
            if data is None:  # removed since it was listed
                continue
            ref = ref.model_copy(update={"image": data})
            entries.append(_write_one(entity, ref, out, faces=faces))
    manifest = {"library": library.name, "references": entries}
    _publish((json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), out / MANIFEST)
    return entries


def _write_one(entity: Entity, ref: Reference, out: Path, *, faces: bool) -> dict[str, Any]:
    assert ref.image is not None  # filled by write_references
    view = f"-{ref.view}" if ref.view else ""
    stem = f"{_slug(entity.name)}-{_slug(ref.era)}{view}-{ref.id[:8]}"
    name = f"{stem}.{EXTENSIONS.get(ref.image_format, ref.image_format)}"
    _publish(ref.image, out / name)
    face = None
    if faces and ref.face_box:
        face_name = f"{stem}.face.png"
        _publish(_face_png(ref), out / face_name)
        face = {"path": face_name, "box": [float(v) for v in ref.face_box]}
    return {
        "entity": entity.name,
        "entity_id": entity.id,
        "kind": entity.kind,
        "reference": ref.id,
        "era": ref.era,
        "source": ref.source,
        "view": ref.view,
        "story": ref.story,
        "shot": ref.shot,
        "frame": ref.frame,
        "format": ref.image_format,
        "width": ref.width,
        "height": ref.height,
        "sha256": hashlib.sha256(ref.image).hexdigest(),
        "original_name": ref.original_name,
        "path": name,
        "face": face,
    }


def by_names(library: Library, names: Sequence[str], *, source: str | None = None) -> list[tuple[Entity, list[Any]]]:
    """Every reference of each named entity (of ``source`` when given), with its image bytes."""
    chosen = []
    for name in dict.fromkeys(names):
        entity = library.get(name)
        chosen.append((entity, library.references(entity, source=source, with_images=True, with_vectors=False)))
    return chosen


def by_query(library: Library, prompt: str, *, k: int = 8, references: int = 2) -> list[tuple[Entity, list[Any]]]:
    """The references a shot prompt retrieves, per hit, best first."""
    from retrieval import Retriever, ShotQuery

    result = Retriever(library).retrieve(ShotQuery(prompt=prompt, k=k, references_per_entity=references))
    return [(hit.entity, list(hit.references)) for hit in result.hits]


def save_hits(library: Library, hits: Sequence[Any], out: Path) -> list[dict[str, Any]]:
    """``query --save``: what a retrieval chose, with face crops."""
    return write_references(library, [(hit.entity, list(hit.references)) for hit in hits], out, faces=True)


def report_written(entries: list[dict[str, Any]], out: Path, as_json: bool) -> None:
    if as_json:
        print_json({"out": str(out), "manifest": str(out / MANIFEST), "references": entries})
        return
    crops = sum(e["face"] is not None for e in entries)
    console.print(
        f"wrote {len(entries)} image(s){f' and {crops} face crop(s)' if crops else ''} to {out}"
        f" (manifest: {out / MANIFEST})",
        highlight=False,
    )


@handle_errors
def export_images(
    names: list[str] = typer.Argument(None, help="Entities whose references to write (all of them)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the images and manifest.json into."),
    query: str | None = typer.Option(None, "--query", help="Write what this shot prompt retrieves instead."),
    faces: bool = typer.Option(False, "--faces", help="Also write a face crop of each reference with a face box."),
    source: str | None = typer.Option(None, "--source", help="With NAME: only registered or harvested references."),
    k: int = typer.Option(8, "--k", help="With --query: at most this many entities."),
    references: int = typer.Option(2, "--references", help="With --query: references per entity."),
    library: str = LibraryOption,
    db: str | None = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Write reference images (and face crops) as files with a manifest.json."""
    if bool(names) == (query is not None):
        raise InvalidInputError("give entity NAMEs or --query PROMPT (one of them) to choose the references")
    if query is not None and source is not None:
        raise InvalidInputError("--source goes with entity NAMEs; a --query retrieves registered and harvested")
    lib = open_library(db, library)
    chosen = by_names(lib, names, source=source) if names else by_query(lib, str(query), k=k, references=references)
    report_written(write_references(lib, chosen, out, faces=faces), out, as_json)


__all__ = ["MANIFEST", "by_names", "by_query", "export_images", "report_written", "save_hits", "write_references"]
