"""`continuity export-images`, `query --save` and `show --save`: references as files with a manifest."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from continuity.cli import app

cli = CliRunner()


def _db(library) -> str:
    return str(library.store.uri)


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _check_files(folder, entries):
    """Every manifest entry names a file that is there, decodes, and has the recorded sha256."""
    for entry in entries:
        data = (folder / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        with Image.open(folder / entry["path"]) as img:
            assert img.size == (entry["width"], entry["height"])


def test_export_names_writes_every_reference_with_a_manifest(cast, photos, tmp_path):
    cast.add_images("Aria", [photos["chelsea"]], era="armored")
    out = tmp_path / "refs"
    result = cli.invoke(app, ["export-images", "Aria", "Harbor", "--out", str(out), "--db", _db(cast), "--json"])
    assert result.exit_code == 0, result.output
    manifest = _manifest(out)
    entries = manifest["references"]
    assert manifest["library"] == "default"
    assert sorted(e["entity"] for e in entries) == ["Aria", "Aria", "Harbor"]
    assert {e["era"] for e in entries if e["entity"] == "Aria"} == {"default", "armored"}
    stored = {r.id: r.sha256 for r in cast.references("Aria")}
    for entry in entries:
        if entry["entity"] == "Aria":
            assert stored[entry["reference"]] == entry["sha256"]
            assert entry["path"] == f"Aria-{entry['era']}-{entry['reference'][:8]}.{entry['path'].rsplit('.', 1)[1]}"
        assert entry["original_name"] is None and entry["source"] == "registered"
    _check_files(out, entries)
    assert json.loads(result.stdout)["references"] == entries


def test_export_query_writes_what_the_prompt_retrieves(cast, tmp_path):
    out = tmp_path / "shot"
    result = cli.invoke(
        app, ["export-images", "--query", "Aria walks along the harbor", "--out", str(out), "--db", _db(cast)]
    )
    assert result.exit_code == 0, result.output
    entries = _manifest(out)["references"]
    assert {"Aria", "Harbor"} <= {e["entity"] for e in entries}
    assert "Forest" not in {e["entity"] for e in entries}
    _check_files(out, entries)
    assert "wrote" in result.output


def test_face_crops_from_face_boxes(library, photos, tmp_path):
    library.configure(embedders=["color-histogram", "dlib"])
    library.register("Aria", "character", images=[photos["astronaut"], photos["coffee"]])
    boxed = {r.id: r.face_box for r in library.references("Aria")}
    assert sum(b is not None for b in boxed.values()) == 1  # the astronaut has a face, the coffee cup none
    out = tmp_path / "faces"
    result = cli.invoke(app, ["export-images", "Aria", "--faces", "--out", str(out), "--db", _db(library)])
    assert result.exit_code == 0, result.output
    entries = _manifest(out)["references"]
    with_face = [e for e in entries if e["face"] is not None]
    assert len(entries) == 2 and len(with_face) == 1
    entry = with_face[0]
    assert entry["face"]["box"] == pytest.approx(boxed[entry["reference"]])
    with Image.open(out / entry["face"]["path"]) as crop:
        assert crop.width < entry["width"] and crop.height < entry["height"]


def test_show_and_query_save(cast, tmp_path):
    shown = cli.invoke(app, ["show", "Bram", "--save", str(tmp_path / "bram"), "--db", _db(cast), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["name"] == "Bram"  # --json output is unchanged by --save
    assert [e["entity"] for e in _manifest(tmp_path / "bram")["references"]] == ["Bram"]

    queried = cli.invoke(app, ["query", "the old blacksmith", "--save", str(tmp_path / "q"), "--db", _db(cast)])
    assert queried.exit_code == 0, queried.output
    assert "Bram" in {e["entity"] for e in _manifest(tmp_path / "q")["references"]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "{out}"], "give entity NAMEs or --query"),
        (["Aria", "--query", "x", "--out", "{out}"], "give entity NAMEs or --query"),
        (["Arai", "--out", "{out}"], "Arai"),
        (["Aria", "--out", "{file}"], "is a file"),
    ],
)
def test_bad_export_fails_in_one_line_and_writes_nothing(cast, tmp_path, args, message):
    (tmp_path / "file").write_text("not a folder")
    fill = {"out": str(tmp_path / "out"), "file": str(tmp_path / "file")}
    result = cli.invoke(app, ["export-images", *[a.format(**fill) for a in args], "--db", _db(cast)])
    assert result.exit_code == 1, result.output
    assert message in result.output and result.output.strip().count("\n") == 0, result.output
    assert not (tmp_path / "out").exists()
