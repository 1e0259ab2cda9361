"""The store commands as a new user runs them: register, list, show, export, import, import-folder, errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from continuity.cli import app

runner = CliRunner()


def run(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def images(tmp_path, photos):
    paths = {}
    for name, arr in photos.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(arr).save(paths[name])
    return paths


def test_readme_walkthrough(tmp_path, images):
    db = str(tmp_path / "db")
    run("init", "--db", db)
    run(
        "register",
        "Aria",
        "--kind",
        "character",
        "--image",
        str(images["astronaut"]),
        "--alias",
        "the knight",
        "--description",
        "a red-haired knight",
        "--consent",
        "yes",
        "--rights-owner",
        "Studio",
        "--db",
        db,
    )
    run("register", "Bram", "--kind", "character", "--image", str(images["rocket"]), "--db", db)
    run("register", "Harbor", "--kind", "location", "--image", str(images["coffee"]), "--db", db)
    run("add-image", "Aria", str(images["chelsea"]), "--era", "armored", "--db", db)
    listed = json.loads(run("list", "--json", "--db", db).stdout)
    assert {e["name"]: e["reference_count"] for e in listed} == {"Aria": 2, "Bram": 1, "Harbor": 1}
    shown = json.loads(run("show", "the knight", "--json", "--db", db).stdout)
    assert shown["name"] == "Aria" and sorted(r["era"] for r in shown["references"]) == ["armored", "default"]
    assert shown["rights"]["consent"] is True
    out = tmp_path / "default.zip"
    run("export", "default", str(out), "--db", db)
    db2 = str(tmp_path / "db2")
    run("import", str(out), "--db", db2)
    assert {e["name"] for e in json.loads(run("list", "--json", "--db", db2).stdout)} == {"Aria", "Bram", "Harbor"}
    run("rename", "Bram", "Bram Stone", "--db", db)
    run("remove", "Harbor", "--db", db)
    assert {e["name"] for e in json.loads(run("list", "--json", "--db", db).stdout)} == {"Aria", "Bram Stone"}


def test_env_var_selects_store(tmp_path, images, monkeypatch):
    monkeypatch.setenv("CONTINUITY_DB", str(tmp_path / "envdb"))
    run("register", "Aria", "--kind", "character", "--image", str(images["astronaut"]))
    assert (tmp_path / "envdb").is_dir()
    assert json.loads(run("list", "--json").stdout)[0]["name"] == "Aria"


def test_import_folder(tmp_path, images):
    root = tmp_path / "cast"
    for name, img in (("Aria", "astronaut"), ("Bram", "rocket")):
        (root / name).mkdir(parents=True)
        (root / name / "1.png").write_bytes(images[img].read_bytes())
    (root / "Aria" / "description.txt").write_text("a knight")
    db = str(tmp_path / "db")
    run("import-folder", str(root), "--db", db)
    listed = {e["name"]: e for e in json.loads(run("list", "--json", "--db", db).stdout)}
    assert listed["Aria"]["description"] == "a knight" and listed["Bram"]["reference_count"] == 1
    # one bad image anywhere: nothing of the batch is written
    (root / "Cleo").mkdir()
    (root / "Cleo" / "bad.png").write_bytes(b"junk")
    (root / "Dara").mkdir()
    (root / "Dara" / "1.png").write_bytes(images["coffee"].read_bytes())
    db3 = str(tmp_path / "db3")
    result = run("import-folder", str(root), "--db", db3, ok=False)
    assert result.exit_code == 1 and "bad.png" in result.output
    assert json.loads(run("list", "--json", "--db", db3).stdout) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["register", "a/b", "--kind", "character"], "path separator"),
        (["register", "Aria", "--kind", "dragon"], "unknown"),
        (["register", "Aria", "--kind", "character", "--image", "/nope.png"], "no such file"),
        (["show", "Nobody"], "no entity named"),
        (["list", "--kind", "x' OR '1'='1"], "unknown"),
        (["remove", "x' OR '1'='1"], "no entity named"),
        (["register", "Aria", "--kind", "character", "--consent", "maybe"], "--consent"),
    ],
)
def test_errors_are_one_line_and_store_unchanged(tmp_path, args, message):
    db = str(tmp_path / "db")
    run("init", "--db", db)
    run("register", "Zed", "--kind", "character", "--db", db)
    before = run("list", "--json", "--db", db).stdout
    result = run(*args, "--db", db, ok=False)
    assert result.exit_code != 0
    assert message in result.output
    assert result.output.strip().count("\n") <= 1
    assert run("list", "--json", "--db", db).stdout == before


def test_folder_that_is_not_a_store(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f.txt").write_text("hello")
    result = run("list", "--db", str(tmp_path / "x"), ok=False)
    assert result.exit_code == 1 and "not a continuity store" in result.output
    result = run("list", "--db", str(tmp_path / "missing"), ok=False)
    assert "continuity init" in result.output
