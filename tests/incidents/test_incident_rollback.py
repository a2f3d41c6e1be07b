"""The incident a halt declares follows the rollback, on a real database (SQLite and PostgreSQL).

A real rollout through the controller patches the EPR's database server, which crashes ten seconds after its
install, during the bake: the rollout halts (declaring the incident) and rolls back. When the rollback brings
every updated asset back, the incident is resolved in the same transaction as the rollout's last change; when a
rollback fails, it stays open and its timeline names the asset that needs a person.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from ringfence.core.incident import ClockStatus, EventKind, Incident, IncidentStatus, rto_clocks
from ringfence.core.rollout.controller import StepReport
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.simulation import FaultModel, SimulatedClock, SimulationDriver
from ringfence.service import incidents, rollouts
from ringfence.store.audit import list_audit
from ringfence.store.db import session_scope

from .conftest import T0
from .test_incident_store import PATCHABLE_WARD

ROLLED_BACK_UPDATE = """\
apiVersion: ringfence/v1
update:
  id: sql-patch
  product: ms/sql
  version: "2022"
  targets: "id=sql-epr-1"
  rings: [1]
  bake: 1m
  rollback: reinstall
  timing: {apply: 0s, rollback: 5m}
"""
"""Patches the EPR's database server; its rollback (a reinstall) takes five minutes."""


def crashing_rollout(
    engine: Engine, *, rollback_fails: bool = False, on_step: Callable[[StepReport], None] | None = None
) -> tuple[str, StepReport]:
    """Create, start and run the rollout until it is over; the target crashes 10 s after its install."""
    created = rollouts.create_rollout(
        engine,
        estate_text=PATCHABLE_WARD,
        estate_source="ward.yaml",
        update_text=ROLLED_BACK_UPDATE,
        update_source="sql-patch.yaml",
        actor="alice",
        at=T0,
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    clock = SimulatedClock(T0)
    driver = SimulationDriver(
        clock=clock,
        timing=created.update.timing,  # as long as the update says: a slower install would be a timeout, no crash
        fault=FaultModel(affected=frozenset({"sql-epr-1"}), after=10.0),
        rollback_failures=["sql-epr-1"] if rollback_fails else [],
    )
    rollouts.start(engine, rollout_id, actor="alice", at=clock())
    report = rollouts.controller(engine, driver, clock).run_until_settled(
        rollout_id, wait_until=lambda at: clock.advance_to(at) if at else clock.advance(60), on_step=on_step
    )
    return rollout_id, report


def incident_of(engine: Engine, rollout_id: str) -> Incident:
    found = incidents.of_rollout(engine, rollout_id)
    assert found is not None, f"rollout {rollout_id} declared no incident"
    return found


def audit_of(engine: Engine, incident_id: str) -> list[tuple[str, str]]:
    with session_scope(engine, readonly=True) as session:
        return [(e.action, e.actor) for e in list_audit(session, subject=f"incident:{incident_id}")]


def test_a_rollback_that_restores_everything_resolves_the_incident(db_engine: Engine) -> None:
    rollout_id, report = crashing_rollout(db_engine)
    assert report.phase is RolloutPhase.ROLLED_BACK
    ended = rollouts.status(db_engine, rollout_id).rollout.state
    incident = incident_of(db_engine, rollout_id)

    assert incident.status is IncidentStatus.CLOSED
    assert incident.closed_at == ended.updated_at  # closed by the rollout's own last change
    assert incident.failed == ("asset:sql-epr-1",)
    declared, restored, closed = incident.events
    assert declared.kind is EventKind.DECLARED
    assert "crashed 10 s after install" in declared.text  # the fault, quoted from the halt reason
    assert restored.kind is EventKind.RESTORED
    assert set(restored.items) == {i.id for i in incident.items}
    assert restored.text.endswith("everything is back")
    assert closed.kind is EventKind.CLOSED
    assert (
        closed.text == f"closed: everything restored; rolled back by rollout {rollout_id}: every updated asset restored"
    )
    assert {e.actor for e in incident.events} == {"controller"}
    assert incident.still_down == ()
    # Back within minutes: every clock with an RTO met it.
    clocks = [c for c in rto_clocks(incident, ended.updated_at) if c.rto is not None]
    assert clocks
    assert {c.status for c in clocks} == {ClockStatus.MET}
    assert audit_of(db_engine, incident.id) == [
        ("incident.declare", "controller"),
        ("incident.restore", "controller"),
        ("incident.close", "controller"),
    ]
    # The incident as the store lists it agrees with its timeline.
    assert [i.id for i in incidents.list_incidents(db_engine, status="closed")] == [incident.id]


def test_a_failed_rollback_leaves_the_incident_open_naming_who_needs_a_person(db_engine: Engine) -> None:
    rollout_id, report = crashing_rollout(db_engine, rollback_fails=True)
    assert report.phase is RolloutPhase.FAILED
    incident = incident_of(db_engine, rollout_id)

    assert incident.status is IncidentStatus.OPEN
    assert len(incident.still_down) == len(incident.items)
    kinds = [e.kind for e in incident.events]
    assert kinds == [EventKind.DECLARED, EventKind.NOTE]
    note = incident.events[-1]
    assert note.actor == "controller"
    assert note.text.startswith(f"rollout {rollout_id} ended failed (")
    assert "1 asset needs a person: sql-epr-1 (rollback failed: the rollback did not complete)" in note.text
    assert audit_of(db_engine, incident.id) == [("incident.declare", "controller"), ("incident.note", "controller")]
    assert [i.id for i in incidents.list_incidents(db_engine, status="open")] == [incident.id]


def test_what_a_person_did_meanwhile_is_kept(db_engine: Engine) -> None:
    """Items a person marked restored while the rollback ran are not marked again; the rest are."""
    marked: list[str] = []

    def person_marks_the_server_back(report: StepReport) -> None:
        if report.phase is RolloutPhase.ROLLING_BACK and not marked:
            incident = incident_of(db_engine, report.rollout_id)
            assert incident.status is IncidentStatus.OPEN
            assert report.at is not None
            incidents.restore(db_engine, incident.id, ["sql-epr-1"], actor="olga", at=report.at)
            marked.append("sql-epr-1")

    rollout_id, report = crashing_rollout(db_engine, on_step=person_marks_the_server_back)
    assert marked, "the rollback ran without the person getting a turn"
    assert report.phase is RolloutPhase.ROLLED_BACK
    incident = incident_of(db_engine, rollout_id)
    assert incident.status is IncidentStatus.CLOSED
    by_hand, by_rollback = (e for e in incident.events if e.kind is EventKind.RESTORED)
    assert (by_hand.actor, by_hand.items) == ("olga", ("sql-epr-1",))
    assert by_rollback.actor == "controller"
    assert "sql-epr-1" not in by_rollback.items
    assert set(by_rollback.items) == {i.id for i in incident.items} - {"sql-epr-1"}


def test_an_incident_a_person_closed_first_is_left_alone(db_engine: Engine) -> None:
    closed_by_hand: list[str] = []

    def person_closes_it(report: StepReport) -> None:
        if report.phase is RolloutPhase.ROLLING_BACK and not closed_by_hand:
            incident = incident_of(db_engine, report.rollout_id)
            assert report.at is not None
            incidents.close(db_engine, incident.id, actor="olga", at=report.at, reason="handled on the bridge call")
            closed_by_hand.append(incident.id)

    rollout_id, report = crashing_rollout(db_engine, on_step=person_closes_it)
    assert closed_by_hand
    # The rollout still ends rolled back: its transition is never refused over its incident.
    assert report.phase is RolloutPhase.ROLLED_BACK
    incident = incident_of(db_engine, rollout_id)
    assert [e.kind for e in incident.events] == [EventKind.DECLARED, EventKind.CLOSED]
    assert incident.events[-1].actor == "olga"
    assert "handled on the bridge call" in incident.events[-1].text
