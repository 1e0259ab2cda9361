"""open_clip embedder on a tiny architecture from a config JSON (random, seeded weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("open_clip")

from memstore.embedders import get_embedder
from memstore.errors import EmbedderError, EmbedderMismatchError, MissingWeightsError

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 48, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_TOKENS = 1 + (32 // 8) ** 2


def tiny_clip_config(folder: Path, seed: int = 0, **extra) -> dict:
    """An open-clip embedder config for the tiny architecture, its JSON written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "continuity-tiny-vit.json").write_text(json.dumps(TINY))
    return {
        "type": "open-clip",
        "model": "continuity-tiny-vit",
        "pretrained": None,
        "config_dir": str(folder),
        "device": "cpu",
        "seed": seed,
        **extra,
    }


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clip_configs")


@pytest.fixture(scope="module")
def clip(clip_dir):
    emb = get_embedder(tiny_clip_config(clip_dir))
    emb.load()
    return emb


@pytest.fixture(scope="module")
def images():
    from skimage import data

    return [Image.fromarray(data.astronaut()), Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]


def test_spec_column_and_dims(clip):
    assert clip.spec == "open-clip:continuity-tiny-vit:random-seed0"
    assert clip.column_name == "open_clip_continuity_tiny_vit_random_seed0"
    assert clip.ndims == 32 and clip.has_text and clip.modality == "image"


def test_image_and_text_vectors_are_normalised_and_distinct(clip, images):
    vecs = clip.embed_images(images)
    assert vecs.shape == (3, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vecs[0], vecs[1])
    texts = clip.embed_texts(["an astronaut", "a cat", "a cup of coffee"])
    assert texts.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])


def test_batches_do_not_change_results(clip_dir, images):
    one = get_embedder(tiny_clip_config(clip_dir, batch_size=1)).embed_images(images)
    three = get_embedder(tiny_clip_config(clip_dir, batch_size=3)).embed_images(images)
    np.testing.assert_allclose(one, three, atol=1e-5)


def test_random_weights_are_seeded(clip, clip_dir, images):
    again = get_embedder(tiny_clip_config(clip_dir)).embed_images(images[:1])
    other = get_embedder(tiny_clip_config(clip_dir, seed=1)).embed_images(images[:1])
    np.testing.assert_allclose(again, clip.embed_images(images[:1]), atol=1e-6)
    assert not np.allclose(again, other, atol=1e-3)


def test_penultimate_tokens_match_a_forward_hook(clip, images):
    import torch

    model = clip.load()
    captured = {}
    block = model.visual.transformer.resblocks[-2]
    handle = block.register_forward_hook(lambda mod, inp, out: captured.setdefault("x", out))
    try:
        with torch.inference_mode():
            pooled = model.encode_image(clip._pixels(images[:2]))
    finally:
        handle.remove()
    hooked = captured["x"]
    if not model.visual.transformer.batch_first:
        hooked = hooked.transpose(0, 1)
    tokens = clip.image_tokens(images[:2])
    assert tokens.shape == (2, TINY_TOKENS, 48)
    np.testing.assert_allclose(tokens, hooked.numpy(), atol=1e-5)
    np.testing.assert_allclose(clip.image_features(images[:2], normalize=False), pooled.numpy(), atol=1e-5)


def test_local_weights_file_loads_those_weights(clip_dir, tmp_path, images):
    from safetensors.torch import save_file

    seeded = get_embedder(tiny_clip_config(clip_dir, seed=7))
    path = tmp_path / "tiny-weights.safetensors"
    save_file({k: v.contiguous() for k, v in seeded.load().state_dict().items()}, str(path))
    from_file = get_embedder(tiny_clip_config(clip_dir, pretrained=str(path)))
    assert from_file.spec == "open-clip:continuity-tiny-vit:tiny-weights.safetensors"
    np.testing.assert_allclose(from_file.embed_images(images[:2]), seeded.embed_images(images[:2]), atol=1e-5)


def test_missing_weights_never_download(monkeypatch, tmp_path):
    import open_clip.factory
    import open_clip.pretrained

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", no_download)
    monkeypatch.setattr(open_clip.factory, "download_pretrained", no_download, raising=False)
    emb = get_embedder(
        {"type": "open-clip", "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "cache_dir": str(tmp_path)}
    )
    with pytest.raises(MissingWeightsError) as err:
        emb.load()
    message = str(err.value)
    assert "ViT-B-32/laion2b_s34b_b79k" in message and str(tmp_path) in message and "pretrained=/path" in message
    with pytest.raises(MissingWeightsError, match="no file at"):
        get_embedder({"type": "open-clip", "pretrained": str(tmp_path / "absent.safetensors")}).load()
    with pytest.raises(EmbedderError, match="no pretrained tag 'nonsense'"):
        get_embedder({"type": "open-clip", "pretrained": "nonsense"}).load()
    with pytest.raises(EmbedderError, match="no architecture"):
        _ = get_embedder({"type": "open-clip", "model": "ViT-Nope", "pretrained": None}).ndims


def test_library_stores_clip_and_face_columns(clip, clip_dir, library, photos):
    library.configure(embedders=[tiny_clip_config(clip_dir), {"type": "dlib"}])
    seen = []
    flipped = np.asarray(ImageOps.mirror(Image.fromarray(photos["astronaut"])))
    library.register("Eileen", "character", images=[photos["astronaut"], flipped], progress=seen.append)
    library.register("Chelsea", "prop", images=[photos["chelsea"]])
    columns = library.store.vector_columns()
    face_col = "dlib_dlib_face_recognition_resnet_model_v1"
    assert columns[clip.column_name] == {"embedder": "open-clip", "spec": clip.spec, "dim": "32"}
    assert columns[face_col]["dim"] == "128"
    assert sum(seen) == 4  # two images, two embedders
    eileen = library.references("Eileen")
    for ref in eileen:
        assert set(ref.vectors) == {clip.column_name, face_col}
        _, y0, _, y1 = ref.face_box
        assert 60 < y0 < y1 < 200 and 0.3 < ref.quality <= 1  # the face, not the suit or the flag
    assert {round(r.face_box[0]) for r in eileen} != {round(eileen[0].face_box[0])}  # flipped: box moved
    [cat] = library.references("Chelsea")
    assert set(cat.vectors) == {clip.column_name} and cat.face_box is None  # faces index characters only
    hits = library.search(library.references("Eileen")[0].vectors[face_col], face_col, k=2)
    assert hits[0][0] > 0.95 and {h[1].entity_id for h in hits} == {eileen[0].entity_id}


def test_column_made_by_another_embedder_is_refused(clip_dir, library, photos):
    library.configure(embedders=[tiny_clip_config(clip_dir, column="clip")])
    library.register("Eileen", "character", images=[photos["astronaut"]])
    with pytest.raises(EmbedderMismatchError, match="random-seed0"):
        library.configure(embedders=[tiny_clip_config(clip_dir, seed=3, column="clip")])
    assert library.config["embedders"][0]["column"] == "clip"
