"""StoryMem's LoRA as released: one PEFT rsLoRA file per Wan2.2 expert, on Wan's original module names.

The files here are made the way StoryMem's training saves them (its wan_m2v_A14B.py: r = lora_alpha,
use_rslora=True, target modules self_attn.q/k/v/o, cross_attn.q/k/v/o, ffn.0, ffn.2), at a small
rank, and loaded into the tiny two-expert Wan pipeline of conftest.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from generators import ShotSpec
from generators.testing import mean_abs, sample_result
from memstore.errors import InvalidInputError, MissingWeightsError

SHOT = ShotSpec("Aria walks along the harbor", num_frames=5, width=16, height=16)
RANK = 4  # StoryMem: 128; alpha = rank, so the rsLoRA scale is alpha / sqrt(r) = sqrt(r)
RS_SCALE = RANK / math.sqrt(RANK)
# StoryMem's target modules (original Wan names) and what diffusers' Wan transformer calls them.
TARGETS = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
EXPERT_FILES = {"transformer": "backbone_high_noise", "transformer_2": "backbone_low_noise"}


def storymem_state_dict(transformer, seed: int, *, prefix: str = "", adapter: str = "") -> dict:
    """PEFT LoRA matrices keyed like StoryMem's files: ``{prefix}blocks.N.self_attn.q.lora_A{adapter}.weight``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i, _ in enumerate(transformer.blocks):
        for wan, ours in TARGETS.items():
            layer = transformer.get_submodule(f"blocks.{i}.{ours}")
            state[f"{prefix}blocks.{i}.{wan}.lora_A{adapter}.weight"] = torch.randn(
                RANK, layer.in_features, generator=gen
            )
            state[f"{prefix}blocks.{i}.{wan}.lora_B{adapter}.weight"] = torch.randn(
                layer.out_features, RANK, generator=gen
            )
    return state


def write_release(folder: Path, pipe, *, suffix: str = ".safetensors", prefixes=("", "")) -> dict[str, dict]:
    """Both expert files of a StoryMem release in ``folder``; returns each expert's state dict."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    states = {}
    for (expert, stem), prefix, seed in zip(EXPERT_FILES.items(), prefixes, (10, 20), strict=True):
        state = storymem_state_dict(getattr(pipe, expert), seed, prefix=prefix)
        path = folder / f"{stem}{suffix}"
        if suffix == ".safetensors":
            save_file(state, str(path))
        else:
            torch.save(state, str(path))
        states[expert] = {k.removeprefix(prefix): v for k, v in state.items()}
    return states


def base_weights(pipe) -> dict[str, dict]:
    """Each expert's Linear weights before any LoRA, by diffusers name."""
    return {
        expert: {
            name: getattr(pipe, expert).get_submodule(name).weight.detach().clone()
            for i in range(len(getattr(pipe, expert).blocks))
            for name in (f"blocks.{i}.{ours}" for ours in TARGETS.values())
        }
        for expert in EXPERT_FILES
    }


def assert_expert_has(pipe, expert: str, state: dict, base: dict, scale: float) -> None:
    """Every adapted Linear of ``expert`` computes x @ (W0 + scale * B @ A).T + b, with A and B
    from ``state`` (original Wan names) and W0 from ``base``."""
    import torch

    transformer = getattr(pipe, expert)
    for i in range(len(transformer.blocks)):
        for wan, ours in TARGETS.items():
            layer = transformer.get_submodule(f"blocks.{i}.{ours}")
            a, b = state[f"blocks.{i}.{wan}.lora_A.weight"], state[f"blocks.{i}.{wan}.lora_B.weight"]
            w = base[f"blocks.{i}.{ours}"] + scale * b @ a
            x = torch.randn(3, w.shape[1], generator=torch.Generator().manual_seed(i))
            with torch.no_grad():
                got, want = layer(x), torch.nn.functional.linear(x, w, layer.base_layer.bias)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=f"{expert} blocks.{i}.{ours}")


@pytest.fixture
def gen(two_expert_wan):
    from generators.wan_m2v import WanM2VGenerator

    return WanM2VGenerator(two_expert_wan, num_inference_steps=2)


def test_release_folder_loads_each_expert_its_own_file_at_the_rslora_scale(gen, tmp_path):
    pipe = gen.pipeline
    base = base_weights(pipe)
    states = write_release(tmp_path / "MI2V", pipe)
    loaded = gen.load_lora(str(tmp_path / "MI2V"))
    assert pipe.get_list_adapters() == {"transformer": ["storymem"], "transformer_2": ["storymem"]}
    for expert in EXPERT_FILES:
        assert_expert_has(pipe, expert, states[expert], base[expert], RS_SCALE)  # 2.0, not alpha / r = 1.0
    assert [(lo.expert, Path(lo.source).stem) for lo in loaded] == list(EXPERT_FILES.items())
    assert all(
        lo.rslora and lo.rank == RANK and lo.modules == 2 * len(TARGETS) and lo.scale == RS_SCALE for lo in loaded
    )
    assert (
        "transformer_2<-backbone_low_noise.safetensors (rsLoRA r=4"
        in gen.prepare(SHOT, sample_result()).options["lora"]
    )


def test_two_pth_files_with_peft_and_comfy_prefixes_and_lora_scale(gen, tmp_path):
    """HIGH,LOW as two files (torch pickles, as StoryMem's code reads them), keys under PEFT's
    base_model.model. and ComfyUI's diffusion_model.; lora_scale multiplies the rsLoRA scale."""
    pipe = gen.pipeline
    base = base_weights(pipe)
    states = write_release(tmp_path / "a", pipe, suffix=".pth", prefixes=("base_model.model.", "diffusion_model."))
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "backbone_low_noise.pth").rename(tmp_path / "b" / "backbone_low_noise.pth")
    spec = f"{tmp_path / 'a' / 'backbone_high_noise.pth'},{tmp_path / 'b' / 'backbone_low_noise.pth'}"
    gen.load_lora(spec, scale=0.5)
    for expert in EXPERT_FILES:
        assert_expert_has(pipe, expert, states[expert], base[expert], 0.5 * RS_SCALE)


def test_other_file_names_take_the_stated_or_the_given_scaling(gen, tmp_path):
    """Files renamed from StoryMem's names state nothing: plain alpha / r unless told rslora=True."""
    import torch
    from safetensors.torch import save_file

    pipe = gen.pipeline
    base = base_weights(pipe)
    states = {
        e: storymem_state_dict(getattr(pipe, e), s, adapter=".default")
        for e, s in zip(EXPERT_FILES, (1, 2), strict=True)
    }
    for expert, state in states.items():
        save_file(state, str(tmp_path / f"{expert}.safetensors"))
    plain = {e: {k.replace(".default", ""): v for k, v in s.items()} for e, s in states.items()}
    spec = f"{tmp_path / 'transformer.safetensors'},{tmp_path / 'transformer_2.safetensors'}"
    gen.load_lora(spec, rslora=True)
    for expert in EXPERT_FILES:
        assert_expert_has(pipe, expert, plain[expert], base[expert], RS_SCALE)
    pipe.unload_lora_weights()
    gen.load_lora(spec)
    assert_expert_has(pipe, "transformer_2", plain["transformer_2"], base["transformer_2"], 1.0)
    with torch.no_grad():  # unloading gives the base transformer back
        pipe.unload_lora_weights()
        w = pipe.transformer_2.get_submodule("blocks.1.ffn.net.2").weight
    assert torch.equal(w, base["transformer_2"]["blocks.1.ffn.net.2"])


@pytest.mark.slow
def test_the_low_noise_expert_runs_with_its_own_lora(two_expert_wan, tmp_path):
    """Four steps at boundary 0.9: two per expert. Switching off only transformer_2's LoRA changes
    the shot, so the low-noise steps really ran with it."""
    from generators.wan_m2v import WanM2VGenerator

    gen = WanM2VGenerator(two_expert_wan, num_inference_steps=4)
    result = sample_result(memory=1)
    before = gen.run(SHOT, result, 3).frames
    write_release(tmp_path / "lora", gen.pipeline)
    gen.load_lora(str(tmp_path / "lora"))
    both = gen.run(SHOT, result, 3).frames
    gen.pipeline.transformer_2.set_adapters(["storymem"], [0.0])
    high_only = gen.run(SHOT, result, 3).frames
    assert mean_abs(both, before) > 0.1 and mean_abs(both, high_only) > 0.1
    gen.pipeline.transformer.set_adapters(["storymem"], [0.0])
    assert np.array_equal(gen.run(SHOT, result, 3).frames, before)


def _untouched(pipe) -> bool:
    return not any(getattr(getattr(pipe, e), "peft_config", None) for e in EXPERT_FILES)


def test_one_file_for_two_experts_is_refused(gen, tmp_path):
    write_release(tmp_path, gen.pipeline)
    with pytest.raises(InvalidInputError, match="transformer_2; each expert needs its own file"):
        gen.load_lora(str(tmp_path / "backbone_high_noise.safetensors"))
    assert _untouched(gen.pipeline)


def test_bad_releases_fail_in_one_line_and_leave_the_pipeline_as_it_was(gen, tmp_path):
    from safetensors.torch import save_file

    pipe = gen.pipeline
    write_release(tmp_path / "half", pipe)
    (tmp_path / "half" / "backbone_low_noise.safetensors").unlink()
    write_release(tmp_path / "root" / "MI2V", pipe)
    write_release(tmp_path / "root" / "MM2V", pipe)
    # a LoRA for a deeper model: block 7 does not exist here
    states = write_release(tmp_path / "deep", pipe)
    low = dict(states["transformer_2"])
    low["blocks.7.self_attn.q.lora_A.weight"] = low["blocks.0.self_attn.q.lora_A.weight"].clone()
    low["blocks.7.self_attn.q.lora_B.weight"] = low["blocks.0.self_attn.q.lora_B.weight"].clone()
    save_file(low, str(tmp_path / "deep" / "backbone_low_noise.safetensors"))
    cases = [
        (str(tmp_path / "half"), MissingWeightsError, "no backbone_low_noise"),
        (str(tmp_path / "root"), InvalidInputError, r"2 StoryMem variants \(MI2V, MM2V\); pass one of them"),
        (str(tmp_path / "deep"), InvalidInputError, r"blocks\.7\.attn1\.to_q is not a Linear of this Wan transformer"),
        (
            f"{tmp_path / 'deep' / 'backbone_high_noise.safetensors'},{tmp_path / 'no.pth'}",
            MissingWeightsError,
            "exist",
        ),
    ]
    for spec, error, message in cases:
        with pytest.raises(error, match=message) as caught:
            gen.load_lora(spec)
        assert "\n" not in str(caught.value)
    assert _untouched(pipe)  # the deep release's high-noise file was fine, and still not loaded


def test_story_run_adapter_forms(tmp_path, wan_parts):
    """``--adapter`` for wan-m2v as build_generator reads it: the folder, or HIGH,LOW; a missing part is named."""
    from continuity.generator_setup import check_generator

    folder = tmp_path / "StoryMem" / "MI2V"
    folder.mkdir(parents=True)
    for stem in EXPERT_FILES.values():
        (folder / f"{stem}.safetensors").write_bytes(b"")
    high, low = (str(folder / f"{s}.safetensors") for s in EXPERT_FILES.values())
    model = str(tmp_path)
    check_generator("wan-m2v", model=model, adapter=str(folder))
    check_generator("wan-m2v", model=model, adapter=f"{high},{low}")
    with pytest.raises(MissingWeightsError, match="missing.safetensors' does not exist"):
        check_generator("wan-m2v", model=model, adapter=f"{high},{tmp_path / 'missing.safetensors'}")
