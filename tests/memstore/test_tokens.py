"""Conditioning-token cache on a real store with the tiny open_clip tower."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open_clip")

from memstore.embedders import get_embedder
from memstore.errors import EmbedderError, InvalidInputError
from memstore.tokens import OpenClipTokenEncoder, TokenCache
from tests.memstore.test_embedders_clip import TINY_TOKENS, tiny_clip_config


class Counting:
    """Wraps an encoder and records each encode() batch size."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.spec = encoder.spec
        self.batches: list[int] = []

    def encode(self, images):
        self.batches.append(len(images))
        return self.encoder.encode(images)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    emb = get_embedder(tiny_clip_config(tmp_path_factory.mktemp("clip")))
    emb.load()
    return emb


@pytest.fixture
def filled(library, photos):
    library.configure(embedders=["color-histogram"])
    library.register("Eileen", "character", images=[photos["astronaut"], photos["rocket"]])
    library.register("Chelsea", "prop", images=[photos["chelsea"], photos["coffee"]])
    return library


def test_computes_only_missing_in_one_batch(filled, clip):
    cache = TokenCache(filled)
    enc = Counting(OpenClipTokenEncoder(clip, "penultimate"))
    assert enc.spec == "open_clip:continuity-tiny-vit:random-seed0:penultimate"
    eileen = filled.references("Eileen", with_vectors=False)  # no images: the cache reads them
    first = cache.get_or_compute(eileen[:1], enc)
    assert enc.batches == [1] and first[0].shape == (TINY_TOKENS, 48)
    refs = eileen + filled.references("Chelsea", with_vectors=False)
    out = cache.get_or_compute(refs + refs[:1], enc)  # a duplicate is encoded once
    assert enc.batches == [1, 3] and len(out) == 5
    np.testing.assert_array_equal(out[0], first[0])
    np.testing.assert_array_equal(out[4], out[0])
    again = cache.get_or_compute(refs, enc)
    assert enc.batches == [1, 3]  # all cached now
    for a, b in zip(out, again, strict=False):
        np.testing.assert_array_equal(a, b)
    # the values are the encoder's, through float16
    direct = clip.image_tokens([r.pil() for r in filled.references("Eileen", with_images=True)])
    np.testing.assert_allclose(again[0], direct[0].astype(np.float16).astype(np.float32))
    assert not np.allclose(again[0], again[1])
    row = filled.store.tokens.search().where(f"reference_id = '{refs[0].id}'").to_list()[0]
    assert row["dtype"] == "float16" and list(row["shape"]) == [TINY_TOKENS, 48]
    assert len(row["data"]) == TINY_TOKENS * 48 * 2 and row["entity_id"] == refs[0].entity_id


def test_pooled_layer_and_negative(filled, clip):
    cache = TokenCache(filled)
    pooled = OpenClipTokenEncoder(clip, "pooled")
    plus = OpenClipTokenEncoder(clip, "penultimate")
    refs = filled.references("Eileen", with_images=True)
    [a, _] = cache.get_or_compute(refs, pooled)
    raw = clip.image_features([refs[0].pil()], normalize=False)[0]
    np.testing.assert_allclose(a, raw.astype(np.float16).astype(np.float32))
    assert cache.count(pooled.spec) == 2 and cache.count(plus.spec) == 0  # specs are separate keys
    assert np.all(pooled.negative() == 0) and pooled.negative().shape == (32,)
    assert plus.negative().shape == (TINY_TOKENS, 48) and np.abs(plus.negative()).sum() > 0
    with pytest.raises(InvalidInputError, match="layer"):
        OpenClipTokenEncoder(clip, "last")


def test_changed_reference_is_recomputed(filled, clip):
    cache = TokenCache(filled)
    enc = Counting(OpenClipTokenEncoder(clip))
    ref = filled.references("Eileen", with_vectors=False)[0]
    old = cache.get_or_compute([ref], enc)[0]
    assert cache.get(ref.id, enc.spec) is not None
    # the reference's image changes under the same id (e.g. an import replaced it)
    other = filled.references("Chelsea", with_images=True)[0]
    filled.store.references.update(where=f"id = '{ref.id}'", values={"image": other.image, "sha256": other.sha256})
    assert cache.get(ref.id, enc.spec) is None  # stale
    changed = filled.reference(ref.id)
    new = cache.get_or_compute([changed], enc)[0]
    assert enc.batches == [1, 1] and not np.allclose(new, old)
    assert cache.count(enc.spec) == 1  # replaced, not added
    np.testing.assert_array_equal(cache.get(ref.id, enc.spec), new)


def test_tokens_go_with_their_reference_and_entity(filled, clip):
    cache = TokenCache(filled)
    enc = OpenClipTokenEncoder(clip)
    refs = filled.references(with_vectors=False)
    cache.get_or_compute(refs, enc)
    assert cache.count() == 4
    chelsea = filled.references("Chelsea", with_vectors=False)
    filled.remove_references([chelsea[0].id])
    assert cache.count() == 3 and cache.get(chelsea[0].id, enc.spec) is None
    filled.remove("Eileen")
    assert cache.count() == 1


def test_put_get_and_bad_input_leave_the_cache_unchanged(filled, store, clip):
    cache = TokenCache(filled)
    ref = filled.references("Eileen", with_vectors=False)[0]
    cache.put(ref, "custom:spec", np.arange(6, dtype=np.float64).reshape(2, 3))
    np.testing.assert_array_equal(cache.get(ref.id, "custom:spec"), np.arange(6).reshape(2, 3))
    big = np.array([1e6, -2.0])  # beyond float16: kept as float32, not inf
    cache.put(ref, "big", big)
    np.testing.assert_array_equal(cache.get(ref.id, "big"), big.astype(np.float32))
    before = cache.count()
    with pytest.raises(EmbedderError, match="NaN"):
        cache.put(ref, "nan", np.array([np.nan]))

    class Broken:
        spec = "broken:1"

        def encode(self, images):
            return np.zeros((len(images) + 1, 4))

    with pytest.raises(EmbedderError, match="one row per image"):
        cache.get_or_compute([ref], Broken())
    with pytest.raises(InvalidInputError, match="spec"):
        cache.get_or_compute([ref], type("NoSpec", (), {"spec": ""})())
    other = store.library("other")
    with pytest.raises(InvalidInputError, match="belongs to library"):
        TokenCache(other).put(ref, "custom:spec", np.ones(3))
    with pytest.raises(InvalidInputError, match="dtype"):
        TokenCache(filled, dtype="int8")
    assert cache.count() == before and TokenCache(other).count() == 0
    assert cache.get(ref.id, "never-stored") is None


def test_hf_clip_vision_encoder_fits_the_signature(filled):
    """The diffusers adapters' own encoder (transformers CLIPVision) goes through the same verb."""
    pytest.importorskip("transformers")
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=16,
        )
    ).eval()

    class HFEncoder:
        spec = "hf-clip-vision:tiny:image_embeds"

        def encode(self, images):
            pixels = torch.stack(
                [
                    torch.from_numpy(np.asarray(im.resize((32, 32)), np.float32).transpose(2, 0, 1) / 255)
                    for im in images
                ]
            )
            with torch.inference_mode():
                return model(pixels).image_embeds.numpy()

    refs = filled.references(with_vectors=False)
    out = TokenCache(filled).get_or_compute(refs, HFEncoder())
    assert [a.shape for a in out] == [(16,)] * 4
