"""Query by image: whole-image columns and the face column, aggregated per entity."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("dlib")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face_recognition_models is not installed", allow_module_level=True)

from memstore.errors import InvalidInputError
from memstore.image_search import ImageMatch, search_by_image

FACE = "dlib_dlib_face_recognition_resnet_model_v1"
HIST = "color_histogram_rgb8"


@pytest.fixture(scope="module")
def cast(tmp_path_factory):
    """Registered once for the module (dlib embeds five photos: ~9 s a test when it was per test):
    every test here only searches, and a search writes nothing but the FAISS cache it syncs."""
    from skimage import data

    from memstore.store import Store

    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface is not installed")
    insightface_images = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    photos = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee()}
    library = Store.init(tmp_path_factory.mktemp("image-search") / "db").library("default")
    library.configure(embedders=["color-histogram", "dlib"])
    astro = Image.fromarray(photos["astronaut"])
    library.register("Eileen", "character", images=[astro, ImageOps.mirror(astro)])
    library.register("Tom", "character", images=[str(insightface_images / "Tom_Hanks_54745.png")])
    library.register("Crowd", "character", images=[str(insightface_images / "t1.jpg")])
    library.register("Chelsea", "prop", images=[photos["chelsea"]])
    library.register("Coffee", "prop", images=[photos["coffee"]])
    return library


def test_a_new_photo_of_her_finds_her_by_face(cast, photos):
    query = Image.fromarray(photos["astronaut"]).crop((110, 30, 370, 290)).resize((300, 300))
    out = search_by_image(cast, query, k=3)
    assert set(out) == {HIST, FACE}
    faces = out[FACE]
    assert isinstance(faces[0], ImageMatch) and faces[0].name == "Eileen"
    assert faces[0].score > 0.95 and all(m.score < faces[0].score - 0.05 for m in faces[1:])
    assert len({m.entity_id for m in faces}) == len(faces)  # one row per entity, her best reference
    assert faces[0].reference_id in {r.id for r in cast.references("Eileen")}
    x0, y0, x1, y1 = faces[0].query_face_box
    assert 40 < (x0 + x1) / 2 < 180 and 20 < (y0 + y1) / 2 < 160  # her face in the crop
    assert out[HIST][0].query_face_box is None and out[HIST][0].column == HIST


def test_no_face_in_the_query_answers_only_whole_image_columns(cast, photos):
    out = search_by_image(cast, photos["chelsea"], k=2)
    assert out[FACE] == []
    assert out[HIST][0].name == "Chelsea" and out[HIST][0].score == pytest.approx(1.0, abs=1e-4)
    assert len(out[HIST]) == 2


def test_kind_filter_and_json(cast, photos, tmp_path):
    path = tmp_path / "q.png"
    Image.fromarray(photos["coffee"]).save(path)
    out = search_by_image(cast, str(path), k=5, kind="prop")
    assert FACE not in out  # faces index characters only
    assert [m.kind for m in out[HIST]] == ["prop", "prop"] and out[HIST][0].name == "Coffee"
    data = out[HIST][0].to_json()
    assert data["name"] == "Coffee" and data["query_face_box"] is None


def test_bad_input(cast):
    with pytest.raises(InvalidInputError, match="k must be"):
        search_by_image(cast, np.zeros((8, 8, 3), np.uint8), k=0)
    with pytest.raises(InvalidInputError):
        search_by_image(cast, "/nonexistent/query.png")
