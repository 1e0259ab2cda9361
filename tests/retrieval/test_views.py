"""The retriever picks the view that fits the shot's camera words (issue 14, item 3), and falls back
to the best reference when the entity has no such view."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from memstore.errors import InvalidInputError
from memstore.sheets import sheet_images
from retrieval import Retriever, ShotQuery
from retrieval.views import wanted_views

from .conftest import image

VIEWS = ["front", "three-quarter", "profile", "back"]


def _sheet() -> Image.Image:
    sheet = Image.new("RGB", (480, 160), (245, 243, 240))
    draw = ImageDraw.Draw(sheet)
    for i in range(4):
        draw.rectangle([i * 120 + 20, 10, i * 120 + 100, 150], fill=(40 + 50 * i, 90, 200 - 40 * i))
    return sheet


@pytest.fixture
def views_lib(library):
    panels = sheet_images(_sheet(), VIEWS, name="mara.png")
    library.register(
        "Mara", "character", images=panels.images, names=panels.names, views=panels.views, description="a sailor"
    )
    library.register("Bram", "character", images=[image(2)], description="an old blacksmith")
    return library


def _pick(library, prompt: str, **query) -> tuple[str | None, tuple[str, ...]]:
    result = Retriever(library).retrieve(ShotQuery(prompt, references_per_entity=1, **query))
    hit = next(h for h in result.hits if h.name == "Mara")
    return hit.references[0].view, hit.reasons


@pytest.mark.parametrize(
    ("prompt", "view"),
    [
        ("Mara walks away down the pier, seen from behind", "back"),
        ("Mara in profile against the sunset", "profile"),
        ("A three-quarter view of Mara mending a net", "three-quarter"),
        ("A close-up of Mara's face", "front"),  # no close-up on the sheet: the next best, the front
        ("Mara faces the camera", "front"),
    ],
)
def test_camera_words_pick_the_view(views_lib, prompt, view):
    chosen, reasons = _pick(views_lib, prompt)
    assert chosen == view
    assert any(r.startswith(f"view {view!r}") for r in reasons), reasons


def test_an_explicit_view_wins_and_an_unknown_one_is_named(views_lib):
    assert _pick(views_lib, "Mara walks away, seen from behind", view="profile")[0] == "profile"
    with pytest.raises(InvalidInputError, match="view 'upside' is unknown"):
        _pick(views_lib, "Mara", view="upside")


def test_without_camera_words_or_views_the_best_reference_stays(views_lib):
    _, reasons = _pick(views_lib, "Mara at the market")
    assert not any(r.startswith("view ") for r in reasons)
    result = Retriever(views_lib).retrieve(ShotQuery("Bram, seen from behind, at the forge"))
    bram = next(h for h in result.hits if h.name == "Bram")
    assert bram.references and not any(r.startswith("view ") for r in bram.reasons)  # no back view: his best one


def test_wanted_views_are_ordered_and_say_which_words_asked():
    assert wanted_views("A wide shot of the harbor, then a close-up") == [
        ("close-up", "close-up"),
        ("front", "close-up"),
        ("full-body", "wide shot"),
    ]
    assert wanted_views("She walks home") == []
