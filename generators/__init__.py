"""Adapters that turn a retrieval result into conditioning for a diffusion backbone.

Importing this package imports no torch or diffusers: adapters that need them import them when
built, and say which extra to install (``continuity[diffusers]``) when they are missing.
"""
from __future__ import annotations

from typing import Any

from .base import ConditionedEntity, Conditioning, GeneratorAdapter, ShotOutput, ShotSpec
from .mock import MockGenerator
from .registry import get_generator, list_generators, register_generator

# Adapter classes resolve lazily (PEP 562), so `from generators import IPAdapterGenerator` works
# without `import generators` paying for torch. WanMemoryToVideoPipeline subclasses a diffusers
# class, so it is reachable (generators.WanMemoryToVideoPipeline) but kept out of `import *`.
_LAZY = {
    "AnimaticGenerator": "generators.animatic",
    "PromptGenerator": "generators.prompt",
    "IPAdapterGenerator": "generators.ip_adapter",
    "HFImageEncoder": "generators.ip_adapter",
    "FaceIDGenerator": "generators.faceid",
    "WanVACEGenerator": "generators.wan_vace",
    "WanM2VGenerator": "generators.wan_m2v",
    "WanMemoryToVideoPipeline": "generators.wan_m2v",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'generators' has no attribute {name!r}")


__all__ = [
    "AnimaticGenerator",
    "ConditionedEntity",
    "Conditioning",
    "FaceIDGenerator",
    "GeneratorAdapter",
    "HFImageEncoder",
    "IPAdapterGenerator",
    "MockGenerator",
    "PromptGenerator",
    "ShotOutput",
    "ShotSpec",
    "WanM2VGenerator",
    "WanVACEGenerator",
    "get_generator",
    "list_generators",
    "register_generator",
]
