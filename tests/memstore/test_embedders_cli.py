"""`continuity embedders / configure / reindex` on a real store."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("dlib")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face_recognition_models is not installed", allow_module_level=True)

from continuity.cli import app
from memstore.store import Store
from tests.memstore.test_embedders_clip import tiny_clip_config

FACE = "dlib_dlib_face_recognition_resnet_model_v1"
HIST = "color_histogram_rgb8"


@pytest.fixture
def db(tmp_path, photos):
    path = tmp_path / "db"
    lib = Store.init(path).library("default")
    lib.register("Eileen", "character", images=[photos["astronaut"]])
    lib.register("Chelsea", "prop", images=[photos["chelsea"]])
    return str(path)


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_reindex_adds_a_face_column_to_existing_references(db):
    res = run("reindex", "--embedder", "dlib", "--db", db, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["written"] == {FACE: 1}  # the cat is a prop: no face column
    lib = Store.open(db).library("default")
    [ref] = lib.references("Eileen")
    assert set(ref.vectors) == {HIST, FACE} and 60 < ref.face_box[1] < 200 and ref.quality > 0
    assert [e.column_name for e in lib.embedders] == [HIST, FACE]
    hits = lib.search(ref.vectors[FACE], FACE, k=1)
    assert hits[0][1].id == ref.id
    again = run("reindex", "--db", db, "--json")
    assert json.loads(again.stdout)["written"] == {HIST: 0, FACE: 0}  # nothing left to do
    forced = run("reindex", "--embedder", "dlib", "--force", "--db", db, "--json")
    assert json.loads(forced.stdout)["written"] == {FACE: 1}


def test_reindex_with_a_json_config_and_list(db, tmp_path):
    config = tiny_clip_config(tmp_path / "clip")
    res = run("reindex", "--embedder", json.dumps(config), "--db", db, "--json")
    assert res.exit_code == 0, res.output
    [column] = json.loads(res.stdout)["written"]
    assert json.loads(res.stdout)["written"][column] == 2
    lib = Store.open(db).library("default")
    assert all(column in r.vectors for r in lib.references())
    listed = json.loads(run("embedders", "--library", "default", "--db", db, "--json").stdout)
    names = {e["name"]: e["modality"] for e in listed["registered"]}
    assert names["open-clip"] == "image" and names["dlib"] == "face" and names["insightface"] == "face"
    assert [c["column"] for c in listed["configured"]] == [HIST, column]


def test_configure_refuses_missing_weights_and_changes_nothing(db, tmp_path):
    store = Store.open(db)
    before = (store.library_config("default"), sorted(store.vector_columns()))
    res = run("configure", "--embedder", json.dumps({"type": "open-clip", "cache_dir": str(tmp_path)}), "--db", db)
    assert res.exit_code == 1 and "not on this machine" in res.output and len(res.output.strip().splitlines()) == 1
    res = run("reindex", "--embedder", json.dumps({"type": "insightface", "root": str(tmp_path)}), "--db", db)
    assert res.exit_code == 1 and "buffalo_l" in res.output
    assert (store.library_config("default"), sorted(store.vector_columns())) == before
    assert run("reindex", "--embedder", "{not json", "--db", db).exit_code == 2
    assert run("reindex", "--embedder", "no-such-embedder", "--db", db).exit_code == 1


def test_configure_sets_embedders_and_factory(db):
    res = run(
        "configure",
        "--embedder",
        "color-histogram",
        "--embedder",
        "dlib",
        "--index-factory",
        "Flat",
        "--db",
        db,
        "--json",
    )
    assert res.exit_code == 0, res.output
    config = Store.open(db).library_config("default")
    assert config["index_factory"] == "Flat" and [e["type"] for e in config["embedders"]] == ["color-histogram", "dlib"]
    assert FACE in Store.open(db).vector_columns()  # the column exists; reindex fills it
    assert run("configure", "--db", db).exit_code == 2
