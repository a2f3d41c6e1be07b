"""An incident that declares a change freeze holds every rollout's next ring while it is open: the real service,
a real database (SQLite, or PostgreSQL when the tests are given one), the controller and the simulated driver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from ringfence.core.errors import ConflictError
from ringfence.core.simulation import SimulatedClock, SimulationDriver
from ringfence.service import incidents, rollouts
from ringfence.store.audit import list_audit
from ringfence.store.db import session_scope

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
ESTATE = """\
apiVersion: ringfence/v1
estate: ward
services:
  - {id: epr, tier: 1, requires: [{any: 1, of: [app-1, app-2]}]}
assets:
  - {id: app-1, kind: vm, site: city, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, site: city, software: [{product: acme/agent, version: "1"}]}
  - {id: db-1, kind: vm, site: north}
"""
UPDATE = """\
apiVersion: ringfence/v1
update: {id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 1h, rollback: reinstall}
"""


def test_an_open_incident_freeze_holds_the_ring_until_the_incident_is_closed(db_engine: Engine) -> None:
    created = rollouts.create_rollout(
        db_engine,
        estate_text=ESTATE,
        estate_source="ward.yaml",
        update_text=UPDATE,
        update_source="u.yaml",
        actor="alice",
        at=T0,
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    incident = incidents.declare(db_engine, fail=["asset:db-1"], actor="carol", at=T0, estate_name="ward")
    frozen = incidents.freeze_changes(db_engine, incident.id, actor="carol", at=T0)
    assert "declared a change freeze" in frozen.events[-1].text

    clock = SimulatedClock(T0)
    driver = SimulationDriver(clock=clock, timing=created.update.timing)
    controller = rollouts.controller(db_engine, driver, clock)
    rollouts.start(db_engine, rollout_id, actor="alice", at=T0)
    for _ in range(3):
        report = controller.step(rollout_id)
        assert not report.started
        assert report.waiting is not None
        assert f"incident {incident.id}" in report.waiting
        assert "declared a change freeze" in report.waiting
        clock.advance(600)

    incidents.close(db_engine, incident.id, actor="carol", at=clock(), reason="db-1 rebuilt by hand")
    report = controller.step(rollout_id)
    assert report.started, "closing the incident ends its freeze: the ring opens at the next pass"
    assert report.waiting is None


def test_a_freeze_is_lifted_and_audited_and_a_closed_incident_declares_none(db_engine: Engine) -> None:
    incident = incidents.declare(
        db_engine, fail=["asset:db-1"], actor="carol", at=T0, estate_text=ESTATE, estate_source="ward.yaml"
    )
    incidents.freeze_changes(db_engine, incident.id, actor="carol", at=T0)
    lifted = incidents.freeze_changes(db_engine, incident.id, actor="dave", at=T0 + timedelta(minutes=5), on=False)
    assert "lifted the change freeze" in lifted.events[-1].text
    with session_scope(db_engine, readonly=True) as session:
        actions = [(e.action, e.actor) for e in list_audit(session) if e.subject == f"incident:{incident.id}"]
    assert actions[-2:] == [("incident.freeze", "carol"), ("incident.unfreeze", "dave")]
    incidents.close(db_engine, incident.id, actor="carol", at=T0 + timedelta(hours=1), reason="done")
    with pytest.raises(ConflictError, match="a closed incident cannot hold a change freeze"):
        incidents.freeze_changes(db_engine, incident.id, actor="carol", at=T0 + timedelta(hours=2))
