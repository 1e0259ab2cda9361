"""IP-Adapter FaceID fed the face vectors stored with each reference (nothing is encoded)."""

from __future__ import annotations

import numpy as np
import pytest

from generators import ShotSpec
from generators.testing import mean_abs, sample_result

SHOT = ShotSpec("Aria and Bram argue", num_frames=1, width=32, height=32)


@pytest.fixture(scope="module")
def setup(torch_threads, tmp_path_factory):
    from generators.faceid import FaceIDGenerator
    from generators.prompt import PromptGenerator
    from generators.testing import save_adapter, tiny_faceid_state_dict, tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    plain = PromptGenerator(pipe, num_inference_steps=2, kinds=()).run(SHOT, sample_result(), 5).frames
    folder = tmp_path_factory.mktemp("faceid")
    save_adapter(tiny_faceid_state_dict(pipe.unet, id_dim=16), folder, "ip-adapter-faceid.safetensors")
    gen = FaceIDGenerator(
        pipe, adapter=folder, weight_name="ip-adapter-faceid.safetensors", num_inference_steps=2, scale=1.0
    )
    return gen, plain


def test_faceid_adapter_layout_is_recognized(setup):
    from diffusers.models.embeddings import IPAdapterFaceIDImageProjection

    gen, _ = setup
    layer = gen.pipeline.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(layer, IPAdapterFaceIDImageProjection) and layer.num_tokens == 4


def test_embeddings_are_the_stored_face_vectors(setup):
    gen, _ = setup
    result = sample_result()
    cond = gen.prepare(SHOT, result)
    stored = np.stack([h.references[0].vectors["face_arcface"] for h in result.characters])
    assert np.array_equal(cond.tensors["image_embeds"], stored)
    assert cond.options["face_column"] == "face_arcface" and cond.options["skipped"] == []
    assert [e.kind for e in cond.entities] == ["character", "character"]  # the location is never a face


def test_same_seed_same_frames_and_different_faces_differ(setup):
    gen, _ = setup
    cond = gen.prepare(SHOT, sample_result())
    a, b = gen.generate(SHOT, cond, 5), gen.generate(SHOT, cond, 5)
    assert np.array_equal(a.frames, b.frames)
    other = gen.run(SHOT, sample_result(characters=[("Aria", "", 8), ("Bram", "", 2)]), 5)
    assert mean_abs(a.frames, other.frames) > 0.5


def test_scale_zero_is_the_unconditioned_pipeline(setup):
    gen, plain = setup
    gen.scale = 0.0
    try:
        out = gen.run(SHOT, sample_result(), 5).frames
    finally:
        gen.scale = 1.0
    assert np.array_equal(out, plain)


def test_characters_without_face_vectors_are_skipped(setup):
    gen, _ = setup
    result = sample_result()
    bram = result.characters[1]
    stripped = bram.references[0].model_copy(update={"vectors": {}})
    from dataclasses import replace

    result = replace(result, hits=(result.hits[0], replace(bram, references=(stripped,)), *result.hits[2:]))
    cond = gen.prepare(SHOT, result)
    assert [e.name for e in cond.entities] == ["Aria"] and cond.options["skipped"] == ["Bram"]
    assert cond.masks is None  # one face, no regions: unmasked
