"""A store on S3 (a real S3 server on loopback): the Python API and every command work on it as
on a folder, and no secret ever reaches the bucket."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from continuity.cli import app
from memstore.errors import DuplicateEntityError
from memstore.store import Store
from tests.conftest import solid
from tests.remote.conftest import SECRET

runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_library_round_trip_on_s3(s3, photos):
    store = Store.init(s3.uri)
    lib = store.library()
    aria = lib.register("Aria", "character", images=[photos["astronaut"]], aliases=["the knight"])
    lib.register("Harbor", "location", images=[solid((20, 60, 200)), solid((30, 70, 210))])
    added = lib.add_images("Aria", [photos["coffee"]], era="armored")
    with pytest.raises(DuplicateEntityError):
        lib.register("aria", "character", images=[photos["rocket"]])

    again = Store.open(s3.uri).library()  # another process's view: everything came back from the bucket
    assert sorted(e.name for e in again.list()) == ["Aria", "Harbor"]
    assert again.get("the knight").id == aria.id
    refs = again.references(aria, with_images=True)
    assert {r.era for r in refs} == {"default", "armored"} and added[0].id in {r.id for r in refs}
    hits = again.search(np.asarray(refs[0].vectors["color_histogram_rgb8"]), "color_histogram_rgb8", k=1)
    assert hits and hits[0][1].entity_id == aria.id
    again.rename("Harbor", "Old Harbor")
    again.remove("Aria")
    assert [e.name for e in Store.open(s3.uri).library().list()] == ["Old Harbor"]


def test_commands_on_s3(s3, tmp_path, photos):
    from PIL import Image

    image = tmp_path / "aria.png"
    Image.fromarray(photos["astronaut"]).save(image)
    cli("init", "--db", s3.uri)
    cli("register", "Aria", "--kind", "character", "--image", str(image), "--description", "a knight", "--db", s3.uri)
    cli("add-image", "Aria", str(image), "--era", "armored", "--db", s3.uri)  # same bytes: kept once
    listed = json.loads(cli("list", "--json", "--db", s3.uri))
    assert [e["name"] for e in listed] == ["Aria"]
    shown = json.loads(cli("show", "Aria", "--json", "--db", s3.uri))
    assert shown["name"] == "Aria"
    query = json.loads(cli("query", "Aria rides out", "--json", "--db", s3.uri))
    assert "Aria" in json.dumps(query)
    cli("reindex", "--db", s3.uri)


def test_export_import_between_s3_and_a_folder(s3, tmp_path, photos):
    lib = Store.init(s3.uri).library()
    lib.register("Aria", "character", images=[photos["astronaut"], photos["chelsea"]], description="a knight")
    archive = tmp_path / "studio.continuity"
    cli("export", "default", str(archive), "--db", s3.uri)
    cli("import", str(archive), "--db", str(tmp_path / "local"), "--library", "copy")
    local = Store.open(tmp_path / "local").library("copy")
    assert [e.name for e in local.list()] == ["Aria"] and len(local.references("Aria")) == 2
    # and from the folder's export into another store in the bucket
    cli("export", "copy", str(tmp_path / "copy.continuity"), "--db", str(tmp_path / "local"))
    other = f"s3://{s3.bucket}/other"
    cli("import", str(tmp_path / "copy.continuity"), "--db", other, "--library", "season2")
    back = Store.open(other).library("season2")
    assert [e.name for e in back.list()] == ["Aria"]
    assert {r.sha256 for r in back.references("Aria")} == {r.sha256 for r in lib.references("Aria")}


def test_story_run_on_s3(s3, tmp_path, photos):
    lib = Store.init(s3.uri).library()
    lib.register("Mara", "character", images=[photos["astronaut"]], description="a young sailor")
    lib.register("Harbor", "location", images=[solid((40, 80, 160))], description="a foggy harbor")
    script = tmp_path / "story.yaml"
    script.write_text(
        "id: harbor\ncast: [{name: Mara, kind: character}, {name: Harbor, kind: location}]\n"
        "scenes:\n  - index: 1\n    location: Harbor\n    shots:\n"
        "      - {index: 1, prompt: 'Mara walks onto the pier.', cut: true}\n"
        "      - {index: 2, prompt: 'Mara looks at the sea.', cut: false}\n"
    )
    args = ["story", "run", str(script), "--generator", "animatic", "--out", str(tmp_path / "out")]
    args += ["--width", "96", "--height", "64", "--fps", "4", "--db", s3.uri, "--json"]
    summary = json.loads(cli(*args))
    assert len(summary["shots"]) == 2 and not any(s["skipped"] for s in summary["shots"])
    assert Store.open(s3.uri).library().keyframes("harbor")  # the run's keyframes went back into the bucket
    again = json.loads(cli(*args))  # a rerun resumes from the shot records in the bucket
    assert all(s["skipped"] for s in again["shots"])


def test_no_secret_reaches_the_bucket(s3, photos):
    lib = Store.init(s3.uri).library()
    lib.register("Aria", "character", images=[photos["astronaut"]])
    objects = s3.objects()
    assert objects and not any(SECRET.encode() in data for data in objects.values())
    assert SECRET not in json.dumps(Store.open(s3.uri).get_config("commits"))


def test_http_api_on_s3(s3, photos):
    from continuity.server import create_app
    from tests.continuity.test_server import encode, local_client

    Store.init(s3.uri)
    with local_client(create_app(s3.uri)) as client:
        png = encode(photos["astronaut"], "PNG")
        made = client.post(
            "/libraries/default/entities",
            data={"name": "Aria", "kind": "character"},
            files=[("images", ("aria.png", png))],
        )
        assert made.status_code in (200, 201), made.text
        listed = client.get("/libraries/default/entities")
        assert listed.status_code == 200 and "Aria" in listed.text
    assert [e.name for e in Store.open(s3.uri).library().list()] == ["Aria"]
