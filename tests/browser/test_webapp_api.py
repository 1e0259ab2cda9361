"""The web app's files and the API it needs beyond the pipelines' (no browser): public pages with
a strict CSP, the paged grid with thumbnails, rename, archive upload, story runs with their media."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from continuity.server.app import create_app
from memstore.keys import KeyRing
from memstore.store import Store

KEY = "api-test-admin-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def error_of(response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == kind and "\n" not in body["message"], body
    return body["message"]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A store with nine entities, made once; each test gets its own copy."""
    from skimage import data

    db = tmp_path_factory.mktemp("template") / "db"
    library = Store.init(str(db)).library("default")
    library.register("Aria", "character", images=[data.astronaut()], aliases=["the knight"], tags=["hero"])
    coffee = data.coffee()
    for i in range(7):
        kind = "prop" if i % 2 else "character"
        library.register(f"Extra {i}", kind, images=[coffee[:64, i : i + 64]], tags=["crowd"])
    library.register("Harbor", "location", images=[data.rocket()[:64, :64]])
    return db


@pytest.fixture
def client(template, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(template, db)
    with TestClient(create_app(str(db), api_key=KEY), base_url="http://127.0.0.1") as c:
        c.headers.update(ADMIN)
        yield c


def test_the_pages_are_public_and_locked_down(client):
    bare = {"Authorization": ""}
    index = client.get("/", headers=bare)
    assert index.status_code == 200 and '<script type="module" src="/app/js/app.js">' in index.text
    csp = index.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    script = client.get("/app/js/app.js", headers=bare)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    css = client.get("/app/report.css", headers=bare)
    assert css.status_code == 200 and ".run .shot" in css.text  # the report's own stylesheet
    error_of(client.get("/app/nothing.js", headers=bare), 404, "NotFoundError")
    assert client.get("/app/%2e%2e/__init__.py", headers=bare).status_code in (401, 404)
    error_of(client.get("/libraries", headers=bare), 401, "UnauthorizedError")  # the data still needs a key
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400  # the Host check still runs first


def test_the_grid_pages_filters_and_searches(client):
    page = client.get("/libraries/default/gallery", params={"limit": 4}).json()
    assert page["total"] == 9 and len(page["entities"]) == 4
    assert page["kinds"] == {"character": 5, "prop": 3, "location": 1} and page["tags"] == {"hero": 1, "crowd": 7}
    names = [e["name"] for e in page["entities"]]
    assert names == sorted(names, key=str.lower)
    rest = client.get("/libraries/default/gallery", params={"limit": 4, "offset": 8}).json()
    assert [e["name"] for e in rest["entities"]] == ["Harbor"]
    assert [e["name"] for e in client.get("/libraries/default/gallery", params={"q": "KNIG"}).json()["entities"]] == [
        "Aria"
    ]
    props = client.get("/libraries/default/gallery", params={"kind": "prop", "tag": "crowd"}).json()
    assert props["total"] == 3 and {e["kind"] for e in props["entities"]} == {"prop"}
    error_of(client.get("/libraries/default/gallery", params={"limit": 10_000}), 422, "InvalidInputError")


def test_thumbnails_are_small_jpegs_cached_by_etag(client):
    entity = client.get("/libraries/default/gallery", params={"q": "Aria"}).json()["entities"][0]
    thumb = client.get(entity["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert max(im.size) == 192
    full = client.get(entity["thumbnail_url"].replace("/thumbnail?size=192", "/image"))
    assert len(thumb.content) * 5 < len(full.content)
    again = client.get(entity["thumbnail_url"], headers={"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304 and not again.content
    message = error_of(client.get(entity["thumbnail_url"].replace("192", "50")), 422, "InvalidInputError")
    assert "96, 192, 384" in message


def test_rename_keeps_the_old_name_as_an_alias_and_refuses_a_taken_name(client):
    renamed = client.post("/libraries/default/entities/Aria/rename", json={"new_name": "Aria Stone"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Aria Stone"
    assert "Aria" in renamed.json()["aliases"] and len(renamed.json()["references"]) == 1
    assert client.get("/libraries/default/entities/Aria").json()["name"] == "Aria Stone"  # the alias resolves
    error_of(
        client.post("/libraries/default/entities/Harbor/rename", json={"new_name": "Aria"}), 409, "DuplicateEntityError"
    )
    assert client.get("/libraries/default/entities/Harbor").json()["name"] == "Harbor"
    error_of(
        client.post("/libraries/default/entities/Nobody/rename", json={"new_name": "X"}), 404, "EntityNotFoundError"
    )


def test_an_archive_imports_by_upload_all_or_nothing(client, tmp_path):
    archive = client.get("/libraries/default/export").content
    files = {"archive": ("studio.continuity", archive, "application/zip")}
    message = error_of(client.post("/libraries/default/import", files=files), 400, "ArchiveError")
    assert "'studio.continuity'" in message and "/tmp" not in message  # names the upload, not a server path
    broken = {"archive": ("broken.continuity", archive[:1000], "application/zip")}
    error_of(client.post("/libraries/copy/import", files=broken), 400, "ArchiveError")
    assert [lib["name"] for lib in client.get("/libraries").json()["libraries"]] == ["default"]
    client.delete("/libraries/default/entities/Harbor")
    one = Store.open(str(client.app.state.continuity.store.uri))
    assert one.library("default").count()["entities"] == 8
    error_of(
        client.post("/libraries/default/import", files={"archive": ("e.continuity", b"", "x")}),
        422,
        "InvalidInputError",
    )


def test_a_library_key_cannot_import_into_another_library(client):
    key = KeyRing(client.app.state.continuity.store).create("default", "write").key
    files = {"archive": ("a.continuity", b"PK", "application/zip")}
    response = client.post("/libraries/other/import", files=files, headers={"Authorization": f"Bearer {key}"})
    error_of(response, 403, "ForbiddenError")


def _commit_two_shots(client) -> None:
    frames = np.zeros((2, 96, 128, 3), np.uint8)
    frames[:, :, :64] = 200
    for prompt, cut in (("Aria walks onto the pier at the Harbor.", True), ("She looks at the boats.", False)):
        plan = client.post("/libraries/default/stories/harbor/plan", json={"prompt": prompt, "cut": cut}).json()
        files = [("frames", (f"f{i}.png", png(f), "image/png")) for i, f in enumerate(frames)]
        assert client.post(plan["commit_url"], files=files).status_code == 201


def test_story_runs_list_view_media_and_memory(client):
    _commit_two_shots(client)
    runs = client.get("/libraries/default/runs").json()["runs"]
    assert [(r["story_id"], r["shots"], r["videos"]) for r in runs] == [("harbor", 2, 2)]
    run = client.get("/libraries/default/runs/harbor").json()
    assert [(s["index"], s["number"]) for s in run["shots"]] == [(0, 1), (1, 2)]
    assert run["shots"][0]["keyframes"] and run["shots"][1]["memory"]  # shot 2 remembered shot 1
    view = client.get("/libraries/default/runs/harbor/view")
    assert view.status_code == 200 and view.headers["content-type"].startswith("text/html")
    html = view.text
    assert "Shot 1" in html and "Shot 2" in html and "Shot 0" not in html and "<script" not in html
    assert "data-src='/libraries/default/runs/harbor/shots/0/video'" in html
    assert "data-poster='/libraries/default/runs/harbor/shots/0/poster'" in html
    assert "shot 1 frame" in html  # shot 2's memory caption counts as the headings do
    video = client.get(run["shots"][0]["video_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4" and video.content[4:8] == b"ftyp"
    poster = client.get(run["shots"][0]["poster_url"])
    with Image.open(io.BytesIO(poster.content)) as im:
        assert im.format == "JPEG" and im.size == (128, 96)
    error_of(client.get("/libraries/default/runs/harbor/shots/7/video"), 404, "NotFoundError")
    error_of(client.get("/libraries/default/runs/nothing/view"), 404, "NotFoundError")
    aria = client.get("/libraries/default/entities/Aria").json()["id"]
    memory = client.get("/libraries/default/runs/harbor/memory", params={"before": 2, "entity": aria}).json()
    assert (
        memory["memory"]
        and {m["shot"] for m in memory["memory"]} <= {0, 1}
        and all(m["reason"] for m in memory["memory"])
    )
    assert client.get("/libraries/default/runs/harbor/memory", params={"before": 0}).json()["memory"] == []
