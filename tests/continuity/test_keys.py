"""Per-library API keys: the key ring (hash only, constant-time check, revocation) and `continuity keys`."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from continuity.cli import app
from memstore.errors import InvalidInputError, InvalidNameError, NotFoundError
from memstore.keys import KEY_SCHEMA, KeyRing, scope_allows
from memstore.store import Store


@pytest.fixture
def ring(tmp_path):
    return KeyRing(Store.init(tmp_path / "db"))


def test_a_key_is_shown_once_and_stored_only_as_its_hash(ring):
    new = ring.create("alpha", "write")
    assert new.key.startswith(f"ck_{new.record.id}_") and len(new.key) > 50
    rows = ring.store.keys.to_arrow().to_pylist()
    assert [r["key_sha256"] for r in rows] == [hashlib.sha256(new.key.encode()).hexdigest()]
    assert all(new.key not in str(v) for r in rows for v in r.values())
    assert ring.store.keys.schema.names == KEY_SCHEMA.names
    assert ring.verify(new.key) == ("alpha", "write")
    assert ring.verify(new.key + "\n") == ("alpha", "write")  # a key read from a file with its newline
    for wrong in [new.key[:-1] + ("A" if new.key[-1] != "A" else "B"), "ck_000000000000_" + "a" * 43, "", "nope"]:
        assert ring.verify(wrong) is None


def test_revoke_takes_effect_for_another_process_view_and_list_never_shows_keys(ring, tmp_path):
    a, b = ring.create("alpha", "read"), ring.create("beta", "admin")
    other = KeyRing(Store.open(tmp_path / "db"))  # e.g. the running server
    assert other.verify(a.key) == ("alpha", "read")
    assert ring.revoke(a.record.id).revoked is not None
    assert other.verify(a.key) is None and other.verify(b.key) == ("beta", "admin")
    assert ring.revoke(a.record.id).revoked is not None  # twice: no change, no error
    listed = [k.to_json() for k in ring.list()]
    assert [(k["library"], k["scope"], k["revoked"] is not None) for k in listed] == [
        ("alpha", "read", True),
        ("beta", "admin", False),
    ]
    assert set(listed[0]) == {"id", "library", "scope", "created", "revoked"}
    assert [k.library for k in ring.list("beta")] == ["beta"]


def test_bad_arguments_are_typed_errors(ring):
    with pytest.raises(InvalidInputError, match="scope 'owner' is unknown"):
        ring.create("alpha", "owner")
    with pytest.raises(InvalidNameError):
        ring.create("../alpha", "read")
    with pytest.raises(NotFoundError):
        ring.revoke("0123456789ab")
    with pytest.raises(InvalidInputError):
        ring.revoke("x' OR 1=1 --")
    assert ring.list() == []


def test_scopes_nest():
    assert [scope_allows("write", n) for n in ("read", "write", "admin")] == [True, True, False]
    assert [scope_allows("read", n) for n in ("read", "write", "admin")] == [True, False, False]


def test_keys_cli_create_list_revoke(tmp_path):
    db = str(tmp_path / "db")
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--db", db]).exit_code == 0
    made = runner.invoke(app, ["keys", "create", "--library", "alpha", "--scope", "read", "--db", db])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("ck_")
    ring = KeyRing(Store.open(db))
    assert ring.verify(key) == ("alpha", "read")
    listed = runner.invoke(app, ["keys", "list", "--json", "--db", db])
    assert listed.exit_code == 0 and key not in listed.output and ring.list()[0].key_sha256 not in listed.output
    assert '"scope": "read"' in listed.output
    key_id = ring.list()[0].id
    assert runner.invoke(app, ["keys", "revoke", key_id, "--db", db]).exit_code == 0
    assert ring.verify(key) is None
    bad = runner.invoke(app, ["keys", "create", "--library", "alpha", "--scope", "root", "--db", db])
    assert bad.exit_code == 1 and "scope 'root' is unknown" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(app, ["keys", "revoke", "0123456789ab", "--db", db])
    assert missing.exit_code == 1 and "no key with id" in missing.output
