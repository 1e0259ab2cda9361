"""A real S3-compatible server on 127.0.0.1 for the whole session (moto's server mode), and a fresh
bucket per test. Nothing leaves this machine: every client gets the loopback endpoint, dummy
credentials, and no instance-metadata lookups."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

SECRET = "s3cret-Value-0123456789"  # a distinctive secret, to look for where it must never appear
BASE_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}
CLEARED = ("AWS_ENDPOINT", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE", "CONTINUITY_STORAGE_OPTIONS")


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/db"

    def client(self):  # boto3, for what the tests check behind the store's back
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key=SECRET,
        )

    def objects(self) -> dict[str, bytes]:
        """Every object of the bucket with its bytes."""
        client = self.client()
        keys = [
            o["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            for o in page.get("Contents", [])
        ]
        return {k: client.get_object(Bucket=self.bucket, Key=k)["Body"].read() for k in keys}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    saved = {k: os.environ.get(k) for k in BASE_ENV}
    os.environ.update(BASE_ENV)  # before the server starts: boto3 and moto read them
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3(s3_endpoint, monkeypatch, tmp_path) -> S3:
    """A new empty bucket; the environment points every store client at the loopback server, and
    caches and the store config file live in this test's folder."""
    for key, value in BASE_ENV.items():
        monkeypatch.setenv(key, value)
    for key in CLEARED:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CONTINUITY_STORE_CONFIG", raising=False)
    bucket = S3(s3_endpoint, f"b-{uuid.uuid4().hex[:12]}")
    bucket.client().create_bucket(Bucket=bucket.bucket)
    return bucket
