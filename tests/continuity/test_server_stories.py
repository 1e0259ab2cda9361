"""Story sessions over HTTP, as a pipeline on another machine drives them (issue 19): plan a shot,
render it with a test double from the plan's image URLs, commit the frames, and the next shot
sees the memory; a restart of the server resumes the story. Plus entity PATCH, image search, face
crops and the offline docs page."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from continuity.server import create_app

W, H = 128, 96  # small frames: the story, not the pixels, is under test


def local_client(app) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1")


def assert_error(response, status, error=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and "\n" not in body["message"], body
    if error is not None:
        assert body["error"] == error, body
    return body


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def render(client: TestClient, plan: dict, headers: dict | None = None) -> np.ndarray:
    """A test double for a remote pipeline: each hit's first reference, fetched by its image URL,
    painted side by side into two frames."""
    frames = np.zeros((2, H, W, 3), np.uint8)
    urls = [hit["references"][0]["image_url"] for hit in plan["hits"] if hit["references"]]
    for i, url in enumerate(urls[:2]):
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        tile = Image.open(io.BytesIO(r.content)).convert("RGB").resize((W // 2, H))
        frames[:, :, i * W // 2 : (i + 1) * W // 2] = np.asarray(tile)
    return frames


def as_files(frames: np.ndarray) -> list:
    return [("frames", (f"f{i}.png", png(f), "image/png")) for i, f in enumerate(frames)]


def plan(client, prompt, story="harbor", lib="default", headers=None, **fields):
    return client.post(f"/libraries/{lib}/stories/{story}/plan", json={"prompt": prompt, **fields}, headers=headers)


@pytest.fixture
def db(cast, tmp_path):
    """A store with Aria, Bram, Harbor and Forest (tests/continuity/conftest.py)."""
    return str(tmp_path / "db")


def test_a_story_over_http_plans_commits_remembers_and_resumes(db, tmp_path):
    from continuity.video import write_mp4

    with local_client(create_app(db)) as c:
        first = plan(c, "Aria walks onto the pier at the Harbor.")
        assert first.status_code == 200, first.text
        shot0 = first.json()
        assert shot0["index"] == 0 and shot0["memory"] == [] and len(shot0["input_hash"]) > 8
        assert {h["name"] for h in shot0["hits"]} == {"Aria", "Harbor"}
        assert all(h["reasons"] and h["references"][0]["id"] for h in shot0["hits"])
        done = c.post(shot0["commit_url"], files=as_files(render(c, shot0)))
        assert done.status_code == 201, done.text
        assert done.json()["keyframes"] and done.json()["record"]["input_hash"] == shot0["input_hash"]

        second = plan(c, "She looks at the boats.", cut=False).json()  # a pronoun, a continuation
        reasons = {h["name"]: h["reasons"] for h in second["hits"]}
        assert second["index"] == 1 and set(reasons) == {"Aria", "Harbor"}
        assert any("carried" in why or "she" in why.lower() for why in reasons["Aria"])
        assert second["memory"] and {m["shot"] for m in second["memory"]} == {0}
        assert all(m["reason"] for m in second["memory"])
        memory_image = c.get(second["memory"][0]["image_url"])
        assert memory_image.status_code == 200 and memory_image.content[:2] in (b"\xff\xd8", b"\x89P")
        write_mp4(tmp_path / "take.mp4", render(c, second), 4)  # this one comes back as an MP4
        video = ("video", ("take.mp4", (tmp_path / "take.mp4").read_bytes(), "video/mp4"))
        assert c.post(second["commit_url"], files=[video]).status_code == 201

        shots = c.get("/libraries/default/stories/harbor/shots").json()["shots"]
        assert [s["shot_index"] for s in shots] == [0, 1] and all(s["has_video"] for s in shots)
        assert c.get(shots[1]["provenance_url"]).json()["cut"] is False
        stories = c.get("/libraries/default/stories").json()["stories"]
        assert stories == [{"story_id": "harbor", "shots": 2, "next_index": 2}]
        outputs = tmp_path / "db" / "_outputs" / "default" / "harbor" / "shots"
        assert (outputs / "shot_000.mp4").is_file() and (outputs / "shot_001.provenance.json").is_file()

    with local_client(create_app(db)) as again:  # the server restarted: the story goes on
        assert again.get("/libraries/default/stories/harbor").json() == {
            "story_id": "harbor",
            "next_index": 2,
            "shots": 2,
        }
        third = plan(again, "She waves goodbye.", cut=False).json()
        assert third["index"] == 2 and "Aria" in {h["name"] for h in third["hits"]}
        assert {m["shot"] for m in third["memory"]} <= {0, 1} and third["memory"]
        reset = again.post("/libraries/default/stories/harbor/reset", json={"from_index": 1})
        assert reset.json() == {"story_id": "harbor", "dropped": 1, "next_index": 1}
        assert_error(again.post(third["commit_url"], files=as_files(render(again, third))), 409, "StoryConflictError")
        assert plan(again, "Bram waits in the Forest.").json()["index"] == 1


def test_a_commit_needs_its_plan_and_bad_frames_write_nothing(db, tmp_path):
    with local_client(create_app(db)) as c:
        frames = np.full((2, H, W, 3), 90, np.uint8)
        body = assert_error(c.post("/libraries/default/stories/s/shots/0", files=as_files(frames)), 409)
        assert body["error"] == "StoryConflictError" and "plan" in body["message"]
        shot = plan(c, "Bram waits in the Forest.", story="s").json()
        library = c.app.state.continuity.store.library("default")
        before = library.count()
        good = png(frames[0])
        for files, status in [
            (
                [("frames", ("a.png", good, "image/png")), ("frames", ("b.png", good[: len(good) // 2], "image/png"))],
                422,
            ),
            ([("frames", ("a.png", good, "image/png")), ("frames", ("b.png", png(frames[0, :50]), "image/png"))], 422),
            ([("video", ("take.mp4", b"\x00\x00\x00\x18ftypmp42 not really", "video/mp4"))], 422),
            ([("video", ("take.gif", good, "image/gif"))], 422),
        ]:
            r = c.post(shot["commit_url"], files=files)
            assert 400 <= r.status_code < 500
            assert_error(r, status)
        assert_error(c.post(shot["commit_url"], data={"fps": "4"}), 422, "InvalidInputError")  # no frames at all
        assert library.count() == before and library.shots.records("s") == []
        assert not (tmp_path / "db" / "_outputs" / "default" / "s").exists()
        # the plan is still pending: the good take commits
        assert c.post(shot["commit_url"], files=as_files(frames), data={"fps": "4"}).status_code == 201
        assert_error(c.post(shot["commit_url"], files=as_files(frames)), 409, "StoryConflictError")  # once


def test_keys_reach_their_library_and_scope(db, tmp_path):
    app = create_app(db, api_key="admin-key", outputs_dir=tmp_path / "renders")
    with local_client(app) as c:
        ring = app.state.continuity.keyring
        reader = {"Authorization": f"Bearer {ring.create('default', 'read').key}"}
        writer = {"Authorization": f"Bearer {ring.create('default', 'write').key}"}
        other = {"Authorization": f"Bearer {ring.create('elsewhere', 'admin').key}"}
        assert_error(plan(c, "Aria at the Harbor.", headers=other), 403, "ForbiddenError")
        assert_error(c.get("/libraries/default/stories", headers=other), 403, "ForbiddenError")
        shot = plan(c, "Aria at the Harbor.", headers=reader).json()  # planning only reads
        files = as_files(render(c, shot, reader))
        assert_error(c.post(shot["commit_url"], files=files, headers=reader), 403, "ForbiddenError")
        assert_error(c.post(shot["commit_url"], files=files, headers=other), 403, "ForbiddenError")
        assert c.post(shot["commit_url"], files=files, headers=writer).status_code == 201
        reset = "/libraries/default/stories/harbor/reset"
        assert_error(c.post(reset, json={"from_index": 0}, headers=reader), 403, "ForbiddenError")
        assert (tmp_path / "renders" / "default" / "harbor" / "shots" / "shot_000.mp4").is_file()
        assert c.post(reset, json={"from_index": 0}, headers=writer).json()["dropped"] == 1


def test_story_ids_never_reach_a_path(db, tmp_path):
    from continuity.server.stories import story_folder

    assert story_folder("harbor") == "harbor"
    for unsafe in ("..", ".", "../etc", "a/b", "~root", "take 2: dusk"):
        folder = story_folder(unsafe)
        assert "/" not in folder and not folder.startswith(".") and folder != unsafe
    with local_client(create_app(db)) as c:
        shot = plan(c, "Bram in the Forest.", story="take 2: dusk").json()
        assert c.post(shot["commit_url"], files=as_files(np.zeros((1, H, W, 3), np.uint8))).status_code == 201
        made = list((tmp_path / "db" / "_outputs" / "default").iterdir())
        assert [p.name for p in made] == [story_folder("take 2: dusk")] and (made[0] / "shots").is_dir()
        assert c.get("/libraries/default/stories").json()["stories"][0]["story_id"] == "take 2: dusk"
        assert_error(plan(c, "x", story="a%07b"), 422, "InvalidNameError")  # a control character
        assert_error(c.post("/libraries/default/stories/s/plan", json={"prompt": "x", "duration": 0}), 422)
        assert_error(c.post("/libraries/default/stories/s/plan", json={"prompt": "x", "colour": "red"}), 422)
        assert_error(c.post("/libraries/nowhere/stories/s/plan", json={"prompt": "x"}), 404, "NotFoundError")
        assert_error(c.get("/libraries/default/stories/s/shots/3/provenance"), 404, "NotFoundError")


def test_patch_an_entity_and_consent_refuses_its_shots(db):
    with local_client(create_app(db)) as c:
        r = c.patch(
            "/libraries/default/entities/Aria",
            json={"description": "a pilot in an orange suit", "tags": ["hero"], "rights": {"owner": "Studio North"}},
        )
        assert r.status_code == 200, r.text
        aria = r.json()
        assert aria["description"] == "a pilot in an orange suit" and aria["tags"] == ["hero"]
        assert aria["rights"]["owner"] == "Studio North" and aria["references"]
        r = c.patch("/libraries/default/entities/Aria", json={"aliases": ["the pilot"], "consent": False})
        assert r.json()["rights"] == {**aria["rights"], "consent": False}  # the owner stays
        assert r.json()["aliases"] == ["the pilot"] and r.json()["description"] == aria["description"]
        assert_error(plan(c, "The pilot at the Harbor."), 403, "ConsentError")
        before = c.get("/libraries/default/entities/Aria").json()
        for body in [{}, {"name": "Other"}, {"kind": "prop"}, {"aliases": ["Bram"]}, {"rights": {"expires": "soon"}}]:
            assert 400 <= c.patch("/libraries/default/entities/Aria", json=body).status_code < 500, body
        assert c.get("/libraries/default/entities/Aria").json() == before
        assert_error(c.patch("/libraries/default/entities/Nobody", json={"tags": []}), 404)


def test_search_by_image_and_face_crops(db, photos):
    from continuity.drawn import harbor_at_dusk

    with local_client(create_app(db)) as c:
        query = png(np.asarray(harbor_at_dusk((320, 180))))
        r = c.post("/libraries/default/search/image", files={"image": ("q.png", query, "image/png")}, data={"k": "2"})
        assert r.status_code == 200, r.text
        columns = r.json()["columns"]
        assert columns and all(len(matches) <= 2 for matches in columns.values())
        best = next(iter(columns.values()))[0]
        assert best["name"] == "Harbor" and c.get(best["image_url"]).status_code == 200
        assert_error(
            c.post("/libraries/default/search/image", files={"image": ("q.png", query[:200], "image/png")}), 422
        )
        ref = c.get("/libraries/default/entities/Harbor").json()["references"][0]
        assert_error(c.get(f"/libraries/default/references/{ref['id']}/face"), 404, "NotFoundError")


def test_face_crop_is_a_jpeg_of_the_face_box(tmp_path, photos):
    from memstore.store import Store

    pytest.importorskip("dlib", reason="the face extra (dlib) gives references a face box")
    library = Store.init(tmp_path / "db").library("faces")
    library.configure(embedders=["dlib"])
    entity = library.register("Eileen", "character", images=[photos["astronaut"]])
    [ref] = library.references(entity, with_vectors=False)
    assert ref.face_box is not None
    with local_client(create_app(str(tmp_path / "db"))) as c:
        r = c.get(f"/libraries/faces/references/{ref.id}/face")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        x0, y0, x1, y1 = ref.face_box
        crop = Image.open(io.BytesIO(r.content))
        assert crop.format == "JPEG" and abs(crop.width - (x1 - x0)) <= 1 and abs(crop.height - (y1 - y0)) <= 1
        assert (
            c.get(
                f"/libraries/faces/references/{ref.id}/face", headers={"If-None-Match": r.headers["etag"]}
            ).status_code
            == 304
        )


def test_docs_open_offline_without_the_key_and_the_schema_needs_it(tmp_path):
    with local_client(create_app(str(tmp_path / "db"), api_key="admin-key")) as c:
        page = c.get("/docs")
        assert page.status_code == 200 and "sessionStorage" in page.text and "/openapi.json" in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
        assert "default-src 'self'" in page.headers["content-security-policy"]
        if "/docs/assets/swagger-ui-bundle.js" in page.text:  # the server extra's swagger-ui-bundle
            js = c.get("/docs/assets/swagger-ui-bundle.js")
            assert js.status_code == 200 and "SwaggerUIBundle" in js.text[:200_000]
        assert_error(c.get("/docs/assets/..%2Fapp.py"), 404)
        assert_error(c.get("/docs/assets/index.html"), 404, "NotFoundError")
        assert_error(c.get("/openapi.json"), 401, "UnauthorizedError")
        paths = c.get("/openapi.json", headers={"Authorization": "Bearer admin-key"}).json()["paths"]
        for path in [
            "/libraries/{lib}/stories/{story}/plan",
            "/libraries/{lib}/stories/{story}/shots/{index}",
            "/libraries/{lib}/search/image",
            "/libraries/{lib}/references/{ref_id}/face",
            "/verify",
        ]:
            assert path in paths, path
        assert "patch" in paths["/libraries/{lib}/entities/{name}"]
    from continuity.server.docs import docs_page

    bare = docs_page(with_swagger=False)  # without swagger-ui-bundle: the page lists the routes itself
    assert "<script src" not in bare and "listRoutes(spec)" in bare
