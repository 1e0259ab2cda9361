"""`continuity query`: a table with reasons, JSON, story replay, one-line errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from continuity.cli import app

from .conftest import image


def test_query_table_json_and_errors(tmp_path, store, library):
    library.register("Aria", "character", images=[image(1)], description="a woman knight")
    library.register("Keep", "location", images=[image(2)], description="a castle courtyard")
    db = str(store.uri)
    runner = CliRunner()
    out = runner.invoke(app, ["query", "Aria waits in the Keep", "--db", db])
    assert out.exit_code == 0 and "Aria" in out.output and "prompt" in out.output and "Keep" in out.output
    out = runner.invoke(app, ["query", "Aria waits", "--json", "--db", db])
    data = json.loads(out.output)
    assert data["hits"][0]["name"] == "Aria" and data["hits"][0]["references"]
    out = runner.invoke(app, ["query", "Aria", "--k", "0", "--db", db])
    assert out.exit_code != 0 and "--k" in out.output
    story = tmp_path / "s.yaml"
    story.write_text(
        "id: s\nscenes:\n  - index: 1\n    shots:\n      - {index: 1, prompt: Aria enters the Keep}\n"
        "      - {index: 2, prompt: She looks around, cut: false}\n"
    )
    out = runner.invoke(app, ["query", "--story", str(story), "--shot", "2", "--json", "--db", db])
    assert out.exit_code == 0, out.output
    assert {h["name"] for h in json.loads(out.output)["hits"]} == {"Aria", "Keep"}
    out = runner.invoke(app, ["query", "--story", str(story), "--shot", "9", "--db", db])
    assert out.exit_code != 0 and "out of range" in out.output


def test_query_by_image(tmp_path, store, library):
    from PIL import Image

    import memstore.image_search  # noqa: F401  (plainly: a broken module fails here, not inside the CLI)

    library.register("Aria", "character", images=[image(1)])
    library.register("Keep", "location", images=[image(2)])
    path = tmp_path / "q.png"
    Image.fromarray(image(2)).save(path)
    runner = CliRunner()
    out = runner.invoke(app, ["query", "--image", str(path), "--json", "--db", str(store.uri)])
    assert out.exit_code == 0, out.output
    matches = json.loads(out.output)["image_matches"]["color_histogram_rgb8"]
    assert matches[0]["name"] == "Keep"
    out = runner.invoke(app, ["query", "--image", str(tmp_path / "missing.png"), "--db", str(store.uri)])
    assert out.exit_code != 0 and "not a file" in out.output
