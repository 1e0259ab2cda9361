"""From a generator name plus local weights to a ready adapter: what ``story run --model`` uses.

Each weighted adapter already knows how to load itself (``from_pretrained``); this module only
decides which loader a name uses, what ``--adapter`` means for it, and checks the cheap things
(names, options, paths) before anything heavy is imported, so a typo costs no pipeline load and a
missing file is one :class:`MissingWeightsError` line. The IP-Adapter gets the library's token
cache, so each reference is encoded once and reused by every later shot and run.
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memstore.errors import InvalidInputError, MissingWeightsError


@dataclass(frozen=True)
class WeightedGenerator:
    """How one built-in generator loads weights: its class, and the role ``--adapter`` plays."""

    target: str  # "module:Class"
    adapter: str | None  # "required" (IP-Adapter weights), "lora" (optional LoRA), None (not taken)
    example: str  # what to download, for messages

    def load_class(self) -> type:
        import importlib

        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


WEIGHTED: dict[str, WeightedGenerator] = {
    "prompt": WeightedGenerator("generators.prompt:PromptGenerator", None,
                                "a diffusers text-to-image or text-to-video pipeline folder"),
    "ip-adapter": WeightedGenerator("generators.ip_adapter:IPAdapterGenerator", "required",
                                    "an SD 1.5 pipeline folder and h94/IP-Adapter (models/ with image_encoder/)"),
    "faceid": WeightedGenerator("generators.faceid:FaceIDGenerator", "required",
                                "an SD 1.5 pipeline folder and h94/IP-Adapter-FaceID"),
    "wan-vace": WeightedGenerator("generators.wan_vace:WanVACEGenerator", None,
                                  "Wan-AI/Wan2.1-VACE-1.3B-diffusers"),
    "wan-m2v": WeightedGenerator("generators.wan_m2v:WanM2VGenerator", "lora",
                                 "Wan-AI/Wan2.2-I2V-A14B-Diffusers (and optionally StoryMem's LoRA as --adapter)"),
}

# Set by build_generator itself; a user option of the same name would be ambiguous.
_RESERVED = {"pipeline", "model_id", "model_id_or_folder", "adapter", "token_cache", "encoder"}
# Taken by build_generator for every weighted generator: where the loaded models run, and in what precision.
PLACEMENT = ("device", "dtype")
DTYPES = ("float32", "float16", "bfloat16", "float64")


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["steps=2", "scales={\\"Aria\\": 0.8}", "layer=penultimate"]`` -> a dict; values are JSON
    when they parse as JSON, else the string as written."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InvalidInputError(f"--option must be KEY=VALUE with KEY a Python identifier, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _looks_local(model: str) -> bool:
    """A path rather than a hub id ("org/name", which may sit in the local Hugging Face cache)."""
    return model.startswith((".", "/", "~", "\\")) or model.count("/") != 1 or Path(model).expanduser().exists()


def _accepted(cls: type) -> set[str] | None:
    """Keyword names ``cls.from_pretrained`` and the ``__init__`` chain it forwards to accept
    (None when one of them takes anything, e.g. a plugin's ``**kwargs`` all the way down)."""
    names: set[str] = set()
    chain: list[Any] = [cls.from_pretrained] if hasattr(cls, "from_pretrained") else []
    chain += [klass.__dict__["__init__"] for klass in cls.__mro__ if "__init__" in klass.__dict__]
    for fn in chain:
        params = inspect.signature(fn).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {"self", "cls"}
    return None if chain else set()


def check_generator(name: str, *, model: str | None = None, adapter: str | None = None,
                    options: Mapping[str, Any] | None = None) -> None:
    """Everything that can be checked without loading a model; raises the error the CLI prints."""
    from generators import list_generators

    key = _key(name)
    options = dict(options or {})
    if key not in list_generators():
        raise InvalidInputError(f"unknown generator {name!r}; expected one of: {', '.join(list_generators())}")
    spec = WEIGHTED.get(key)
    if spec is None:
        if model is not None or adapter is not None:
            raise InvalidInputError(
                f"generator {key!r} takes no --model/--adapter (it needs no weights); "
                f"generators that load weights: {', '.join(sorted(WEIGHTED))}"
            )
        return
    if model is None:
        raise MissingWeightsError(f"generator {key!r} needs diffusers weights: got no --model; pass --model FOLDER ({spec.example})")
    if _looks_local(model) and not Path(model).expanduser().exists():
        raise MissingWeightsError(f"weights for {key!r} not found: --model {model} does not exist; pass a local folder ({spec.example})")
    if spec.adapter is None and adapter is not None:
        raise InvalidInputError(f"generator {key!r} takes no --adapter, got {adapter!r}; leave it out")
    if spec.adapter == "required" and adapter is None:
        raise MissingWeightsError(f"generator {key!r} needs adapter weights: got no --adapter; pass --adapter FOLDER_OR_FILE ({spec.example})")
    if adapter is not None and not Path(adapter).expanduser().exists():
        raise MissingWeightsError(f"adapter weights for {key!r} not found: --adapter {adapter} does not exist; pass a local folder or file")
    dtype = options.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise InvalidInputError(f"--option dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    reserved = sorted(set(options) & _RESERVED)
    if reserved:
        raise InvalidInputError(f"--option {reserved[0]} is set by --model/--adapter; got it as an option, leave it out")
    accepted = _accepted(spec.load_class())
    unknown = sorted(set(options) - accepted - set(PLACEMENT)) if accepted is not None else []
    if unknown:
        raise InvalidInputError(
            f"generator {key!r} has no option {unknown[0]!r}; expected one of: "
            f"{', '.join(sorted((accepted - _RESERVED) | set(PLACEMENT)))}"
        )


def build_generator(name: str, library: Any, *, model: str | None = None, adapter: str | None = None,
                    options: Mapping[str, Any] | None = None) -> Any:
    """A ready adapter for ``name``: weightless generators from the registry, weighted ones through
    their own ``from_pretrained`` (local files only). ``options`` go to that loader / constructor."""
    from generators import get_generator

    key = _key(name)
    options = dict(options or {})
    check_generator(key, model=model, adapter=adapter, options=options)
    spec = WEIGHTED.get(key)
    if spec is None:
        try:
            return get_generator(key, **options)
        except TypeError as err:  # an option the constructor does not take
            raise InvalidInputError(f"generator {key!r} rejected its options {sorted(options)}: {err}") from None
    cls = spec.load_class()
    device, dtype = (options.pop(k, None) for k in PLACEMENT)
    model = str(Path(model).expanduser()) if _looks_local(str(model)) else str(model)
    if spec.adapter == "required":
        kwargs: dict[str, Any] = dict(options)
        if key == "ip-adapter":
            from memstore.tokens import TokenCache

            kwargs["token_cache"] = TokenCache(library)  # each reference encoded once, across shots and runs
        generator = cls.from_pretrained(model, str(Path(adapter).expanduser()), **kwargs)
    elif spec.adapter == "lora" and adapter is not None:
        scale = float(options.pop("lora_scale", 1.0))
        generator = cls.from_pretrained(model, **options)
        path = Path(adapter).expanduser()
        if path.is_file():
            generator.load_lora(str(path.parent), weight_name=path.name, scale=scale)
        else:
            generator.load_lora(str(path), scale=scale)
    else:
        generator = cls.from_pretrained(model, **options)
    if device is not None or dtype is not None:
        place(generator, device=device, dtype=dtype)
    pipeline = getattr(generator, "pipeline", None)
    if hasattr(pipeline, "set_progress_bar_config"):
        pipeline.set_progress_bar_config(disable=True)  # the story's own bar counts shots; per-step bars would interleave
    return generator


def place(generator: Any, *, device: str | None = None, dtype: str | None = None) -> None:
    """Move a generator's pipeline (and its image encoder, which runs outside the pipeline) to
    ``device`` in ``dtype``; what a user with a GPU asks for with ``--option device=cuda``."""
    import torch

    if dtype is not None and dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    torch_dtype = getattr(torch, dtype) if dtype else None
    try:
        target = torch.device(device) if device is not None else None
        generator.pipeline.to(device=target, dtype=torch_dtype)
        model = getattr(getattr(generator, "encoder", None), "model", None)
        if isinstance(model, torch.nn.Module):
            model.to(device=target, dtype=torch_dtype)
    except (RuntimeError, AssertionError, ValueError) as err:  # no such device, no CUDA build, ...
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InvalidInputError(f"cannot place {generator.name} on device {device!r} as {dtype or 'its dtype'}: {first}") from None

