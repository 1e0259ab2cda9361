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
from pathlib import Path
from typing import Any

from generators.registry import GeneratorEntry, generator_entry, list_generators
from memstore.errors import InvalidInputError, MissingWeightsError

# Set by build_generator itself; a user option of the same name would be ambiguous.
_RESERVED = {"pipeline", "model_id", "model_id_or_folder", "adapter", "token_cache", "encoder"}
# Taken by build_generator for every weighted generator: where the loaded models run, and in what precision.
PLACEMENT = ("device", "dtype")
DTYPES = ("float32", "float16", "bfloat16", "float64")


def _weighted(name: str) -> GeneratorEntry | None:
    """The registry entry of ``name`` when it loads weights (``--model``), else None."""
    entry = generator_entry(name)
    return entry if entry.needs_model else None


def weighted_generators() -> list[str]:
    """Names of the generators that load weights, sorted (from the registry's table)."""
    return [name for name in list_generators() if generator_entry(name).needs_model]


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
    hub_like = model.count("/") == 1 and not model.startswith((".", "/", "~", "\\"))
    return not hub_like or Path(model).expanduser().exists()


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


def check_generator(
    name: str, *, model: str | None = None, adapter: str | None = None, options: Mapping[str, Any] | None = None
) -> None:
    """Everything that can be checked without loading a model; raises the error the CLI prints."""
    key = generator_entry(name).name  # an unknown name raises here, listing the known ones
    options = dict(options or {})
    spec = _weighted(key)
    if spec is None:
        if model is not None or adapter is not None:
            raise InvalidInputError(
                f"generator {key!r} takes no --model/--adapter (it needs no weights); "
                f"generators that load weights: {', '.join(weighted_generators())}"
            )
        return
    _check_weights(spec, model, adapter)
    _check_options(spec, options)


def _check_weights(spec: GeneratorEntry, model: str | None, adapter: str | None) -> None:
    """``--model`` and ``--adapter`` as the entry's weights role wants them, pointing at files that exist."""
    key, hint = spec.name, spec.hint
    if model is None:
        raise MissingWeightsError(
            f"generator {key!r} needs diffusers weights: got no --model; pass --model FOLDER ({hint})"
        )
    if _looks_local(model) and not Path(model).expanduser().exists():
        raise MissingWeightsError(
            f"weights for {key!r} not found: --model {model} does not exist; pass a local folder ({hint})"
        )
    if spec.adapter is None and adapter is not None:
        raise InvalidInputError(f"generator {key!r} takes no --adapter, got {adapter!r}; leave it out")
    if spec.adapter == "required" and adapter is None:
        raise MissingWeightsError(
            f"generator {key!r} needs adapter weights: got no --adapter; pass --adapter FOLDER_OR_FILE ({hint})"
        )
    # A LoRA may name one file per expert ("HIGH,LOW" for Wan2.2's two experts); each must exist.
    parts = adapter.split(",") if adapter is not None and spec.adapter == "lora" else [adapter]
    for part in parts:
        if part is not None and not Path(part.strip()).expanduser().exists():
            raise MissingWeightsError(
                f"adapter weights for {key!r} not found: --adapter {part.strip() or adapter!r} does not exist; "
                "pass a local folder or file"
            )


def _check_options(spec: GeneratorEntry, options: Mapping[str, Any]) -> None:
    """Options the loader takes (imports the adapter's module, which is light, not its pipeline)."""
    dtype = options.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise InvalidInputError(f"--option dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    reserved = sorted(set(options) & _RESERVED)
    if reserved:
        raise InvalidInputError(
            f"--option {reserved[0]} is set by --model/--adapter; got it as an option, leave it out"
        )
    accepted = _accepted(spec.load())
    unknown = sorted(set(options) - accepted - set(PLACEMENT)) if accepted is not None else []
    if unknown:
        raise InvalidInputError(
            f"generator {spec.name!r} has no option {unknown[0]!r}; expected one of: "
            f"{', '.join(sorted((accepted - _RESERVED) | set(PLACEMENT)))}"
        )


def build_generator(
    name: str,
    library: Any,
    *,
    model: str | None = None,
    adapter: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """A ready adapter for ``name``: weightless generators from the registry, weighted ones through
    their own ``from_pretrained`` (local files only). ``options`` go to that loader / constructor."""
    from generators import get_generator

    options = dict(options or {})
    check_generator(name, model=model, adapter=adapter, options=options)
    key = generator_entry(name).name
    spec = _weighted(key)
    if spec is None:
        try:
            return get_generator(key, **options)
        except TypeError as err:  # an option the constructor does not take
            raise InvalidInputError(f"generator {key!r} rejected its options {sorted(options)}: {err}") from None
    cls = spec.load()
    device, dtype = (options.pop(k, None) for k in PLACEMENT)
    model = str(Path(model).expanduser()) if _looks_local(str(model)) else str(model)
    if spec.adapter == "required":
        kwargs: dict[str, Any] = dict(options)
        if key == "ip-adapter":
            from memstore.tokens import TokenCache

            kwargs["token_cache"] = TokenCache(library)  # each reference encoded once, across shots and runs
        if key == "faceid":
            kwargs["library"] = library  # its vector-column metadata says which column holds ArcFace vectors
        generator = cls.from_pretrained(model, str(Path(adapter).expanduser()), **kwargs)
    elif spec.adapter == "lora" and adapter is not None:
        # The generator's own loader reads every form it accepts (a file, "HIGH,LOW", a folder with one file
        # per expert); lora_scale multiplies the scale each file's config (e.g. rsLoRA) gives, and
        # lora_alpha / lora_rslora override that config.
        scale = float(options.pop("lora_scale", 1.0))
        how = {k: options.pop(f"lora_{k}") for k in ("alpha", "rslora") if f"lora_{k}" in options}
        generator = cls.from_pretrained(model, **options)
        generator.load_lora(str(adapter).strip(), scale=scale, **how)
    else:
        generator = cls.from_pretrained(model, **options)
    if device is not None or dtype is not None:
        place(generator, device=device, dtype=dtype)
    if key == "wan-m2v":
        from memstore.tokens import TokenCache

        # memory keyframes' VAE latents, encoded once across shots and runs (float32: exactly what
        # encoding again would give)
        generator.token_cache = TokenCache(library, dtype="float32")
    pipeline = getattr(generator, "pipeline", None)
    if hasattr(pipeline, "set_progress_bar_config"):
        # the story's own bar counts shots; per-step bars would interleave with it
        pipeline.set_progress_bar_config(disable=True)
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
        raise InvalidInputError(
            f"cannot place {generator.name} on device {device!r} as {dtype or 'its dtype'}: {first}"
        ) from None
