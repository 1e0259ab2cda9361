"""The dense paths with a real open_clip model: a tiny architecture from a custom config JSON,
random weights (no weights can be downloaded). Checks the plumbing: text tower -> FAISS index of
image vectors -> entities, and the text->text cache; not CLIP's semantics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval import Retriever, ShotQuery

from .conftest import image

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture
def tiny_clip(tmp_path):
    pytest.importorskip("open_clip")
    from memstore.embedders import clip

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "tiny-retrieval-clip.json").write_text(json.dumps(TINY))
    return clip.OpenClipEmbedder(model="tiny-retrieval-clip", pretrained=None, config_dir=str(folder), device="cpu")


@pytest.mark.slow
def test_text_to_image_and_text_to_text_with_tiny_open_clip(library, tiny_clip):
    library.set_embedders([tiny_clip])
    library.register("Orb", "prop", images=[image(1), image(2)], description="a glowing crystal sphere")
    library.register("Boot", "prop", images=[image(3)], description="a muddy leather shoe")
    # random weights: cosines are arbitrary, so accept any cosine as full evidence and check plumbing
    everything = {"clip_image": (-1.0, -0.99), "clip_text": (-1.0, -0.99)}
    retriever = Retriever(library, text_embedder=tiny_clip, lexical=False, dense_ranges=everything)
    result = retriever.retrieve(ShotQuery("a glowing crystal sphere", references_per_entity=1))
    assert {h.name for h in result.hits} == {"Orb", "Boot"}
    for hit in result.hits:
        assert any(r.startswith("CLIP text->image") for r in hit.reasons)
        assert any(r.startswith("CLIP text->text") for r in hit.reasons)
    # the text->image score is the cosine of the prompt's text vector and the best reference's image vector
    text = np.asarray(tiny_clip.embed_texts(["a glowing crystal sphere"]))[0]
    orb = next(h for h in result.hits if h.name == "Orb")
    best = max(float(r.vectors[tiny_clip.column_name] @ text) for r in library.references("Orb"))
    assert dict(orb.signals)["clip_image"] == pytest.approx(best, abs=1e-4)
