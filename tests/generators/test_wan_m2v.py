"""StoryMem-style memory-to-video on Wan I2V components."""

from __future__ import annotations

import numpy as np
import pytest

from generators import ShotSpec
from generators.testing import mean_abs, pattern, sample_result

SHOT = ShotSpec("Aria walks along the harbor", num_frames=5, width=16, height=16)


@pytest.fixture(scope="module")
def pipe(torch_threads):
    from generators.testing import tiny_wan_i2v_pipeline

    return tiny_wan_i2v_pipeline()


@pytest.fixture(scope="module")
def gen(pipe):
    from generators.wan_m2v import WanM2VGenerator

    return WanM2VGenerator(pipe, num_inference_steps=2)


def _memory(n):
    from PIL import Image

    return [Image.fromarray(pattern(100 + i, (16, 16), face=False)) for i in range(n)]


def _call(pipe, **kwargs):
    import torch

    args = {
        "prompt": SHOT.prompt,
        "height": 16,
        "width": 16,
        "num_frames": 5,
        "num_inference_steps": 2,
        "generator": torch.Generator().manual_seed(1),
        "output_type": "np",
    }
    args.update(kwargs)
    return pipe(**args).frames


@pytest.mark.parametrize("memory,num_frames", [(0, 5), (1, 5), (3, 9), (4, 6)])
def test_requested_frame_count_with_memory_frames_dropped(gen, memory, num_frames):
    shot = ShotSpec(SHOT.prompt, num_frames=num_frames, width=16, height=16)
    out = gen.run(shot, sample_result(memory=memory), 1)
    assert out.frames.shape == (num_frames, 16, 16, 3)
    assert out.metadata["memory_frames"] == memory


def test_pipeline_drops_memory_latents_after_decoding(pipe):
    for n in (0, 2, 5):
        for decode_memory in (True, False):
            frames = _call(pipe, memory_images=_memory(n), decode_memory=decode_memory)
            assert frames.shape == (1, 5, 16, 16, 3)
    assert _call(pipe, memory_images=_memory(2), output_type="latent").shape[2] == 2  # video latents only


def test_same_seed_same_frames_and_memory_matters(gen):
    result = sample_result(memory=3)
    cond = gen.prepare(SHOT, result)
    assert cond.memory_ids == [r.id for r in result.memory] and len(cond.images) == 3
    a, b = gen.generate(SHOT, cond, 1), gen.generate(SHOT, cond, 1)
    assert np.array_equal(a.frames, b.frames)
    none = gen.run(SHOT, sample_result(memory=0), 1)
    assert mean_abs(a.frames, none.frames) > 1.0
    from dataclasses import replace

    swapped = replace(result, memory=tuple(reversed(result.memory)))
    assert mean_abs(gen.run(SHOT, swapped, 1).frames, a.frames) > 0.1


def test_empty_memory_is_exactly_diffusers_image_to_video(pipe):
    import torch
    from diffusers import WanImageToVideoPipeline
    from PIL import Image

    image = Image.fromarray(pattern(5, (16, 16)))
    reference = WanImageToVideoPipeline.from_pipe(pipe)
    reference.set_progress_bar_config(disable=True)
    theirs = reference(
        prompt=SHOT.prompt,
        image=image,
        height=16,
        width=16,
        num_frames=5,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(1),
        output_type="np",
    ).frames
    ours = _call(pipe, image=image, memory_images=[])
    assert np.array_equal(ours, theirs)


def test_memory_changes_the_video_latents_and_the_rope_gap_matters(pipe):
    mem = _memory(3)
    base = _call(pipe, memory_images=mem, output_type="latent")
    assert float((_call(pipe, output_type="latent") - base).abs().mean()) > 1e-3
    # RoPE attention sees only position differences: -M..-1 then 0..T-1 equals 0..M-1 then M..M+T-1,
    sequential = _call(pipe, memory_images=mem, output_type="latent", memory_rope_offset="sequential")
    assert float((sequential - base).abs().max()) < 1e-4
    # ... while a gap between memory and shot changes what the video attends to.
    gapped = _call(pipe, memory_images=mem, output_type="latent", memory_rope_gap=6)
    assert float((gapped - base).abs().mean()) > 1e-4


def test_first_frame_from_the_location(pipe):
    from generators.wan_m2v import WanM2VGenerator

    gen = WanM2VGenerator(pipe, num_inference_steps=2, first_frame="location")
    cond = gen.prepare(SHOT, sample_result(memory=1))
    assert "first_frame" in cond.images
    assert gen.generate(SHOT, cond, 0).frames.shape == (5, 16, 16, 3)


def test_plain_i2v_pipeline_is_wrapped_and_lora_loads(pipe, tmp_path):
    import torch
    from diffusers import WanImageToVideoPipeline
    from safetensors.torch import save_file

    from generators.wan_m2v import WanM2VGenerator, WanMemoryToVideoPipeline

    plain = WanImageToVideoPipeline.from_pipe(pipe)
    gen = WanM2VGenerator(plain, num_inference_steps=2)
    assert isinstance(gen.pipeline, WanMemoryToVideoPipeline)
    result = sample_result(memory=2)
    before = gen.run(SHOT, result, 2).frames
    # A LoRA in diffusers' layout on the attention projections of every block, saved like a release.
    gen_t = torch.Generator().manual_seed(0)
    state = {}
    for i in range(len(pipe.transformer.blocks)):
        for proj in ("to_q", "to_k", "to_v"):
            layer = pipe.transformer.blocks[i].attn1.get_submodule(proj)
            state[f"transformer.blocks.{i}.attn1.{proj}.lora_A.weight"] = torch.randn(
                4, layer.in_features, generator=gen_t
            )
            state[f"transformer.blocks.{i}.attn1.{proj}.lora_B.weight"] = torch.randn(
                layer.out_features, 4, generator=gen_t
            )
    save_file(state, str(tmp_path / "storymem_lora.safetensors"))
    gen.load_lora(str(tmp_path), weight_name="storymem_lora.safetensors")
    try:
        with_lora = gen.run(SHOT, result, 2).frames
        assert mean_abs(with_lora, before) > 0.1
        gen.pipeline.set_adapters(["storymem"], adapter_weights=[0.0])
        assert mean_abs(gen.run(SHOT, result, 2).frames, before) < 0.05
    finally:
        gen.pipeline.unload_lora_weights()
    assert np.array_equal(gen.run(SHOT, result, 2).frames, before)
