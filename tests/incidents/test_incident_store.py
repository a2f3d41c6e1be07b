"""Incident use cases on a real database, SQLite and PostgreSQL: stored whole, refused whole, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ringfence.core.errors import ConflictError, InputError, NotFoundError
from ringfence.core.incident import ClockStatus, IncidentStatus
from ringfence.core.incident_review import RolloutCause
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.simulation import FaultModel, SimulatedClock, SimulationDriver
from ringfence.service import incidents, rollouts
from ringfence.store.audit import list_audit, verify_audit
from ringfence.store.db import session_scope
from ringfence.store.estates import get_estate_version, list_estate_versions
from ringfence.store.rollouts import list_rollout_assets
from ringfence.store.tables import IncidentEventRow, IncidentRow

from .conftest import T0, WARD

HOUR = timedelta(hours=1)

DB_UPDATE = """\
apiVersion: ringfence/v1
update:
  id: sql-patch
  product: ms/sql
  version: "2022"
  targets: "id=sql-epr-1"
  rings: [1]
  bake: 0s
  rollback: none
  timing: {apply: 0s}
"""
"""Patches the EPR's database server, which fails to install: the rollout halts and stays halted."""

PATCHABLE_WARD = WARD.replace(
    "{id: sql-epr-1, kind: vm, site: city}",
    '{id: sql-epr-1, kind: vm, site: city, software: [{product: ms/sql, version: "2019"}]}',
)


def declare_ward(engine: Engine, *refs: str, actor: str = "alice", at=T0):  # type: ignore[no-untyped-def]
    return incidents.declare(engine, fail=refs, actor=actor, at=at, estate_text=WARD, estate_source="ward.yaml")


def audit_actions(engine: Engine, incident_id: str) -> list[tuple[str, str]]:
    with session_scope(engine, readonly=True) as session:
        return [(e.action, e.actor) for e in list_audit(session, subject=f"incident:{incident_id}")]


def test_an_incident_is_stored_and_read_back_whole(db_engine: Engine) -> None:
    declared = declare_ward(db_engine, "asset:sql-epr-1")
    assert declared.id == "inc-000001"
    found = incidents.get(db_engine, declared.id)
    assert found.items == declared.items
    assert found.continuity == declared.continuity
    assert found.events == declared.events
    assert (found.failed, found.declared_at, found.declared_by, found.estate) == (
        ("asset:sql-epr-1",),
        T0,
        "alice",
        "ward",
    )
    assert found.estate_version_id is not None
    with session_scope(db_engine, readonly=True) as session:
        version = get_estate_version(session, found.estate_version_id)
    assert version.content == WARD
    assert audit_actions(db_engine, declared.id) == [("incident.declare", "alice")]
    assert declare_ward(db_engine, "asset:rota-db").id == "inc-000002"


def test_restore_note_close_each_land_with_their_audit_entry(db_engine: Engine) -> None:
    declared = declare_ward(db_engine, "asset:rota-db")
    incidents.restore(db_engine, declared.id, ["rota-app", "rota-db"], actor="bob", at=T0 + HOUR)
    incidents.note(db_engine, declared.id, "the rota runs from the spreadsheet meanwhile", actor="bob", at=T0 + HOUR)
    incidents.restore(db_engine, declared.id, ["rota"], actor="bob", at=T0 + 2 * HOUR)
    closed = incidents.close(db_engine, declared.id, actor="carol", at=T0 + 3 * HOUR)
    assert closed.status is IncidentStatus.CLOSED
    found = incidents.get(db_engine, declared.id)
    assert found.restored == {"rota-app": T0 + HOUR, "rota-db": T0 + HOUR, "rota": T0 + 2 * HOUR}
    assert [e.kind.value for e in found.events] == ["declared", "restored", "note", "restored", "closed"]
    assert found.closed_at == T0 + 3 * HOUR
    assert audit_actions(db_engine, declared.id) == [
        ("incident.declare", "alice"),
        ("incident.restore", "bob"),
        ("incident.note", "bob"),
        ("incident.restore", "bob"),
        ("incident.close", "carol"),
    ]
    with session_scope(db_engine, readonly=True) as session:
        assert verify_audit(session).ok
    assert [i.id for i in incidents.list_incidents(db_engine, status="closed")] == [declared.id]
    assert incidents.list_incidents(db_engine, status=IncidentStatus.OPEN) == []


def test_a_refusal_writes_nothing(db_engine: Engine) -> None:
    declared = declare_ward(db_engine, "asset:sql-epr-1")
    with pytest.raises(ConflictError, match="cannot mark epr-app-1 restored: it needs sql-epr-1, which is still down"):
        incidents.restore(db_engine, declared.id, ["epr-app-1"], actor="bob", at=T0 + HOUR)
    with pytest.raises(ConflictError, match="cannot close incident inc-000001: 5 items are still down"):
        incidents.close(db_engine, declared.id, actor="bob", at=T0 + HOUR)
    with session_scope(db_engine, readonly=True) as session:
        events = session.scalar(sa.select(sa.func.count()).select_from(IncidentEventRow))
        status = session.scalar(sa.select(IncidentRow.status))
    assert (events, status) == (1, "open")
    assert audit_actions(db_engine, declared.id) == [("incident.declare", "alice")]


def test_unknown_incidents_estates_and_statuses(db_engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="incident inc-000404 does not exist"):
        incidents.get(db_engine, "inc-000404")
    with pytest.raises(NotFoundError, match="no estate named 'ward' has been uploaded"):
        incidents.declare(db_engine, fail=["rota-db"], actor="a", at=T0, estate_name="ward")
    with pytest.raises(InputError, match="'gone' is not an incident status; use open or closed"):
        incidents.list_incidents(db_engine, status="gone")
    with pytest.raises(InputError, match="failure 'asset:nope' names no asset of estate 'ward'"):
        declare_ward(db_engine, "asset:nope")
    # Nothing half-declared: the estate upload rolled back with the refused declaration.
    with session_scope(db_engine, readonly=True) as session:
        assert list_estate_versions(session) == []


def test_declaring_on_a_stored_estate_by_name_or_version(db_engine: Engine) -> None:
    first = declare_ward(db_engine, "asset:rota-db")
    by_name = incidents.declare(db_engine, fail=["supplier:acme"], actor="bob", at=T0, estate_name="ward")
    assert by_name.estate_version_id == first.estate_version_id
    assert [i.id for i in by_name.items] == ["epr-app-1", "epr-app-2", "epr", "pharmacy"]
    assert first.estate_version_id is not None
    with pytest.raises(InputError, match=f"estate version {first.estate_version_id} is of 'ward', not 'clinic'"):
        incidents.declare(
            db_engine,
            fail=["rota-db"],
            actor="bob",
            at=T0,
            estate_name="clinic",
            estate_version=first.estate_version_id,
        )


def test_the_document_carries_clocks_warnings_and_the_timeline(db_engine: Engine) -> None:
    declared = declare_ward(db_engine, "asset:sql-epr-1")
    incidents.restore(db_engine, declared.id, ["sql-epr-1"], actor="bob", at=T0 + HOUR)
    doc = incidents.incident_document(incidents.get(db_engine, declared.id), T0 + 2 * HOUR).model_dump(mode="json")
    assert doc["impact"] == {
        "services_down": [{"id": "epr", "tier": 1}, {"id": "pharmacy", "tier": 2}],
        "assets_down": ["epr-app-1", "epr-app-2", "sql-epr-1"],
        "by_tier": {"1": 1, "2": 1, "3": 0, "4": 0},
    }
    assert doc["steps"][0] == {"step": 1, "restore": ["sql-epr-1"], "restored": ["sql-epr-1"]}
    pharmacy = doc["clocks"][1]
    assert (pharmacy["service"], pharmacy["status"], pharmacy["remaining"]) == ("pharmacy", "breached", -3600)
    epr = doc["clocks"][0]
    # Two steps left after the 08:00 restore: expected back at 10:00, an hour from the 09:00 asked about.
    assert (epr["service"], epr["status"], epr["remaining"], epr["estimated"]) == ("epr", "on_track", 7200, 3600)
    assert epr["expected_at"] == "2022-08-04T10:00:00Z"
    assert doc["warnings"] == ["pharmacy (tier 2): RTO of 1h breached 1h ago"]
    # A breach at the moment of a restore comes after it.
    assert [(e["kind"], e["at"]) for e in doc["timeline"]] == [
        ("declared", "2022-08-04T07:00:00Z"),
        ("restored", "2022-08-04T08:00:00Z"),
        ("breached", "2022-08-04T08:00:00Z"),
    ]
    epr_app = next(i for i in doc["items"] if i["id"] == "epr-app-1")
    assert epr_app["waiting_for"] == []
    epr_item = next(i for i in doc["items"] if i["id"] == "epr")
    assert epr_item["waiting_for"] == ["it needs any 1 of [epr-app-1, epr-app-2] up, and 0 are"]


# ---------------------------------------------------------------------------------- from a halted rollout


def halted_rollout(engine: Engine, *, crash: bool = False) -> str:
    """A real rollout through the controller whose only target fails to install (or, with ``crash``,
    installs and crashes 10 s later, during a 1-minute bake): it halts."""
    created = rollouts.create_rollout(
        engine,
        estate_text=PATCHABLE_WARD,
        estate_source="ward.yaml",
        update_text=DB_UPDATE.replace("bake: 0s", "bake: 1m") if crash else DB_UPDATE,
        update_source="sql-patch.yaml",
        actor="alice",
        at=T0,
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    clock = SimulatedClock(T0)
    # The driver takes as long as the update says: an install slower than that would be a timeout, not a crash.
    timing = created.update.timing
    if crash:
        driver = SimulationDriver(
            clock=clock, timing=timing, fault=FaultModel(affected=frozenset({"sql-epr-1"}), after=10.0)
        )
    else:
        driver = SimulationDriver(clock=clock, timing=timing, install_failures=["sql-epr-1"])
    rollouts.start(engine, rollout_id, actor="alice", at=clock())
    report = rollouts.controller(engine, driver, clock).run_until_settled(
        rollout_id, wait_until=lambda at: clock.advance_to(at) if at else clock.advance(60)
    )
    assert report.phase is RolloutPhase.HALTED
    return rollout_id


def test_a_halted_rollout_declares_the_incident_it_left(db_engine: Engine) -> None:
    rollout_id = halted_rollout(db_engine)
    at = T0 + HOUR
    incident = incidents.declare_from_rollout(db_engine, rollout_id, at)
    assert incident is not None
    assert incident.failed == ("asset:sql-epr-1",)
    assert incident.rollout_id == rollout_id
    assert incident.title == f"Rollout {rollout_id} of sql-patch halted: 1 asset failed"
    assert [s.id for s in incident.services] == ["epr", "pharmacy"]
    assert incident.events[0].actor == "controller"
    assert f"caused by rollout {rollout_id}" in incident.events[0].text
    # Asking again (a controller that crashed after declaring) finds the same incident.
    again = incidents.declare_from_rollout(db_engine, rollout_id, at + HOUR)
    assert again is not None
    assert again.id == incident.id
    assert len(incidents.list_incidents(db_engine)) == 1
    review = incidents.review(db_engine, incident.id, at + HOUR)
    assert review.cause is not None
    assert (review.cause.rollout_id, review.cause.update, review.cause.release) == (
        rollout_id,
        "sql-patch",
        "ms/sql@2022",
    )
    assert review.cause.halt_reason
    assert review.cause == RolloutCause(rollout_id, "sql-patch", "ms/sql@2022", review.cause.halt_reason)
    # The halt itself declared the incident (same transaction), so its clocks started then, not at `at`.
    clock = review.clocks[0]
    assert clock.remaining is not None
    assert clock.estimated is not None
    assert clock.status is (ClockStatus.AT_RISK if clock.remaining < clock.estimated else ClockStatus.ON_TRACK)


def test_an_asset_that_crashed_after_its_install_counts_as_failed(db_engine: Engine) -> None:
    rollout_id = halted_rollout(db_engine, crash=True)
    with session_scope(db_engine, readonly=True) as session:
        (target,) = list_rollout_assets(session, rollout_id)
    assert target.state.value == "applied"  # installed fine; its health says otherwise
    incident = incidents.declare_from_rollout(db_engine, rollout_id, T0 + HOUR)
    assert incident is not None
    assert incident.failed == ("asset:sql-epr-1",)


def test_a_rollout_that_left_nothing_failed_declares_nothing(db_engine: Engine) -> None:
    created = rollouts.create_rollout(
        db_engine,
        estate_text=PATCHABLE_WARD,
        estate_source="ward.yaml",
        update_text=DB_UPDATE,
        update_source="sql-patch.yaml",
        actor="alice",
        at=T0,
    )
    assert created.rollout is not None
    assert incidents.declare_from_rollout(db_engine, created.rollout.id, T0) is None
    assert incidents.list_incidents(db_engine) == []
