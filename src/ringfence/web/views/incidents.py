"""The incidents list and an incident's page, as the API's incident document tells it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from ringfence.core.durations import humanize_duration
from ringfence.core.impact import TIERS
from ringfence.core.incident import Incident, UnreadableIncident, rto_clocks, waiting_for
from ringfence.service import incidents as incident_service
from ringfence.service.tokens import Caller, Role
from ringfence.web.security import may
from ringfence.web.views.shared import Tier, duration, tier, when

# Worst first: the order in which a list of incidents draws the eye to an RTO.
_CLOCK_SEVERITY = ("breached", "at_risk", "missed", "not_restored_at_close", "on_track", "met", "no_rto")
SHOWN_PER_STEP = 40
"""Items listed per restore step (each with its button); the rest are counted. Large incidents stay readable."""


@dataclass(frozen=True)
class IncidentRow:
    id: str
    title: str
    status: str
    declared_at: str
    declared_by: str
    cause: str
    """What failed, and the rollout that caused it, if any."""
    services_down: int
    items_down: int
    items_restored: int
    worst_tier: Tier | None
    rto_status: str
    """The worst RTO status among its services ('' when none has an RTO)."""
    rto_services: tuple[str, ...]
    """The services in that status."""
    unreadable: str = ""
    """Why the stored incident cannot be read ('' when it can): shown in its row; the others are unaffected."""


def incident_rows(engine: Engine, now: datetime) -> list[IncidentRow]:
    """Every incident: open ones first, then closed; newest first within each."""
    found = incident_service.list_incidents(engine)
    rows = []
    for incident in found:
        summary = incident_service.incident_summary(incident, now)
        if isinstance(incident, UnreadableIncident):
            rows.append(_unreadable_row(summary))
            continue
        clocks = [(c.service, c.status.value) for c in rto_clocks(incident, now) if c.rto is not None]
        worst = min((status for _, status in clocks), key=_CLOCK_SEVERITY.index, default="")
        cause = ", ".join(incident.failed) + (f" (rollout {summary.rollout})" if summary.rollout else "")
        rows.append(
            IncidentRow(
                id=summary.id,
                title=summary.title,
                status=summary.status,
                declared_at=when(summary.declared_at),
                declared_by=incident.declared_by,
                cause=cause,
                services_down=summary.services_down,
                items_down=summary.items_down,
                items_restored=summary.items_restored,
                worst_tier=tier(summary.worst_tier) if summary.worst_tier is not None else None,
                rto_status=worst,
                rto_services=tuple(service for service, status in clocks if status == worst),
            )
        )
    rows.sort(key=lambda r: r.id, reverse=True)
    rows.sort(key=lambda r: r.status != "open")  # stable: open first, newest first within each
    return rows


def _unreadable_row(summary: incident_service.IncidentSummaryOut) -> IncidentRow:
    return IncidentRow(
        id=summary.id,
        title=summary.title,
        status=summary.status,
        declared_at=when(summary.declared_at),
        declared_by="",
        cause="",
        services_down=0,
        items_down=0,
        items_restored=0,
        worst_tier=None,
        rto_status="",
        rto_services=(),
        unreadable=summary.unreadable or "",
    )


@dataclass(frozen=True)
class DownService:
    id: str
    name: str
    is_restored: bool


@dataclass(frozen=True)
class TierDown:
    tier: Tier
    services: tuple[DownService, ...]


@dataclass(frozen=True)
class ContinuityRow:
    service: str
    name: str
    tier: Tier
    rto: str
    plan: str
    contacts: tuple[str, ...]
    is_restored: bool


@dataclass(frozen=True)
class StepItem:
    id: str
    name: str
    is_service: bool
    restored_at: str
    """'' while still down."""
    waiting_for: tuple[str, ...]
    """Why it cannot be marked restored yet; empty when it can (or is restored)."""
    together: tuple[str, ...] = ()
    """Items of its step it needs and that need it: they can only be marked restored together (with it)."""
    takes: str = ""
    """How long restoring it takes, and how that is known: ``3h 10m, measured 2026-03-04`` or ``1h, estimate``."""


@dataclass(frozen=True)
class StepRow:
    step: int
    items: tuple[StepItem, ...]
    more: int
    """Items of this step not listed."""
    restored: int
    total: int


@dataclass(frozen=True)
class ClockRow:
    service: str
    name: str
    tier: Tier
    rto: str
    status: str
    deadline: str
    countdown: str
    """``2h 59m left · about 3h to restore``, ``breached 30 min ago``, ``met: back after 2h``…"""
    expected_at: str
    """When it is expected back; '' once restored or closed."""
    warning: str
    basis: str = ""
    """How the time to restore is known (``measured 2026-03-04`` or ``estimate``); '' once restored or closed."""


@dataclass(frozen=True)
class EventRow:
    at: str
    kind: str
    actor: str
    text: str


@dataclass(frozen=True)
class IncidentPage:
    id: str
    title: str
    status: str
    is_open: bool
    estate: str
    estate_version: int | None
    failed: tuple[str, ...]
    rollout: str
    declared_at: str
    declared_by: str
    closed_at: str
    as_of: str
    step_time: str
    items_down: int
    items_restored: int
    tiers: tuple[TierDown, ...]
    assets_down: int
    continuity: tuple[ContinuityRow, ...]
    steps: tuple[StepRow, ...]
    clocks: tuple[ClockRow, ...]
    warnings: tuple[str, ...]
    timeline: tuple[EventRow, ...]
    ready: tuple[str, ...]
    """Items still down that wait for nothing: what can be marked restored now."""
    may_write: bool
    """The caller may mark restored and close (an operator, while the incident is open)."""


def incident_page(engine: Engine, incident_id: str, caller: Caller, now: datetime) -> IncidentPage:
    """An incident as the API's document tells it (``GET /v1/incidents/ID``), laid out for the page."""
    incident = incident_service.get(engine, incident_id)
    doc = incident_service.incident_document(incident, now)
    restored = {i.id for i in doc.items if i.restored_at is not None}
    names = {i.id: i.name for i in doc.items}
    tiers = []
    for number in TIERS:
        services = tuple(
            DownService(s.id, names[s.id], s.id in restored) for s in doc.impact.services_down if s.tier == number
        )
        if services:
            tiers.append(TierDown(tier(number), services))
    by_id = {i.id: i for i in doc.items}
    steps = []
    for step in doc.steps:
        shown = step.restore[:SHOWN_PER_STEP]
        steps.append(
            StepRow(
                step=step.step,
                items=tuple(
                    StepItem(
                        id=item_id,
                        name=by_id[item_id].name,
                        is_service=by_id[item_id].tier is not None,
                        restored_at=when(at) if (at := by_id[item_id].restored_at) is not None else "",
                        waiting_for=tuple(by_id[item_id].waiting_for),
                        together=_restored_together(incident, item_id) if by_id[item_id].waiting_for else (),
                        takes=f"{humanize_duration(by_id[item_id].takes)}, {by_id[item_id].basis}",
                    )
                    for item_id in shown
                ),
                more=len(step.restore) - len(shown),
                restored=len(step.restored),
                total=len(step.restore),
            )
        )
    is_open = doc.status == "open"
    return IncidentPage(
        id=doc.id,
        title=doc.title,
        status=doc.status,
        is_open=is_open,
        estate=doc.estate,
        estate_version=doc.estate_version,
        failed=tuple(doc.failed),
        rollout=doc.rollout or "",
        declared_at=when(doc.declared_at),
        declared_by=doc.declared_by,
        closed_at=when(doc.closed_at) if doc.closed_at is not None else "",
        as_of=when(doc.as_of),
        step_time=humanize_duration(doc.step_seconds),
        items_down=len(doc.items),
        items_restored=len(restored),
        tiers=tuple(tiers),
        assets_down=len(doc.impact.assets_down),
        continuity=tuple(
            ContinuityRow(
                service=c.service,
                name=c.name,
                tier=tier(c.tier),
                rto=duration(c.rto),
                plan=c.plan or "",
                contacts=tuple(c.contacts),
                is_restored=c.service in restored,
            )
            for c in doc.continuity
        ),
        steps=tuple(steps),
        clocks=tuple(
            ClockRow(
                service=c.service,
                name=c.name,
                tier=tier(c.tier),
                rto=duration(c.rto, "none"),
                status=c.status,
                deadline=when(c.deadline) if c.deadline is not None else "",
                countdown=_countdown(c.status, c.remaining, c.estimated, c.time_to_restore),
                expected_at=when(c.expected_at) if c.expected_at is not None else "",
                warning=c.warning or "",
                basis=c.basis or "",
            )
            for c in doc.clocks
        ),
        warnings=tuple(doc.warnings),
        timeline=tuple(EventRow(when(e.at), e.kind, e.actor, e.text) for e in doc.timeline),
        ready=tuple(i.id for i in doc.items if i.restored_at is None and not i.waiting_for),
        may_write=is_open and may(caller, Role.OPERATOR),
    )


def _restored_together(incident: Incident, item_id: str) -> tuple[str, ...]:
    """The items still down of ``item_id``'s step that it waits for, directly or through each other, when
    marking them all at once would be accepted (items that need each other); () otherwise."""
    items = incident.item_by_id
    step = items[item_id].step
    still_down = {i.id for i in incident.still_down}
    found, todo = {item_id}, [item_id]
    while todo:
        item = items[todo.pop()]
        for other in (*item.needs, *(m for g in item.groups for m in g.members)):
            if other in still_down and other not in found and items[other].step == step:
                found.add(other)
                todo.append(other)
    if len(found) == 1 or any(waiting_for(incident, other, also_restored=found) for other in found):
        return ()
    return tuple(sorted(found))


def _countdown(status: str, remaining: int | None, estimated: int | None, took: int | None) -> str:
    if status == "not_restored_at_close":
        # Frozen at the close: where it stood then, not a countdown to a deadline nobody works to any more.
        if remaining is None:
            return "not restored at close"
        if remaining < 0:
            return f"not restored at close · {humanize_duration(-remaining)} past its RTO"
        return f"not restored at close · {humanize_duration(remaining)} of its RTO was left"
    if status in ("met", "missed"):
        return f"{status}: back after {humanize_duration(took or 0)}"
    if status == "breached":
        return f"breached {humanize_duration(-(remaining or 0))} ago"
    to_restore = f"about {humanize_duration(estimated or 0)} to restore"
    if status == "no_rto":
        return f"no RTO · {to_restore}"
    return f"{humanize_duration(remaining or 0)} left · {to_restore}"
