"""IP-Adapter FaceID fed the face vectors stored with each reference (nothing is encoded)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from generators import ShotSpec
from generators.testing import mean_abs, pattern, sample_result
from memstore.errors import EmbedderError, EmbedderMismatchError

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
        pipe,
        adapter=folder,
        weight_name="ip-adapter-faceid.safetensors",
        num_inference_steps=2,
        scale=1.0,
        face_column="face_arcface",  # an in-memory result, no store: the column is named
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


# --- on a real store: the ArcFace column comes from the store's vector-column metadata -----------


def _export_arcface(path: Path) -> None:
    """A small network shaped like ArcFace (1x3x112x112 -> 512), which insightface loads as ArcFaceONNX."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 4, 4), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 28 * 28, 512)
    ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            torch.zeros(1, 3, 112, 112),
            str(path),
            input_names=["data"],
            output_names=["fc1"],
            dynamic_axes={"data": {0: "batch"}, "fc1": {0: "batch"}},
            dynamo=False,
        )


@pytest.fixture(scope="module")
def arcface_onnx(tmp_path_factory):
    pytest.importorskip("insightface")
    pytest.importorskip("onnx")
    path = tmp_path_factory.mktemp("arcface") / "tiny_arcface.onnx"
    _export_arcface(path)
    return path


@pytest.fixture(scope="module")
def faceid512(torch_threads, tmp_path_factory):
    """A FaceID adapter that reads 512-d face vectors, as IP-Adapter-FaceID does."""
    from generators.testing import save_adapter, tiny_faceid_state_dict, tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    folder = tmp_path_factory.mktemp("faceid512")
    save_adapter(tiny_faceid_state_dict(pipe.unet, id_dim=512), folder, "ip-adapter-faceid.safetensors")
    return pipe, folder


def _faceid(faceid512, **kwargs):
    from generators.faceid import FaceIDGenerator

    pipe, folder = faceid512
    if not hasattr(pipe.unet, "encoder_hid_proj") or pipe.unet.encoder_hid_proj is None:
        kwargs["adapter"] = folder
    return FaceIDGenerator(pipe, weight_name="ip-adapter-faceid.safetensors", num_inference_steps=2, **kwargs)


def _store(tmp_path, embedders, vectors_for):
    """A library with ``embedders`` configured and Aria and Bram registered with ``vectors_for(column)``."""
    from memstore import open_library
    from memstore.embedders import get_embedder

    lib = open_library(str(tmp_path / "db"), "default")
    built = [get_embedder(e) for e in embedders]
    lib.configure(embedders=built)
    for seed, name in ((1, "Aria"), (2, "Bram")):
        vectors = {e.column_name: vectors_for(e, seed) for e in built if e.modality == "face"}
        lib.register(name, "character", images=[pattern(seed)], vectors=vectors)
    return lib, built


def _result(lib):
    from retrieval.query import Hit, RetrievalResult, ShotQuery

    hits = tuple(
        Hit(lib.get(name), 1.0, ("cast",), tuple(lib.references(lib.get(name), with_vectors=True)))
        for name in ("Aria", "Bram")
    )
    return RetrievalResult(ShotQuery(SHOT.prompt, cast=("Aria", "Bram")), hits)


def _vector(emb, seed):
    return np.random.default_rng(seed).standard_normal(emb.ndims)


@pytest.mark.slow
def test_on_a_real_store_the_insightface_column_conditions_every_character(faceid512, arcface_onnx, tmp_path):
    insightface = {"type": "insightface", "recognition": str(arcface_onnx), "detector": "dlib"}
    lib, (_, arcface) = _store(tmp_path, ["color-histogram", insightface], _vector)
    column = arcface.column_name
    assert column.startswith("insightface_tiny_arcface") and column != "face_arcface"
    gen = _faceid(faceid512, library=lib)
    assert gen.face_column == column
    result = _result(lib)
    cond = gen.prepare(SHOT, result)
    assert [e.name for e in cond.entities] == ["Aria", "Bram"] and cond.options["skipped"] == []
    stored = np.stack([h.references[0].vectors[column] for h in result.hits])
    assert stored.shape == (2, 512) and np.array_equal(cond.tensors["image_embeds"], stored)
    assert gen.generate(SHOT, cond, 1).frames.shape == (1, 32, 32, 3)


def test_a_store_without_arcface_vectors_is_one_line_naming_the_fix(faceid512, tmp_path):
    """dlib's 128-d vectors cannot feed an ArcFace projection: refused, by default and by name."""
    lib, (_, dlib) = _store(tmp_path, ["color-histogram", "dlib"], _vector)
    with pytest.raises(EmbedderError) as err:
        _faceid(faceid512, library=lib)
    message = str(err.value)
    assert "no such column" in message and dlib.column_name in message and "128-d" in message
    assert "continuity reindex --embedder insightface" in message and "\n" not in message
    with pytest.raises(EmbedderMismatchError, match=rf"{dlib.column_name}' holds 128-d dlib vectors"):
        _faceid(faceid512, library=lib, face_column=dlib.column_name)
    with pytest.raises(EmbedderError, match="'face_arcface' is not a vector column of this store"):
        _faceid(faceid512, library=lib, face_column="face_arcface")


def test_without_a_store_the_column_must_be_named_and_fit_the_adapter(faceid512):
    with pytest.raises(EmbedderError, match="pass library=.*or face_column="):
        _faceid(faceid512)
    gen = _faceid(faceid512, face_column="face_arcface")  # sample_result's vectors are 16-d
    with pytest.raises(EmbedderMismatchError, match="vector is 16-d, but the FaceID adapter reads 512-d"):
        gen.prepare(SHOT, sample_result())


def test_arcface_column_choice():
    from generators.faceid import arcface_column

    clip = {"embedder": "open-clip", "spec": "open-clip:ViT-B-32", "dim": "512"}  # 512-d, but not faces
    arc = {"embedder": "insightface", "spec": "insightface:buffalo_l", "dim": "512"}
    assert arcface_column({"clip": clip, "insightface_buffalo_l": arc}) == "insightface_buffalo_l"
    with pytest.raises(EmbedderError, match="no such column"):
        arcface_column({"clip": clip})
    two = {"a": arc, "b": {**arc, "spec": "insightface:antelopev2"}}
    with pytest.raises(EmbedderError, match=r"2 ArcFace columns \(a, b\); pick one with --option face_column="):
        arcface_column(two)
    assert arcface_column(two, preferred=["b"]) == "b"  # the library's own embedder decides
    with pytest.raises(EmbedderMismatchError, match="holds 512-d open-clip vectors"):
        arcface_column({"clip": clip, "a": arc}, wanted="clip")


def test_story_run_gives_faceid_the_library(monkeypatch, tmp_path):
    from continuity.generator_setup import build_generator
    from generators.faceid import FaceIDGenerator

    seen = {}
    monkeypatch.setattr(FaceIDGenerator, "from_pretrained", classmethod(lambda cls, *a, **kw: seen.update(kw)))
    (tmp_path / "ip-adapter-faceid_sd15.bin").write_bytes(b"")
    library = object()
    build_generator("faceid", library, model=str(tmp_path), adapter=str(tmp_path / "ip-adapter-faceid_sd15.bin"))
    assert seen["library"] is library
