"""Rights and consent: Rights.problem() and check_rights() refuse entities whose person said no or
whose rights expired (and, when asked, whose consent was never recorded), name each one in a
one-line ConsentError that says how to override, and return the overrides that were used."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from continuity.consent import NOT_RECORDED, ConsentOverride, check_rights, rights_problem
from memstore.errors import ConsentError, ContinuityError, InvalidInputError
from memstore.schema import Entity, Rights
from retrieval.query import Hit

AT = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def ent(name: str, **rights) -> Entity:
    return Entity(name=name, kind="character", aliases=[f"{name} the Bold"], rights=Rights(**rights))


# --- Rights.problem ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rights, problem",
    [
        ({}, None),
        ({"consent": True}, None),
        ({"consent": None}, None),
        ({"consent": False}, "consent is 'no'"),
        ({"consent": True, "expires": datetime(2026, 1, 1, tzinfo=timezone.utc)}, "rights expired on 2026-01-01"),
        ({"expires": datetime(2026, 1, 1)}, "rights expired on 2026-01-01"),  # naive read as UTC
        ({"expires": "2026-01-01T00:00:00Z"}, "rights expired on 2026-01-01"),
        ({"expires": datetime(2027, 1, 1, tzinfo=timezone.utc)}, None),
        ({"expires": AT}, "rights expired on 2026-06-01"),  # the expiry instant is already too late
        ({"expires": AT + timedelta(microseconds=1)}, None),
        ({"consent": False, "expires": datetime(2020, 1, 1, tzinfo=timezone.utc)}, "consent is 'no'"),
    ],
)
def test_rights_problem(rights, problem):
    assert Rights(**rights).problem(AT) == problem


def test_rights_problem_timezones():
    # 23:30 on Dec 31 in New York is already Jan 1 in UTC
    expires = datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=-5)))
    rights = Rights(expires=expires)
    assert rights.problem(datetime(2026, 1, 1, 5, 0, tzinfo=timezone.utc)) is None
    assert rights.problem(datetime(2026, 1, 1, 5, 31, tzinfo=timezone.utc)) is not None
    assert Rights(expires=datetime(2026, 1, 1)).problem(datetime(2025, 12, 31, 23, 59)) is None  # naive 'at': UTC
    assert Rights(expires=datetime(2026, 1, 1)).problem(datetime(2026, 1, 1)) == "rights expired on 2026-01-01"
    assert Rights(expires=datetime(2000, 1, 1, tzinfo=timezone.utc)).problem() is not None  # default: now
    assert Rights(expires=datetime(2999, 1, 1, tzinfo=timezone.utc)).problem() is None


def test_rights_refuse_bad_fields():
    from pydantic import ValidationError

    for bad in (
        {"consent": "maybe"},
        {"expires": "not a date"},
        {"owner": "a\x00b"},
        {"license": "\ud800"},
        {"bogus": 1},
    ):
        with pytest.raises(ValidationError):
            Rights(**bad)


# --- check_rights -----------------------------------------------------------------------------------
def test_clean_entities_pass_without_overrides():
    entities = [ent("Aria", consent=True), ent("Bram"), ent("Cleo", expires=AT + timedelta(days=1))]
    assert check_rights(entities, at=AT) == []


def test_consent_no_is_refused_with_a_one_line_message():
    aria = ent("Aria", consent=False)
    with pytest.raises(ConsentError) as info:
        check_rights([ent("Bram"), aria], at=AT)
    message = str(info.value)
    assert "\n" not in message
    assert "'Aria'" in message and aria.id in message and "consent is 'no'" in message
    assert "override" in message and "Bram" not in message
    assert info.value.refused == [(aria.id, "Aria", "consent is 'no'")]
    assert isinstance(info.value, ContinuityError)


def test_expired_rights_are_refused():
    cleo = ent("Cleo", consent=True, expires=datetime(2026, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(ConsentError, match=r"'Cleo'.*rights expired on 2026-01-01"):
        check_rights([cleo], at=AT)
    # ...but not before they expire
    assert check_rights([cleo], at=datetime(2025, 12, 31, tzinfo=timezone.utc)) == []
    # a naive 'at' is UTC, not an error
    assert check_rights([cleo], at=datetime(2025, 12, 31)) == []


def test_every_refused_entity_is_named():
    aria, cleo = ent("Aria", consent=False), ent("Cleo", expires=datetime(2026, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(ConsentError) as info:
        check_rights([aria, ent("Bram"), cleo], at=AT)
    assert [r[1] for r in info.value.refused] == ["Aria", "Cleo"]
    assert "\n" not in str(info.value)


def test_require_consent_refuses_unrecorded_consent():
    bram = ent("Bram")
    assert check_rights([bram], at=AT) == []
    with pytest.raises(ConsentError, match="consent is not recorded"):
        check_rights([bram], require_consent=True, at=AT)
    assert check_rights([ent("Aria", consent=True)], require_consent=True, at=AT) == []
    assert rights_problem(bram, require_consent=True, at=AT) == NOT_RECORDED


@pytest.mark.parametrize("how", ["name", "NAME", "alias", "id", "bare-string"])
def test_overrides_by_name_alias_or_id_are_returned(how):
    aria = ent("Aria", consent=False)
    token = {"name": "Aria", "NAME": "  aRIA ", "alias": "aria the bold", "id": aria.id, "bare-string": "Aria"}[how]
    overrides = token if how == "bare-string" else {token}
    used = check_rights([aria, ent("Bram", consent=True)], overrides=overrides, at=AT)
    assert used == [ConsentOverride(aria.id, "Aria", "consent is 'no'", AT)]
    assert used[0].to_json() == {
        "entity_id": aria.id,
        "name": "Aria",
        "reason": "consent is 'no'",
        "overridden_at": AT.isoformat(),
    }


def test_an_override_covers_only_its_entity():
    aria, cleo = ent("Aria", consent=False), ent("Cleo", consent=False)
    with pytest.raises(ConsentError) as info:
        check_rights([aria, cleo], overrides={"Aria"}, at=AT)
    assert [r[1] for r in info.value.refused] == ["Cleo"]
    used = check_rights([aria, cleo], overrides={"Aria", cleo.id}, at=AT)
    assert [(o.name, o.reason) for o in used] == [("Aria", "consent is 'no'"), ("Cleo", "consent is 'no'")]


def test_overrides_of_unproblematic_or_absent_entities_record_nothing():
    assert check_rights([ent("Aria", consent=True)], overrides={"Aria", "Nobody"}, at=AT) == []


def test_hits_are_accepted_and_an_entity_is_checked_once():
    aria = ent("Aria", consent=False)
    hits = [Hit(entity=aria, score=1.0, reasons=("named",)), Hit(entity=aria, score=0.5, reasons=("dense",)), aria]
    used = check_rights(hits, overrides={"Aria"}, at=AT)
    assert len(used) == 1 and used[0].entity_id == aria.id


def test_overridden_at_defaults_to_now():
    before = datetime.now(timezone.utc)
    used = check_rights([ent("Aria", consent=False)], overrides={"Aria"})
    assert before <= used[0].overridden_at <= datetime.now(timezone.utc)


def test_entities_read_back_from_a_store_are_checked(library):
    library.register("Aria", "character", rights={"consent": False, "owner": "Studio"})
    library.register("Bram", "character", rights={"expires": "2026-01-01T00:00:00Z"})
    library.register("Cleo", "character", rights={"consent": True})
    entities = library.list()
    with pytest.raises(ConsentError) as info:
        check_rights(entities, at=AT)
    assert sorted(r[1] for r in info.value.refused) == ["Aria", "Bram"]
    used = check_rights(entities, overrides={"aria", "bram"}, at=AT)
    assert {(o.name, o.reason) for o in used} == {("Aria", "consent is 'no'"), ("Bram", "rights expired on 2026-01-01")}


@pytest.mark.parametrize(
    "items, kwargs",
    [
        (["Aria"], {}),
        ([None], {}),
        ([ent("Aria")], {"overrides": [1]}),
        ([ent("Aria")], {"at": "2026-01-01"}),
        ([ent("Aria")], {"at": date(2026, 1, 1)}),
    ],
)
def test_bad_arguments_are_typed_errors(items, kwargs):
    with pytest.raises(InvalidInputError):
        check_rights(items, **kwargs)


@settings(max_examples=80, deadline=None)
@given(
    consents=st.lists(st.sampled_from([True, False, None]), min_size=1, max_size=5),
    expiry_days=st.lists(st.one_of(st.none(), st.integers(-400, 400)), min_size=5, max_size=5),
    overridden=st.lists(st.booleans(), min_size=5, max_size=5),
    require=st.booleans(),
)
def test_check_rights_property(consents, expiry_days, overridden, require):
    """Refused exactly when some entity has a problem and is not overridden; otherwise the returned
    overrides are exactly the problematic entities, in order."""
    entities = [
        ent(f"E{i}", consent=c, expires=None if expiry_days[i] is None else AT + timedelta(days=expiry_days[i]))
        for i, c in enumerate(consents)
    ]
    overrides = {e.name for e, o in zip(entities, overridden, strict=False) if o}

    def problem(e: Entity):
        if e.rights.consent is False:
            return "consent is 'no'"
        if e.rights.expires is not None and e.rights.expires <= AT:
            return f"rights expired on {e.rights.expires.date().isoformat()}"
        if require and e.rights.consent is None:
            return NOT_RECORDED
        return None

    expected_refused = [e.name for e in entities if problem(e) and e.name not in overrides]
    try:
        used = check_rights(entities, overrides=overrides, require_consent=require, at=AT)
    except ConsentError as exc:
        assert [r[1] for r in exc.refused] == expected_refused != []
        return
    assert expected_refused == []
    assert [(o.name, o.reason) for o in used] == [(e.name, problem(e)) for e in entities if problem(e)]
