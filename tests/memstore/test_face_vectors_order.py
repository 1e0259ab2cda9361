"""Face vectors survive whatever the order of a registration's images: a first image without a
face must not decide that the whole batch has no face column (issue #20, item 2)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("dlib")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face_recognition_models is not installed", allow_module_level=True)

from memstore.store import Store


@pytest.mark.parametrize("order", ["faceless-first", "face-first"])
def test_face_vector_kept_when_first_image_has_no_face(tmp_path, photos, order):
    library = Store.init(tmp_path / "db").library("default")
    library.configure(embedders=["color-histogram", "dlib"])
    images = [photos["chelsea"], photos["astronaut"]]  # a cat (no human face), then a person
    if order == "face-first":
        images.reverse()
    library.register("Eileen", "character", images=images)
    refs = library.references("Eileen")
    column = next(e.column_name for e in library.embedders if e.modality == "face")
    with_face = [r for r in refs if column in r.vectors]
    assert len(refs) == 2
    assert len(with_face) == 1, f"expected the astronaut's face vector, got columns {[sorted(r.vectors) for r in refs]}"
    assert with_face[0].face_box is not None
    assert np.isclose(np.linalg.norm(with_face[0].vectors[column]), 1.0, atol=1e-3)
