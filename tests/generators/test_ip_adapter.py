"""IP-Adapter: precomputed embeddings, no encoding at generate time, scales, and region masks."""

from __future__ import annotations

import numpy as np
import pytest

from generators import ShotSpec
from generators.testing import CountingEncoder, DictTokenCache, mean_abs, sample_result

SHOT = ShotSpec("Aria and Bram argue", num_frames=2, width=32, height=32)
TWO = [("Aria", "", 1), ("Bram", "", 2)]
TWO_OTHER_ARIA = [("Aria", "", 7), ("Bram", "", 2)]


@pytest.fixture(scope="module")
def setup(torch_threads, tmp_path_factory):
    """One tiny SD pipeline: frames before any adapter, then the adapter loaded from a saved folder."""
    from generators.ip_adapter import HFImageEncoder, IPAdapterGenerator
    from generators.prompt import PromptGenerator
    from generators.testing import (
        save_adapter,
        tiny_clip_image_encoder,
        tiny_ip_adapter_state_dict,
        tiny_sd_pipeline,
    )

    pipe = tiny_sd_pipeline()
    plain = PromptGenerator(pipe, num_inference_steps=2, kinds=()).run(SHOT, sample_result(), 3).frames
    folder = tmp_path_factory.mktemp("ip-adapter")
    save_adapter(tiny_ip_adapter_state_dict(pipe.unet), folder)
    model, processor = tiny_clip_image_encoder()
    encoder = CountingEncoder(HFImageEncoder(model, processor))
    gen = IPAdapterGenerator(pipe, encoder=encoder, adapter=folder, num_inference_steps=2, scale=1.0)
    return gen, encoder, plain


def test_same_seed_and_conditioning_give_identical_frames(setup):
    gen, _, _ = setup
    cond = gen.prepare(SHOT, sample_result(characters=TWO))
    a, b = gen.generate(SHOT, cond, 3), gen.generate(SHOT, cond, 3)
    assert a.frames.shape == (2, 32, 32, 3) and np.array_equal(a.frames, b.frames)
    assert a.metadata["generator"] == "ip-adapter" and a.metadata["pipeline"] == "StableDiffusionPipeline"


def test_conditioning_is_inspectable(setup):
    gen, _, _ = setup
    result = sample_result(characters=TWO)
    cond = gen.prepare(SHOT, result)
    assert [e.name for e in cond.entities] == ["Aria", "Bram"]
    assert cond.reference_ids == [h.references[0].id for h in result.characters]
    assert cond.tensors["image_embeds"].shape == (2, 16) and not cond.tensors["negative_image_embeds"].any()
    assert cond.masks.shape == (2, 32, 32)  # two characters: masked, left to right
    assert cond.entities[0].region == (0.0, 0.0, 0.5, 1.0) and cond.entities[1].region == (0.5, 0.0, 1.0, 1.0)
    assert cond.summary()["options"]["encoder"].startswith("hf-clip-vision:")


def test_encoding_happens_once_in_prepare_and_never_in_generate(setup):
    gen, encoder, _ = setup
    gen.token_cache = DictTokenCache()
    try:
        before = encoder.calls
        cond = gen.prepare(SHOT, sample_result(characters=TWO))
        assert encoder.calls == before + 1 and gen.token_cache.misses == 2  # one batched call for both
        gen.generate(SHOT, cond, 0)
        gen.generate(SHOT, cond, 1)
        assert encoder.calls == before + 1  # generate never encodes
        result = sample_result(characters=TWO)
        cached = DictTokenCache()
        gen.token_cache = cached
        gen.prepare(SHOT, result)
        calls = encoder.calls
        gen.prepare(SHOT, result)  # same references again: served by the cache
        assert encoder.calls == calls and cached.hits == 2
    finally:
        gen.token_cache = None


def test_different_references_give_different_frames(setup):
    gen, _, _ = setup
    a = gen.run(SHOT, sample_result(characters=TWO), 3).frames
    b = gen.run(SHOT, sample_result(characters=TWO_OTHER_ARIA), 3).frames
    assert mean_abs(a, b) > 0.5


def test_scale_zero_gives_the_unconditioned_pipeline(setup):
    gen, _, plain = setup
    gen.scales = {"aria": 0.0, "bram": 0.0}
    try:
        out = gen.run(SHOT, sample_result(characters=TWO), 3).frames
    finally:
        gen.scales = {}
    assert np.array_equal(out, plain)
    empty = gen.run(SHOT, sample_result(characters=[], location=None), 3).frames
    assert np.array_equal(empty, plain)  # no entity: zero embeds at scale 0


def test_per_entity_scales_are_recorded_and_used(setup):
    gen, _, _ = setup
    gen.scales = {"Bram": 0.25}
    try:
        cond = gen.prepare(SHOT, sample_result(characters=TWO))
    finally:
        gen.scales = {}
    assert cond.scales == {"Aria": 1.0, "Bram": 0.25}
    full = gen.generate(SHOT, gen.prepare(SHOT, sample_result(characters=TWO)), 3).frames
    assert mean_abs(gen.generate(SHOT, cond, 3).frames, full) > 0.1


def _first_cross_attention_outputs(gen, result):
    """Output of the first IP-carrying cross-attention at the first denoising step (before any mixing)."""

    unet = gen.pipeline.unet
    name = next(n for n in unet.attn_processors if n.endswith("attn2.processor"))
    module = unet.get_submodule(name.rsplit(".", 1)[0])
    captured = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    try:
        gen.run(ShotSpec(SHOT.prompt, num_frames=1, width=32, height=32), result, 3)
    finally:
        handle.remove()
    out = captured[0]  # (2 * batch, tokens, channels): negative then positive half
    side = round(out.shape[1] ** 0.5)
    return out.reshape(out.shape[0], side, side, -1)


def test_masks_keep_each_character_inside_its_region(setup):
    gen, _, _ = setup
    # Where the effect is injected it stays exactly in the region: changing Aria (left) moves the
    # first cross-attention's output only in the left half.
    a = _first_cross_attention_outputs(gen, sample_result(characters=TWO))
    b = _first_cross_attention_outputs(gen, sample_result(characters=TWO_OTHER_ARIA))
    diff = (a - b).abs().mean(dim=(0, 3))
    half = diff.shape[1] // 2
    # diffusers resamples the mask to each attention's grid, which softens the edge by one column.
    assert diff[:, :half].mean() > 1e-4 and float(diff[:, half + 1 :].max()) == 0.0
    assert float(diff[:, half].max()) < 0.2 * float(diff[:, :half].mean())

    # In pixels the later self-attention, GroupNorm and VAE of a random tiny UNet spread it, yet the
    # change stays mostly in the region, and much more so than without masks.
    def left_right(use_masks):
        gen.use_masks = use_masks
        try:
            x = gen.run(SHOT, sample_result(characters=TWO), 3).frames.astype(float)
            y = gen.run(SHOT, sample_result(characters=TWO_OTHER_ARIA), 3).frames.astype(float)
        finally:
            gen.use_masks = None
        d = np.abs(x - y).mean(axis=(0, 3))
        return d[:, :16].mean(), d[:, 16:].mean()

    inside, outside = left_right(True)
    free_left, free_right = left_right(False)
    assert inside > 1.3 * outside
    assert inside / outside > 1.2 * (free_left / free_right)


def test_without_guidance_only_the_positive_embeds_are_passed(setup):
    gen, _, _ = setup
    gen.guidance_scale = 1.0
    try:
        kwargs = gen._pipeline_kwargs(gen.prepare(SHOT, sample_result(characters=TWO)))
        out = gen.run(SHOT, sample_result(characters=TWO), 3)
    finally:
        gen.guidance_scale = None
    assert kwargs["ip_adapter_image_embeds"][0].shape == (1, 2, 16) and out.frames.shape == (2, 32, 32, 3)


def test_shot_regions_override_the_layout(setup):
    gen, _, _ = setup
    shot = ShotSpec(SHOT.prompt, num_frames=1, width=32, height=32, regions={"Aria": (0.5, 0.0, 1.0, 0.5)})
    cond = gen.prepare(shot, sample_result(characters=TWO))
    assert cond.masks[0, :16, 16:].all() and not cond.masks[0, 16:, :].any()


def test_penultimate_encoder_gives_hidden_states(torch_threads):
    from generators.ip_adapter import HFImageEncoder
    from generators.testing import tiny_clip_image_encoder

    model, processor = tiny_clip_image_encoder()
    enc = HFImageEncoder(model, processor, layer="penultimate")
    refs = sample_result(characters=TWO).characters
    out = enc.encode([h.references[0].pil() for h in refs])
    assert out.shape == (2, 17, 16) and enc.spec.endswith(":penultimate")
    assert enc.negative().shape == (17, 16) and enc.spec != HFImageEncoder(model, processor).spec


def test_missing_adapter_and_pipeline_errors(torch_threads, tmp_path):
    from generators.ip_adapter import IPAdapterGenerator
    from generators.testing import tiny_sd_pipeline
    from memstore.errors import InvalidInputError, MissingWeightsError

    with pytest.raises(InvalidInputError, match="needs a diffusers pipeline"):
        IPAdapterGenerator()
    with pytest.raises(MissingWeightsError, match="IP-Adapter weights not found"):
        IPAdapterGenerator(tiny_sd_pipeline(), encoder=object(), adapter=tmp_path)


def test_animatediff_video_pipeline_with_masks(torch_threads):
    from generators.ip_adapter import HFImageEncoder, IPAdapterGenerator
    from generators.prompt import PromptGenerator
    from generators.testing import (
        tiny_animatediff_pipeline,
        tiny_clip_image_encoder,
        tiny_ip_adapter_state_dict,
    )

    pipe = tiny_animatediff_pipeline()
    shot = ShotSpec("Aria and Bram argue", num_frames=4, width=32, height=32)
    plain = PromptGenerator(pipe, num_inference_steps=2, kinds=()).run(shot, sample_result(), 3)
    assert plain.metadata["video"] and plain.metadata["frames_rendered"] == 4
    model, processor = tiny_clip_image_encoder()
    gen = IPAdapterGenerator(
        pipe,
        encoder=HFImageEncoder(model, processor),
        num_inference_steps=2,
        scale=1.0,
        adapter=tiny_ip_adapter_state_dict(pipe.unet),
    )
    cond = gen.prepare(shot, sample_result(characters=TWO))
    a, b = gen.generate(shot, cond, 3).frames, gen.generate(shot, cond, 3).frames
    assert a.shape == (4, 32, 32, 3) and np.array_equal(a, b) and cond.masks is not None
    assert mean_abs(a, gen.run(shot, sample_result(characters=TWO_OTHER_ARIA), 3).frames) > 0.5
    gen.scale = 0.0
    assert np.array_equal(gen.run(shot, sample_result(characters=TWO), 3).frames, plain.frames)
