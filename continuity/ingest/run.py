"""``ingest_folder``: a folder of entity subfolders into a library, embedded on a Ray cluster.

Ray Data reads and checks the images and a pool of embedder actors embeds them; everything that
writes happens here, in the driver: each entity is prepared from the bytes and embeddings the
workers sent back (``Library.prepare(embeddings=...)`` embeds nothing twice, and re-checks every
image by the same rules) and committed on its own, under the store's write lock. So an entity lands
whole or not at all, a bad image fails only its entity, and a job that dies keeps what landed: a
re-run skips entities whose name the library already holds.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from memstore.embedders import Embedding
from memstore.errors import ContinuityError, InvalidInputError
from memstore.library import Library
from memstore.store import Store
from memstore.validation import clean_era, clean_kind, name_key

from .cluster import import_ray, ray_cluster
from .plan import EntityFolder, folder_plan
from .stages import EmbedWorker, embeddings_of_row, read_and_check

Status = Literal["landed", "skipped", "failed"]
#: ``progress(done, total)``: images back from the workers so far, of all that were sent.
ProgressCallback = Callable[[int, int], None]


class IngestError(ContinuityError):
    """The Ray job itself failed (a worker died, an embedder could not load); landed entities stay."""


@dataclass(frozen=True)
class EntityOutcome:
    name: str
    status: Status
    images: int
    reason: str = ""


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest did, entity by entity."""

    folder: str
    library: str
    cluster: str
    workers: int
    outcomes: tuple[EntityOutcome, ...]
    images_processed: int
    seconds: float

    def of(self, status: Status) -> list[EntityOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def landed(self) -> list[EntityOutcome]:
        return self.of("landed")

    @property
    def skipped(self) -> list[EntityOutcome]:
        return self.of("skipped")

    @property
    def failed(self) -> list[EntityOutcome]:
        return self.of("failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "library": self.library,
            "cluster": self.cluster,
            "workers": self.workers,
            "landed": [o.name for o in self.landed],
            "skipped": [o.name for o in self.skipped],
            "failed": {o.name: o.reason for o in self.failed},
            "images_processed": self.images_processed,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Pending:
    """An entity whose images are out on the workers; rows collect here until all are back."""

    folder: EntityFolder
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.rows) == len(self.folder.images)


def ingest_folder(
    target: Library | Store,
    folder: str | os.PathLike[str],
    *,
    library: str = "default",
    kind: str = "character",
    era: str = "default",
    ray_address: str | None = None,
    workers: int = 2,
    batch_size: int = 8,
    progress: ProgressCallback | None = None,
) -> IngestSummary:
    """Register every subfolder of ``folder`` as an entity of ``kind``, embedding on Ray.

    ``ray_address`` None runs on the Ray cluster this process already joined, else on a local one
    started for the run (``workers`` + 1 CPUs, loopback, stopped after); an address (``ray://...``,
    ``host:port`` or ``auto``) runs the same job on that cluster, whose nodes must see ``folder`` at
    the same path and have continuity installed. ``library`` is used when ``target`` is a Store."""
    started = time.perf_counter()
    lib = target if isinstance(target, Library) else target.library(library)
    kind, era = clean_kind(kind), clean_era(era)
    if not isinstance(workers, int) or workers < 1 or batch_size < 1:
        raise InvalidInputError(f"workers ({workers}) and batch size ({batch_size}) must be at least 1")
    plan = folder_plan(Path(folder))
    outcomes: dict[str, EntityOutcome] = {}
    pending = _triage(lib, plan, kind, era, outcomes)
    cluster, embedded = "none (nothing to embed)", 0
    if pending:
        with ray_cluster(ray_address, workers) as cluster:
            embedded = _embed_and_commit(lib, pending, kind, era, workers, batch_size, progress, outcomes)
    return IngestSummary(
        folder=str(folder),
        library=lib.name,
        cluster=cluster,
        workers=workers,
        outcomes=tuple(outcomes[entry.name] for entry in plan if entry.name in outcomes),
        images_processed=embedded,
        seconds=time.perf_counter() - started,
    )


def _triage(
    lib: Library, plan: list[EntityFolder], kind: str, era: str, outcomes: dict[str, EntityOutcome]
) -> list[_Pending]:
    """Skip what landed, fail what cannot land, commit image-less entities; the rest go to the workers.

    Each entity is prepared once without images first, so a bad name or description fails before
    any of its images is embedded."""
    landed = {name_key(e.name) for e in lib.list()}
    pending = []
    for entry in plan:
        if entry.problem is not None:
            outcomes[entry.name] = EntityOutcome(entry.name, "failed", len(entry.images), entry.problem)
        elif name_key(entry.name) in landed:
            outcomes[entry.name] = EntityOutcome(entry.name, "skipped", len(entry.images), "already in the library")
        elif entry.images:
            try:
                lib.prepare(entry.name, kind, description=entry.description, era=era)
            except ContinuityError as exc:
                outcomes[entry.name] = _failed(entry, exc)
                continue
            pending.append(_Pending(entry))
        else:
            outcomes[entry.name] = _commit(lib, entry, kind, era, {}, {})
    return pending


def _embed_and_commit(
    lib: Library,
    pending: list[_Pending],
    kind: str,
    era: str,
    workers: int,
    batch_size: int,
    progress: ProgressCallback | None,
    outcomes: dict[str, EntityOutcome],
) -> int:
    """Stream the workers' rows back and commit each entity as soon as all of its images are in."""
    by_path = {path: item for item in pending for path in item.folder.images}
    total, done = len(by_path), 0
    if progress is not None:
        progress(0, total)
    rows = _worker_rows(lib, sorted(by_path), kind, workers, batch_size)
    try:
        for row in rows:
            item = by_path[str(row["path"])]
            if item.folder.name in outcomes:
                continue  # a row Ray re-sent (a retried block) of an entity already decided
            item.rows[str(row["path"])] = row
            done += 1
            if progress is not None:
                progress(done, total)
            if item.complete:
                outcomes[item.folder.name] = _finish(lib, item, kind, era)
                item.rows.clear()  # the bytes are in the store now; let them go
    except Exception as exc:
        if isinstance(exc, ContinuityError):
            raise
        landed = sum(o.status == "landed" for o in outcomes.values())
        raise IngestError(
            f"the Ray job stopped ({_ray_reason(exc)}) after {landed} entities landed;"
            " fix the cause and run ingest again: landed entities are skipped"
        ) from None
    finally:
        rows.close()  # an interrupted run stops its Ray job here, so the workers free their CPUs now
    return total


def _worker_rows(
    lib: Library, paths: list[str], kind: str, workers: int, batch_size: int
) -> Generator[dict[str, Any], None, None]:
    """The Ray Data job: read and check (tasks), embed (a fixed pool of ``workers`` actors)."""
    ray = import_ray()
    # a block per batch: rows come back (and entities commit) batch by batch, and idle workers take the next one
    blocks = max(1, math.ceil(len(paths) / batch_size))
    dataset = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
    dataset = dataset.map_batches(read_and_check, batch_size=batch_size, batch_format="numpy")
    dataset = dataset.map_batches(
        EmbedWorker,
        fn_constructor_kwargs={"embedder_configs": lib.config.get("embedders", []), "kind": kind},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    with _quiet_ray_data(ray):
        yield from dataset.iter_rows()


@contextmanager
def _quiet_ray_data(ray: ModuleType) -> Iterator[None]:
    """No Ray Data progress bars or execution notes while we run: the caller draws one bar for the whole run."""
    context = ray.data.DataContext.get_current()
    logger = logging.getLogger("ray.data")
    bars, level = context.enable_progress_bars, logger.level
    context.enable_progress_bars = False
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        context.enable_progress_bars = bars
        logger.setLevel(level)


def _finish(lib: Library, item: _Pending, kind: str, era: str) -> EntityOutcome:
    """An entity whose images are all back: failed with its first bad image's reason, else committed."""
    rows = [item.rows[path] for path in item.folder.images]
    bad = [str(r["reason"]) for r in rows if r["reason"]]
    if bad:
        return EntityOutcome(item.folder.name, "failed", len(rows), bad[0])
    embeddings: dict[str, dict[str, Embedding]] = {}
    for row in rows:
        for column, embedding in embeddings_of_row(row).items():
            embeddings.setdefault(column, {})[str(row["sha256"])] = embedding
    images = {str(r["path"]): bytes(r["data"]) for r in rows}
    return _commit(lib, item.folder, kind, era, images, embeddings)


def _commit(
    lib: Library,
    entry: EntityFolder,
    kind: str,
    era: str,
    images: Mapping[str, bytes],
    embeddings: Mapping[str, Mapping[str, Embedding]],
) -> EntityOutcome:
    try:
        prepared = lib.prepare(
            entry.name,
            kind,
            images=[images[p] for p in entry.images],
            description=entry.description,
            era=era,
            embeddings=embeddings,
        )
        lib.commit([prepared])
    except ContinuityError as exc:
        return _failed(entry, exc)
    return EntityOutcome(entry.name, "landed", len(entry.images))


def _failed(entry: EntityFolder, exc: ContinuityError) -> EntityOutcome:
    return EntityOutcome(entry.name, "failed", len(entry.images), str(exc).splitlines()[0] if str(exc) else repr(exc))


def _ray_reason(exc: BaseException) -> str:
    """The first line of what went wrong inside Ray, unwrapped from its task-error envelope."""
    cause = getattr(exc, "cause", None) or exc.__cause__ or exc
    text = str(cause).strip().splitlines()
    return text[-1][:200] if text else type(cause).__name__
