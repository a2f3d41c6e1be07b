"""The incident domain: snapshot, refusals with sentences, RTO clocks at fixed times, breaches, the review."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ringfence.core.errors import ConflictError, InputError
from ringfence.core.graph import EstateGraph
from ringfence.core.incident import (
    ClockStatus,
    EventKind,
    Incident,
    IncidentStatus,
    ItemKind,
    add_note,
    close_incident,
    mark_restored,
    remaining_steps,
    rto_clocks,
    timeline,
    waiting_for,
)
from ringfence.core.incident_declaration import declare_incident
from ringfence.core.incident_review import RolloutCause, review_incident
from ringfence.core.recovery import plan_recovery

from .conftest import T0

HOUR = timedelta(hours=1)


def declare(graph: EstateGraph, *refs: str, at: datetime = T0) -> Incident:
    return declare_incident(graph, graph.resolve_failures(refs), incident_id="inc-000001", at=at, actor="alice")


def clock(incident: Incident, service: str, now: datetime):  # type: ignore[no-untyped-def]
    return next(c for c in rto_clocks(incident, now) if c.service == service)


# ------------------------------------------------------------------------------------------ declaring


def test_the_snapshot_holds_each_down_item_its_step_and_what_it_waits_for(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    assert [(i.id, i.step) for i in incident.items] == [
        ("sql-epr-1", 1),
        ("epr-app-1", 2),
        ("epr-app-2", 2),
        ("epr", 3),
        ("pharmacy", 4),
    ]
    items = incident.item_by_id
    assert items["epr-app-1"].needs == ("sql-epr-1",)
    assert items["pharmacy"].needs == ("epr",)
    (group,) = items["epr"].groups
    assert (group.k, group.up, group.members) == (1, 0, ("epr-app-1", "epr-app-2"))
    assert items["epr"].kind is ItemKind.SERVICE
    assert (items["epr"].tier, items["epr"].rto) == (1, 4 * 3600)
    assert [c.service for c in incident.continuity] == ["epr", "pharmacy"]
    assert incident.continuity[0].contacts == ("Service desk 01632 960000", "EPR analyst on call via switchboard")
    assert incident.status is IncidentStatus.OPEN
    assert incident.by_tier == {1: 1, 2: 1, 3: 0, 4: 0}
    (declared,) = incident.events
    assert declared.kind is EventKind.DECLARED
    assert declared.text == "declared: asset:sql-epr-1 failed; 2 services and 3 assets down, 4 restore steps"


def test_a_failure_that_takes_nothing_down_is_no_incident(ward: EstateGraph) -> None:
    with pytest.raises(InputError, match="takes nothing down in estate 'ward'"):
        declare(ward, "where:site=nowhere")


def test_declaring_needs_a_failure_and_a_person(ward: EstateGraph) -> None:
    with pytest.raises(InputError, match="say what failed"):
        declare_incident(ward, [], incident_id="inc-1", at=T0, actor="alice")
    with pytest.raises(InputError, match="say who is acting"):
        declare_incident(ward, ward.resolve_failures(["rota-db"]), incident_id="inc-1", at=T0, actor=" ")


@pytest.mark.parametrize(
    "refs",
    [["supplier:advanced"], ["site:north"], ["supplier:vmware"], ["asset:sql-epr-1", "asset:sql-epr-2"]],
)
def test_the_remaining_plan_at_declaration_is_the_recovery_plan(sample_graph: EstateGraph, refs: list[str]) -> None:
    """The incident re-plans what is still down with the same rule as `ringfence recover`."""
    graph = sample_graph
    incident = declare(graph, *refs)
    plan = plan_recovery(graph, graph.resolve_failures(refs))
    assert {i.id: i.step for i in incident.items} == plan.step_of()
    assert remaining_steps(incident) == plan.step_of()


def test_the_remaining_plan_matches_for_every_supplier_and_site(sample_graph: EstateGraph) -> None:
    estate = sample_graph.estate
    refs = [f"supplier:{s.id}" for s in estate.suppliers] + [f"site:{site}" for site in estate.sites]
    checked = 0
    for ref in refs:
        failures = sample_graph.resolve_failures([ref])
        if not sample_graph.down_after(failures).mask.any():
            continue
        incident = declare(sample_graph, ref)
        assert remaining_steps(incident) == plan_recovery(sample_graph, failures).step_of(), ref
        checked += 1
    assert checked > 20


def test_a_cycle_comes_back_as_soon_as_it_can_beside_other_work(ward: EstateGraph) -> None:
    """The rota's servers need each other and nothing else: they are restored in step 1 with the database."""
    incident = declare(ward, "asset:rota-db", "asset:sql-epr-1")
    steps = {"rota-app": 1, "rota-db": 1, "sql-epr-1": 1, "epr-app-1": 2, "epr-app-2": 2, "rota": 2, "epr": 3}
    assert remaining_steps(incident) == {**steps, "pharmacy": 4}
    assert {i.id: i.step for i in incident.items} == {**steps, "pharmacy": 4}
    # Out of order: the EPR side restored first changes nothing for the rota.
    later = mark_restored(incident, ["sql-epr-1", "epr-app-1"], T0 + HOUR, actor="bob")
    assert remaining_steps(later) == {"rota-app": 1, "rota-db": 1, "epr-app-2": 1, "epr": 1, "rota": 2, "pharmacy": 2}


# ------------------------------------------------------------------------------------------ restoring


def test_an_item_cannot_be_restored_while_what_it_needs_is_down(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    with pytest.raises(ConflictError) as refused:
        mark_restored(incident, "epr-app-1", T0 + HOUR, actor="bob")
    assert str(refused.value) == "cannot mark epr-app-1 restored: it needs sql-epr-1, which is still down"
    with pytest.raises(ConflictError) as refused:
        mark_restored(incident, "epr", T0 + HOUR, actor="bob")
    assert str(refused.value) == ("cannot mark epr restored: it needs any 1 of [epr-app-1, epr-app-2] up, and 0 are")
    with pytest.raises(ConflictError, match="cannot mark pharmacy restored: it needs epr, which is still down"):
        mark_restored(incident, "pharmacy", T0 + HOUR, actor="bob")
    # Refusals change nothing.
    assert incident.restored == {}


def test_restoring_in_order_and_a_group_needs_only_k_members(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    incident = mark_restored(incident, "sql-epr-1", T0 + HOUR, actor="bob")
    incident = mark_restored(incident, "epr-app-2", T0 + 2 * HOUR, actor="bob")
    assert waiting_for(incident, "epr") == ()
    incident = mark_restored(incident, "epr", T0 + 3 * HOUR, actor="bob")
    incident = mark_restored(incident, "pharmacy", T0 + 3 * HOUR, actor="carol")
    assert incident.restored == {
        "sql-epr-1": T0 + HOUR,
        "epr-app-2": T0 + 2 * HOUR,
        "epr": T0 + 3 * HOUR,
        "pharmacy": T0 + 3 * HOUR,
    }
    assert [i.id for i in incident.still_down] == ["epr-app-1"]
    assert incident.events[-1].text == "restored: pharmacy; 1 item still down"
    assert incident.events[-1].actor == "carol"


def test_items_restored_together_count_for_each_other(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    together = mark_restored(incident, ["epr-app-1", "sql-epr-1"], T0 + HOUR, actor="bob")
    assert set(together.restored) == {"sql-epr-1", "epr-app-1"}
    assert together.events[-1].items == ("epr-app-1", "sql-epr-1")


def test_items_that_need_each_other_come_back_together(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:rota-db")
    assert [(i.id, i.step) for i in incident.items] == [("rota-app", 1), ("rota-db", 1), ("rota", 2)]
    with pytest.raises(ConflictError, match="cannot mark rota-app restored: it needs rota-db, which is still down"):
        mark_restored(incident, "rota-app", T0 + HOUR, actor="bob")
    back = mark_restored(incident, ["rota-app", "rota-db"], T0 + HOUR, actor="bob")
    assert waiting_for(back, "rota") == ()


def test_restoring_something_not_down_or_twice_is_refused(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    with pytest.raises(InputError, match="'rota' is not down in incident inc-000001; nothing to restore"):
        mark_restored(incident, ["sql-epr-1", "rota"], T0 + HOUR, actor="bob")
    once = mark_restored(incident, "sql-epr-1", T0 + HOUR, actor="bob")
    with pytest.raises(
        ConflictError, match="sql-epr-1 was already marked restored in incident inc-000001 at 2022-08-04T08:00:00"
    ):
        mark_restored(once, "sql-epr-1", T0 + 2 * HOUR, actor="bob")
    with pytest.raises(InputError, match="name at least one item"):
        mark_restored(incident, [], T0 + HOUR, actor="bob")


def test_times_must_be_aware_and_not_before_the_declaration(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    with pytest.raises(InputError, match="has no timezone"):
        mark_restored(incident, "sql-epr-1", datetime(2022, 8, 4, 9, 0), actor="bob")
    with pytest.raises(InputError, match="before it was declared at 2022-08-04T07:00:00"):
        mark_restored(incident, "sql-epr-1", T0 - HOUR, actor="bob")


# ------------------------------------------------------------------------------------------ the clock


def test_rto_clock_arithmetic_at_fixed_times(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    epr = clock(incident, "epr", T0 + timedelta(minutes=30))
    assert epr.deadline == T0 + 4 * HOUR
    assert epr.remaining == 3 * 3600 + 30 * 60
    # Step 3 at an hour a step: expected back 3h after the declaration, 2h 30m from the moment asked about.
    assert epr.expected_at == T0 + 3 * HOUR
    assert epr.estimated == 2 * 3600 + 30 * 60
    assert epr.status is ClockStatus.ON_TRACK
    # Restoring the database brings every step one closer.
    incident = mark_restored(incident, "sql-epr-1", T0 + HOUR, actor="bob")
    assert remaining_steps(incident) == {"epr-app-1": 1, "epr-app-2": 1, "epr": 2, "pharmacy": 3}
    epr = clock(incident, "epr", T0 + HOUR)
    assert (epr.remaining, epr.estimated, epr.status) == (3 * 3600, 2 * 3600, ClockStatus.ON_TRACK)
    # The rota has no RTO: no clock to keep, but an estimate all the same.
    rota = declare(ward, "asset:rota-db")
    (rota_clock,) = rto_clocks(rota, T0)
    assert (rota_clock.status, rota_clock.deadline, rota_clock.estimated) == (ClockStatus.NO_RTO, None, 2 * 3600)
    # Ten hours on with no mark, the step in hand is overdue: what is certain is the one step after it.
    (rota_clock,) = rto_clocks(rota, T0 + 10 * HOUR)
    assert (rota_clock.estimated, rota_clock.expected_at) == (3600, T0 + 11 * HOUR)


def test_breach_transitions_on_track_at_risk_breached_missed(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    # epr: RTO 4h, step 3 (expected back at 3h). On track while the two steps after the one in hand still fit
    # before the deadline (until 2h in, with no mark), at risk once they cannot, breached past 4h.
    assert clock(incident, "epr", T0 + timedelta(seconds=1)).status is ClockStatus.ON_TRACK
    assert clock(incident, "epr", T0 + HOUR + timedelta(seconds=1)).status is ClockStatus.ON_TRACK
    assert clock(incident, "epr", T0 + 2 * HOUR).status is ClockStatus.ON_TRACK
    assert clock(incident, "epr", T0 + 2 * HOUR + timedelta(seconds=1)).status is ClockStatus.AT_RISK
    at_deadline = clock(incident, "epr", T0 + 4 * HOUR)
    assert (at_deadline.status, at_deadline.remaining) == (ClockStatus.AT_RISK, 0)
    past = clock(incident, "epr", T0 + 4 * HOUR + timedelta(seconds=1))
    assert (past.status, past.remaining) == (ClockStatus.BREACHED, -1)
    # pharmacy: RTO 1h but 4 steps away: at risk from the start.
    pharmacy = clock(incident, "pharmacy", T0)
    assert pharmacy.status is ClockStatus.AT_RISK
    assert pharmacy.warning == "pharmacy (tier 2): RTO of 1h at risk: 1h left, about 4h to restore"
    late = clock(incident, "pharmacy", T0 + 90 * timedelta(minutes=1))
    assert late.warning == "pharmacy (tier 2): RTO of 1h breached 30 min ago"
    # Restored: met within the RTO, missed after it.
    incident = mark_restored(incident, ["sql-epr-1", "epr-app-1"], T0 + HOUR, actor="bob")
    incident = mark_restored(incident, "epr", T0 + 2 * HOUR, actor="bob")
    incident = mark_restored(incident, "pharmacy", T0 + 2 * HOUR + timedelta(minutes=30), actor="bob")
    now = T0 + 5 * HOUR
    epr, pharmacy = clock(incident, "epr", now), clock(incident, "pharmacy", now)
    assert (epr.status, epr.time_to_restore, epr.remaining) == (ClockStatus.MET, 7200, None)
    assert (pharmacy.status, pharmacy.time_to_restore) == (ClockStatus.MISSED, 9000)
    assert pharmacy.warning == "pharmacy (tier 2): restored after 2h 30m, past its RTO of 1h"
    # Seen from before the restore, it was still breached.
    assert clock(incident, "pharmacy", T0 + 2 * HOUR).status is ClockStatus.BREACHED


def test_clocks_are_most_critical_first_and_stop_when_the_incident_closes(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    assert [c.service for c in rto_clocks(incident, T0)] == ["epr", "pharmacy"]
    closed = close_incident(incident, T0 + 2 * HOUR, actor="carol", reason="handed to the supplier")
    frozen = clock(closed, "epr", T0 + 10 * HOUR)
    assert frozen.as_of == T0 + 2 * HOUR
    # Never restored: not "on track" nor "at risk" of a deadline nobody works to, but left down at the close.
    assert (frozen.status, frozen.remaining, frozen.estimated) == (ClockStatus.NOT_RESTORED_AT_CLOSE, 2 * 3600, None)
    assert frozen.warning == "epr (tier 1): not restored at close, 2h before its RTO of 4h ran out"
    pharmacy = clock(closed, "pharmacy", T0 + 10 * HOUR)
    assert (pharmacy.status, pharmacy.remaining) == (ClockStatus.NOT_RESTORED_AT_CLOSE, -3600)
    assert pharmacy.is_past_rto
    assert pharmacy.warning == "pharmacy (tier 2): not restored at close, 1h past its RTO of 1h"
    # Seen from before the close, the clocks ran.
    assert clock(closed, "epr", T0 + HOUR).status is ClockStatus.ON_TRACK


def test_the_timeline_places_each_breach_at_its_deadline(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    incident = add_note(incident, "called Acme", T0 + timedelta(minutes=10), actor="bob")
    incident = mark_restored(incident, ["sql-epr-1", "epr-app-1"], T0 + 2 * HOUR, actor="bob")
    events = timeline(incident, T0 + 5 * HOUR)
    assert [(e.at, e.kind) for e in events] == [
        (T0, EventKind.DECLARED),
        (T0 + timedelta(minutes=10), EventKind.NOTE),
        (T0 + HOUR, EventKind.BREACHED),
        (T0 + 2 * HOUR, EventKind.RESTORED),
        (T0 + 4 * HOUR, EventKind.BREACHED),
    ]
    assert events[2].text == "RTO breached: Pharmacy stock (pharmacy, tier 2) not restored within 1h"
    assert events[4].items == ("epr",)
    # Before its deadline a breach has not happened.
    assert [e.kind for e in timeline(incident, T0 + 30 * timedelta(minutes=1))] == [EventKind.DECLARED, EventKind.NOTE]


# ------------------------------------------------------------------------------------------ closing


def test_closing_needs_everything_restored_or_a_reason(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:sql-epr-1")
    with pytest.raises(ConflictError) as refused:
        close_incident(incident, T0 + HOUR, actor="carol")
    assert str(refused.value) == (
        "cannot close incident inc-000001: 5 items are still down (sql-epr-1, epr-app-1, epr-app-2, epr, pharmacy); "
        "mark them restored, or give a reason to close anyway"
    )
    closed = close_incident(incident, T0 + HOUR, actor="carol", reason="moved to the supplier's incident")
    assert closed.status is IncidentStatus.CLOSED
    assert closed.closed_at == T0 + HOUR
    assert closed.events[-1].text == "closed with 5 items still down: moved to the supplier's incident"
    assert closed.events[-1].items == ("sql-epr-1", "epr-app-1", "epr-app-2", "epr", "pharmacy")


def test_a_closed_incident_takes_nothing_more(ward: EstateGraph) -> None:
    incident = declare(ward, "asset:rota-db")
    incident = mark_restored(incident, ["rota-db", "rota-app"], T0 + HOUR, actor="bob")
    incident = mark_restored(incident, "rota", T0 + HOUR, actor="bob")
    closed = close_incident(incident, T0 + 2 * HOUR, actor="carol")
    assert closed.events[-1].text == "closed: everything restored"
    for attempt in (
        lambda: close_incident(closed, T0 + 3 * HOUR, actor="carol", reason="again"),
        lambda: add_note(closed, "late", T0 + 3 * HOUR, actor="carol"),
        lambda: mark_restored(closed, "rota", T0 + 3 * HOUR, actor="carol"),
    ):
        with pytest.raises(ConflictError, match="incident inc-000001 was closed at 2022-08-04T09:00:00"):
            attempt()


def test_an_empty_note_is_refused(ward: EstateGraph) -> None:
    with pytest.raises(InputError, match="a note needs some text"):
        add_note(declare(ward, "asset:rota-db"), "   ", T0, actor="bob")


# ------------------------------------------------------------------------------------------ the review


def test_the_review_has_impact_by_tier_time_to_restore_and_the_cause(ward: EstateGraph) -> None:
    incident = declare_incident(
        ward,
        ward.resolve_failures(["asset:sql-epr-1"]),
        incident_id="inc-000007",
        at=T0,
        actor="controller",
        rollout_id="r-000003",
    )
    incident = mark_restored(incident, ["sql-epr-1", "epr-app-2"], T0 + HOUR, actor="bob")
    incident = mark_restored(incident, "epr", T0 + 2 * HOUR, actor="bob")
    incident = mark_restored(incident, "pharmacy", T0 + 3 * HOUR, actor="bob")
    incident = close_incident(incident, T0 + 4 * HOUR, actor="carol", reason="epr-app-1 rebuilt next week")
    cause = RolloutCause("r-000003", "pg-16", "pg/postgres@16", "ring 0 failed: 1 of 1 canary crashed")
    review = review_incident(incident, T0 + 48 * HOUR, cause=cause)
    assert not review.is_draft
    assert review.as_of == T0 + 4 * HOUR
    assert review.duration == 4 * 3600
    assert review.cause == cause
    assert [(t.tier, [s.id for s in t.services], t.met, t.breached) for t in review.impact] == [
        (1, ["epr"], 1, 0),
        (2, ["pharmacy"], 0, 1),
        (3, [], 0, 0),
        (4, [], 0, 0),
    ]
    assert [(c.service, c.time_to_restore, c.status) for c in review.clocks] == [
        ("epr", 7200, ClockStatus.MET),
        ("pharmacy", 10800, ClockStatus.MISSED),
    ]
    assert [i.id for i in review.still_down] == ["epr-app-1"]
    assert review.summary == (
        "asset:sql-epr-1 took down 2 services (1 of tier 1, 1 of tier 2) and 3 assets for 4h; "
        "1 of 2 services with an RTO were restored within it; RTO breached: pharmacy; 1 item still down"
    )
    assert [e.kind for e in review.timeline].count(EventKind.BREACHED) == 1


def test_a_review_of_an_open_incident_is_a_draft_and_names_its_rollout(ward: EstateGraph) -> None:
    incident = declare_incident(
        ward, ward.resolve_failures(["rota-db"]), incident_id="inc-1", at=T0, actor="c", rollout_id="r-000009"
    )
    review = review_incident(incident, T0 + HOUR)
    assert review.is_draft
    assert review.cause == RolloutCause("r-000009")
    assert review.duration == 3600
