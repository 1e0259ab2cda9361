"""One value must not brick a library: times outside the safe UTC range are refused at the model
(Python API, CLI, HTTP), and a row an older version already wrote with one still reads, can be
removed, and is fixed by ``Store.repair()``."""

from __future__ import annotations

import datetime as dt

import pytest
from typer.testing import CliRunner

from continuity.cli import app
from memstore.errors import InvalidInputError
from memstore.schema import Entity, Reference, Rights
from memstore.store import Store
from memstore.validation import MAX_TIME, MIN_TIME
from tests.memstore.test_library import snapshot

POISON = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1899-12-31T23:59:59Z", "9001-01-01T00:00:00Z"]
FAR_PAST = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59)))  # year 0 in UTC
FAR_FUTURE = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(-dt.timedelta(hours=23, minutes=59)))


@pytest.mark.parametrize("value", POISON)
def test_model_refuses_times_outside_the_safe_range(value):
    with pytest.raises(ValueError, match="outside the allowed range"):
        Rights(expires=value)
    with pytest.raises(ValueError, match="outside the allowed range"):
        Entity(kind="prop", name="x", created=value)
    with pytest.raises(ValueError, match="outside the allowed range"):
        Reference(entity_id="e", kind="prop", width=1, height=1, sha256="0" * 64, created=value)


def test_model_keeps_times_inside_the_range_in_utc():
    rights = Rights(expires="2030-01-01T00:00:00+02:00")
    assert rights.expires == dt.datetime(2029, 12, 31, 22, tzinfo=dt.timezone.utc)
    assert Rights(expires="2030-01-01").expires.tzinfo is not None  # a naive time is UTC
    assert Rights(expires=MAX_TIME).expires == MAX_TIME and Rights(expires=MIN_TIME).expires == MIN_TIME


@pytest.mark.parametrize("value", POISON[:2])
def test_library_refuses_a_poisoned_expiry_in_one_line_and_writes_nothing(store, library, value):
    before = snapshot(store)
    with pytest.raises(
        InvalidInputError, match="bad rights for .Hi.: expires: rights expiry .* outside the allowed range"
    ) as info:
        library.register("Hi", "prop", rights={"expires": value})
    assert "\n" not in str(info.value)
    library.register("Ok", "prop")
    with pytest.raises(InvalidInputError, match="outside the allowed range"):
        library.update("Ok", rights={"expires": value})
    assert library.get("Ok").rights.expires is None
    assert snapshot(store)["entities"][1] == before["entities"][1] + 1


def test_cli_refuses_a_poisoned_expiry_in_one_line(tmp_path):
    db = str(tmp_path / "db")
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--db", db]).exit_code == 0
    before = snapshot(Store.open(db))
    result = runner.invoke(
        app, ["register", "Hi", "--kind", "prop", "--rights-expires", "9999-12-31T23:59:59-23:59", "--db", db]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "outside the allowed range" in lines[0] and "Traceback" not in result.output
    assert snapshot(Store.open(db)) == before


def _poison(store: Store, name: str, **times: dt.datetime) -> str:
    """Write an entity row with raw out-of-range times, as an older version could."""
    row = store.library().prepare(name, "prop").entity.to_row()
    row.update(times)
    store.entities.add([row])
    return row["id"]


def test_poisoned_row_still_reads_and_can_be_removed(store, library, photos):
    library.register("Kept", "prop", images=[photos["coffee"]], description="a silver cup")
    _poison(store, "Hi", rights_expires=FAR_FUTURE, created=FAR_PAST)
    _poison(store, "Lo", rights_expires=FAR_PAST, updated=FAR_FUTURE)
    entities = {e.name: e for e in library.list()}  # no OverflowError
    assert set(entities) == {"Kept", "Hi", "Lo"}
    assert entities["Hi"].rights.expires == MAX_TIME and entities["Hi"].created == MIN_TIME  # clamped
    assert entities["Lo"].rights.problem() is not None  # an expiry before 1900 stays an expiry
    assert library.get("Hi").to_json()["rights"]["expires"].startswith("9000-12-31")
    assert [h for h, _ in library.text_search("silver cup")] == [library.get("Kept").id]
    from retrieval import Retriever, ShotQuery

    result = Retriever(library).retrieve(ShotQuery("Hi and Lo carry the silver cup"))
    assert {hit.entity.name for hit in result.hits} >= {"Hi", "Lo"}
    library.remove("Hi")
    assert "Hi" not in library and "Lo" in library


def test_repair_clamps_poisoned_times(store, library, tmp_path):
    _poison(store, "Hi", rights_expires=FAR_FUTURE, created=FAR_PAST)
    report = store.repair()
    assert report["times"] == 2
    raw = store.entities.to_lance().to_table().to_pylist()  # plain pyarrow conversion no longer overflows
    assert raw[0]["rights_expires"] == MAX_TIME and raw[0]["created"] == MIN_TIME
    assert store.repair()["times"] == 0


def test_export_of_a_poisoned_row_imports_clean(store, library, tmp_path):
    _poison(store, "Hi", rights_expires=FAR_FUTURE)
    from memstore.archive import import_library

    library.export(tmp_path / "lib.continuity")
    other = Store.init(tmp_path / "other")
    import_library(other, tmp_path / "lib.continuity")
    assert other.library().get("Hi").rights.expires == MAX_TIME
    assert other.entities.to_lance().to_table().to_pylist()[0]["rights_expires"] == MAX_TIME


def test_http_refuses_a_poisoned_expiry_and_reads_a_poisoned_row(tmp_path):
    from fastapi.testclient import TestClient

    from continuity.server import create_app

    db = tmp_path / "db"
    store = Store.init(db)
    with TestClient(create_app(str(db)), base_url="http://127.0.0.1") as client:
        response = client.post(
            "/libraries/default/entities",
            data={"name": "Hi", "kind": "prop", "rights_expires": "0001-01-01T00:00:00+23:59"},
        )
        assert 400 <= response.status_code < 500, response.text
        assert "outside the allowed range" in response.text
        assert store.entities.count_rows() == 0
        _poison(store, "Old", rights_expires=FAR_FUTURE)
        listed = client.get("/libraries/default/entities")
        assert listed.status_code == 200, listed.text
        assert client.get("/libraries/default/entities/Old").status_code == 200
        assert client.delete("/libraries/default/entities/Old").status_code < 300
    assert store.entities.count_rows() == 0
