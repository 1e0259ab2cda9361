"""The one table of generators: name -> "module:Class", the weights it loads and where to get them.

A new backend is one :class:`GeneratorEntry` in :data:`BUILTIN_GENERATORS`; everything else reads
that table: ``list_generators`` / ``get_generator`` here, the lazy ``generators.<ClassName>``
attributes in ``generators/__init__.py``, and ``continuity.generator_setup`` (what ``--model`` and
``--adapter`` mean, and what to download). Targets are "module:Class" strings so that listing and
looking up names never imports torch; the module is imported only when that generator is built, and
a module that fails to import is a :class:`MissingExtraError` naming the extra, not "unknown".
Plugins add or override entries with ``@register_generator(name, ...)`` or :func:`add_generator`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, TypeVar

from memstore.errors import InvalidInputError, MissingExtraError

if TYPE_CHECKING:
    from .base import GeneratorAdapter

T = TypeVar("T")
#: What ``--adapter`` is for a generator: adapter weights it cannot run without, or an optional LoRA.
AdapterRole = Literal["required", "lora"]
ADAPTER_ROLES: tuple[AdapterRole, ...] = ("required", "lora")
GeneratorFactory = Callable[..., "GeneratorAdapter"]


@dataclass(frozen=True)
class GeneratorEntry:
    """One generator: how to build it and which weights it loads."""

    name: str
    target: str | GeneratorFactory  # "module:Class", or the class / factory a plugin registered
    adapter: AdapterRole | None = None  # the role of --adapter; None: it takes no --adapter
    hint: str = ""  # the public weights to get, quoted in "missing weights" messages
    needs_model: bool = False  # loads diffusers weights (--model) through ``cls.from_pretrained``
    extra: str | None = None  # the extra whose packages its module needs; None: core dependencies only

    @property
    def module(self) -> str | None:
        """The module a string target lives in (None for an object a plugin registered)."""
        return self.target.partition(":")[0] if isinstance(self.target, str) else None

    @property
    def class_name(self) -> str | None:
        """The attribute a string target names in its module."""
        return self.target.partition(":")[2] if isinstance(self.target, str) else None

    def load(self) -> GeneratorFactory:
        """The class or factory behind this entry, importing its module on first use."""
        if not isinstance(self.target, str):
            return self.target
        return import_target(self.target, what=f"generator {self.name!r}", extra=self.extra)


BUILTIN_GENERATORS: tuple[GeneratorEntry, ...] = (
    GeneratorEntry("animatic", "generators.animatic:AnimaticGenerator"),
    GeneratorEntry("mock", "generators.mock:MockGenerator"),
    GeneratorEntry(
        "prompt",
        "generators.prompt:PromptGenerator",
        needs_model=True,
        extra="diffusers",
        hint="a diffusers text-to-image or text-to-video pipeline folder",
    ),
    GeneratorEntry(
        "ip-adapter",
        "generators.ip_adapter:IPAdapterGenerator",
        adapter="required",
        needs_model=True,
        extra="diffusers",
        hint="an SD 1.5 pipeline folder and h94/IP-Adapter (models/ with image_encoder/)",
    ),
    GeneratorEntry(
        "faceid",
        "generators.faceid:FaceIDGenerator",
        adapter="required",
        needs_model=True,
        extra="diffusers",
        hint="an SD 1.5 pipeline folder and h94/IP-Adapter-FaceID",
    ),
    GeneratorEntry(
        "wan-vace",
        "generators.wan_vace:WanVACEGenerator",
        needs_model=True,
        extra="diffusers",
        hint="Wan-AI/Wan2.1-VACE-1.3B-diffusers",
    ),
    GeneratorEntry(
        "wan-m2v",
        "generators.wan_m2v:WanM2VGenerator",
        adapter="lora",
        needs_model=True,
        extra="diffusers",
        hint="Wan-AI/Wan2.2-I2V-A14B-Diffusers; optionally StoryMem's LoRA as --adapter (its MI2V/ or MM2V/ folder, or HIGH,LOW files)",
    ),
)
_ENTRIES: dict[str, GeneratorEntry] = {entry.name: entry for entry in BUILTIN_GENERATORS}


def import_target(target: str, *, what: str, extra: str | None) -> GeneratorFactory:
    """Import ``"module:Class"``; a module that fails to import says so and names the extra to install."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except MissingExtraError:
        raise  # the module already named its extra
    except ImportError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        install = f"pip install 'continuity[{extra}]'" if extra else "pip install continuity"
        raise MissingExtraError(
            f"{what} cannot be loaded: importing {module_name} failed ({first}); install it: {install}"
        ) from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise InvalidInputError(f"{what} points at {target!r}, but {module_name} has no {attr!r}") from None


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _checked(entry: GeneratorEntry) -> GeneratorEntry:
    key = _key(entry.name)
    if not key:
        raise InvalidInputError(f"generator name must be non-empty, got {entry.name!r}")
    if isinstance(entry.target, str) and not all(entry.target.partition(":")[::2]):
        raise InvalidInputError(f"generator {key!r} target must be 'module:Class', got {entry.target!r}")
    if entry.adapter is not None and entry.adapter not in ADAPTER_ROLES:
        raise InvalidInputError(
            f"generator {key!r} adapter must be one of {ADAPTER_ROLES} or None, got {entry.adapter!r}"
        )
    if entry.adapter is not None and not entry.needs_model:
        raise InvalidInputError(
            f"generator {key!r} takes an --adapter, so it must load a --model too; got needs_model=False"
        )
    return replace(entry, name=key)


def add_generator(entry: GeneratorEntry) -> GeneratorEntry:
    """Add ``entry`` to the table; a later entry of the same name replaces an earlier one (plugins
    override built-ins). Returns the entry as stored (its name normalised)."""
    entry = _checked(entry)
    _ENTRIES[entry.name] = entry
    return entry


def register_generator(
    name: str,
    *,
    adapter: AdapterRole | None = None,
    hint: str = "",
    needs_model: bool = False,
    extra: str | None = None,
) -> Callable[[T], T]:
    """Class decorator: make ``get_generator(name)`` build this class (or call this factory)."""

    def entry(target: str | GeneratorFactory) -> GeneratorEntry:
        return GeneratorEntry(name, target, adapter=adapter, hint=hint, needs_model=needs_model, extra=extra)

    _checked(entry("placeholder:Target"))  # a bad name or role fails at the decorator line, not at use

    def deco(obj: T) -> T:
        add_generator(entry(obj))  # type: ignore[arg-type]  # obj is the decorated class or factory
        return obj

    return deco


def list_generators() -> list[str]:
    """Registered generator names, sorted; imports nothing heavy."""
    return sorted(_ENTRIES)


def generator_entry(name: str) -> GeneratorEntry:
    """The table entry for ``name`` (case- and ``_``/``-``-insensitive); imports nothing."""
    entry = _ENTRIES.get(_key(name))
    if entry is None:
        known = ", ".join(list_generators())
        raise InvalidInputError(f"unknown generator {name!r}; expected one of: {known}")
    return entry


def get_generator(name: str, **kwargs: object) -> GeneratorAdapter:
    """Build the generator registered as ``name`` with ``kwargs``."""
    return generator_entry(name).load()(**kwargs)
