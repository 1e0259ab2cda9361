"""Face identity on real photos: dlib's shipped ResNet, YuNet from ../shared, and insightface's
ArcFace path with a small ArcFace-shaped ONNX model exported here."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("dlib")
if importlib.util.find_spec("face_recognition_models") is None:  # importing it needs pkg_resources
    pytest.skip("face_recognition_models is not installed", allow_module_level=True)

from memstore.embedders import get_embedder
from memstore.errors import EmbedderError, MissingWeightsError


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _inside(point, box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Astronaut (Eileen Collins) variants, other people (t1.jpg, Tom Hanks) and a cat."""
    import importlib.util

    from skimage import data

    spec = importlib.util.find_spec("insightface")
    if spec is None:
        pytest.skip("insightface is not installed (its wheel ships the test photos)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    astro = Image.fromarray(data.astronaut())
    return {
        "astro": astro,
        "astro_flip": ImageOps.mirror(astro),
        "astro_crop": astro.crop((100, 20, 360, 300)).resize((390, 420)),
        "astro_small": astro.resize((300, 300)),
        "t1": Image.open(folder / "t1.jpg").convert("RGB"),
        "tom": Image.open(folder / "Tom_Hanks_54745.png").convert("RGB"),
        "cat": Image.fromarray(data.chelsea()),
    }


@pytest.fixture(scope="module")
def dlib_emb():
    return get_embedder("dlib")


@pytest.fixture
def yunet_path(shared_dir) -> Path:
    path = shared_dir / "models" / "yunet" / "yunet_s_640_640.onnx"
    if not path.is_file():
        pytest.skip(f"YuNet model absent at {path}")
    return path


def _identity_check(emb, faces):
    same = ["astro", "astro_flip", "astro_crop", "astro_small"]
    embs = emb.embed([faces[k] for k in same + ["tom"]])
    vecs = np.stack([e.vector for e in embs])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    same_scores = sims[:4, :4][~np.eye(4, dtype=bool)]
    # every other person: the six people of t1.jpg and Tom Hanks
    rgb = np.asarray(faces["t1"])
    dets = emb.face_detector().detect(rgb, want_kps=emb.needs_kps)
    assert len(dets) == 6
    from memstore.embedders import normalize_rows

    others = normalize_rows(emb._embed_faces([(rgb, d) for d in dets]))
    different = np.concatenate([sims[:4, 4], (others @ vecs[:4].T).ravel()])
    assert same_scores.min() > 0.97, same_scores
    assert different.max() < same_scores.min() - 0.05, (different.max(), same_scores.min())
    return embs


def test_dlib_same_person_high_others_low(dlib_emb, faces):
    embs = _identity_check(dlib_emb, faces)
    x0, y0, x1, y1 = embs[0].face_box
    assert _inside(((x0 + x1) / 2, (y0 + y1) / 2), (160, 60, 290, 190))  # her face in astronaut()
    assert embs[0].vector.shape == (128,) and 0 < embs[0].quality <= 1


def test_dlib_no_face_is_recorded_not_raised(dlib_emb, faces):
    [cat] = dlib_emb.embed([faces["cat"]])
    assert cat.vector is None and cat.face_box is None
    rows = dlib_emb.embed_images([faces["cat"], faces["astro"]])
    assert np.isnan(rows[0]).all() and np.isfinite(rows[1]).all()


def test_dlib_detects_the_six_people_of_t1(dlib_emb, faces):
    dets = dlib_emb.face_detector().detect(np.asarray(faces["t1"]))
    assert len(dets) == 6
    centres = sorted(((d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2) for d in dets)
    xs = [c[0] for c in centres]
    assert min(np.diff(xs)) > 60  # six separate faces, not one face found six times
    [emb] = dlib_emb.embed([faces["t1"]])
    areas = [(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in dets]
    box = emb.face_box
    assert (box[2] - box[0]) * (box[3] - box[1]) == pytest.approx(max(areas))  # the largest face


def test_yunet_boxes_agree_with_dlib(yunet_path, dlib_emb, faces):
    yunet = get_embedder({"type": "dlib", "detector": "yunet", "yunet_model": str(yunet_path)})
    for key in ("astro", "t1", "tom"):
        rgb = np.asarray(faces[key])
        a = dlib_emb.face_detector().detect(rgb)
        b = yunet.face_detector().detect(rgb, want_kps=True)
        assert len(b) == len(a) >= 1, key
        for det in a:  # each dlib face has a YuNet face around its centre
            centre = ((det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2)
            match = max(b, key=lambda d: _iou(d.box, det.box))
            assert _iou(match.box, det.box) > 0.4 and _inside(centre, match.box), key
            assert match.kps[0][0] < match.kps[1][0]  # eyes in ArcFace order: image-left first
    assert yunet.embed([faces["cat"]])[0].vector is None
    _identity_check(yunet, faces)


def test_yunet_is_found_through_the_env_var(yunet_path, monkeypatch, faces):
    monkeypatch.setenv("CONTINUITY_YUNET", str(yunet_path))
    emb = get_embedder({"type": "dlib", "detector": "yunet"})
    assert emb.face_detector().model_path == str(yunet_path)
    with pytest.raises(MissingWeightsError, match="YuNet"):
        get_embedder({"type": "dlib", "detector": "yunet", "yunet_model": "/nonexistent/yunet.onnx"}).face_detector()


def _export_arcface(path: Path, seed: int = 0, size: int = 112) -> object:
    """A small network shaped like ArcFace (1x3x112x112 -> 1x512), exported to ONNX."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 4, 4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 4, 4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * (size // 16) ** 2, 512),
    ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            torch.zeros(1, 3, size, size),
            str(path),
            input_names=["data"],
            output_names=["fc1"],
            dynamic_axes={"data": {0: "batch"}, "fc1": {0: "batch"}},
            dynamo=False,
        )
    return net


@pytest.fixture(scope="module")
def arcface(tmp_path_factory):
    pytest.importorskip("insightface")
    pytest.importorskip("onnx")
    path = tmp_path_factory.mktemp("arcface") / "tiny_arcface.onnx"
    net = _export_arcface(path)
    return path, net


def test_insightface_loads_an_arcface_onnx_through_model_zoo(arcface):
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    path, _ = arcface
    assert isinstance(get_model(str(path)), ArcFaceONNX)
    emb = get_embedder({"type": "insightface", "recognition": str(path), "detector": "dlib"})
    assert emb.ndims == 512 and emb.modality == "face"
    assert emb.spec.startswith("insightface:tiny_arcface-")


def test_insightface_embedding_is_arcface_of_the_aligned_face(arcface, faces):
    import torch
    from insightface.utils import face_align

    path, net = arcface
    emb = get_embedder({"type": "insightface", "recognition": str(path), "detector": "dlib"})
    [result, cat] = emb.embed([faces["astro"], faces["cat"]])
    assert cat.vector is None
    det = emb.detect_largest(faces["astro"])
    assert det.kps.shape == (5, 2) and det.kps[0][0] < det.kps[1][0]
    assert list(det.box) == result.face_box
    # what insightface's FaceAnalysis computes: the 112x112 crop aligned on the five landmarks,
    # (x - 127.5) / 127.5 in RGB order, through the network
    bgr = np.ascontiguousarray(np.asarray(faces["astro"])[:, :, ::-1])
    crop = face_align.norm_crop(bgr, landmark=det.kps, image_size=112)
    x = torch.from_numpy(((crop[:, :, ::-1].astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1).copy())[None]
    with torch.inference_mode():
        expected = net(x).numpy()[0]
    np.testing.assert_allclose(result.vector, expected / np.linalg.norm(expected), atol=1e-5)
    # the eyes land where ArcFace's template puts them: the crop is a face, centred
    assert np.asarray(crop).shape == (112, 112, 3)


def test_insightface_spec_names_the_weights(arcface, tmp_path):
    path, _ = arcface
    other = tmp_path / "tiny_arcface.onnx"
    _export_arcface(other, seed=1)
    a = get_embedder({"type": "insightface", "recognition": str(path), "detector": "dlib"})
    b = get_embedder({"type": "insightface", "recognition": str(other), "detector": "dlib"})
    assert a.spec != b.spec  # same file name, other weights: another column


def test_insightface_missing_or_wrong_models(tmp_path, arcface):
    with pytest.raises(MissingWeightsError) as err:
        _ = get_embedder({"type": "insightface", "model": "buffalo_l", "root": str(tmp_path)}).ndims
    assert str(tmp_path / "models" / "buffalo_l") in str(err.value) and "recognition=" in str(err.value)
    with pytest.raises(MissingWeightsError, match="no file at"):
        _ = get_embedder({"type": "insightface", "recognition": str(tmp_path / "none.onnx")}).ndims
    wrong = tmp_path / "small.onnx"
    _export_arcface(wrong, size=64)  # 64x64 input: not something insightface routes to ArcFace
    with pytest.raises(EmbedderError, match="not an ArcFace"):
        _ = get_embedder({"type": "insightface", "recognition": str(wrong), "detector": "dlib"}).ndims
    with pytest.raises(MissingWeightsError, match="buffalo_l.*not found"):  # SCRFD comes from a pack
        get_embedder(
            {"type": "insightface", "recognition": str(arcface[0]), "detector": "scrfd", "root": str(tmp_path)}
        ).face_detector()


def test_insightface_pack_folder(tmp_path, arcface, yunet_path, faces):
    """A pack folder by path, with only a recognition model, detected by YuNet."""
    import shutil

    pack = tmp_path / "mypack"
    pack.mkdir()
    shutil.copy(arcface[0], pack / "w_tiny.onnx")
    emb = get_embedder({"type": "insightface", "model": str(pack), "detector": "yunet", "yunet_model": str(yunet_path)})
    assert emb.spec == "insightface:mypack"
    [res] = emb.embed([faces["astro"]])
    assert res.vector.shape == (512,) and _inside(((res.face_box[0] + res.face_box[2]) / 2, 120), (160, 60, 290, 190))
