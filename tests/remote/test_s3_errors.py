"""Bad object-store inputs: a missing bucket, wrong credentials, an endpoint that is down, plain
http without allow_http, a server without conditional writes. Each is one typed line, says what to
do, never shows a secret, and writes nothing."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from continuity.cli import app
from memstore.errors import (
    BucketNotFoundError,
    StoreCredentialsError,
    UnreachableStoreError,
    UnsafeCommitsError,
    UnsafeCommitsWarning,
)
from memstore.store import Store
from tests.remote.conftest import SECRET

runner = CliRunner()


def one_line_failure(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def buckets(s3) -> list[str]:
    return sorted(b["Name"] for b in s3.client().list_buckets()["Buckets"])


def test_missing_bucket_is_one_line_and_creates_nothing(s3):
    before = buckets(s3)
    uri = "s3://no-such-bucket-17/db"
    for call in (Store.open, Store.init):
        with pytest.raises(BucketNotFoundError, match="'no-such-bucket-17' does not exist"):
            call(uri)
    line = one_line_failure("init", "--db", uri)
    assert "does not exist" in line and "create it" in line
    assert buckets(s3) == before


@pytest.fixture
def moto_checks_signatures(monkeypatch) -> Iterator[None]:
    """moto accepts any credentials unless told to authenticate every request."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    yield
    monkeypatch.undo()


def test_wrong_credentials_are_one_line_without_the_secret(s3, monkeypatch, photos):
    Store.init(s3.uri).library().register("Aria", "character", images=[photos["astronaut"]])
    before = s3.objects()
    wrong = "Wr0ng-secret-Key-9876543210"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGKEY17")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    with monkeypatch.context() as auth:
        auth.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        auth.setattr(ActionAuthenticatorMixin, "request_count", 0)
        with pytest.raises(StoreCredentialsError) as caught:
            Store.open(s3.uri)
        line = one_line_failure("register", "Bram", "--kind", "character", "--db", s3.uri)
    for text in (str(caught.value), line):
        assert "refused the credentials" in text and "AWS_SECRET_ACCESS_KEY" in text
        assert wrong not in text and SECRET not in text
    assert s3.objects() == before  # nothing written, nothing half-written


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_unreachable_endpoint_fails_in_seconds(s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    with pytest.raises(UnreachableStoreError, match="connection refused"):
        Store.open(s3.uri)  # the default options bound the retries: no CONTINUITY_STORAGE_OPTIONS here
    assert time.monotonic() - started < 15
    assert "cannot reach the store" in one_line_failure("list", "--db", s3.uri)


def test_plain_http_without_allow_http_says_how_to_allow_it(s3, monkeypatch):
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    with pytest.raises(UnreachableStoreError, match="AWS_ALLOW_HTTP=true"):
        Store.open(s3.uri)


def test_store_config_file_supplies_endpoint_and_credentials(s3, monkeypatch, tmp_path):
    import json

    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(name)
    config = tmp_path / "stores.json"
    options = {"endpoint": s3.endpoint, "allow_http": True, "access_key_id": "testing", "secret_access_key": SECRET}
    config.write_text(json.dumps({"stores": {f"s3://{s3.bucket}": options}}))
    monkeypatch.setenv("CONTINUITY_STORE_CONFIG", str(config))
    Store.init(s3.uri).library().register("Harbor", "location", images=[b"\x89PNG-not-really"] * 0)
    assert [e.name for e in Store.open(s3.uri).library().list()] == ["Harbor"]


@pytest.fixture
def endpoint_without_conditional_puts(s3) -> Iterator[str]:
    """The same moto backend behind a second port that drops ``If-None-Match``, like an S3
    look-alike without conditional writes."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    moto_app = DomainDispatcherApplication(create_backend_app)

    def without_conditions(environ, start_response):
        environ.pop("HTTP_IF_NONE_MATCH", None)
        return moto_app(environ, start_response)

    server = make_server("127.0.0.1", 0, without_conditions, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def test_backend_without_conditional_puts_is_refused_at_init(s3, monkeypatch, endpoint_without_conditional_puts):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_without_conditional_puts)
    with pytest.raises(UnsafeCommitsError, match="If-None-Match"):
        Store.init(s3.uri)
    assert not [k for k in s3.objects() if not k.startswith("db/_commit_probe")], "init wrote more than its probe"


def test_store_never_checked_warns_at_open(s3):
    store = Store.init(s3.uri)
    with store.write_lock():
        store._set_config("commits", {"checked": "no", "why": "made by an older version"})
    with pytest.warns(UnsafeCommitsWarning, match="made by an older version"):
        Store.open(s3.uri)
    Store.init(s3.uri)  # init checks again and records it
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeCommitsWarning)
        Store.open(s3.uri)
