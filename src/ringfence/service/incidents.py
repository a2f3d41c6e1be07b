"""Incident use cases over SQL: declare (by hand, or when a rollout halts), restore, note, close, review.

Each use case is one transaction (``session_scope``) and lands in the audit log in that transaction
(subject ``incident:ID``, actor the person or token acting). The rules live in :mod:`ringfence.core.incident`;
this module loads an incident, lets the domain decide, and stores what it decided.

How an incident is stored: see :mod:`ringfence.store.incidents` (its row with the snapshot it was declared
on, and its timeline of events, appended to only).

At declaration each down item takes its measured time to restore from the estate's stored assurance file
(:mod:`ringfence.service.assurance`): the latest restore test of it as of that day. An estate without one, or whose
stored file no longer holds for the version declared on, is declared with estimates (said in the declaration): an
incident is never refused for want of evidence.

Writers of one incident take turns on its row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's single
writer), so two people marking items restored at once each see the other's marks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import cast

from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.core.assurance import AssuranceError, measured_restores, parse_assurance_text
from ringfence.core.audit import AuditValue
from ringfence.core.errors import ConflictError, InputError, Problem
from ringfence.core.estate import parse_estate_text
from ringfence.core.gates import AssetStatus
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.incident import (
    DEFAULT_STEP_SECONDS,
    ClockStatus,
    Incident,
    IncidentStatus,
    ItemKind,
    UnreadableIncident,
    add_note,
    close_incident,
    mark_restored,
    rto_clocks,
    time_basis,
    timeline,
    waiting_for,
)
from ringfence.core.incident_declaration import declare_incident
from ringfence.core.incident_review import IncidentReview, RolloutCause, review_incident
from ringfence.core.recovery import MeasuredRestore
from ringfence.core.rollout.state import AssetState, RolloutPhase, Transition
from ringfence.core.words import count
from ringfence.service.estates import record_estate_text
from ringfence.service.rollout_view import read_rollout_view
from ringfence.store.assurance import AssuranceKind, latest_assurance_document
from ringfence.store.audit import append_audit
from ringfence.store.db import LOCK_NAMESPACE_INCIDENT_IDS, advisory_lock, session_scope
from ringfence.store.estates import get_estate_version, latest_estate_version
from ringfence.store.incidents import (
    add_incident,
    add_incident_event,
    get_incident,
    incident_of_rollout,
    mark_incident_closed,
    next_incident_id,
    set_change_freeze,
)
from ringfence.store.incidents import list_incidents as list_stored_incidents
from ringfence.store.records import EstateFormat
from ringfence.store.rollouts import get_rollout

# ------------------------------------------------------------------------------------------ use cases


def declare(
    engine: Engine,
    *,
    fail: Sequence[str],
    actor: str,
    at: datetime,
    title: str | None = None,
    estate_text: str | None = None,
    estate_source: str = "<estate>",
    estate_name: str | None = None,
    estate_version: int | None = None,
    step_seconds: int = DEFAULT_STEP_SECONDS,
) -> Incident:
    """Declare an incident on an estate given as text (stored as a version), or stored by name or version id."""
    if (estate_text is None) == (estate_name is None and estate_version is None):
        raise InputError([Problem("say which estate: its text, or the name (or version) of one stored", ("estate",))])
    if not fail:
        raise InputError([Problem("say what failed (e.g. supplier:advanced) to declare an incident", ("fail",))])
    graph = compile_estate(parse_estate_text(estate_text, estate_source)) if estate_text is not None else None
    with session_scope(engine) as session:
        if graph is not None:
            assert estate_text is not None
            estate = graph.estate
            # Recorded as an upload is (ringfence.service.estates): current when it weakens nothing, else
            # proposed for a second person; the incident refers to the version either way.
            version = record_estate_text(
                session,
                estate_text,
                estate,
                EstateFormat.JSON if estate_source.lower().endswith(".json") else EstateFormat.YAML,
                actor=actor,
                at=at,
            ).version
            version_id = version.id
        else:
            stored = (
                get_estate_version(session, estate_version)
                if estate_version is not None
                else latest_estate_version(session, cast(str, estate_name))
            )
            if estate_name is not None and stored.name != estate_name:
                raise InputError(
                    [Problem(f"estate version {stored.id} is of '{stored.name}', not '{estate_name}'", ("estate",))]
                )
            graph = _stored_graph(stored.content, stored.name, stored.id)
            version_id = stored.id
        return _declare_in(
            session,
            graph,
            fail,
            version_id=version_id,
            actor=actor,
            at=at,
            title=title,
            step_seconds=step_seconds,
        )


def declare_from_rollout(
    engine: Engine, rollout_id: str, at: datetime, *, actor: str = "controller"
) -> Incident | None:
    """Declare the incident a halted rollout left behind (see :func:`declare_for_halted_rollout`)."""
    with session_scope(engine) as session:
        return declare_for_halted_rollout(session, rollout_id, at=at, actor=actor)


def declare_for_halted_rollout(
    session: Session, rollout_id: str, *, at: datetime, actor: str = "controller"
) -> Incident | None:
    """In the caller's transaction: declare an incident from the assets ``rollout_id`` left failed.

    Failed means install failed, or the latest health reading since the install says failed. The failures
    are ``asset:ID``; the incident links the rollout and quotes its halt reason. Idempotent: a rollout has at
    most one incident, and asking again returns it. None when the rollout left nothing failed (a person
    aborted a healthy rollout): there is nothing down to recover.
    """
    # Declarers take turns here, so two halts of one rollout never both find no incident and declare.
    advisory_lock(session, LOCK_NAMESPACE_INCIDENT_IDS)
    existing = incident_of_rollout(session, rollout_id)
    if existing is not None:
        return existing
    view = read_rollout_view(session, rollout_id)
    failed = sorted(
        a.asset_id
        for a in view.assets
        if a.state in (AssetState.FAILED, AssetState.ROLLBACK_FAILED)
        or (a.asset_id in view.health and view.health[a.asset_id].status is AssetStatus.failed)
    )
    if not failed:
        return None
    rollout = get_rollout(session, rollout_id)
    version = get_estate_version(session, rollout.estate_version_id)
    graph = _stored_graph(version.content, version.name, version.id)
    refs = [f"asset:{a}" for a in failed if a in graph.estate.asset_by_id]
    if not refs:
        return None
    title = f"Rollout {rollout_id} of {rollout.update_id} halted: {count(len(refs), 'asset')} failed"
    return _declare_in(
        session,
        graph,
        refs,
        version_id=version.id,
        actor=actor,
        at=at,
        title=title,
        rollout_id=rollout_id,
        note=rollout.state.halt_reason,
    )


def settle_for_ended_rollout(session: Session, ended: Transition, *, actor: str = "controller") -> Incident | None:
    """In the caller's transaction: what the end of a rollout means for the incident its halt declared.

    ``rolled_back`` (every updated asset rolled back, none failed): what the halt took down is back, so every
    item still down is marked restored and the incident is closed, "rolled back by rollout r-…: every
    updated asset restored". ``failed`` (some rollbacks failed): the incident stays open, and a note names
    each asset that needs a person and why. None when the rollout caused no incident, or a person has
    closed it already; any other end changes nothing.
    """
    if ended.to_phase not in (RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED):
        return None
    found = incident_of_rollout(session, ended.rollout_id)
    if found is None:
        return None
    incident = get_incident(session, found.id, for_update=True)
    if incident.status is IncidentStatus.CLOSED:
        return None
    # An incident declared by hand after the halt may carry a later time than the controller's clock: its
    # timeline never runs backwards, and the rollout's own transition must not be refused for it.
    at = max(ended.at, incident.declared_at)
    if ended.to_phase is RolloutPhase.FAILED:
        text = f"rollout {ended.rollout_id} ended failed ({ended.reason})"
        stuck = _needing_a_person(session, ended.rollout_id)
        if stuck:
            need = "needs" if len(stuck) == 1 else "need"
            text += f"; {count(len(stuck), 'asset')} {need} a person: {'; '.join(stuck)}"
        noted = add_note(incident, text, at, actor=actor)
        _record_change(session, noted, "incident.note", {"text": text, "rollout": ended.rollout_id})
        return noted
    down = [i.id for i in incident.still_down]
    if down:
        # One mark for all: items that need each other come back together, as the rollback brought them.
        incident = mark_restored(incident, down, at, actor=actor)
        _record_change(
            session, incident, "incident.restore", {"items": down, "still_down": 0, "rollout": ended.rollout_id}
        )
    reason = f"rolled back by rollout {ended.rollout_id}: every updated asset restored"
    closed = close_incident(incident, at, actor=actor, reason=reason)
    _record_change(session, closed, "incident.close", {"reason": reason, "still_down": [], "rollout": ended.rollout_id})
    mark_incident_closed(session, closed.id, at=at)
    return closed


def _needing_a_person(session: Session, rollout_id: str) -> list[str]:
    """Each asset a failed rollout left for a person, with why: ``esx-a01 (rollback failed: timed out)``."""
    view = read_rollout_view(session, rollout_id)
    found = []
    for a in sorted(view.assets, key=lambda a: a.asset_id):
        health = view.health.get(a.asset_id)
        if a.state is AssetState.ROLLBACK_FAILED:
            why = "rollback failed" + (f": {a.detail}" if a.detail else "")
        elif a.state is AssetState.FAILED:
            why = "install failed, not rolled back"
        elif a.state is AssetState.APPLIED and health is not None and health.status is AssetStatus.failed:
            why = "failed after its install, not rolled back"
        else:
            continue
        found.append(f"{a.asset_id} ({why})")
    return found


def get(engine: Engine, incident_id: str) -> Incident:
    with session_scope(engine, readonly=True) as session:
        return get_incident(session, incident_id)


def of_rollout(engine: Engine, rollout_id: str) -> Incident | None:
    """The incident ``rollout_id``'s halt declared, if any (a rollout causes at most one)."""
    with session_scope(engine, readonly=True) as session:
        return incident_of_rollout(session, rollout_id)


def list_incidents(
    engine: Engine, *, status: IncidentStatus | str | None = None
) -> list[Incident | UnreadableIncident]:
    """Incidents (open or closed only, when asked), by id; a stored one that cannot be read is listed as such."""
    wanted = None
    if status is not None:
        try:
            wanted = IncidentStatus(status)
        except ValueError:
            raise InputError(
                [Problem(f"'{status}' is not an incident status; use open or closed", ("status",))]
            ) from None
    with session_scope(engine, readonly=True) as session:
        return list_stored_incidents(session, status=wanted)


def restore(engine: Engine, incident_id: str, items: Sequence[str], *, actor: str, at: datetime) -> Incident:
    """Mark items restored; refused with the reason while what they need is still down."""
    with session_scope(engine) as session:
        incident = get_incident(session, incident_id, for_update=True)
        changed = mark_restored(incident, items, at, actor=actor)
        event = changed.events[-1]
        _record_change(
            session, changed, "incident.restore", {"items": list(event.items), "still_down": len(changed.still_down)}
        )
        return changed


def note(engine: Engine, incident_id: str, text: str, *, actor: str, at: datetime) -> Incident:
    with session_scope(engine) as session:
        incident = get_incident(session, incident_id, for_update=True)
        changed = add_note(incident, text, at, actor=actor)
        _record_change(session, changed, "incident.note", {"text": changed.events[-1].text})
        return changed


def close(engine: Engine, incident_id: str, *, actor: str, at: datetime, reason: str | None = None) -> Incident:
    """Close an incident: everything restored, or a reason for closing with items still down."""
    with session_scope(engine) as session:
        incident = get_incident(session, incident_id, for_update=True)
        changed = close_incident(incident, at, actor=actor, reason=reason)
        still_down = list(changed.events[-1].items)
        _record_change(
            session, changed, "incident.close", {"reason": (reason or "").strip() or None, "still_down": still_down}
        )
        mark_incident_closed(session, incident_id, at=at)
        return changed


def freeze_changes(engine: Engine, incident_id: str, *, actor: str, at: datetime, on: bool = True) -> Incident:
    """Declare (``on``) or lift an incident's organisation-wide change freeze: while an open incident holds one, no
    ring of any rollout opens (``ringfence.core.windows``); closing the incident ends it. Noted on its timeline and
    audited. A closed incident cannot declare one."""
    with session_scope(engine) as session:
        incident = get_incident(session, incident_id, for_update=True)
        if on and incident.status is IncidentStatus.CLOSED:
            raise ConflictError(f"incident {incident_id} is closed: a closed incident cannot hold a change freeze")
        text = (
            "declared a change freeze: no ring of any rollout opens until this incident is closed or the freeze lifted"
            if on
            else "lifted the change freeze: rings open again inside their windows"
        )
        changed = add_note(incident, text, at, actor=actor)
        _record_change(session, changed, "incident.freeze" if on else "incident.unfreeze", {"change_freeze": on})
        set_change_freeze(session, incident_id, on=on)
        return changed


def review(engine: Engine, incident_id: str, now: datetime) -> IncidentReview:
    """The post-incident review, with the rollout that caused it (its update, release and halt reason)."""
    with session_scope(engine, readonly=True) as session:
        incident = get_incident(session, incident_id)
        cause = None
        if incident.rollout_id is not None:
            rollout = get_rollout(session, incident.rollout_id)
            doc = rollout.update_doc
            release = None
            if isinstance(doc, Mapping) and "product" in doc and "version" in doc:
                release = f"{doc['product']}@{doc['version']}"
            cause = RolloutCause(rollout.id, rollout.update_id, release, rollout.state.halt_reason)
    return review_incident(incident, now, cause=cause)


# ------------------------------------------------------------------------------------------ declaring


def _declare_in(
    session: Session,
    graph: EstateGraph,
    fail: Sequence[str],
    *,
    version_id: int,
    actor: str,
    at: datetime,
    title: str | None,
    step_seconds: int = DEFAULT_STEP_SECONDS,
    rollout_id: str | None = None,
    note: str | None = None,
) -> Incident:
    failures = graph.resolve_failures(fail)
    measured, unheld = _measured_restores(session, graph, at)
    incident = declare_incident(
        graph,
        failures,
        incident_id=next_incident_id(session),
        at=at,
        actor=actor,
        title=title,
        step_seconds=step_seconds,
        rollout_id=rollout_id,
        estate_version_id=version_id,
        note="; ".join(n for n in (note, unheld) if n) or None,
        measured=measured,
    )
    add_incident(session, incident)
    append_audit(
        session,
        actor=incident.declared_by,
        action="incident.declare",
        subject=f"incident:{incident.id}",
        detail={
            "title": incident.title,
            "estate": incident.estate,
            "estate_version": version_id,
            "failed": list(incident.failed),
            "services_down": [s.id for s in incident.services],
            "items_down": len(incident.items),
            "rollout": rollout_id,
            "measured_items": sum(1 for i in incident.items if i.takes is not None),
        },
        at=at,
    )
    return incident


def _measured_restores(
    session: Session, graph: EstateGraph, at: datetime
) -> tuple[dict[str, MeasuredRestore], str | None]:
    """The measured time to restore of each asset and service of ``graph`` by the estate's stored assurance file,
    as of the declaration's day; and, when that file no longer holds for this version, why every time is an
    estimate (the declaration says it: the incident is declared all the same)."""
    name = graph.estate.name
    stored = latest_assurance_document(session, name, AssuranceKind.ASSURANCE)
    if stored is None:
        return {}, None
    try:
        assurance = parse_assurance_text(stored.content, graph.estate, f"{name}/assurance")
    except AssuranceError as exc:
        return {}, (
            f"restore times are all estimates: the assurance file stored for estate '{name}' (#{stored.id}) does "
            f"not hold for this version: {exc.problems[0]}"
        )
    return measured_restores(assurance, at.date()), None


def _record_change(session: Session, changed: Incident, action: str, detail: Mapping[str, AuditValue]) -> None:
    """Store the newest event of a changed incident, and the audit entry that says who did it."""
    event = changed.events[-1]
    add_incident_event(session, changed.id, event)
    append_audit(
        session, actor=event.actor, action=action, subject=f"incident:{changed.id}", detail=detail, at=event.at
    )


def _stored_graph(content: str, name: str, version_id: int) -> EstateGraph:
    return compile_estate(parse_estate_text(content, f"estate '{name}' version {version_id}"))


# ------------------------------------------------------------------------------------------ documents


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ServiceDownOut(_Out):
    id: str
    tier: int


class ImpactOut(_Out):
    services_down: list[ServiceDownOut]
    assets_down: list[str]
    by_tier: dict[str, int]


class ContinuityOut(_Out):
    service: str
    name: str
    tier: int
    rto: int | None
    plan: str | None
    contacts: list[str]


class StepOut(_Out):
    step: int
    restore: list[str]
    restored: list[str]


class ItemOut(_Out):
    id: str
    kind: str
    name: str
    step: int
    tier: int | None
    restored_at: datetime | None
    waiting_for: list[str]
    """Why it cannot be restored yet; empty when it can (or is restored)."""
    takes: int
    """Seconds restoring it takes: its measured time (a restore test), else one restore step."""
    basis: str
    """How ``takes`` is known: ``measured 2026-03-04`` (the test's day) or ``estimate``."""
    restored_by: int
    """Seconds from the declaration until its step of the declared plan is done (each step as long as its slowest
    item)."""
    restored_by_basis: str
    """``measured …`` (the oldest test behind it) only when every item of every step up to its own is measured;
    else ``estimate``."""


class ClockOut(_Out):
    service: str
    name: str
    tier: int
    rto: int | None
    status: str
    deadline: datetime | None
    remaining: int | None
    estimated: int | None
    expected_at: datetime | None
    """When it is expected back: the declaration (or the latest restore mark) plus its steps, never earlier
    than the steps still ahead allow; None once restored or closed."""
    restored_at: datetime | None
    time_to_restore: int | None
    basis: str | None
    """How ``estimated`` is known: ``measured 2026-03-04`` when every step up to the service's is measured (the
    oldest test), else ``estimate``; None when there is no estimate (restored, or closed)."""
    warning: str | None


class EventOut(_Out):
    at: datetime
    kind: str
    actor: str
    text: str
    items: list[str]


class IncidentOut(_Out):
    """An incident as the API and ``ringfence incident show --json`` give it. Durations are seconds."""

    id: str
    title: str
    status: str
    estate: str
    estate_version: int | None
    failed: list[str]
    rollout: str | None
    declared_at: datetime
    declared_by: str
    closed_at: datetime | None
    as_of: datetime
    step_seconds: int
    impact: ImpactOut
    continuity: list[ContinuityOut]
    """Most critical first."""
    steps: list[StepOut]
    """In restore order."""
    clocks: list[ClockOut]
    """Most critical first."""
    warnings: list[str]
    items: list[ItemOut]
    """In restore order."""
    timeline: list[EventOut]
    """In time order, RTO breaches included."""


class IncidentSummaryOut(_Out):
    id: str
    title: str
    status: str
    estate: str
    rollout: str | None
    declared_at: datetime
    closed_at: datetime | None
    worst_tier: int | None
    services_down: int
    items_down: int
    items_restored: int
    at_risk: list[str]
    breached: list[str]
    """Past their RTO: still down, restored late, or left down at the close."""
    not_restored_at_close: list[str]
    unreadable: str | None = None
    """Why the stored incident cannot be read (None when it can): it is listed with what its row still says, and
    the counts are 0. Its page and its changes are refused; the other incidents are unaffected."""


class IncidentListOut(_Out):
    incidents: list[IncidentSummaryOut]


def incident_document(incident: Incident, now: datetime) -> IncidentOut:
    clocks = rto_clocks(incident, now)
    as_of = clocks[0].as_of if clocks else (min(now, incident.closed_at) if incident.closed_at else now)
    restored = incident.restored
    restored_by = incident.declared_restored_by
    return IncidentOut(
        id=incident.id,
        title=incident.title,
        status=incident.status.value,
        estate=incident.estate,
        estate_version=incident.estate_version_id,
        failed=list(incident.failed),
        rollout=incident.rollout_id,
        declared_at=incident.declared_at,
        declared_by=incident.declared_by,
        closed_at=incident.closed_at,
        as_of=as_of,
        step_seconds=incident.step_seconds,
        impact=ImpactOut(
            services_down=[
                ServiceDownOut(id=s.id, tier=cast(int, s.tier)) for s in sorted(incident.services, key=lambda s: s.id)
            ],
            assets_down=sorted(i.id for i in incident.items if i.kind is ItemKind.ASSET),
            by_tier={str(t): n for t, n in sorted(incident.by_tier.items())},
        ),
        continuity=[
            ContinuityOut(
                service=c.service, name=c.name, tier=c.tier, rto=c.rto, plan=c.plan, contacts=list(c.contacts)
            )
            for c in incident.continuity
        ],
        steps=[
            StepOut(step=step, restore=[i.id for i in items], restored=[i.id for i in items if i.id in restored])
            for step, items in incident.steps
        ],
        clocks=[
            ClockOut(
                service=c.service,
                name=c.name,
                tier=c.tier,
                rto=c.rto,
                status=c.status.value,
                deadline=c.deadline,
                remaining=c.remaining,
                estimated=c.estimated,
                expected_at=c.expected_at,
                restored_at=c.restored_at,
                time_to_restore=c.time_to_restore,
                basis=c.basis,
                warning=c.warning,
            )
            for c in clocks
        ],
        warnings=[c.warning for c in clocks if c.warning is not None],
        items=[
            ItemOut(
                id=i.id,
                kind=i.kind.value,
                name=i.name,
                step=i.step,
                tier=i.tier,
                restored_at=restored.get(i.id),
                waiting_for=[] if i.id in restored else list(waiting_for(incident, i.id)),
                takes=incident.takes(i),
                basis=i.basis,
                restored_by=restored_by[i.id][0],
                restored_by_basis=time_basis(restored_by[i.id][1]),
            )
            for i in incident.items
        ],
        timeline=[
            EventOut(at=e.at, kind=e.kind.value, actor=e.actor, text=e.text, items=list(e.items))
            for e in timeline(incident, as_of)
        ],
    )


def incident_summary(incident: Incident | UnreadableIncident, now: datetime) -> IncidentSummaryOut:
    """One line of the list of incidents. An incident the store could not read (a record stored before the bounds,
    or by hand) is summarised as unreadable: one bad record never takes the list down for everyone."""
    if isinstance(incident, UnreadableIncident):
        return _unreadable_summary(incident)
    return _summary(incident, now)


def _unreadable_summary(incident: UnreadableIncident) -> IncidentSummaryOut:
    return IncidentSummaryOut(
        id=incident.id,
        title=incident.title,
        status=incident.status.value,
        estate="",
        rollout=None,
        declared_at=incident.declared_at,
        closed_at=incident.closed_at,
        worst_tier=None,
        services_down=0,
        items_down=0,
        items_restored=0,
        at_risk=[],
        breached=[],
        not_restored_at_close=[],
        unreadable=incident.reason,
    )


def _summary(incident: Incident, now: datetime) -> IncidentSummaryOut:
    clocks = rto_clocks(incident, now)
    return IncidentSummaryOut(
        id=incident.id,
        title=incident.title,
        status=incident.status.value,
        estate=incident.estate,
        rollout=incident.rollout_id,
        declared_at=incident.declared_at,
        closed_at=incident.closed_at,
        worst_tier=incident.worst_tier,
        services_down=len(incident.services),
        items_down=len(incident.items),
        items_restored=len(incident.restored),
        at_risk=[c.service for c in clocks if c.status is ClockStatus.AT_RISK],
        breached=[c.service for c in clocks if c.is_past_rto],
        not_restored_at_close=[c.service for c in clocks if c.status is ClockStatus.NOT_RESTORED_AT_CLOSE],
    )


__all__ = [
    "IncidentListOut",
    "IncidentOut",
    "IncidentSummaryOut",
    "close",
    "declare",
    "declare_for_halted_rollout",
    "declare_from_rollout",
    "get",
    "incident_document",
    "incident_summary",
    "list_incidents",
    "note",
    "of_rollout",
    "restore",
    "review",
    "settle_for_ended_rollout",
]
