"""Views and file names of references (issues 14 and 19): a reference keeps the file name it was
registered from and may carry a view label; a turnaround sheet is split into one labelled reference
per view (CLI, Python, HTTP); a format-1 store is upgraded to hold them, and nothing else changes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from continuity.cli import app
from continuity.server import create_app
from memstore.errors import InvalidInputError, StoreError
from memstore.sheets import split_sheet
from memstore.store import Store
from memstore.upgrade import FORMAT_VERSION

VIEWS4 = ["front", "three-quarter", "profile", "back"]


def sheet(poses: int = 4, *, gap: bool = True, size: tuple[int, int] = (480, 160)) -> Image.Image:
    """A turnaround sheet: ``poses`` figures on a light background (with gaps, or touching)."""
    width, height = size
    image = Image.new("RGB", size, (245, 243, 240))
    draw = ImageDraw.Draw(image)
    slot = width // poses
    for i in range(poses):
        x0 = i * slot + (slot // 5 if gap else 0)
        x1 = (i + 1) * slot - (slot // 5 if gap else 0) - 1
        x0 += 7 * i  # poses sit off the equal grid, as drawn sheets do
        draw.ellipse([x0, 10, x1, 60], fill=(180, 120 + 30 * i, 90))
        draw.rectangle([x0 + 5, 60, x1 - 5, height - 10], fill=(40 + 50 * i, 60, 150))
    return image


def test_a_sheet_is_cut_at_its_gaps_and_labelled_in_order():
    panels = split_sheet(sheet(), ["front", "3/4", "side", "back"])
    assert [p.view for p in panels] == VIEWS4 and all(p.found_by == "gaps" for p in panels)
    for i, panel in enumerate(panels):  # each panel holds exactly its own pose (its own colours)
        colours = {tuple(c) for c in np.asarray(panel.image).reshape(-1, 3)}
        assert (40 + 50 * i, 60, 150) in colours
        assert all((40 + 50 * j, 60, 150) not in colours for j in range(4) if j != i)


def test_touching_poses_fall_back_to_equal_widths_and_grids_split_by_rows():
    panels = split_sheet(sheet(gap=False), ["front", "back"])
    assert [p.found_by for p in panels] == ["equal", "equal"] and panels[0].box == (0, 0, 240, 160)
    grid = Image.new("RGB", (200, 200), "white")
    grid.paste(sheet(2, size=(200, 90)), (0, 0))
    grid.paste(sheet(2, size=(200, 90)), (0, 110))
    cells = split_sheet(grid, ["front", "back", "full-body", "close-up"], rows=2)
    assert [c.view for c in cells] == ["front", "back", "full-body", "close-up"]
    assert cells[2].box[1] >= 90 and cells[0].box[3] <= 110


@pytest.mark.parametrize(
    ("views", "rows", "message"),
    [
        (["front", "sideways"], 1, "view 'sideways' is unknown"),
        (["front", "back", "profile"], 2, "3 views do not fill"),
    ],
)
def test_bad_labels_are_named(views, rows, message):
    with pytest.raises(InvalidInputError, match=message):
        split_sheet(sheet(), views, rows=rows)


def test_original_names_and_views_are_kept(library, photos, tmp_path):
    path = tmp_path / "aria front.jpg"
    Image.fromarray(photos["astronaut"]).save(path)
    aria = library.register("Aria", "character", images=[str(path), photos["chelsea"]], views=["front", None])
    refs = {r.original_name: r for r in library.references(aria)}
    assert set(refs) == {"aria front.jpg", None}
    assert refs["aria front.jpg"].view == "front" and refs[None].view is None
    library.add_images(aria, [photos["coffee"]], names=["C:\\shoots\\coffee.png"], views="close-up")
    added = [r for r in library.references(aria) if r.original_name == "coffee.png"]
    assert added and added[0].view == "close-up" and added[0].to_json()["view"] == "close-up"
    before = library.count()
    with pytest.raises(InvalidInputError, match="view 'diagonal' is unknown"):
        library.add_images(aria, [photos["rocket"]], views="diagonal")
    assert library.count() == before


def test_register_a_sheet_from_the_cli(tmp_path):
    path = tmp_path / "mara-sheet.png"
    sheet().save(path)
    db = str(tmp_path / "db")
    cli = CliRunner()
    args = ["register", "Mara", "--kind", "character", "--sheet", str(path), "--views", "front,3/4,profile,back"]
    result = cli.invoke(app, [*args, "--db", db])
    assert result.exit_code == 0, result.output
    shown = json.loads(cli.invoke(app, ["show", "Mara", "--db", db, "--json"]).stdout)
    refs = sorted(shown["references"], key=lambda r: VIEWS4.index(r["view"]))
    assert [r["view"] for r in refs] == VIEWS4
    assert [r["original_name"] for r in refs] == [f"mara-sheet.png#{v}" for v in VIEWS4]
    lonely = cli.invoke(app, ["register", "Theo", "--kind", "character", "--sheet", str(path), "--db", db])
    assert lonely.exit_code == 2 and "--sheet needs --views" in lonely.output


def test_uploads_keep_their_file_names_and_sheets_split_over_http(tmp_path, photos):
    client = TestClient(create_app(str(tmp_path / "db")), base_url="http://127.0.0.1")
    buffer = io.BytesIO()
    sheet().save(buffer, format="PNG")
    files = [("images", ("turnaround.png", buffer.getvalue(), "image/png"))]
    data = {"name": "Mara", "kind": "character", "sheet_views": "front,three-quarter,profile,back"}
    made = client.post("/libraries/default/entities", data=data, files=files)
    assert made.status_code == 201, made.text
    refs = made.json()["references"]
    assert sorted(r["view"] for r in refs) == sorted(VIEWS4)
    assert {r["original_name"] for r in refs} == {f"turnaround.png#{v}" for v in VIEWS4}
    photo = io.BytesIO()
    Image.fromarray(photos["astronaut"]).save(photo, format="JPEG")
    two = [("images", ("a.jpg", photo.getvalue(), "image/jpeg")), ("images", ("b.png", buffer.getvalue(), "image/png"))]
    bad = client.post("/libraries/default/entities/Mara/images", data={"sheet_views": "front,back"}, files=two)
    assert bad.status_code == 422 and "exactly one image" in bad.json()["message"]
    added = client.post("/libraries/default/entities/Mara/images", data={"view": "front"}, files=two[:1])
    assert added.status_code == 201, added.text
    new = [r for r in added.json()["references"] if r["new"]]
    assert [(r["original_name"], r["view"]) for r in new] == [("a.jpg", "front")]


def _as_format_1(path, image) -> None:
    """Make a store as the first release wrote it: no format-2 columns, format 1 recorded."""
    store = Store.init(path)
    store.library("default").register("Bram", "character", images=[image])
    store.references.drop_columns(["original_name", "view"])
    store.set_config("format", {"version": 1})


def test_a_format_1_store_is_upgraded_on_open(tmp_path, photos):
    _as_format_1(tmp_path / "db", photos["rocket"])
    old = Store.open(tmp_path / "db")
    assert {"original_name", "view"} <= set(old.references.schema.names)
    assert old.get_config("format") == {"version": FORMAT_VERSION}
    library = old.library("default")
    library.register("Aria", "character", images=[photos["astronaut"]], views="front")
    assert [r.view for r in library.references("Aria")] == ["front"]
    assert [(r.view, r.original_name) for r in library.references("Bram")] == [(None, None)]


def test_a_store_newer_than_this_code_is_refused(tmp_path):
    store = Store.init(tmp_path / "db")
    store.set_config("format", {"version": FORMAT_VERSION + 1})
    with pytest.raises(StoreError, match="upgrade continuity"):
        Store.open(tmp_path / "db")
