"""Batch ingest on Ray: a folder of entity subfolders, embedded by a pool of workers, committed per entity."""

from .plan import EntityFolder, folder_plan
from .run import EntityOutcome, IngestError, IngestSummary, ingest_folder

__all__ = ["EntityFolder", "EntityOutcome", "IngestError", "IngestSummary", "folder_plan", "ingest_folder"]
