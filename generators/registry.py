"""Generators by name: ``@register_generator("name")``, ``list_generators()``, ``get_generator(name)``.

Built-in adapters are listed as "module:Class" strings so that listing and looking up names never
imports torch; the module is imported only when that generator is asked for.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from memstore.errors import InvalidInputError

T = TypeVar("T")

_BUILTIN: dict[str, str] = {
    "animatic": "generators.animatic:AnimaticGenerator",
    "prompt": "generators.prompt:PromptGenerator",
    "ip-adapter": "generators.ip_adapter:IPAdapterGenerator",
    "faceid": "generators.faceid:FaceIDGenerator",
    "wan-vace": "generators.wan_vace:WanVACEGenerator",
    "wan-m2v": "generators.wan_m2v:WanM2VGenerator",
    "mock": "generators.mock:MockGenerator",
}
_REGISTRY: dict[str, str | type | Callable[..., Any]] = dict(_BUILTIN)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_generator(name: str) -> Callable[[T], T]:
    """Class decorator: make ``get_generator(name)`` build this class (or call this factory)."""
    key = _key(name)
    if not key:
        raise InvalidInputError(f"generator name must be non-empty, got {name!r}")

    def deco(obj: T) -> T:
        _REGISTRY[key] = obj  # a later registration replaces an earlier one (plugins override built-ins)
        return obj

    return deco


def list_generators() -> list[str]:
    """Registered generator names, sorted; imports nothing heavy."""
    return sorted(_REGISTRY)


def get_generator(name: str, **kwargs: Any) -> Any:
    """Build the generator registered as ``name`` with ``kwargs``."""
    key = _key(name)
    target = _REGISTRY.get(key)
    if target is None:
        raise InvalidInputError(f"unknown generator {name!r}; expected one of: {', '.join(list_generators())}")
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
        _REGISTRY[key] = target
    return target(**kwargs)
