"""Memory keyframes' VAE latents come from the store's token cache: encoded once, reused by later
shots and runs, identical to encoding again, and not reused for another image (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from generators import ShotSpec
from generators.testing import pattern

SHOT = ShotSpec("Aria walks along the harbor", num_frames=5, width=16, height=16)


@pytest.fixture
def setup(torch_threads, library):
    from generators.testing import tiny_wan_i2v_pipeline
    from retrieval.query import RetrievalResult, ShotQuery

    pipe = tiny_wan_i2v_pipeline()
    calls = []
    encode = pipe.encode_memory

    def counting(images, height, width):
        calls.append(len(images))
        return encode(images, height, width)

    pipe.encode_memory = counting
    library.register("Aria", "character", images=[pattern(1, (16, 16))])
    frames = [pattern(100 + i, (16, 16), face=False) for i in range(2)]
    refs = library.add_images("Aria", frames, source="harvested", story="s", shot=0, frames=[0, 1])
    memory = tuple(library.references(ids=[r.id for r in refs], with_images=True))
    result = RetrievalResult(ShotQuery("Aria", story_id="s", shot_index=1), memory=memory)
    return pipe, calls, library, result


def test_second_shot_hits_the_cache_and_frames_match_encoding_again(setup):
    from generators.wan_m2v import WanM2VGenerator
    from memstore.tokens import TokenCache

    pipe, calls, library, result = setup
    cached = WanM2VGenerator(pipe, num_inference_steps=2, token_cache=TokenCache(library, dtype="float32"))
    first = cached.prepare(SHOT, result)
    assert calls == [2] and first.tensors["memory_latents"].shape[0] == 2
    again = cached.prepare(ShotSpec(SHOT.prompt, num_frames=5, width=16, height=16, shot_index=2), result)
    assert calls == [2], "the second shot must read the latents, not encode them"
    np.testing.assert_array_equal(first.tensors["memory_latents"], again.tensors["memory_latents"])
    with_cache = cached.generate(SHOT, first, 3).frames
    plain = WanM2VGenerator(pipe, num_inference_steps=2)
    without = plain.generate(SHOT, plain.prepare(SHOT, result), 3).frames
    np.testing.assert_array_equal(with_cache, without)


def test_a_changed_keyframe_is_encoded_again(setup):
    from generators.wan_m2v import WanM2VGenerator
    from memstore.images import load_image
    from memstore.tokens import TokenCache

    pipe, calls, library, result = setup
    gen = WanM2VGenerator(pipe, num_inference_steps=2, token_cache=TokenCache(library, dtype="float32"))
    gen.prepare(SHOT, result)
    other = load_image(pattern(7, (16, 16), face=False))
    changed = result.memory[0].model_copy(update={"image": other.data, "sha256": other.sha256})
    from dataclasses import replace

    gen.prepare(SHOT, replace(result, memory=(changed, result.memory[1])))
    assert calls == [2, 1]  # only the changed keyframe was encoded again
