"""Adapters that turn a retrieval result into conditioning for a diffusion backbone.

Importing this package imports no torch or diffusers: adapters that need them import them when
built, and say which extra to install (``continuity[diffusers]``) when they are missing.
"""

from __future__ import annotations

from .base import ConditionedEntity, Conditioning, GeneratorAdapter, ShotOutput, ShotSpec
from .mock import MockGenerator
from .registry import (
    BUILTIN_GENERATORS,
    GeneratorEntry,
    add_generator,
    generator_entry,
    get_generator,
    import_target,
    list_generators,
    register_generator,
)

# Adapter classes resolve lazily (PEP 562), so `from generators import IPAdapterGenerator` works
# without `import generators` paying for torch. The class -> "module:Class" map is derived from the
# registry's built-in table, so a new adapter is reachable here the moment it has an entry there.
_ADAPTERS: dict[str, GeneratorEntry] = {str(e.class_name): e for e in BUILTIN_GENERATORS}
# Public classes that are not generators, so they have no registry entry: the IP-Adapter's image
# encoder, and the memory-to-video pipeline (a diffusers subclass, reachable but kept out of `import *`).
_OTHER_LAZY: dict[str, str] = {
    "HFImageEncoder": "generators.ip_adapter:HFImageEncoder",
    "WanMemoryToVideoPipeline": "generators.wan_m2v:WanMemoryToVideoPipeline",
}


def __getattr__(name: str) -> object:
    if name in _ADAPTERS:
        return _ADAPTERS[name].load()
    if name in _OTHER_LAZY:
        return import_target(_OTHER_LAZY[name], what=f"generators.{name}", extra="diffusers")
    raise AttributeError(f"module 'generators' has no attribute {name!r}")


__all__ = [
    "ConditionedEntity",
    "Conditioning",
    "GeneratorAdapter",
    "GeneratorEntry",
    "HFImageEncoder",
    "MockGenerator",
    "ShotOutput",
    "ShotSpec",
    "add_generator",
    "generator_entry",
    "get_generator",
    "list_generators",
    "register_generator",
]
__all__ += sorted(set(_ADAPTERS) - set(__all__))  # every built-in adapter class, from the table
