"""A keyframe is written back to a character only when a face in it is that character (issue 20,
item 13): the face check must be able to reject, not only accept. Real faces: six different
people from insightface's group photo t1.jpg, embedded by dlib's ResNet (real weights)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from continuity.keyframes import KeyframeWriter
from retrieval import Retriever, ShotQuery


@pytest.fixture(scope="module")
def people() -> list[np.ndarray]:
    """Crops of four different people of t1.jpg, each twice the size of its face. Module-scoped:
    the upsampled face detection takes seconds, and the tests only read the crops."""
    dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed (extra: face)")
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface is not installed")
    insightface_images = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    photo = np.asarray(Image.open(insightface_images / "t1.jpg").convert("RGB"))
    crops = []
    for box in list(dlib.get_frontal_face_detector()(photo, 1))[:4]:
        pad = box.width()
        y0, y1 = max(0, box.top() - pad), min(photo.shape[0], box.bottom() + pad)
        x0, x1 = max(0, box.left() - pad), min(photo.shape[1], box.right() + pad)
        crops.append(np.asarray(Image.fromarray(photo[y0:y1, x0:x1]).resize((192, 192))))
    assert len(crops) == 4
    return crops


@pytest.fixture
def faced(library, people):
    library.configure(embedders=[{"type": "color-histogram"}, {"type": "dlib"}])
    library.register("Aria", "character", images=[people[0]], description="a woman")
    library.register("Bram", "character", images=[people[1]], description="a man")
    return library


def _attributed(library, frame: np.ndarray) -> dict[str, bool]:
    result = Retriever(library).retrieve(ShotQuery("Aria and Bram", cast=("Aria", "Bram")))
    shown = KeyframeWriter(library).attribute(frame, result)
    return {entity.name: face is not None for entity, face in shown}


def test_a_keyframe_of_someone_else_is_not_attributed_to_the_cast(faced, people):
    assert _attributed(faced, people[0]) == {"Aria": True}  # Aria's face: Aria only, verified by face
    assert _attributed(faced, people[1]) == {"Bram": True}
    assert _attributed(faced, people[2]) == {}  # a stranger: neither character gets the frame


def test_a_two_shot_gives_each_character_their_own_face(faced, people):
    two_shot = np.concatenate([people[1], people[0]], axis=1)  # Bram left, Aria right
    result = Retriever(faced).retrieve(ShotQuery("Aria and Bram", cast=("Aria", "Bram")))
    shown = {entity.name: face for entity, face in KeyframeWriter(faced).attribute(two_shot, result)}
    assert set(shown) == {"Aria", "Bram"}
    assert shown["Bram"][1][0] < 192 <= shown["Aria"][1][0]  # each matched the face on its side
