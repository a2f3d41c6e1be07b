"""Repository round trips on real SQLite and PostgreSQL: what goes in comes back, as records."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.core.errors import ConflictError, InputError, NotFoundError
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.incident import EventKind, Incident, IncidentStatus, add_note, close_incident, mark_restored
from ringfence.core.incident_declaration import declare_incident
from ringfence.core.rollout.state import AssetState, RolloutPhase, TransitionRejected, transition
from ringfence.store.audit import list_audit, verify_audit
from ringfence.store.db import session_scope
from ringfence.store.decisions import add_decision, list_decisions, mark_decision_done
from ringfence.store.estates import add_estate_version, get_estate_version, latest_estate_version, list_estate_versions
from ringfence.store.incidents import (
    add_incident,
    add_incident_event,
    get_incident,
    incident_of_rollout,
    list_incidents,
    mark_incident_closed,
    next_incident_id,
)
from ringfence.store.observations import add_observations, list_observations
from ringfence.store.records import DecisionStatus, EstateFormat, Observation, ObservationKind, RolloutAsset
from ringfence.store.rollouts import (
    apply_transition,
    create_rollout,
    get_rollout,
    list_rollout_assets,
    list_rollouts,
    upsert_rollout_assets,
)

T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)
ESTATE_TEXT = "apiVersion: ringfence/v1\nestate: city-general\n"
UPDATE_DOC = {
    "apiVersion": "ringfence/v1",
    "update": {"id": "esxi-7u3", "product": "vmware/esxi", "rings": [1, "5%", "100%"], "bake": "1h"},
}
PLAN = {"rings": [{"index": 0, "name": "canary", "assets": ["esx-a1"], "bake": 3600.0}], "warnings": []}


def add_estate(session: Session, content: str = ESTATE_TEXT, name: str = "city-general") -> int:
    return add_estate_version(
        session,
        name=name,
        content=content,
        format="yaml",
        created_by="ana",
        asset_count=3,
        service_count=2,
        at=T0,
    ).id


def add_rollout(session: Session, *, needs_approval: bool = False, rollout_id: str | None = None) -> str:
    return create_rollout(
        session,
        estate_version_id=add_estate(session),
        update_id="esxi-7u3",
        update_doc=UPDATE_DOC,
        plan=PLAN,
        created_by="ana",
        needs_approval=needs_approval,
        at=T0,
        rollout_id=rollout_id,
    ).id


# ------------------------------------------------------------------------------------------ estates


def test_estate_versions_are_kept_and_deduplicated(db_engine: Engine) -> None:
    # Accepted: the estate of record (what service.estates decides for an upload); the newest accepted is current.
    with session_scope(db_engine) as session:
        first = add_estate_version(
            session,
            name="city-general",
            content=ESTATE_TEXT,
            format="yaml",
            created_by="ana",
            asset_count=3,
            service_count=2,
            at=T0,
            status="accepted",
        )
        again = add_estate_version(
            session,
            name="city-general",
            content=ESTATE_TEXT,
            format=EstateFormat.YAML,
            created_by="bob",
            asset_count=3,
            service_count=2,
            at=T0 + timedelta(hours=1),
            status="accepted",
        )
        second = add_estate_version(
            session,
            name="city-general",
            content=ESTATE_TEXT + "# edited\n",
            format="yaml",
            created_by="bob",
            asset_count=4,
            service_count=2,
            at=T0 + timedelta(hours=2),
            status="accepted",
        )
        other = add_estate_version(
            session,
            name="county",
            content=ESTATE_TEXT,
            format="json",
            created_by="cy",
            asset_count=1,
            service_count=1,
            at=T0,
            status="accepted",
        )
    assert again == first
    assert second.id != first.id
    assert first.created_by == "ana"
    assert first.sha256 == hashlib.sha256(ESTATE_TEXT.encode("utf-8")).hexdigest()
    with session_scope(db_engine, readonly=True) as session:
        assert latest_estate_version(session, "city-general") == second
        assert latest_estate_version(session, "county") == other
        assert get_estate_version(session, first.id) == first
        assert list_estate_versions(session, "city-general") == [first, second]
        assert len(list_estate_versions(session)) == 3
        uploads = [e for e in list_audit(session) if e.action == "estate.upload"]
    assert first.content == ESTATE_TEXT
    assert (first.format, other.format) == (EstateFormat.YAML, EstateFormat.JSON)
    assert [(u.subject, u.detail["version"]) for u in uploads] == [
        ("estate:city-general", first.id),
        ("estate:city-general", second.id),
        ("estate:county", other.id),
    ]


def test_missing_estates_are_named(db_engine: Engine) -> None:
    with session_scope(db_engine, readonly=True) as session:
        with pytest.raises(NotFoundError) as caught:
            get_estate_version(session, 41)
        assert str(caught.value) == "estate version 41 does not exist"
        with pytest.raises(NotFoundError) as caught:
            latest_estate_version(session, "nowhere")
        assert str(caught.value) == "no estate named 'nowhere' has been uploaded"


def test_an_unknown_estate_format_is_refused(db_engine: Engine) -> None:
    with session_scope(db_engine) as session, pytest.raises(InputError, match="yaml or json, not 'toml'"):
        add_estate_version(
            session, name="e", content="x", format="toml", created_by="a", asset_count=0, service_count=0, at=T0
        )


# ----------------------------------------------------------------------------------------- rollouts


def test_a_rollout_round_trips(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
    with session_scope(db_engine, readonly=True) as session:
        rollout = get_rollout(session, rollout_id)
        audit = list_audit(session, subject=f"rollout:{rollout_id}")
    assert rollout_id == "r-000001"
    assert rollout.update_id == "esxi-7u3"
    assert rollout.update_doc == UPDATE_DOC
    assert rollout.plan == PLAN
    assert (rollout.created_by, rollout.approved_by, rollout.needs_approval) == ("ana", None, False)
    assert rollout.created_at == T0
    state = rollout.state
    assert (state.id, state.phase, state.ring, state.paused_from, state.halt_reason, state.version) == (
        "r-000001",
        RolloutPhase.PENDING,
        0,
        None,
        None,
        1,
    )
    assert [(e.action, e.actor, e.detail["phase"]) for e in audit] == [("rollout.create", "ana", "pending")]


def test_rollout_ids_count_up_and_skip_taken_ones(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        ids = [add_rollout(session), add_rollout(session, rollout_id="r-000003"), add_rollout(session)]
        ids.append(add_rollout(session))
    assert ids == ["r-000001", "r-000003", "r-000004", "r-000005"]


def test_a_taken_rollout_id_is_refused(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        add_rollout(session, rollout_id="r-7")
        with pytest.raises(ConflictError, match="rollout r-7 already exists"):
            add_rollout(session, rollout_id="r-7")


def test_a_rollout_needs_an_existing_estate_version(db_engine: Engine) -> None:
    with session_scope(db_engine) as session, pytest.raises(NotFoundError, match="estate version 99"):
        create_rollout(
            session,
            estate_version_id=99,
            update_id="u",
            update_doc={},
            plan={},
            created_by="a",
            needs_approval=False,
            at=T0,
        )


def test_a_missing_rollout_is_named(db_engine: Engine) -> None:
    with session_scope(db_engine, readonly=True) as session, pytest.raises(NotFoundError) as caught:
        get_rollout(session, "r-404")
    assert str(caught.value) == "rollout r-404 does not exist"


def test_transitions_are_stored_and_audited(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session, needs_approval=True)
    steps = [
        (RolloutPhase.PENDING, "approved by bob"),
        (RolloutPhase.APPLYING, "start ring 0"),
        (RolloutPhase.BAKING, "ring 0 applied to 1 asset"),
        (RolloutPhase.PAUSED, "operator paused"),
        (RolloutPhase.BAKING, "operator resumed"),
        (RolloutPhase.JUDGING, "bake over"),
        (RolloutPhase.APPLYING, "ring 0 passed: 0 of 1 canary failed"),
        (RolloutPhase.HALTED, "ring 1 failed: 3 of 4 hosts lost heartbeat"),
    ]
    for i, (to, reason) in enumerate(steps):
        with session_scope(db_engine) as session:
            state = get_rollout(session, rollout_id).state
            new, record = transition(state, to, reason, at=T0 + timedelta(minutes=i))
            entry = apply_transition(
                session,
                record,
                new,
                actor="bob" if i == 0 else "controller",
                approved_by="bob" if i == 0 else None,
            )
            assert entry.detail == {
                "from": state.phase.value,
                "to": to.value,
                "ring": new.ring,
                "reason": reason,
                "version": new.version,
                **({"approved_by": "bob"} if i == 0 else {}),
            }
        with session_scope(db_engine, readonly=True) as session:
            assert get_rollout(session, rollout_id).state == new
    with session_scope(db_engine, readonly=True) as session:
        rollout = get_rollout(session, rollout_id)
        audit = list_audit(session, subject=f"rollout:{rollout_id}")
        assert verify_audit(session).ok
    assert rollout.approved_by == "bob"
    state = rollout.state
    assert (state.phase, state.ring, state.version) == (RolloutPhase.HALTED, 1, 1 + len(steps))
    assert state.halt_reason == "ring 1 failed: 3 of 4 hosts lost heartbeat"
    assert [e.action for e in audit] == ["rollout.create"] + ["rollout.transition"] * len(steps)
    assert [e.detail["reason"] for e in audit[1:]] == [reason for _, reason in steps]
    assert audit[1].actor == "bob"
    assert audit[4].detail["to"] == "paused"


def test_the_paused_phase_is_stored_with_where_it_paused(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
        state = get_rollout(session, rollout_id).state
        for to in (RolloutPhase.TAKING_RESTORE_POINTS, RolloutPhase.PAUSED):
            state, record = transition(state, to, "next", at=T0)
            apply_transition(session, record, state, actor="controller")
    with session_scope(db_engine, readonly=True) as session:
        stored = get_rollout(session, rollout_id).state
    assert (stored.phase, stored.paused_from) == (RolloutPhase.PAUSED, RolloutPhase.TAKING_RESTORE_POINTS)
    with pytest.raises(TransitionRejected, match="it paused while taking_restore_points"):
        transition(stored, RolloutPhase.APPLYING, "resume", at=T0)


def test_a_stale_writer_is_refused(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
    with session_scope(db_engine, readonly=True) as session:
        seen_by_both = get_rollout(session, rollout_id).state
    with session_scope(db_engine) as session:  # the first controller moves it on
        new, record = transition(seen_by_both, RolloutPhase.APPLYING, "start", at=T0)
        apply_transition(session, record, new, actor="controller-1")
    late, late_record = transition(seen_by_both, RolloutPhase.FAILED, "abort before start", at=T0)
    with session_scope(db_engine) as session, pytest.raises(ConflictError) as caught:
        apply_transition(session, late_record, late, actor="controller-2")
    assert str(caught.value) == (
        f"rollout {rollout_id} was changed by someone else: it is applying at version 2, "
        "not pending at version 1; reload it and decide again"
    )
    with session_scope(db_engine, readonly=True) as session:
        assert get_rollout(session, rollout_id).state.phase is RolloutPhase.APPLYING
        assert [e.actor for e in list_audit(session)][-1] == "controller-1"


def test_a_transition_of_a_missing_rollout_is_not_found(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        state = get_rollout(session, add_rollout(session, rollout_id="r-1")).state
    new, record = transition(state, RolloutPhase.APPLYING, "go", at=T0)
    ghost_state = dataclasses.replace(new, id="r-2")
    ghost_record = dataclasses.replace(record, rollout_id="r-2")
    with session_scope(db_engine) as session, pytest.raises(NotFoundError, match="rollout r-2 does not exist"):
        apply_transition(session, ghost_record, ghost_state, actor="controller")


def test_a_transition_must_match_its_state(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        state = get_rollout(session, add_rollout(session)).state
        new, record = transition(state, RolloutPhase.APPLYING, "go", at=T0)
        other, _ = transition(state, RolloutPhase.FAILED, "no", at=T0)
        with pytest.raises(ConflictError, match="is not the one the transition to applying produced"):
            apply_transition(session, record, other, actor="controller")
        with pytest.raises(ConflictError, match="an approver is recorded only when an approval"):
            apply_transition(session, record, new, actor="controller", approved_by="bob")


def test_rollouts_are_listed_by_phase(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        waiting = add_rollout(session, needs_approval=True)
        pending = add_rollout(session)
        started = add_rollout(session)
        state = get_rollout(session, started).state
        new, record = transition(state, RolloutPhase.APPLYING, "go", at=T0)
        apply_transition(session, record, new, actor="controller")
    with session_scope(db_engine, readonly=True) as session:
        assert [r.id for r in list_rollouts(session)] == [waiting, pending, started]
        running = [p for p in RolloutPhase if p.is_running]
        assert [r.id for r in list_rollouts(session, phases=running)] == [started]
        assert [r.id for r in list_rollouts(session, phases=[RolloutPhase.AWAITING_APPROVAL])] == [waiting]
        assert list_rollouts(session, phases=[]) == []


# ----------------------------------------------------------------------------------- rollout assets


def test_rollout_assets_are_upserted(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
        written = upsert_rollout_assets(
            session,
            rollout_id,
            [
                RolloutAsset("esx-a1", 0, "host/esxi/R750", AssetState.PENDING, T0),
                RolloutAsset("esx-a2", 1, "host/esxi/R750", AssetState.PENDING, T0),
                RolloutAsset("esx-b1", 1, "host/esxi/R640", AssetState.PENDING, T0),
            ],
        )
        assert written == 3
    later = T0 + timedelta(minutes=5)
    with session_scope(db_engine) as session:
        upsert_rollout_assets(
            session,
            rollout_id,
            [
                RolloutAsset(
                    "esx-a1", 0, "host/esxi/R750", AssetState.RESTORE_POINT_TAKEN, later, restore_point_ref="snap-1"
                ),
                RolloutAsset(
                    "esx-b1",
                    1,
                    "host/esxi/R640",
                    AssetState.RESTORE_POINT_FAILED,
                    later,
                    detail="snapshot could not be verified",
                ),
            ],
        )
    with session_scope(db_engine, readonly=True) as session:
        everything = list_rollout_assets(session, rollout_id)
        ring1 = list_rollout_assets(session, rollout_id, ring=1)
        failed = list_rollout_assets(session, rollout_id, states=[AssetState.RESTORE_POINT_FAILED])
    assert everything == [
        RolloutAsset("esx-a1", 0, "host/esxi/R750", AssetState.RESTORE_POINT_TAKEN, later, restore_point_ref="snap-1"),
        RolloutAsset("esx-a2", 1, "host/esxi/R750", AssetState.PENDING, T0),
        RolloutAsset(
            "esx-b1",
            1,
            "host/esxi/R640",
            AssetState.RESTORE_POINT_FAILED,
            later,
            detail="snapshot could not be verified",
        ),
    ]
    assert [a.asset_id for a in ring1] == ["esx-a2", "esx-b1"]
    assert [a.asset_id for a in failed] == ["esx-b1"]


def test_many_rollout_assets_at_once(db_engine: Engine) -> None:
    assets = [RolloutAsset(f"ep-{i:05d}", i % 4, "endpoint/windows", AssetState.PENDING, T0) for i in range(1200)]
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
        assert upsert_rollout_assets(session, rollout_id, assets) == 1200
        assert (
            upsert_rollout_assets(
                session, rollout_id, [dataclasses.replace(a, state=AssetState.APPLIED) for a in assets]
            )
            == 1200
        )
    with session_scope(db_engine, readonly=True) as session:
        stored = list_rollout_assets(session, rollout_id)
    assert len(stored) == 1200
    assert {a.state for a in stored} == {AssetState.APPLIED}


def test_assets_of_a_missing_rollout_are_refused(db_engine: Engine) -> None:
    with session_scope(db_engine) as session, pytest.raises(NotFoundError, match="rollout r-9 does not exist"):
        upsert_rollout_assets(session, "r-9", [RolloutAsset("a", 0, "s", AssetState.PENDING, T0)])


# ---------------------------------------------------------------------------------------- decisions


def test_decisions_are_numbered_per_rollout_and_marked_done(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        first_rollout, second_rollout = add_rollout(session), add_rollout(session)
        a = add_decision(session, first_rollout, kind="start_batch", payload={"assets": ["esx-a1"]}, at=T0)
        b = add_decision(session, first_rollout, kind="judge", payload={"ring": 0}, at=T0)
        c = add_decision(session, second_rollout, kind="start_batch", payload={"assets": []}, at=T0)
    assert [(d.rollout_id, d.seq) for d in (a, b, c)] == [(first_rollout, 1), (first_rollout, 2), (second_rollout, 1)]
    assert a.status is DecisionStatus.PENDING
    assert a.done_at is None
    done_at = T0 + timedelta(seconds=30)
    with session_scope(db_engine) as session:
        done = mark_decision_done(session, first_rollout, 1, at=done_at)
        again = mark_decision_done(session, first_rollout, 1, at=done_at + timedelta(hours=1))
    assert done == again
    assert (done.status, done.done_at) == (DecisionStatus.DONE, done_at)
    with session_scope(db_engine, readonly=True) as session:
        assert list_decisions(session, first_rollout) == [done, b]
        assert list_decisions(session, first_rollout, status=DecisionStatus.PENDING) == [b]
        assert list_decisions(session, first_rollout, status=DecisionStatus.DONE) == [done]
        assert b.payload == {"ring": 0}


def test_unknown_decisions_are_named(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
        with pytest.raises(NotFoundError) as caught:
            mark_decision_done(session, rollout_id, 5, at=T0)
        assert str(caught.value) == f"rollout {rollout_id} has no decision 5"
        with pytest.raises(NotFoundError, match="rollout r-0 does not exist"):
            add_decision(session, "r-0", kind="judge", payload={}, at=T0)


# ------------------------------------------------------------------------------------- observations


def test_observations_are_stored_and_found_by_time_asset_and_kind(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
        stored = add_observations(
            session,
            [
                Observation("esx-a1", T0 + timedelta(minutes=m), ObservationKind.HEARTBEAT, "ok", {"uptime": m * 60})
                for m in range(5)
            ]
            + [
                Observation(
                    "esx-a1",
                    T0 + timedelta(minutes=2),
                    ObservationKind.INSTALL_RESULT,
                    "succeeded",
                    {"exit_code": 0, "log": ["ok"]},
                    rollout_id=rollout_id,
                ),
                Observation(
                    "esx-b1",
                    T0 + timedelta(minutes=3),
                    ObservationKind.HEALTH_CHECK,
                    "failed",
                    {"check": "vmk0 ping", "ok": False},
                    rollout_id=rollout_id,
                ),
            ],
        )
        assert stored == 7
    with session_scope(db_engine, readonly=True) as session:
        since_2 = list_observations(session, since=T0 + timedelta(minutes=2))
        window = list_observations(session, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
        of_rollout = list_observations(session, since=T0, rollout_id=rollout_id)
        b_only = list_observations(session, since=T0, asset_ids=["esx-b1"])
        heartbeats = list_observations(session, since=T0, kinds=[ObservationKind.HEARTBEAT])
    # "since" includes its own instant: a judging window must not lose the first heartbeat.
    assert [(o.asset_id, o.kind.value, (o.at - T0) // timedelta(minutes=1)) for o in since_2] == [
        ("esx-a1", "heartbeat", 2),
        ("esx-a1", "install_result", 2),
        ("esx-a1", "heartbeat", 3),
        ("esx-b1", "health_check", 3),
        ("esx-a1", "heartbeat", 4),
    ]
    assert [o.at for o in window] == [T0 + timedelta(minutes=m) for m in (1, 2, 2)]
    assert [o.kind for o in of_rollout] == [ObservationKind.INSTALL_RESULT, ObservationKind.HEALTH_CHECK]
    assert of_rollout[0].detail == {"exit_code": 0, "log": ["ok"]}
    assert of_rollout[1].detail == {"check": "vmk0 ping", "ok": False}
    assert [o.status for o in b_only] == ["failed"]
    assert len(heartbeats) == 5
    assert all(o.id is not None for o in since_2)
    assert len({o.id for o in since_2}) == 5
    assert all(o.at.tzinfo is UTC for o in since_2)


# ------------------------------------------------------------------------------------------ incidents

WARD = """\
apiVersion: ringfence/v1
estate: ward
services:
  - {id: epr, name: Patient record, tier: 1, rto: 4h, continuity: Paper notes, contacts: [ext 4000],
     requires: [{any: 1, of: [epr-app-1, epr-app-2]}]}
  - {id: rota, name: Staff rota, tier: 4, requires: [rota-app]}
assets:
  - {id: sql-epr-1, kind: vm}
  - {id: epr-app-1, kind: vm, requires: [sql-epr-1]}
  - {id: epr-app-2, kind: vm, requires: [sql-epr-1]}
  - {id: rota-app, kind: vm}
"""


def declared(session: Session, *refs: str, rollout_id: str | None = None) -> Incident:
    graph = compile_estate(parse_estate_text(WARD, "ward.yaml"))
    version = add_estate(session, WARD, "ward")
    return declare_incident(
        graph,
        graph.resolve_failures(refs),
        incident_id=next_incident_id(session),
        at=T0,
        actor="alice",
        rollout_id=rollout_id,
        estate_version_id=version,
    )


def test_an_incident_comes_back_as_declared_with_its_events_in_order(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        incident = declared(session, "sql-epr-1")
        assert incident.id == "inc-000001"
        add_incident(session, incident)
    with session_scope(db_engine) as session:
        stored = get_incident(session, "inc-000001", for_update=True)
        assert stored == incident  # items, groups, continuity and events, field for field
        restored = mark_restored(stored, ["sql-epr-1"], T0 + timedelta(minutes=20), actor="bob")
        assert add_incident_event(session, stored.id, restored.events[-1]) == 2
        noted = add_note(restored, "app servers rebooting", T0 + timedelta(minutes=25), actor="bob")
        assert add_incident_event(session, stored.id, noted.events[-1]) == 3
    with session_scope(db_engine, readonly=True) as session:
        again = get_incident(session, "inc-000001")
        assert again == noted
        assert [e.kind for e in again.events] == [EventKind.DECLARED, EventKind.RESTORED, EventKind.NOTE]


def test_incidents_are_numbered_listed_by_status_and_found_by_their_rollout(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
        first = declared(session, "rota-app")
        add_incident(session, first)
        second = declared(session, "sql-epr-1", rollout_id=rollout_id)
        assert second.id == "inc-000002"
        add_incident(session, second)
        closed = close_incident(first, T0 + timedelta(hours=1), actor="alice", reason="rota back on paper")
        add_incident_event(session, first.id, closed.events[-1])
        mark_incident_closed(session, first.id, at=T0 + timedelta(hours=1))
    with session_scope(db_engine, readonly=True) as session:
        assert [i.id for i in list_incidents(session)] == ["inc-000001", "inc-000002"]
        assert [i.id for i in list_incidents(session, status=IncidentStatus.OPEN)] == ["inc-000002"]
        (done,) = list_incidents(session, status=IncidentStatus.CLOSED)
        assert done == closed
        assert done.closed_at == T0 + timedelta(hours=1)
        assert incident_of_rollout(session, rollout_id) == second
        assert incident_of_rollout(session, "r-999999") is None


def test_a_missing_incident_and_one_without_its_estate_are_refused(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        with pytest.raises(NotFoundError, match="incident inc-000404 does not exist"):
            get_incident(session, "inc-000404")
        unanchored = dataclasses.replace(declared(session, "rota-app"), estate_version_id=None)
        with pytest.raises(InputError, match="names no estate version"):
            add_incident(session, unanchored)


def test_every_asset_state_is_stored_and_read_back(db_engine: Engine) -> None:
    # The CHECK on rollout_assets.state (migration 0003) takes each state the state machine has.
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
        upsert_rollout_assets(
            session, rollout_id, [RolloutAsset(f"a-{s.value}", 0, "[]", s, T0, detail=None) for s in AssetState]
        )
    with session_scope(db_engine, readonly=True) as session:
        stored = {a.asset_id: a.state for a in list_rollout_assets(session, rollout_id)}
    assert stored == {f"a-{s.value}": s for s in AssetState}
