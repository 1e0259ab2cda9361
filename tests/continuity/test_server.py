"""The HTTP API as a remote pipeline uses it: in-process through FastAPI's TestClient on a real
store, plus one real uvicorn on loopback started by `continuity serve`."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("multipart", reason="the server extra (python-multipart) is not installed")

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from continuity.server import create_app
from memstore.archive import import_library
from memstore.store import Store

ROOT = Path(__file__).resolve().parents[2]


def encode(array, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def images():
    """Real photos (skimage.data) as a client would upload them."""
    from skimage import data

    astronaut, chelsea = data.astronaut(), data.chelsea()
    png = encode(astronaut, "PNG")
    return {"astronaut.png": png, "chelsea.jpg": encode(chelsea, "JPEG"), "truncated.png": png[: len(png) // 3]}


def local_client(app) -> TestClient:
    """A client as a pipeline on this machine connects: to 127.0.0.1 (the server refuses other Host names)."""
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture
def client(tmp_path):
    with local_client(create_app(str(tmp_path / "db"))) as c:
        yield c


def register(client, name, kind="character", files=(), lib="default", **fields):
    data = {"name": name, "kind": kind, **fields}
    return client.post(f"/libraries/{lib}/entities", data=data, files=[("images", f) for f in files])


def counts(client, lib="default"):
    return client.app.state.continuity.store.library(lib).count()


def assert_error(response, status, error=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert "\n" not in body["message"] and "Traceback" not in body["message"]
    if error is not None:
        assert body["error"] == error, body
    return body


def fill(client, images):
    r = register(
        client,
        "Mara",
        files=[("astronaut.png", images["astronaut.png"], "image/png")],
        aliases=["the pilot", "Captain M"],
        description="an astronaut in a white suit",
        tags=["hero"],
        consent="yes",
        rights_owner="Studio North",
    )
    assert r.status_code == 201, r.text
    r = register(
        client,
        "Harbor Cat",
        "prop",
        files=[("chelsea.jpg", images["chelsea.jpg"], "image/jpeg")],
        description="a tabby cat with green eyes",
    )
    assert r.status_code == 201, r.text
    return client


@pytest.fixture
def cast(client, images):
    """A fresh store with two entities, for tests that write."""
    return fill(client, images)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, images):
    """One store with the same two entities for the read-only tests (each asserts it unchanged)."""
    with local_client(create_app(str(tmp_path_factory.mktemp("shared") / "db"))) as c:
        yield fill(c, images)


# --- reading and registering ---------------------------------------------------------------------
def test_health_libraries_and_docs(shared):
    assert shared.get("/health").json()["status"] == "ok"
    libs = shared.get("/libraries").json()["libraries"]
    assert libs == [{"name": "default", "entities": 2, "references": 2}]
    assert shared.get("/docs").status_code == 200
    paths = shared.get("/openapi.json").json()["paths"]
    assert "/libraries/{lib}/entities" in paths and "/libraries/{lib}/query" in paths
    assert_error(shared.get("/no/such/endpoint"), 404, "NotFoundError")


def test_register_then_get_returns_fields_and_references(shared, images):
    body = shared.get("/libraries/default/entities/" + quote("the pilot")).json()  # an alias resolves too
    assert body["name"] == "Mara" and body["kind"] == "character"
    assert body["aliases"] == ["the pilot", "Captain M"] and body["tags"] == ["hero"]
    assert body["rights"]["consent"] is True and body["rights"]["owner"] == "Studio North"
    (ref,) = body["references"]
    assert ref["sha256"] == hashlib.sha256(images["astronaut.png"]).hexdigest()
    assert (ref["width"], ref["height"]) == (512, 512) and ref["vectors"]


@pytest.mark.parametrize(
    "name, filename, media", [("Mara", "astronaut.png", "image/png"), ("Harbor Cat", "chelsea.jpg", "image/jpeg")]
)
def test_images_round_trip_byte_identical(shared, images, name, filename, media):
    (ref,) = shared.get("/libraries/default/entities/" + quote(name)).json()["references"]
    got = shared.get(ref["image_url"])
    assert got.status_code == 200
    assert got.headers["content-type"] == media
    assert got.content == images[filename]
    again = shared.get(ref["image_url"], headers={"If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_list_filters_by_kind_and_tag(shared):
    def names(r):
        return [e["name"] for e in r.json()["entities"]]

    assert sorted(names(shared.get("/libraries/default/entities"))) == ["Harbor Cat", "Mara"]
    assert names(shared.get("/libraries/default/entities", params={"kind": "prop"})) == ["Harbor Cat"]
    assert names(shared.get("/libraries/default/entities", params={"tag": "hero"})) == ["Mara"]
    listed = shared.get("/libraries/default/entities").json()["entities"]
    assert all(e["reference_count"] == 1 for e in listed)
    assert_error(shared.get("/libraries/default/entities", params={"kind": "dragon"}), 422, "FilterError")
    assert_error(shared.get("/libraries/default/entities", params={"tag": "x'; DROP TABLE entities"}), 422)
    assert_error(shared.get("/libraries/elsewhere/entities"), 404, "NotFoundError")


def test_unknown_entity_is_404(shared):
    assert_error(shared.get("/libraries/default/entities/Nobody"), 404, "EntityNotFoundError")
    assert_error(shared.delete("/libraries/default/entities/Nobody"), 404)
    assert_error(
        shared.post("/libraries/default/entities/Nobody/images", files=[("images", ("x.png", b"x", "image/png"))]), 404
    )


def test_duplicate_name_or_alias_is_409_and_store_unchanged(cast, images):
    before = counts(cast)
    for name, extra in [("Mara", {}), ("mara", {}), ("Someone", {"aliases": ["THE PILOT"]})]:
        r = register(cast, name, files=[("a.png", encode(images_array_small(), "PNG"), "image/png")], **extra)
        assert_error(r, 409, "DuplicateEntityError")
    assert counts(cast) == before


def images_array_small():
    import numpy as np

    return np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "bad, error",
    [("truncated.png", "TruncatedImageError"), (b"not an image", "NotAnImageError"), (b"", "EmptyImageError")],
)
def test_bad_image_is_422_and_nothing_written(cast, images, bad, error):
    data = images[bad] if isinstance(bad, str) else bad
    before = counts(cast)
    files = [("good.jpg", images["chelsea.jpg"], "image/jpeg"), ("bad.png", data, "image/png")]
    body = assert_error(register(cast, "Ghost", files=files), 422, error)
    assert body["message"].startswith("bad.png")  # names the upload, not "<bytes>"
    assert_error(cast.get("/libraries/default/entities/Ghost"), 404)
    r = cast.post("/libraries/default/entities/Mara/images", files=[("images", f) for f in files])
    assert_error(r, 422, error)
    assert counts(cast) == before


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"kind": "dragon"}, "FilterError"),
        ({"era": "bad/era"}, "InvalidNameError"),
        ({"consent": "maybe"}, "InvalidInputError"),
        ({"rights_expires": "someday"}, "InvalidInputError"),
        ({"tags": ["ok", "bad\x00tag"]}, "InvalidInputError"),
    ],
)
def test_bad_fields_are_422(client, images, fields, error):
    data = {"kind": "character", **fields}
    r = register(client, "Vera", files=[("a.png", images["astronaut.png"], "image/png")], **data)
    assert_error(r, 422, error)
    assert counts(client) == {"entities": 0, "references": 0}


def test_missing_form_field_is_422_in_the_error_shape(client):
    r = client.post("/libraries/default/entities", data={"name": "X"})
    body = assert_error(r, 422, "InvalidInputError")
    assert "kind" in body["message"]


def test_add_images_dedupes_and_delete_removes(cast, images):
    url = "/libraries/default/entities/Mara/images"
    chelsea = [("images", ("c.jpg", images["chelsea.jpg"], "image/jpeg"))]
    r = cast.post(url, data={"era": "armored"}, files=chelsea)
    assert r.status_code == 201, r.text
    assert r.json()["added"] == 1 and r.json()["references"][0]["era"] == "armored"
    again = cast.post(url, files=chelsea).json()
    assert again["added"] == 0 and again["references"][0]["new"] is False
    refs = cast.get("/libraries/default/entities/Mara").json()["references"]
    assert sorted(r["era"] for r in refs) == ["armored", "default"]
    assert_error(cast.post(url, data={"era": "x"}), 422)  # no images at all
    gone = cast.delete("/libraries/default/entities/Mara")
    assert gone.status_code == 200 and gone.json()["removed"]["name"] == "Mara"
    assert_error(cast.get("/libraries/default/entities/Mara"), 404)
    assert_error(cast.get(refs[0]["image_url"]), 404)
    assert counts(cast) == {"entities": 1, "references": 1}


# --- hostile names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "lib",
    [
        "..%2F..%2Fetc",
        "%2E%2E",
        "a'b",
        "x%20OR%201%3D1",
        "-lead",
        "%00",
        "a" * 65,
        "default%27%3B%20DROP%20TABLE%20entities%3B--",
    ],
)
def test_bad_library_names_are_422_everywhere(shared, lib):
    for method, path, kwargs in [
        ("get", "entities", {}),
        ("get", "entities/Mara", {}),
        ("delete", "entities/Mara", {}),
        ("get", "export", {}),
        ("post", "query", {"json": {"prompt": "Mara"}}),
        ("get", "references/abc/image", {}),
        ("post", "entities", {"data": {"name": "X", "kind": "prop"}}),
    ]:
        r = getattr(shared, method)(f"/libraries/{lib}/{path}", **kwargs)
        assert_error(r, 422)
    assert counts(shared) == {"entities": 2, "references": 2}


@pytest.mark.parametrize("name", ["..%2F..%2Fetc%2Fpasswd", "a%5Cb", "%2E%2E", "tab%09name"])
def test_bad_entity_names_are_422(shared, name):
    assert_error(shared.get(f"/libraries/default/entities/{name}"), 422, "InvalidNameError")
    assert_error(shared.delete(f"/libraries/default/entities/{name}"), 422, "InvalidNameError")
    assert counts(shared) == {"entities": 2, "references": 2}


def test_sql_ish_names_are_plain_data(cast, images):
    name = "O'Brien'); DROP TABLE entities;--"
    r = register(
        cast, name, files=[("a.png", encode(images_array_small(), "PNG"), "image/png")], aliases=["x' OR '1'='1"]
    )
    assert r.status_code == 201, r.text
    assert cast.get("/libraries/default/entities/" + quote(name, safe="")).json()["name"] == name
    assert cast.get("/libraries/default/entities/" + quote("x' OR '1'='1", safe="")).json()["name"] == name
    for probe in ["' OR '1'='1", "Mara' OR name LIKE '%", "%", "*"]:
        assert_error(cast.get("/libraries/default/entities/" + quote(probe, safe="")), 404)
    assert counts(cast)["entities"] == 3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=1, max_size=40))
def test_any_entity_name_gives_a_typed_answer(shared, name):
    r = shared.get("/libraries/default/entities/" + quote(name, safe=""))
    assert r.status_code in (200, 404, 422), r.text
    if r.status_code != 200:
        assert_error(r, r.status_code)


def test_reference_ids_are_checked_and_scoped_to_their_library(cast, images):
    (ref,) = cast.get("/libraries/default/entities/Mara").json()["references"]
    assert_error(cast.get("/libraries/default/references/" + quote("x' OR 1=1", safe="") + "/image"), 422)
    assert_error(cast.get("/libraries/default/references/" + "0" * 32 + "/image"), 404, "NotFoundError")
    small = [("a.png", encode(images_array_small(), "PNG"), "image/png")]
    r = register(cast, "Other", lib="other", files=small)
    assert r.status_code == 201
    assert_error(cast.get(f"/libraries/other/references/{ref['id']}/image"), 404)  # exists, but in 'default'


# --- limits and authentication ---------------------------------------------------------------------
def test_oversized_upload_is_413_and_store_unchanged(tmp_path, images):
    with local_client(create_app(str(tmp_path / "db"), max_upload_bytes=100_000)) as c:
        assert len(images["astronaut.png"]) > 100_000 > len(images["chelsea.jpg"])
        files = [
            ("chelsea.jpg", images["chelsea.jpg"], "image/jpeg"),
            ("astronaut.png", images["astronaut.png"], "image/png"),
        ]
        body = assert_error(register(c, "Big", files=files), 413, "UploadTooLargeError")
        assert "astronaut.png" in body["message"]
        # a request body over the whole-request limit is refused before it is parsed
        huge = [("blob.bin", os.urandom(16 * 100_000 + 2 * 1024 * 1024), "application/octet-stream")]
        assert_error(register(c, "Huge", files=huge), 413)

        def chunked():  # no Content-Length: the limiter counts bytes as they arrive
            yield b'--XX\r\nContent-Disposition: form-data; name="name"\r\n\r\nHuge\r\n'
            yield b'--XX\r\nContent-Disposition: form-data; name="kind"\r\n\r\nprop\r\n'
            # parts each within the per-upload limit (a bigger one is cut as a part), over the total
            for i in range(30):
                yield f'--XX\r\nContent-Disposition: form-data; name="images"; filename="a{i}.bin"\r\n\r\n'.encode()
                yield b"\0" * 99_000 + b"\r\n"
            yield b"--XX--\r\n"

        multipart = {"content-type": "multipart/form-data; boundary=XX"}
        r = c.post("/libraries/default/entities", content=chunked(), headers=multipart)
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "PayloadTooLargeError")
        assert c.app.state.continuity.store.library("default").count() == {"entities": 0, "references": 0}
        ok = register(c, "Small", "prop", files=files[:1])
        assert ok.status_code == 201


def test_default_upload_limit_is_32_mib(client):
    blob = b"\0" * (32 * 1024 * 1024 + 1)
    assert_error(register(client, "Big", files=[("big.png", blob, "image/png")]), 413, "UploadTooLargeError")
    assert counts(client) == {"entities": 0, "references": 0}


def test_api_key_is_required_except_for_health(tmp_path, images):
    with local_client(create_app(str(tmp_path / "db"), api_key="s3cret-ключ")) as c:
        assert c.get("/health").status_code == 200
        good = {"Authorization": "Bearer s3cret-ключ".encode()}  # raw UTF-8 bytes on the wire
        for headers in [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic s3cret"},
            {"Authorization": "Bearer "},
            {"Authorization": "s3cret"},
        ]:
            for method, path in [
                ("get", "/libraries"),
                # /docs is public since issue 19 (offline docs a browser can open; the page asks for
                # the key and sends it itself); the schema behind it still needs the key
                ("get", "/openapi.json"),
                ("post", "/libraries/default/entities"),
                ("get", "/libraries/default/export"),
            ]:
                r = getattr(c, method)(path, headers=headers)
                assert_error(r, 401, "UnauthorizedError")
                assert r.headers["www-authenticate"] == "Bearer"
        r = c.post(
            "/libraries/default/entities",
            headers=good,
            data={"name": "Keyed", "kind": "prop"},
            files=[("images", ("c.jpg", images["chelsea.jpg"], "image/jpeg"))],
        )
        assert r.status_code == 201, r.text
        assert c.get("/libraries", headers=good).json()["libraries"][0]["entities"] == 1
        assert "HTTPBearer" in c.get("/openapi.json", headers=good).json()["components"]["securitySchemes"]


# --- retrieval and export ----------------------------------------------------------------------------
def test_query_returns_hits_with_reasons_and_image_urls(shared, images):
    r = shared.post("/libraries/default/query", json={"prompt": "The pilot strokes Harbor Cat", "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    hits = {h["name"]: h for h in body["hits"]}
    assert set(hits) == {"Mara", "Harbor Cat"}
    assert any("the pilot" in why for why in hits["Mara"]["reasons"])
    ref = hits["Mara"]["references"][0]
    assert shared.get(ref["image_url"]).content == images["astronaut.png"]
    only_cat = shared.post(
        "/libraries/default/query", json={"prompt": "someone in a room", "cast": ["Harbor Cat"]}
    ).json()
    assert [h["name"] for h in only_cat["hits"]] == ["Harbor Cat"]
    kinds = shared.post(
        "/libraries/default/query", json={"prompt": "The pilot and Harbor Cat", "kinds": ["prop"]}
    ).json()
    assert [h["kind"] for h in kinds["hits"]] == ["prop"]


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": ""},
        {"prompt": "x", "k": 0},
        {"prompt": "x", "k": "many"},
        {"prompt": "x", "kinds": ["dragon"]},
        {"prompt": "x", "surprise": 1},
        {"k": 3},
        {"prompt": "x", "shot_index": -1},
        {"prompt": "x" * 20_001},
    ],
)
def test_bad_queries_are_422(shared, body):
    assert_error(shared.post("/libraries/default/query", json=body), 422)


def test_query_on_unknown_library_is_404_and_non_json_is_422(shared):
    assert_error(shared.post("/libraries/elsewhere/query", json={"prompt": "Mara"}), 404)
    as_json = {"content-type": "application/json"}
    for raw in [b'{"prompt": "Mara \\ud800"}', b'{"prompt": "Mara", "cast": ["\\udfff"]}']:  # lone surrogates
        assert_error(shared.post("/libraries/default/query", content=raw, headers=as_json), 422)
    r = shared.post("/libraries/default/query", content=b"{not json", headers=as_json)
    assert_error(r, 422, "InvalidInputError")
    # JSON bodies get a far smaller limit than uploads
    big = b'{"prompt": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    assert_error(shared.post("/libraries/default/query", content=big, headers=as_json), 413)


def test_export_download_imports_into_another_store(shared, images, tmp_path):
    r = shared.get("/libraries/default/export")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "default.continuity" in r.headers["content-disposition"]
    archive = tmp_path / "download.continuity"
    archive.write_bytes(r.content)
    other = Store.init(tmp_path / "other")
    result = import_library(other, archive, "imported")
    assert (result["entities"], result["references"]) == (2, 2)
    lib = other.library("imported")
    assert lib.get("the pilot").name == "Mara"
    stored = {r.sha256: r for r in lib.references(with_images=True)}
    assert {hashlib.sha256(b).hexdigest() for k, b in images.items() if k != "truncated.png"} == set(stored)
    assert all(r.image is not None and hashlib.sha256(r.image).hexdigest() == h for h, r in stored.items())
    assert_error(shared.get("/libraries/elsewhere/export"), 404)
    leftovers = list(Path(os.environ.get("TMPDIR", "/tmp")).glob("continuity-export-*"))
    # the temporary archive is deleted after sending
    assert not any((p / "default.continuity").exists() for p in leftovers)


def test_concurrent_registers_and_queries_all_land(client):
    """The server runs handlers in a thread pool: writes from several threads must all commit,
    and queries running beside them must see each finished entity."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    def work(i):
        pixels = np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)
        r = register(client, f"Prop {i}", "prop", files=[("p.png", encode(pixels, "PNG"), "image/png")])
        q = client.post("/libraries/default/query", json={"prompt": f"Prop {i} on a table", "k": 3})
        return r.status_code, q.status_code, [h["name"] for h in q.json()["hits"]]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(8)))
    assert [(r, q) for r, q, _ in results] == [(201, 200)] * 8
    assert all(hits[:1] == [f"Prop {i}"] for i, (_, _, hits) in enumerate(results))
    assert counts(client) == {"entities": 8, "references": 8}


# --- the command ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_answers_on_loopback_with_key(tmp_path):
    import httpx

    port = free_port()
    env = {**os.environ, "MY_KEY": "k-123", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "continuity.cli",
        "serve",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "db"),
        "--api-key-env",
        "MY_KEY",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "server did not answer within 30 s"
            time.sleep(0.2)
        assert httpx.get(base + "/libraries", timeout=5).status_code == 401
        keyed = {"Authorization": "Bearer k-123"}
        assert httpx.get(base + "/libraries", headers=keyed, timeout=5).json() == {"libraries": []}
        assert httpx.get(base + "/libraries/..%2Fetc/entities", headers=keyed, timeout=5).status_code == 422
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_command_refuses_an_unset_key_variable(tmp_path):
    from typer.testing import CliRunner

    from continuity.cli import app

    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_KEY_VAR"}
    args = ["serve", "--db", str(tmp_path / "db"), "--api-key-env", "NO_SUCH_KEY_VAR"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2
    assert "NO_SUCH_KEY_VAR" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "db").exists()
