"""What the ComfyUI tests need of ComfyUI, which is not installable here: loading a custom-node
folder the way ComfyUI does, its declaration rules, its prompt validation and execution order for
API-format workflows, and stand-ins for the three core nodes the example workflows use."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "integrations" / "comfyui"
# the types ComfyUI itself defines (comfy/comfy_types, nodes.py); a pack may declare its own
CORE_TYPES = {
    "IMAGE",
    "MASK",
    "LATENT",
    "MODEL",
    "CLIP",
    "VAE",
    "CONDITIONING",
    "CLIP_VISION",
    "CLIP_VISION_OUTPUT",
    "CONTROL_NET",
    "STYLE_MODEL",
    "GLIGEN",
    "UPSCALE_MODEL",
    "SIGMAS",
    "NOISE",
    "SAMPLER",
    "GUIDER",
    "AUDIO",
    "VIDEO",
}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def load_pack(module_name: str = "custom_nodes.continuity", folder: Path = PACK) -> ModuleType:
    """Import a custom-node folder by path as ComfyUI's ``load_custom_node`` does: a spec from its
    ``__init__.py`` (which makes it a package, so its relative imports resolve), registered in
    ``sys.modules`` before it runs."""
    spec = importlib.util.spec_from_file_location(module_name, folder / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


# --- stand-ins for ComfyUI's core nodes (same declarations, behaviour enough for a test) --------
class LoadImage:
    """nodes.LoadImage: a file of ComfyUI's input folder -> IMAGE 1 x H x W x 3 and its MASK."""

    files: dict[str, np.ndarray] = {}  # the test puts its photos here by file name

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": (sorted(cls.files), {"image_upload": True})}}

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image: str) -> tuple[Any, Any]:
        import torch

        pixels = torch.from_numpy(self.files[image].astype(np.float32) / 255.0)[None]
        return pixels, torch.zeros(pixels.shape[:3])


class PreviewImage:
    """nodes.PreviewImage: a sink that shows an IMAGE batch (here: keeps it)."""

    shown: list[Any] = []

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    def save_images(self, images: Any, prompt: Any = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        self.shown.append(images)
        return {"ui": {"images": []}}


class MaskToImage:
    """comfy_extras.nodes_mask.MaskToImage: MASK B x H x W -> IMAGE B x H x W x 3."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}}

    CATEGORY = "mask"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"

    def mask_to_image(self, mask: Any) -> tuple[Any]:
        return (mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3),)


CORE_NODES: dict[str, type] = {"LoadImage": LoadImage, "PreviewImage": PreviewImage, "MaskToImage": MaskToImage}


# --- declarations ----------------------------------------------------------------------------------
def declaration_problems(key: str, cls: type, known_types: set[str]) -> list[str]:
    """What in a node class breaks ComfyUI's conventions (empty when nothing)."""
    problems: list[str] = []
    inputs = cls.INPUT_TYPES()
    if set(inputs) - {"required", "optional", "hidden"} or "required" not in inputs:
        problems.append(f"{key}: INPUT_TYPES keys {sorted(inputs)}")
    for section in ("required", "optional"):
        for name, spec in inputs.get(section, {}).items():
            problems += [f"{key}.{name}: {p}" for p in spec_problems(spec, known_types)]
    returns = getattr(cls, "RETURN_TYPES", None)
    if not isinstance(returns, tuple):
        problems.append(f"{key}: RETURN_TYPES must be a tuple")
        returns = ()
    problems += [f"{key}: unknown return type {t!r}" for t in returns if t not in known_types | WIDGET_TYPES]
    names = getattr(cls, "RETURN_NAMES", returns)
    if len(names) != len(returns):
        problems.append(f"{key}: {len(names)} RETURN_NAMES for {len(returns)} RETURN_TYPES")
    tips = getattr(cls, "OUTPUT_TOOLTIPS", returns)
    if len(tips) != len(returns):
        problems.append(f"{key}: {len(tips)} OUTPUT_TOOLTIPS for {len(returns)} RETURN_TYPES")
    if not callable(getattr(cls, getattr(cls, "FUNCTION", ""), None)):
        problems.append(f"{key}: FUNCTION {getattr(cls, 'FUNCTION', None)!r} is not a method")
    if not str(getattr(cls, "CATEGORY", "")).startswith("continuity/"):
        problems.append(f"{key}: CATEGORY {getattr(cls, 'CATEGORY', None)!r} is not under continuity/")
    if not getattr(cls, "DESCRIPTION", ""):
        problems.append(f"{key}: no DESCRIPTION")
    return problems


def spec_problems(spec: Any, known_types: set[str]) -> list[str]:
    if not isinstance(spec, tuple) or not 1 <= len(spec) <= 2:
        return [f"spec {spec!r} is not (TYPE,) or (TYPE, options)"]
    kind, options = spec[0], (spec[1] if len(spec) == 2 else {})
    if not isinstance(options, dict):
        return ["options must be a dict"]
    if isinstance(kind, list):  # a combo
        if not kind or not all(isinstance(v, str) for v in kind):
            return [f"combo {kind!r} must be a non-empty list of strings"]
        return [] if options.get("default", kind[0]) in kind else [f"default {options['default']!r} not in the combo"]
    if kind in ("INT", "FLOAT"):
        return _number_problems(kind, options)
    if kind == "STRING":
        return [] if isinstance(options.get("default", ""), str) else ["STRING default is not a string"]
    if kind == "BOOLEAN":
        return [] if isinstance(options.get("default", False), bool) else ["BOOLEAN default is not a bool"]
    return [] if kind in known_types else [f"type {kind!r} is neither ComfyUI's nor declared by the pack"]


def _number_problems(kind: str, options: Mapping[str, Any]) -> list[str]:
    number = int if kind == "INT" else (int, float)
    if "default" not in options:
        return [f"{kind} without a default"]
    low, high, default = options.get("min", -(2**63)), options.get("max", 2**63), options["default"]
    if not all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high, default)):
        return [f"{kind} min/max/default of the wrong type"]
    return [] if low <= default <= high else [f"default {default} outside [{low}, {high}]"]


# --- API-format workflows ------------------------------------------------------------------------
def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def validate_prompt(prompt: Mapping[str, Any], classes: Mapping[str, type]) -> list[str]:
    """ComfyUI's validate_inputs, in short: known classes, required inputs present, a link's type
    is its source's RETURN_TYPE, a combo value is in the list, numbers within min/max."""
    problems: list[str] = []
    for node_id, node in prompt.items():
        cls = classes.get(node["class_type"])
        if cls is None:
            problems.append(f"{node_id}: unknown class {node['class_type']}")
            continue
        declared = cls.INPUT_TYPES()
        specs = {**declared["required"], **declared.get("optional", {})}
        problems += [f"{node_id}.{n}: required input missing" for n in declared["required"] if n not in node["inputs"]]
        for name, value in node["inputs"].items():
            if name not in specs:
                problems.append(f"{node_id}.{name}: not an input of {node['class_type']}")
                continue
            problems += [f"{node_id}.{name}: {p}" for p in _value_problems(specs[name], value, prompt, classes)]
    return problems


def _value_problems(spec: tuple, value: Any, prompt: Mapping[str, Any], classes: Mapping[str, type]) -> list[str]:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if is_link(value):
        source = prompt.get(value[0])
        if source is None:
            return [f"link to missing node {value[0]}"]
        returns = classes[source["class_type"]].RETURN_TYPES
        got = returns[value[1]] if value[1] < len(returns) else None
        return [] if got == kind else [f"link type {got} != {kind}"]
    if isinstance(kind, list):
        return [] if value in kind else [f"{value!r} not in {kind}"]
    if kind in ("INT", "FLOAT"):
        ok = options.get("min", value) <= value <= options.get("max", value)
        return [] if ok else [f"{value} outside [{options.get('min')}, {options.get('max')}]"]
    if kind in WIDGET_TYPES:
        return []
    return [f"{kind} input needs a link"]


def topological_order(prompt: Mapping[str, Any]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(node_id: str) -> None:
        if state.get(node_id) == 2:
            return
        assert state.get(node_id) != 1, f"cycle through node {node_id}"
        state[node_id] = 1
        for value in prompt[node_id]["inputs"].values():
            if is_link(value):
                visit(value[0])
        state[node_id] = 2
        order.append(node_id)

    for node_id in sorted(prompt, key=int):
        visit(node_id)
    return order


def execute(prompt: Mapping[str, Any], classes: Mapping[str, type]) -> dict[str, tuple]:
    """Run every node in dependency order, links resolved from the outputs of their sources."""
    outputs: dict[str, tuple] = {}
    for node_id in topological_order(prompt):
        node = prompt[node_id]
        cls = classes[node["class_type"]]
        kwargs = {k: outputs[v[0]][v[1]] if is_link(v) else v for k, v in node["inputs"].items()}
        result = getattr(cls(), cls.FUNCTION)(**kwargs)
        if isinstance(result, dict):  # an output node's {"ui": ..., "result": ...}
            result = result.get("result", ())
        assert isinstance(result, tuple) and len(result) == len(cls.RETURN_TYPES), (node_id, result)
        outputs[node_id] = result
    return outputs


def call(cls: type, **inputs: Any) -> tuple:
    """Run one node as ComfyUI does: a fresh instance, its FUNCTION with keyword inputs."""
    fn: Callable[..., tuple] = getattr(cls(), cls.FUNCTION)
    return fn(**inputs)
