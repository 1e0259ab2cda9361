"""Object-store URIs: where their options come from, and what their failures mean.

A store at ``s3://bucket/prefix`` (or ``s3+ddb://``, ``gs://``, ``az://``) needs an endpoint, a region,
credentials and sometimes ``allow_http``. They come, weakest first, from:

1. bounded defaults (:data:`DEFAULT_OPTIONS`: a dead endpoint fails in seconds, not after minutes of
   retries);
2. the store config file (``CONTINUITY_STORE_CONFIG``, else ``$XDG_CONFIG_HOME/continuity/stores.json``;
   JSON, as Python 3.10 reads no TOML): options per URI prefix, the longest matching prefix wins::

       {"stores": {"s3://studio/library": {"endpoint": "http://minio.internal:9000", "region": "us-east-1",
                                          "allow_http": true, "access_key_id": "...", "secret_access_key": "..."}}}

3. the environment (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
   ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ALLOW_HTTP``), as everywhere in AWS tooling;
4. ``CONTINUITY_STORAGE_OPTIONS``, a JSON object of raw Lance storage options.

Secrets live only in memory: the store, provenance and error messages never see them (every error
text from the object store passes :func:`redact`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .errors import (
    BucketNotFoundError,
    InvalidInputError,
    StoreCredentialsError,
    StoreError,
    UnreachableStoreError,
    first_line,
)

#: bounded timeouts and retries: Lance's own defaults retry a dead endpoint for up to 3 minutes
DEFAULT_OPTIONS = {"connect_timeout": "5s", "timeout": "60s", "client_max_retries": "2", "client_retry_timeout": "20s"}
#: environment variable -> Lance storage option, for S3 URIs (the first one set wins)
AWS_ENV = (
    ("AWS_ENDPOINT_URL", "endpoint"),
    ("AWS_ENDPOINT", "endpoint"),
    ("AWS_REGION", "region"),
    ("AWS_DEFAULT_REGION", "region"),
    ("AWS_ACCESS_KEY_ID", "access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
    ("AWS_SESSION_TOKEN", "session_token"),
    ("AWS_ALLOW_HTTP", "allow_http"),
)
S3_SCHEMES = ("s3", "s3a", "s3+ddb")
#: schemes on which Lance commits with a conditional PUT (If-None-Match) or an external store
#: (DynamoDB for s3+ddb), so concurrent writers cannot overwrite each other's commits
ATOMIC_COMMIT_SCHEMES = (*S3_SCHEMES, "gs", "az", "abfs", "abfss", "azure", "memory")
_SECRET_NAME = re.compile(r"secret|token|password|account_key|service_account|access_key_id|sas", re.IGNORECASE)
_SECRET_MIN_LEN = 4  # shorter values would redact ordinary words out of messages


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower()


def bucket_of(uri: str) -> str:
    return uri.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]


def config_path() -> Path:
    explicit = os.environ.get("CONTINUITY_STORE_CONFIG")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "continuity" / "stores.json"


def _file_options(uri: str) -> dict[str, str]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(
            f"the store config {path} cannot be read ({first_line(exc, 120)}); fix its JSON"
        ) from None
    stores = data.get("stores", {}) if isinstance(data, dict) else None
    if not isinstance(stores, dict):
        raise InvalidInputError(f'the store config {path} must be {{"stores": {{"URI prefix": {{options}}}}}}')
    matches = [p for p in stores if uri == p or uri.startswith(p.rstrip("/") + "/")]
    if not matches:
        return {}
    prefix = max(matches, key=len)
    table = stores[prefix]
    if not isinstance(table, dict):
        raise InvalidInputError(f"the store config {path}: stores[{prefix!r}] must be an object of options")
    return {str(k): _option_text(v) for k, v in table.items()}


def _option_text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _env_options(uri: str) -> dict[str, str]:
    if scheme_of(uri) not in S3_SCHEMES:
        return {}  # gs:// and az:// read GOOGLE_* / AZURE_* from the environment themselves
    out: dict[str, str] = {}
    for variable, option in AWS_ENV:
        value = os.environ.get(variable)
        if value and option not in out:
            out[option] = value
    return out


def _json_options() -> dict[str, str]:
    text = os.environ.get("CONTINUITY_STORAGE_OPTIONS")
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"CONTINUITY_STORAGE_OPTIONS is not JSON ({exc.msg}); give a JSON object") from None
    if not isinstance(options, dict):
        raise InvalidInputError("CONTINUITY_STORAGE_OPTIONS must be a JSON object of option names to strings")
    return {str(k): _option_text(v) for k, v in options.items()}


def storage_options(uri: str) -> dict[str, str]:
    """The Lance storage options of an object-store URI (see the module docstring for the order)."""
    return {**DEFAULT_OPTIONS, **_file_options(uri), **_env_options(uri), **_json_options()}


def endpoint_of(options: dict[str, str]) -> str:
    for name in ("endpoint", "aws_endpoint", "endpoint_url", "aws_endpoint_url"):
        if options.get(name):
            return options[name]
    return ""


def cache_key(uri: str, options: dict[str, str]) -> str:
    """A local cache folder name for one store: the same bucket path behind two endpoints is two stores."""
    return hashlib.sha256(f"{endpoint_of(options)}\n{uri}".encode()).hexdigest()[:16]


def redact(text: str, options: dict[str, str]) -> str:
    """``text`` with the value of every secret-like option replaced by ``***``."""
    for name, value in options.items():
        if _SECRET_NAME.search(name) and len(value) >= _SECRET_MIN_LEN:
            text = text.replace(value, "***")
    return text


_MISSING_BUCKET = ("nosuchbucket", "specified bucket does not exist", "containernotfound", "bucket not found")
_BAD_CREDENTIALS = (
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "accessdenied",
    "access denied",
    "expiredtoken",
    "invalidtoken",
    "status: 403",
    "forbidden",
    "authorizationheadermalformed",
)
_UNREACHABLE = (
    ("badscheme", "the endpoint is plain http; set AWS_ALLOW_HTTP=true (or allow_http in the store config)"),
    ("connection refused", "connection refused"),
    ("dns error", "the endpoint's host name does not resolve"),
    ("timed out", "timed out"),  # not "timeout": every Lance retry error prints its retry_timeout
)


def remote_error(exc: BaseException, uri: str, options: dict[str, str]) -> StoreError:
    """The typed one-line error for a failed request to the object store at ``uri``; secrets redacted."""
    text = redact(str(exc), options)
    low = text.lower()
    endpoint = endpoint_of(options) or "the default endpoint"
    if any(s in low for s in _MISSING_BUCKET):
        return BucketNotFoundError(
            f"bucket {bucket_of(uri)!r} does not exist at {endpoint}; create it first or fix --db {uri}"
        )
    if any(s in low for s in _BAD_CREDENTIALS):
        code = next((c for c in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied") if c in text), "403")
        return StoreCredentialsError(
            f"the object store at {endpoint} refused the credentials for {uri} ({code}); check AWS_ACCESS_KEY_ID /"
            f" AWS_SECRET_ACCESS_KEY or the store config file {config_path()}"
        )
    reason = next((why for needle, why in _UNREACHABLE if needle in low), first_line(Exception(text), 160))
    return UnreachableStoreError(
        f"cannot reach the store at {uri} ({endpoint}): {reason}; check the endpoint (AWS_ENDPOINT_URL),"
        " credentials and network, or CONTINUITY_STORAGE_OPTIONS"
    )
