"""Wan LoRAs as their trainers save them, loaded into diffusers' Wan transformers, one file per expert.

StoryMem (GitHub Kevin-thu/StoryMem) fine-tunes both experts of Wan2.2 I2V-A14B with PEFT rsLoRA
(``r=128, lora_alpha=128, use_rslora=True``: the update is ``B @ A * alpha / sqrt(r)``, 11.3 times
what ``alpha / r`` gives) and ships one file per expert, ``backbone_high_noise.pth`` and
``backbone_low_noise.pth``, keyed by the original Wan module names (``blocks.0.self_attn.q.lora_A.weight``,
``blocks.0.ffn.0.lora_B.weight``; PEFT's ``base_model.model.`` or ComfyUI's ``diffusion_model.`` in
front), which its own code reads with ``set_peft_model_state_dict`` on Wan's ``WanModel``. The
files carry no config: r, alpha and rsLoRA live in StoryMem's ``wan_m2v_A14B.py``.

diffusers names those modules differently (``blocks.0.attn1.to_q``, ``blocks.0.ffn.net.0.proj``),
and its pipeline loader puts one file into one transformer at ``alpha / r``. This module does
what the real layout needs: it finds the expert files (:func:`lora_files`), renames PEFT keys to
diffusers' module names and checks them against the transformer (:func:`peft_modules`), and injects
each file into its own expert with its real ``LoraConfig`` (:func:`load_wan_lora`), so PEFT applies
``alpha / sqrt(r)`` and later ``set_adapters`` weights multiply that scale. torch is imported lazily.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memstore.errors import InvalidInputError, MissingWeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Wan2.2's experts as diffusers names them: ``transformer`` denoises the high-noise steps
#: (t >= boundary), ``transformer_2`` the low-noise ones.
EXPERTS = ("transformer", "transformer_2")
#: StoryMem's file stems, in the order of :data:`EXPERTS`.
STORYMEM_STEMS = ("backbone_high_noise", "backbone_low_noise")
SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
ACCEPTED = (
    "a folder with backbone_high_noise and backbone_low_noise (.safetensors or .pth, StoryMem's release), "
    "HIGH,LOW (two files: high-noise expert, low-noise expert), or one file for a one-expert pipeline"
)

# Original Wan module names -> diffusers' WanTransformer3DModel names (the renames diffusers' own
# checkpoint converter makes; a name already in diffusers' form is kept as it is).
_O = r"(?P<o>q|k|v|o)"
_PROJ = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0"}
_RENAMES: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(rf"blocks\.(?P<i>\d+)\.self_attn\.{_O}"), lambda m: f"blocks.{m['i']}.attn1.{_PROJ[m['o']]}"),
    (re.compile(rf"blocks\.(?P<i>\d+)\.cross_attn\.{_O}"), lambda m: f"blocks.{m['i']}.attn2.{_PROJ[m['o']]}"),
    (re.compile(r"blocks\.(?P<i>\d+)\.cross_attn\.k_img"), lambda m: f"blocks.{m['i']}.attn2.add_k_proj"),
    (re.compile(r"blocks\.(?P<i>\d+)\.cross_attn\.v_img"), lambda m: f"blocks.{m['i']}.attn2.add_v_proj"),
    (re.compile(r"blocks\.(?P<i>\d+)\.ffn\.0"), lambda m: f"blocks.{m['i']}.ffn.net.0.proj"),
    (re.compile(r"blocks\.(?P<i>\d+)\.ffn\.2"), lambda m: f"blocks.{m['i']}.ffn.net.2"),
    (re.compile(r"head\.head"), lambda m: "proj_out"),
    (re.compile(r"time_projection\.1"), lambda m: "condition_embedder.time_proj"),
    (re.compile(r"text_embedding\.0"), lambda m: "condition_embedder.text_embedder.linear_1"),
    (re.compile(r"text_embedding\.2"), lambda m: "condition_embedder.text_embedder.linear_2"),
    (re.compile(r"time_embedding\.0"), lambda m: "condition_embedder.time_embedder.linear_1"),
    (re.compile(r"time_embedding\.2"), lambda m: "condition_embedder.time_embedder.linear_2"),
    (re.compile(r"img_emb\.proj\.1"), lambda m: "condition_embedder.image_embedder.ff.net.0.proj"),
    (re.compile(r"img_emb\.proj\.3"), lambda m: "condition_embedder.image_embedder.ff.net.2"),
)
# Wrappers trainers leave in front of the module path.
_PREFIXES = ("base_model.model.", "diffusion_model.", "model.", "transformer.")
# module path, then the matrix: PEFT lora_A/lora_B (with or without an adapter name), kohya lora_down/lora_up
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_down|lora_up)(?:\.[^.]+)?\.weight$")
_ALPHA_KEY = re.compile(r"^(?P<module>.+)\.alpha$")


@dataclass(frozen=True)
class LoraFile:
    """One LoRA file and the expert (``transformer`` or ``transformer_2``) it belongs to."""

    path: Path
    expert: str


@dataclass(frozen=True)
class Scaling:
    """How a file's update is scaled: ``alpha / sqrt(r)`` with rsLoRA, else ``alpha / r``.
    ``alpha`` None means alpha = r (PEFT's and diffusers' convention when a file names none)."""

    alpha: float | None = None
    rslora: bool = False


#: StoryMem's training config (wan_m2v_A14B.py): lora_alpha = r, use_rslora = True.
STORYMEM_SCALING = Scaling(alpha=None, rslora=True)


@dataclass
class ModuleLora:
    """The two matrices of one adapted Linear (diffusers name), and its alpha when the file has one."""

    down: torch.Tensor | None = None  # A: (r, in_features)
    up: torch.Tensor | None = None  # B: (out_features, r)
    alpha: float | None = None

    @property
    def rank(self) -> int:
        assert self.down is not None, "rank of a module without lora_A"
        return int(self.down.shape[0])


@dataclass(frozen=True)
class LoadedLora:
    """What one expert got: from which file, how many Linears, at what rank and scale."""

    expert: str
    source: str
    modules: int
    rank: int
    alpha: float
    rslora: bool

    @property
    def scale(self) -> float:
        """The factor PEFT multiplies ``B @ A`` by (before any ``set_adapters`` weight)."""
        return self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)

    def describe(self) -> str:
        kind = "rsLoRA" if self.rslora else "LoRA"
        return f"{self.expert}<-{Path(self.source).name} ({kind} r={self.rank} alpha={self.alpha:g})"


# --- finding the files ----------------------------------------------------------------------


def lora_files(
    spec: str | os.PathLike[str], experts: Sequence[str], *, weight_name: str | None = None
) -> list[LoraFile]:
    """The files ``spec`` names, each paired with the expert it loads into.

    Accepted: a folder holding StoryMem's pair (``backbone_high_noise.*`` -> ``transformer``,
    ``backbone_low_noise.*`` -> ``transformer_2``); ``"HIGH,LOW"``, two files in expert order; one file
    (or a folder with ``weight_name`` or diffusers' ``pytorch_lora_weights.safetensors``) for a
    pipeline with one expert. ``experts`` are the pipeline's transformers, in :data:`EXPERTS` order.
    """
    parts = [p.strip() for p in str(spec).split(",")] if "," in str(spec) else [str(spec)]
    if any(not p for p in parts):
        raise InvalidInputError(f"LoRA {str(spec)!r} has an empty part; give {ACCEPTED}")
    paths = [Path(p).expanduser() for p in parts]
    for path in paths:
        if not path.exists():
            raise MissingWeightsError(f"LoRA weights not found: {path} does not exist; give {ACCEPTED}")
    if len(paths) == 1 and paths[0].is_dir():
        paths = _files_in(paths[0], weight_name)
    elif len(paths) == 1 and weight_name:
        raise InvalidInputError(f"weight_name={weight_name!r} picks a file in a folder; {paths[0]} is a file already")
    for path in paths:
        if path.is_dir():
            raise InvalidInputError(f"LoRA part {path} is a folder; with two parts give two files: {ACCEPTED}")
    if len(paths) > len(experts):
        raise InvalidInputError(
            f"LoRA {str(spec)!r} names {len(paths)} files but the pipeline has {_experts_text(experts)}; "
            f"give one file per expert"
        )
    # One file on a two-expert pipeline is checked once read: a diffusers file may hold both experts.
    return [LoraFile(path, expert) for path, expert in zip(paths, experts, strict=False)]


def _experts_text(experts: Sequence[str]) -> str:
    return f"{len(experts)} expert(s) ({' and '.join(experts)})"


def _files_in(folder: Path, weight_name: str | None) -> list[Path]:
    """StoryMem's pair in ``folder``, else its one diffusers-style file."""
    if weight_name:
        path = folder / weight_name
        if not path.is_file():
            raise MissingWeightsError(f"LoRA weights not found: no {weight_name} in {folder}; give {ACCEPTED}")
        return [path]
    pair = [_one_with_stem(folder, stem) for stem in STORYMEM_STEMS]
    if all(pair):
        return [p for p in pair if p is not None]
    if any(pair):
        missing = STORYMEM_STEMS[pair.index(None)]
        raise MissingWeightsError(f"LoRA folder {folder} has one StoryMem expert file but no {missing}.*; add it")
    variants = sorted(
        d.name for d in folder.iterdir() if d.is_dir() and all(_one_with_stem(d, s) for s in STORYMEM_STEMS)
    )
    if variants:  # the release's root holds one pair per variant (MI2V, MM2V)
        raise InvalidInputError(
            f"LoRA folder {folder} holds {len(variants)} StoryMem variants ({', '.join(variants)}); "
            f"pass one of them, e.g. --adapter {folder / variants[0]}"
        )
    if (folder / DIFFUSERS_WEIGHT_NAME).is_file():
        return [folder / DIFFUSERS_WEIGHT_NAME]
    found = sorted(p.name for p in folder.iterdir() if p.suffix in SUFFIXES)
    if len(found) == 1:
        return [folder / found[0]]
    raise MissingWeightsError(f"no LoRA found in {folder} (has {found or 'no weight files'}); give {ACCEPTED}")


def _one_with_stem(folder: Path, stem: str) -> Path | None:
    hits = [folder / f"{stem}{suffix}" for suffix in SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
    if len(hits) > 1:
        raise InvalidInputError(f"LoRA folder {folder} has {stem} twice ({', '.join(p.name for p in hits)}); keep one")
    return hits[0] if hits else None


# --- reading a file -------------------------------------------------------------------------


def read_lora(path: Path) -> tuple[dict[str, torch.Tensor], Scaling | None]:
    """The tensors of a LoRA file (safetensors, or a torch pickle read with ``weights_only``) and the
    scaling its own metadata or a PEFT ``adapter_config.json`` beside it states (None when neither does)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
                metadata = handle.metadata() or {}
        except (SafetensorError, OSError) as err:
            raise InvalidInputError(f"LoRA file {path} is not readable safetensors ({err}); give a LoRA file") from None
    else:
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # a torch pickle fails in many ways: each is "not a tensor dict"
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InvalidInputError(f"LoRA file {path} is not a torch state dict ({first}); give a LoRA file") from None
        if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise InvalidInputError(f"LoRA file {path} holds {type(loaded).__name__}, not a dict of tensors")
        tensors, metadata = dict(loaded), {}
    return tensors, _stated_scaling(path, metadata)


def _stated_scaling(path: Path, metadata: Mapping[str, str]) -> Scaling | None:
    config: dict[str, Any] = {}
    beside = path.parent / "adapter_config.json"
    if beside.is_file():  # PEFT's save_pretrained layout
        try:
            config = json.loads(beside.read_text())
        except ValueError:
            raise InvalidInputError(f"{beside} is not JSON; fix or remove it") from None
    elif "lora_adapter_metadata" in metadata:  # diffusers writes the LoraConfig here
        try:
            raw = json.loads(metadata["lora_adapter_metadata"])
        except ValueError:
            raise InvalidInputError(f"{path}'s lora_adapter_metadata is not JSON") from None
        config = {k.rpartition(".")[2] if k.startswith("transformer") else k: v for k, v in raw.items()}
    if "lora_alpha" not in config and "use_rslora" not in config:
        return None
    alpha = config.get("lora_alpha")
    return Scaling(float(alpha) if alpha is not None else None, bool(config.get("use_rslora", False)))


# --- keys -----------------------------------------------------------------------------------


def diffusers_module_name(name: str) -> str:
    """An original Wan module path (``blocks.3.self_attn.q``) in diffusers' naming (``blocks.3.attn1.to_q``);
    a path already in diffusers' naming comes back unchanged."""
    for pattern, rename in _RENAMES:
        match = pattern.fullmatch(name)
        if match:
            return str(rename(match))
    return name


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def split_by_expert(state_dict: Mapping[str, Any], expert: str) -> dict[str, dict[str, Any]]:
    """Keys of one file per expert: diffusers files may name ``transformer_2.`` in front of the
    low-noise expert's keys; every other key belongs to the file's own ``expert``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        target = "transformer_2" if key.startswith("transformer_2.") else expert
        out.setdefault(target, {})[key.removeprefix("transformer_2.")] = value
    return out


def peft_modules(state_dict: Mapping[str, Any], transformer: Any, *, source: str) -> dict[str, ModuleLora]:
    """diffusers module name -> its LoRA matrices, every key accounted for and every shape checked
    against ``transformer`` (a key that would adapt nothing is an error, never silently dropped)."""
    modules: dict[str, ModuleLora] = {}
    for key, value in state_dict.items():
        lora, alpha = _LORA_KEY.match(key), _ALPHA_KEY.match(key)
        if lora is None and alpha is None:
            raise InvalidInputError(
                f"LoRA {source}: key {key!r} is neither a lora_A/lora_B (lora_down/lora_up) weight nor an alpha; "
                "only LoRA matrices can be loaded"
            )
        match = lora or alpha
        assert match is not None
        name = diffusers_module_name(_strip_prefixes(match["module"]))
        entry = modules.setdefault(name, ModuleLora())
        if alpha is not None:
            entry.alpha = float(value.reshape(-1)[0])
        elif match["part"] in ("lora_A", "lora_down"):
            entry.down = value
        else:
            entry.up = value
    for name, entry in modules.items():
        _check_module(transformer, name, entry, source)
    return modules


def _check_module(transformer: Any, name: str, entry: ModuleLora, source: str) -> None:
    import torch

    if entry.down is None or entry.up is None:
        raise InvalidInputError(f"LoRA {source}: {name} has only one of lora_A and lora_B; both are needed")
    try:
        layer = transformer.get_submodule(name)
    except AttributeError:
        layer = None
    layer = getattr(layer, "base_layer", layer)  # already adapted by another LoRA
    if not isinstance(layer, torch.nn.Linear):
        raise InvalidInputError(
            f"LoRA {source}: {name} is not a Linear of this Wan transformer "
            f"(is it a LoRA for another model?); expected names like blocks.0.self_attn.q"
        )
    rank = entry.rank
    if entry.down.shape != (rank, layer.in_features) or entry.up.shape != (layer.out_features, rank):
        raise InvalidInputError(
            f"LoRA {source}: {name} has A {tuple(entry.down.shape)} and B {tuple(entry.up.shape)}, "
            f"expected ({rank}, {layer.in_features}) and ({layer.out_features}, {rank}) for this transformer"
        )


# --- loading --------------------------------------------------------------------------------


def expert_names(pipeline: Any) -> list[str]:
    """The pipeline's Wan transformers, high-noise expert first."""
    names = [name for name in EXPERTS if getattr(pipeline, name, None) is not None]
    if not names:
        raise InvalidInputError(f"{type(pipeline).__name__} has no Wan transformer to load a LoRA into")
    return names


def scaling_for(
    stem: str, stated: Scaling | None, *, alpha: float | None = None, rslora: bool | None = None
) -> Scaling:
    """What the file states, else StoryMem's config for StoryMem's file names, else PEFT's default
    (alpha = r, plain LoRA); ``alpha`` / ``rslora`` given explicitly replace either part."""
    base = stated if stated is not None else STORYMEM_SCALING if stem in STORYMEM_STEMS else Scaling()
    return Scaling(
        float(alpha) if alpha is not None else base.alpha, bool(rslora) if rslora is not None else base.rslora
    )


def load_into(
    transformer: Any,
    modules: Mapping[str, ModuleLora],
    scaling: Scaling,
    *,
    adapter_name: str,
    source: str,
    expert: str,
) -> LoadedLora:
    """Inject one adapter into one transformer with its real LoraConfig (rank and alpha per module)."""
    ranks = {name: m.rank for name, m in modules.items()}
    alphas = {name: m.alpha if m.alpha is not None else scaling.alpha or m.rank for name, m in modules.items()}
    rank = Counter(ranks.values()).most_common(1)[0][0]
    alpha = Counter(alphas.values()).most_common(1)[0][0]
    # Exact module names, anchored: a pattern would also match blocks.10 for blocks.1.
    config = {
        "r": rank,
        "lora_alpha": alpha,
        "use_rslora": scaling.rslora,
        "lora_dropout": 0.0,
        "target_modules": sorted(modules),
        "rank_pattern": {f"^{re.escape(n)}$": r for n, r in ranks.items() if r != rank},
        "alpha_pattern": {f"^{re.escape(n)}$": a for n, a in alphas.items() if a != alpha},
    }
    # lora_A keys first: diffusers takes a state dict whose first key lacks "lora_A" for another layout.
    state = {f"{n}.lora_A.weight": m.down for n, m in sorted(modules.items())}
    state |= {f"{n}.lora_B.weight": m.up for n, m in sorted(modules.items())}
    transformer.load_lora_adapter(state, prefix=None, adapter_name=adapter_name, metadata=config)
    return LoadedLora(expert, source, len(modules), rank, float(alpha), scaling.rslora)


@dataclass(frozen=True)
class _Source:
    expert: str  # where keys without a transformer_2. prefix go
    name: str  # for messages and provenance
    tensors: Mapping[str, Any]
    scaling: Scaling


def _sources(
    pipeline: Any, spec: str | os.PathLike[str] | Mapping[str, Any], weight_name: str | None, **override: Any
) -> list[_Source]:
    if isinstance(spec, Mapping):  # an in-memory state dict: the first expert's (or prefixed transformer_2.)
        return [_Source(expert_names(pipeline)[0], "state dict", spec, scaling_for("", None, **override))]
    out = []
    for file in lora_files(spec, expert_names(pipeline), weight_name=weight_name):
        tensors, stated = read_lora(file.path)
        if not tensors:
            raise InvalidInputError(f"LoRA file {file.path} holds no tensors; give a LoRA file")
        out.append(_Source(file.expert, str(file.path), tensors, scaling_for(file.path.stem, stated, **override)))
    return out


def _named(spec: Any) -> str:
    return "the state dict" if isinstance(spec, Mapping) else repr(str(spec))


def load_wan_lora(
    pipeline: Any,
    spec: str | os.PathLike[str] | Mapping[str, Any],
    *,
    adapter_name: str,
    weight_name: str | None = None,
    alpha: float | None = None,
    rslora: bool | None = None,
) -> list[LoadedLora]:
    """Load the LoRA ``spec`` names (see :func:`lora_files`; or a state dict) into the pipeline's
    experts, each file into its own transformer. Everything is read and checked before the first
    expert is touched, so a bad file leaves the pipeline as it was."""
    experts = expert_names(pipeline)
    planned: list[tuple[str, str, dict[str, ModuleLora], Scaling]] = []
    for source in _sources(pipeline, spec, weight_name, alpha=alpha, rslora=rslora):
        for expert, part in split_by_expert(source.tensors, source.expert).items():
            if expert not in experts:
                raise InvalidInputError(f"LoRA {source.name} has keys for {expert}, which this pipeline lacks")
            if adapter_name in (getattr(getattr(pipeline, expert), "peft_config", None) or {}):
                raise InvalidInputError(
                    f"{expert} already has a LoRA named {adapter_name!r}; unload it first or pick another adapter_name"
                )
            modules = peft_modules(part, getattr(pipeline, expert), source=source.name)
            planned.append((expert, source.name, modules, source.scaling))
    taken = [e for e, *_ in planned]
    if len(set(taken)) != len(taken):
        raise InvalidInputError(f"LoRA {_named(spec)} gives one expert two files ({', '.join(taken)}); give one each")
    missing = [e for e in experts if e not in taken]
    if missing:  # StoryMem's bug: the low-noise expert ran without its LoRA
        raise InvalidInputError(
            f"the pipeline has {_experts_text(experts)} but LoRA {_named(spec)} gives nothing for "
            f"{', '.join(missing)}; each expert needs its own file: {ACCEPTED}"
        )
    return [
        load_into(getattr(pipeline, expert), modules, how, adapter_name=adapter_name, source=name, expert=expert)
        for expert, name, modules, how in planned
    ]
