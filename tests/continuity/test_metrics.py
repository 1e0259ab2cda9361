"""Consistency metrics on real photos: CLIP-I (weightless embedder), dlib face similarity, OCCM."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from continuity.keyframes import tiny_embed
from continuity.metrics import (
    ShotFaces,
    character_count,
    consistency,
    cross_shot_clip_i,
    face_embed_with,
    face_similarity,
    occm,
)
from memstore.errors import InvalidInputError


def _jitter(photo: np.ndarray, seed: int) -> np.ndarray:
    """Another 'frame' of the same subject: a small crop and some noise."""
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    dy, dx = rng.integers(0, h // 20 + 1), rng.integers(0, w // 20 + 1)
    crop = photo[dy : h - h // 20 + dy, dx : w - w // 20 + dx].astype(np.int16)
    return np.clip(crop + rng.normal(0, 5, crop.shape), 0, 255).astype(np.uint8)


def test_occm_formula():
    assert occm(2, 2) == 100.0
    assert occm(3, 2) == pytest.approx(100 * math.exp(-0.5), rel=1e-5)
    assert occm(1, 2) == occm(3, 2)  # symmetric in the error
    assert occm(0, 4) == pytest.approx(100 * math.exp(-1), rel=1e-5)
    assert occm(0, 0) == 100.0
    assert occm(1, 0) < 1e-100  # a character where none was expected: no match
    with pytest.raises(InvalidInputError):
        occm(-1, 2)


def test_clip_i_consistent_entity_scores_higher(photos):
    consistent = {
        0: [_jitter(photos["astronaut"], 0)],
        2: [_jitter(photos["astronaut"], 1)],
        5: [_jitter(photos["astronaut"], 2)],
    }
    drifting = {0: [photos["astronaut"]], 2: [photos["chelsea"]], 5: [photos["coffee"]]}
    good, n_good = cross_shot_clip_i(consistent, tiny_embed)
    bad, n_bad = cross_shot_clip_i(drifting, tiny_embed)
    assert n_good == n_bad == 3
    assert good > 0.9 > bad


def test_clip_i_counts_only_cross_shot_pairs(photos):
    # two identical images in one shot and a different one in another: the identical pair is
    # within a shot and must not lift the score
    per_shot = {0: [photos["astronaut"], photos["astronaut"]], 1: [photos["chelsea"]]}
    score, pairs = cross_shot_clip_i(per_shot, tiny_embed)
    assert pairs == 2
    v = tiny_embed([photos["astronaut"], photos["chelsea"]])
    assert score == pytest.approx(float(v[0] @ v[1]), abs=1e-5)
    assert cross_shot_clip_i({0: [photos["astronaut"], photos["chelsea"]]}, tiny_embed) == (None, 0)


# --- faces with dlib's ResNet, which ships inside face_recognition_models -----------------------


@pytest.fixture(scope="module")
def dlib_face_embed():
    dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed (extra: face)")
    spec = importlib.util.find_spec("face_recognition_models")  # not imported: it needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models is not installed (extra: face)")
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    resnet = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(images):
        out = []
        for img in images:
            arr = np.ascontiguousarray(img)
            boxes = detector(arr, 1)
            if not boxes:
                out.append(None)
                continue
            box = max(boxes, key=lambda b: b.width() * b.height())  # the largest face, as memstore's face embedders do
            out.append(np.asarray(resnet.compute_face_descriptor(arr, shape(arr, box)), dtype=np.float32))
        return out

    return embed


@pytest.fixture(scope="module")
def t1_faces(insightface_images_module):
    """Six different people, cropped from insightface's group photo t1.jpg."""
    import dlib

    t1 = np.asarray(Image.open(insightface_images_module / "t1.jpg").convert("RGB"))
    crops = []
    for b in dlib.get_frontal_face_detector()(t1, 1):
        pad = b.width() // 2
        y0, y1 = max(0, b.top() - pad), min(t1.shape[0], b.bottom() + pad)
        x0, x1 = max(0, b.left() - pad), min(t1.shape[1], b.right() + pad)
        crops.append(np.ascontiguousarray(t1[y0:y1, x0:x1]))
    assert len(crops) >= 4
    return crops


@pytest.fixture(scope="module")
def insightface_images_module() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "images"


def test_face_similarity_same_person_beats_different_people(photos, dlib_face_embed, t1_faces):
    astronaut = photos["astronaut"]
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    rescaled = np.asarray(Image.fromarray(astronaut).resize((400, 400), Image.BICUBIC))
    same = face_similarity({0: [mirrored], 1: [rescaled]}, dlib_face_embed, references=[astronaut])
    different = face_similarity(
        {0: [t1_faces[0]], 1: [t1_faces[1]], 2: [t1_faces[2]]}, dlib_face_embed, references=[astronaut]
    )
    assert same["faces_found"] == 2 and different["faces_found"] == 3
    assert same["face_ref"] > different["face_ref"] + 0.05
    assert same["face_shot"] > different["face_shot"] + 0.05
    assert different["face_shot_pairs"] == 3


def test_face_similarity_counts_images_without_faces(photos, dlib_face_embed):
    r = face_similarity(
        {0: [photos["astronaut"]], 1: [photos["coffee"]]}, dlib_face_embed, references=[photos["chelsea"]]
    )
    assert r["faces_found"] == 1 and r["references_with_face"] == 0
    assert r["face_ref"] is None and r["face_shot"] is None


def test_consistency_report(photos, dlib_face_embed, t1_faces):
    astronaut = photos["astronaut"]
    appearances = {
        "Eileen": {0: [astronaut], 3: [np.ascontiguousarray(astronaut[:, ::-1])]},
        "Stranger": {0: [t1_faces[0]], 1: [t1_faces[3]]},  # a "character" played by two people
        "Kitchen": {1: [photos["coffee"]], 2: [_jitter(photos["coffee"], 5)]},
    }
    report = consistency(
        appearances,
        embed=tiny_embed,
        face_embed=dlib_face_embed,
        references={"Eileen": [astronaut]},
        character_counts={0: (2, 2), 1: (1, 2), 3: (1, 1)},
        face_entities=["Eileen", "Stranger"],
    )
    e, s, k = (report.entities[n] for n in ("Eileen", "Stranger", "Kitchen"))
    assert e.shots == [0, 3] and e.clip_i_pairs == 1
    assert e.face_ref > 0.95 and e.face_shot > s.face_shot
    assert k.face_shot is None and k.faces_found is None  # not a character: no face metric
    assert report.clip_i == pytest.approx(np.mean([e.clip_i, s.clip_i, k.clip_i]))
    assert report.face_ref == pytest.approx(e.face_ref)
    assert report.occm_per_shot == {0: 100.0, 1: pytest.approx(100 * math.exp(-0.5), rel=1e-5), 3: 100.0}
    assert report.occm == pytest.approx((200 + 100 * math.exp(-0.5)) / 3, rel=1e-5)
    js = report.to_json()
    assert set(js["entities"]) == {"Eileen", "Stranger", "Kitchen"} and js["occm_per_shot"]["0"] == 100.0
    import json

    json.dumps(js)  # plain data


def test_consistency_without_embedder_notes_the_fallback(photos):
    report = consistency({"Cat": {0: [photos["chelsea"]], 1: [photos["chelsea"]]}})
    assert report.clip_i == pytest.approx(1.0, abs=1e-5)
    assert report.face_ref is None and report.occm is None
    assert "weightless" in report.notes[0]


def test_face_embed_with_maps_nan_rows_to_none(photos):
    class Fake:  # a memstore-style face embedder: NaN where no face
        def embed_images(self, images):
            out = np.full((len(images), 3), np.nan, dtype=np.float32)
            out[0] = [1, 0, 0]
            return out

    got = face_embed_with(Fake())([photos["astronaut"], photos["coffee"]])
    assert got[0].tolist() == [1, 0, 0] and got[1] is None


# --- figures named for what they are (issue 20, item 12) ----------------------------------------


def test_histogram_similarity_is_not_published_as_clip_i(photos):
    appearances = {"Cat": {0: [photos["chelsea"]], 1: [_jitter(photos["chelsea"], 3)]}}
    histogram = consistency(appearances, embed=tiny_embed, image_embedder="color-histogram").to_json()
    assert "clip_i" not in histogram and histogram["image_embedder"] == "color-histogram"
    assert histogram["image_similarity"] > 0.9 and "clip_i" not in histogram["entities"]["Cat"]
    assert histogram["entities"]["Cat"]["image_similarity_pairs"] == 1
    unnamed = consistency(appearances, embed=tiny_embed).to_json()  # an embedder nobody named is not CLIP either
    assert "clip_i" not in unnamed and unnamed["image_embedder"] == "unnamed image embedder"
    weightless = consistency(appearances).to_json()
    assert "clip_i" not in weightless and "tiny_embed" in weightless["image_embedder"]


def test_clip_similarity_is_published_as_clip_i_too(photos):
    appearances = {"Cat": {0: [photos["chelsea"]], 1: [_jitter(photos["chelsea"], 3)]}}
    js = consistency(appearances, embed=tiny_embed, image_embedder="open-clip:ViT-B-32:laion2b").to_json()
    assert js["clip_i"] == js["image_similarity"] and js["entities"]["Cat"]["clip_i"] == js["image_similarity"]


def test_animatic_metrics_carry_a_caveat(photos):
    appearances = {"Cat": {0: [photos["chelsea"]], 1: [photos["chelsea"]]}}
    animatic = consistency(appearances, generator="animatic").to_json()
    assert animatic["generator"] == "animatic" and "compositor" in animatic["caveat"]
    assert consistency(appearances, generator="ip-adapter").to_json()["caveat"] is None


def test_occm_definition_is_in_the_json(photos):
    appearances = {"Cat": {0: [photos["chelsea"]]}}
    given = consistency(appearances, character_counts={0: (1, 1), 1: None}).to_json()
    assert "as the caller counted" in given["occm_definition"]  # pairs handed in: the JSON claims no more
    assert given["occm_per_shot"] == {"0": 100.0} and given["occm_unscored_shots"] == [1]  # None: not scored, not 100
    face = _unit_vec(1, 0)
    counted = consistency(appearances, shot_faces={0: ShotFaces([[face]], 1), 1: ShotFaces([[]], 0)}).to_json()
    assert (
        "location references" in counted["occm_definition"] and "props are never counted" in counted["occm_definition"]
    )
    assert counted["occm_per_shot"] == {"0": 100.0} and counted["occm_unscored_shots"] == [1]
    assert consistency(appearances).to_json()["occm_definition"] is None  # no OCCM, no definition
    with pytest.raises(InvalidInputError):
        consistency(appearances, character_counts={0: (1, 1)}, shot_faces={0: ShotFaces([[face]], 1)})


def _unit_vec(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_faces_of_the_location_photo_are_not_counted_as_characters():
    # a market photo with six people, composited behind one character: seven faces in the frame
    crowd = [_unit_vec(*np.eye(8)[i]) for i in range(6)]
    hero = _unit_vec(*np.eye(8)[7])
    frame = [hero, *[c + 0.05 * hero for c in crowd]]  # the crowd, slightly changed by the compositing
    assert occm(7, 1) < 1.0  # what counting every face scored
    assert character_count([frame], 1, location_faces=crowd) == (1, 1)
    assert character_count([frame], 1) == (7, 1)  # without the location's faces, all of them count


def test_character_count_takes_the_most_crowded_keyframe_and_skips_the_uncountable():
    a, b = _unit_vec(1, 0, 0), _unit_vec(0, 1, 0)
    assert character_count([[a], [a, b], []], 2) == (2, 2)
    assert character_count([[a, None]], 2) == (2, 2)  # a face without a vector is still a face
    assert character_count([[], []], 0) is None  # a cat story: nothing a face detector can count
    assert character_count([[a]], 0) == (1, 0)  # an unexpected person is an error, not unscored
    with pytest.raises(InvalidInputError):
        character_count([[a]], -1)
