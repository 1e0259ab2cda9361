"""The server against a browser, a hostile uploader and other libraries' keys: Host and Origin
checks, limits applied while the body streams, the request pixel budget, bounded caches and query
lists, and per-library keys tried at random across libraries and endpoints."""

from __future__ import annotations

import asyncio
import io
import random
import struct
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from continuity.server import create_app
from memstore.keys import scope_allows

ADMIN = {"Authorization": "Bearer admin-key"}


def png(seed: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def bilevel_png(side: int) -> bytes:
    """A real (decodable) 1-bit PNG of side x side pixels: a few KB for ~40 MP (the attack's images)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (side + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * side, 9)) + chunk(b"IEND", b"")
    )


def assert_error(response, status, error=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and "\n" not in body["message"], body
    if error is not None:
        assert body["error"] == error, body
    return body


def local(app, **kwargs) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1:8765", **kwargs)


@pytest.fixture
def client(tmp_path):
    with local(create_app(str(tmp_path / "db"))) as c:
        yield c


def counts(client, lib="default"):
    return client.app.state.continuity.store.library(lib).count()


def form(name="Hero", kind="prop"):
    return {"name": name, "kind": kind}


# --- Host and Origin ------------------------------------------------------------------------------------
def test_untrusted_host_is_refused_before_anything(tmp_path):
    app = create_app(str(tmp_path / "db"), allowed_hosts=["studio.lan"])
    with TestClient(app, base_url="http://attacker.example") as c:  # DNS rebinding: the page's own name
        assert_error(c.get("/libraries"), 400, "UntrustedHostError")
        assert_error(c.post("/libraries/default/entities", data=form()), 400, "UntrustedHostError")
    for base in ["http://127.0.0.1:9", "http://localhost", "http://[::1]:8765", "http://studio.lan:8765"]:
        with TestClient(app, base_url=base) as c:
            assert c.get("/libraries").status_code == 200, base


def test_cross_origin_writes_are_refused_and_write_nothing(client):
    for headers in [
        {"Origin": "http://attacker.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},  # another port is another origin
        {"Sec-Fetch-Site": "cross-site"},
    ]:
        r = client.post("/libraries/default/entities", data=form(), headers=headers)
        assert_error(r, 403, "CrossOriginError")
    assert counts(client) == {"entities": 0, "references": 0}
    assert (
        client.post("/libraries/default/entities", data=form(), headers={"Origin": "http://127.0.0.1:8765"}).status_code
        == 201
    )
    assert_error(client.delete("/libraries/default/entities/Hero", headers={"Origin": "http://evil.example"}), 403)
    assert client.post("/libraries/default/entities", data=form("Tool")).status_code == 201  # no Origin: not a browser
    assert counts(client)["entities"] == 2
    assert (
        client.get("/libraries", headers={"Origin": "http://evil.example"}).status_code == 200
    )  # reads: the browser hides them


def test_configured_origin_may_write(tmp_path):
    with local(create_app(str(tmp_path / "db"), allowed_origins=["https://studio.example"])) as c:
        assert (
            c.post("/libraries/default/entities", data=form(), headers={"Origin": "https://studio.example"}).status_code
            == 201
        )


def test_admin_key_with_trailing_newline_works(tmp_path):
    with local(create_app(str(tmp_path / "db"), api_key="k-123\n")) as c:
        assert c.get("/libraries", headers={"Authorization": "Bearer k-123"}).status_code == 200
        assert_error(c.get("/libraries", headers={"Authorization": "Bearer k-1234"}), 401)


def test_serve_strips_keys_warns_without_one_and_generates_one_off_loopback(tmp_path, monkeypatch, capsys):
    from continuity.cli import serve

    monkeypatch.setenv("MY_KEY", "k-123\n")
    assert serve._api_key("MY_KEY", None, "127.0.0.1") == "k-123"
    (tmp_path / "key.txt").write_text("from-file\n")
    assert serve._api_key(None, tmp_path / "key.txt", "0.0.0.0") == "from-file"
    assert serve._api_key(None, None, "127.0.0.1") is None
    assert "serving without an API key" in capsys.readouterr().err
    generated = serve._api_key(None, None, "0.0.0.0")
    assert generated and len(generated) >= 40 and generated in capsys.readouterr().err


# --- bodies as they stream ----------------------------------------------------------------------------
def drive(app, method, path, chunks, headers, pause_after=None):
    """Call the ASGI app directly with a body in chunks; returns (status, body, chunks pulled)."""
    pulled = 0
    sent = []

    async def receive():
        nonlocal pulled
        if pause_after is not None and pulled >= pause_after:
            await asyncio.sleep(3600)  # a client that stopped sending
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8765"), *((k.encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8765),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, pulled


MULTIPART = {"content-type": "multipart/form-data; boundary=XX"}


def test_an_oversized_part_is_refused_as_it_streams(tmp_path):
    app = create_app(str(tmp_path / "db"), max_upload_bytes=100_000)
    head = (
        b'--XX\r\nContent-Disposition: form-data; name="name"\r\n\r\nBig\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="kind"\r\n\r\nprop\r\n'
    )
    part = b'--XX\r\nContent-Disposition: form-data; name="images"; filename="big.png"\r\n\r\n'
    chunks = [head + part] + [b"\0" * 10_000] * 300 + [b"\r\n--XX--\r\n"]  # a 3 MB part, 30x the limit
    status, body, pulled = drive(app, "POST", "/libraries/default/entities", chunks, MULTIPART)
    assert status == 413 and b"UploadTooLargeError" in body and b"big.png" in body
    assert pulled <= 12  # cut just past the limit, not read (spooled) whole
    assert app.state.continuity.store.library("default").count()["entities"] == 0


def test_a_stalled_body_is_dropped_after_the_read_timeout(tmp_path):
    app = create_app(str(tmp_path / "db"), body_timeout_s=0.3)
    chunks = [b'--XX\r\nContent-Disposition: form-data; name="name"\r\n\r\nSlow\r\n', b""]
    started = time.monotonic()
    status, body, _ = drive(app, "POST", "/libraries/default/entities", chunks, MULTIPART, pause_after=1)
    assert status == 408 and b"RequestTimeoutError" in body
    assert time.monotonic() - started < 5
    assert app.state.continuity.store.library("default").count()["entities"] == 0


def test_multipart_without_its_closing_boundary_registers_nothing(client):
    image = png(1)
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="name"\r\n\r\nCut\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="kind"\r\n\r\nprop\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n' + image
    )
    r = client.post("/libraries/default/entities", content=body, headers=MULTIPART)
    assert_error(r, 400, "MalformedBodyError")
    assert counts(client) == {"entities": 0, "references": 0}
    whole = body + b"\r\n--XX--\r\n"
    assert client.post("/libraries/default/entities", content=whole, headers=MULTIPART).status_code == 201
    assert counts(client) == {"entities": 1, "references": 1}


def test_the_request_pixel_budget_refuses_sixteen_forty_megapixel_images_from_their_headers(client):
    image = bilevel_png(6300)  # 39.69 MP, just under the per-image limit
    assert len(image) < 20_000
    files = [("images", (f"p{i}.png", image, "image/png")) for i in range(16)]
    started = time.monotonic()
    r = client.post("/libraries/default/entities", data=form("Bomb"), files=files)
    assert_error(r, 413, "PixelBudgetError")
    assert time.monotonic() - started < 3  # refused from the headers: nothing of 635 MP was decoded
    assert counts(client) == {"entities": 0, "references": 0}


# --- bounded state and query lists -----------------------------------------------------------------------
def test_library_cache_is_bounded(client):
    for i in range(80):
        assert_error(client.get(f"/libraries/lib{i}/entities"), 404)
    assert len(client.app.state.continuity.libraries) <= 64


def test_query_lists_are_bounded(client):
    client.post("/libraries/default/entities", data=form())
    for field in ("cast", "kinds", "tags"):
        value = ["prop"] * 257 if field == "kinds" else [f"n{i}" for i in range(257)]
        assert_error(client.post("/libraries/default/query", json={"prompt": "x", field: value}), 422)
    ok = client.post("/libraries/default/query", json={"prompt": "x", "tags": [f"t{i}" for i in range(256)]})
    assert ok.status_code == 200, ok.text


# --- per-library keys -------------------------------------------------------------------------------------
LIBRARIES = ("alpha", "beta", "gamma")
SCOPES = ("read", "write", "admin")


@pytest.fixture
def keyed(tmp_path):
    app = create_app(str(tmp_path / "db"), api_key="admin-key")
    with local(app) as c:
        refs = {}
        for i, lib in enumerate(LIBRARIES):
            r = c.post(
                f"/libraries/{lib}/entities",
                data=form(),
                files=[("images", ("h.png", png(i), "image/png"))],
                headers=ADMIN,
            )
            assert r.status_code == 201, r.text
            refs[lib] = r.json()["references"][0]["id"]
        ring = app.state.continuity.keyring
        keys = {(lib, scope): ring.create(lib, scope).key for lib in LIBRARIES for scope in SCOPES}
        yield c, keys, refs


def _endpoints(refs, counter):
    """(name, scope needed, setup, request) for every endpoint a key may try: ``setup(client, lib)``
    runs with the admin key before the store is snapshotted; ``request(client, lib, headers, made)``."""

    def nothing(c, lib):
        return None

    def temp_entity(c, lib):
        name = f"Temp {next(counter)}"
        assert c.post(f"/libraries/{lib}/entities", data=form(name), headers=ADMIN).status_code == 201
        return name

    def register(c, lib, h, _):
        return c.post(f"/libraries/{lib}/entities", data=form(f"New {next(counter)}"), headers=h)

    def add_images(c, lib, h, _):
        image = ("n.png", png(1000 + next(counter)), "image/png")
        return c.post(f"/libraries/{lib}/entities/Hero/images", files=[("images", image)], headers=h)

    return [
        ("list", "read", nothing, lambda c, lib, h, _: c.get(f"/libraries/{lib}/entities", headers=h)),
        ("show", "read", nothing, lambda c, lib, h, _: c.get(f"/libraries/{lib}/entities/Hero", headers=h)),
        (
            "image",
            "read",
            nothing,
            lambda c, lib, h, _: c.get(f"/libraries/{lib}/references/{refs[lib]}/image", headers=h),
        ),
        (
            "query",
            "read",
            nothing,
            lambda c, lib, h, _: c.post(f"/libraries/{lib}/query", json={"prompt": "Hero"}, headers=h),
        ),
        ("register", "write", nothing, register),
        ("add_images", "write", nothing, add_images),
        (
            "remove",
            "write",
            temp_entity,
            lambda c, lib, h, name: c.delete(f"/libraries/{lib}/entities/{name}", headers=h),
        ),
        ("export", "admin", nothing, lambda c, lib, h, _: c.get(f"/libraries/{lib}/export", headers=h)),
    ]


def test_random_keys_reach_only_their_library_up_to_their_scope(keyed):
    import itertools

    client, keys, refs = keyed
    endpoints = _endpoints(refs, itertools.count())
    rng = random.Random(11)
    tried = {"allowed": 0, "refused": 0}
    for _ in range(72):
        (key_lib, scope), key = rng.choice(sorted(keys.items()))
        target = key_lib if rng.random() < 0.5 else rng.choice(LIBRARIES)
        name, needed, setup, call = rng.choice(endpoints)
        made = setup(client, target)
        before = {lib: counts(client, lib) for lib in LIBRARIES}
        r = call(client, target, {"Authorization": f"Bearer {key}"}, made)
        what = f"{scope} key of {key_lib} -> {name} on {target}"
        if key_lib == target and scope_allows(scope, needed):
            assert r.status_code in (200, 201), f"{what}: {r.text}"
            tried["allowed"] += 1
        else:
            assert_error(r, 403, "ForbiddenError")
            after = {lib: counts(client, lib) for lib in LIBRARIES}
            assert after == before, what
            tried["refused"] += 1
    assert min(tried.values()) >= 15, tried


def test_a_key_lists_only_its_library_and_cannot_probe_others(keyed):
    client, keys, _ = keyed
    for lib in LIBRARIES:
        r = client.get("/libraries", headers={"Authorization": f"Bearer {keys[(lib, 'read')]}"})
        assert [x["name"] for x in r.json()["libraries"]] == [lib]
    alpha = {"Authorization": f"Bearer {keys[('alpha', 'admin')]}"}
    assert_error(client.get("/libraries/nowhere/entities", headers=alpha), 403, "ForbiddenError")  # no existence leak
    assert_error(client.get("/libraries/alpha%2F..%2Fbeta/entities", headers=alpha), 422)
    assert len(client.get("/libraries", headers=ADMIN).json()["libraries"]) == 3  # the admin key sees every library
    assert client.get("/docs", headers=alpha).status_code == 200


def test_a_revoked_key_is_refused_at_its_next_request(keyed):
    client, keys, _ = keyed
    ring = client.app.state.continuity.keyring
    headers = {"Authorization": f"Bearer {keys[('beta', 'write')]}"}
    assert client.get("/libraries/beta/entities", headers=headers).status_code == 200
    ring.revoke(next(k.id for k in ring.list("beta") if k.scope == "write"))
    assert_error(client.get("/libraries/beta/entities", headers=headers), 401, "UnauthorizedError")


def test_library_keys_alone_turn_authentication_on(tmp_path):
    from memstore.keys import KeyRing
    from memstore.store import Store

    key = KeyRing(Store.init(tmp_path / "db")).create("alpha", "read").key
    with local(create_app(str(tmp_path / "db"))) as c:
        assert_error(c.get("/libraries"), 401)
        assert c.get("/libraries", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert c.get("/health").status_code == 200
