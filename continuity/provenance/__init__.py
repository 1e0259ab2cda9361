"""Provenance: what made each shot, recorded beside it, signed into it and hidden in its pixels.

- :mod:`.manifest`: the per-shot manifest (``provenance.json``) and its reading and writing;
- :mod:`.credentials`: C2PA content credentials signed into MP4s and keyframes, and read back;
- :mod:`.watermark`: an invisible DWT-DCT watermark id in every frame that resolves to the shot;
- :mod:`.publish`: what the story loop does to every file it writes (watermark, sign, describe);
- :mod:`.verify` and :mod:`.audit`: where a file came from, and every use of an entity.

Only :mod:`.manifest` is imported here: the C2PA SDK and the watermark load when first used.
"""

from .manifest import (
    SCHEMA_VERSION,
    BlueprintUse,
    ConsentOverride,
    MemoryUse,
    OutputFile,
    ReferenceUse,
    ShotManifest,
    file_sha256,
    output_file,
    read_provenance,
    software_versions,
    uses_from_retrieval,
    write_provenance,
)

__all__ = [
    "SCHEMA_VERSION",
    "BlueprintUse",
    "ConsentOverride",
    "MemoryUse",
    "OutputFile",
    "ReferenceUse",
    "ShotManifest",
    "file_sha256",
    "output_file",
    "read_provenance",
    "software_versions",
    "uses_from_retrieval",
    "write_provenance",
]
