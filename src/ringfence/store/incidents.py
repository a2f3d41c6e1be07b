"""Repository functions for incidents.

How an incident is stored: ``incidents`` one row per incident, with ``snapshot`` — the down items in restore
order with what each waits for, and the continuity plans — so an incident never changes because the estate
did; ``incident_events`` its timeline, appended to only. Restored marks and the closing are read back from
the events; ``status`` and ``closed_at`` on the row are kept for listing.

Incidents are numbered under an advisory lock, so two declarers never pick one id; writers of one incident
take turns through :func:`get_incident` with ``for_update`` (``SELECT … FOR UPDATE``), so each sees the
other's marks. Like every resource module of the store, these take a Session, flush and never commit.

An item declared with a measured time to restore holds it in the snapshot (``takes`` seconds, ``measured_on`` the
test's day); an item without, or an incident stored before items had their own time, has neither key, and takes
the incident's ``step_seconds``, an estimate, as it always did.

The incident model (``ringfence.core.incident``) is imported where it is used: it brings numpy and scipy, which
the commands that only touch tokens, migrations or the audit log should not load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.core.errors import ConflictError, InputError, NotFoundError
from ringfence.store.db import LOCK_NAMESPACE_INCIDENT_IDS
from ringfence.store.records import JSONValue
from ringfence.store.rows import chunks, next_id, next_seq
from ringfence.store.tables import IncidentEventRow, IncidentRow

if TYPE_CHECKING:
    from ringfence.core.incident import DownItem, Incident, IncidentEvent, IncidentStatus, UnreadableIncident
    from ringfence.core.recovery import ContinuityAction

_UNREADABLE = (KeyError, IndexError, TypeError, ValueError, OverflowError, AttributeError)
"""What reading a stored incident that does not hold raises (a key missing from its snapshot, a value of the
wrong kind or out of range): such a record is marked unreadable, never let take the list of incidents down."""


def next_incident_id(session: Session) -> str:
    """The id for an incident about to be declared (``inc-000001``, …); the lock is held to the end."""
    return next_id(session, IncidentRow, "inc", LOCK_NAMESPACE_INCIDENT_IDS)


def add_incident(session: Session, incident: Incident) -> None:
    """Store a newly declared incident: its row, with the snapshot it was declared on, and its events."""
    if incident.estate_version_id is None:
        raise InputError(f"incident {incident.id} names no estate version: it is stored with the estate declared on")
    session.add(
        IncidentRow(
            id=incident.id,
            title=incident.title,
            estate_version_id=incident.estate_version_id,
            rollout_id=incident.rollout_id,
            failed=list(incident.failed),
            status=incident.status.value,
            step_seconds=incident.step_seconds,
            snapshot=_snapshot_document(incident),
            declared_at=incident.declared_at,
            declared_by=incident.declared_by,
            closed_at=incident.closed_at,
        )
    )
    session.flush()
    for event in incident.events:
        add_incident_event(session, incident.id, event)


def add_incident_event(session: Session, incident_id: str, event: IncidentEvent) -> int:
    """Append ``event`` to the incident's timeline, numbered after its last one; returns its number."""
    seq = next_seq(session, IncidentEventRow.seq, IncidentEventRow.incident_id, incident_id)
    session.add(
        IncidentEventRow(
            incident_id=incident_id,
            seq=seq,
            at=event.at,
            kind=event.kind.value,
            actor=event.actor,
            text=event.text,
            items=list(event.items),
        )
    )
    session.flush()
    return seq


def mark_incident_closed(session: Session, incident_id: str, *, at: datetime) -> None:
    """Record on the row (for listing) what the incident's closing event says."""
    from ringfence.core.incident import IncidentStatus

    session.execute(
        sa.update(IncidentRow)
        .where(IncidentRow.id == incident_id)
        .values(status=IncidentStatus.CLOSED.value, closed_at=at)
        .execution_options(synchronize_session=False)
    )


def set_change_freeze(session: Session, incident_id: str, *, on: bool) -> None:
    """Declare (``on``) or lift an incident's change freeze."""
    session.execute(
        sa.update(IncidentRow)
        .where(IncidentRow.id == incident_id)
        .values(change_freeze=on)
        .execution_options(synchronize_session=False)
    )


def open_change_freezes(session: Session) -> list[tuple[str, str]]:
    """``(id, title)`` of each open incident that declared a change freeze, by id."""
    rows = session.execute(
        sa.select(IncidentRow.id, IncidentRow.title)
        .where(IncidentRow.change_freeze.is_(True), IncidentRow.status == "open")
        .order_by(IncidentRow.id)
    )
    return [(str(i), str(t)) for i, t in rows]


def get_incident(session: Session, incident_id: str, *, for_update: bool = False) -> Incident:
    """The incident as stored now; ``for_update`` holds its row until the transaction ends (PostgreSQL)."""
    row = session.get(IncidentRow, incident_id, populate_existing=True, with_for_update=for_update)
    if row is None:
        raise NotFoundError(f"incident {incident_id} does not exist")
    from ringfence.core.incident import UnreadableIncident

    found = _readable_incident(row, _incident_events(session, [incident_id]).get(incident_id, []))
    if isinstance(found, UnreadableIncident):
        raise ConflictError(
            f"incident {incident_id} is stored in a form ringfence cannot read ({found.reason}): "
            "it is listed, but cannot be shown or changed"
        )
    return found


def incident_of_rollout(session: Session, rollout_id: str) -> Incident | None:
    """The incident ``rollout_id`` caused, if any (a rollout causes at most one)."""
    found = session.scalar(sa.select(IncidentRow.id).where(IncidentRow.rollout_id == rollout_id))
    return None if found is None else get_incident(session, found)


def list_incidents(session: Session, *, status: IncidentStatus | None = None) -> list[Incident | UnreadableIncident]:
    """Incidents (open or closed only, when asked), by id; one that cannot be read is listed as such."""
    stmt = sa.select(IncidentRow).order_by(IncidentRow.id).execution_options(populate_existing=True)
    if status is not None:
        stmt = stmt.where(IncidentRow.status == status.value)
    rows = session.scalars(stmt).all()
    events = _incident_events(session, [row.id for row in rows])
    return [_readable_incident(row, events.get(row.id, [])) for row in rows]


def _readable_incident(row: IncidentRow, events: Sequence[IncidentEventRow]) -> Incident | UnreadableIncident:
    """The incident of ``row``, or, when what is stored does not hold, what its row still says and why."""
    from ringfence.core.incident import IncidentStatus, UnreadableIncident

    try:
        return _incident(row, events)
    except _UNREADABLE as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        status = IncidentStatus.CLOSED if row.status == IncidentStatus.CLOSED.value else IncidentStatus.OPEN
        return UnreadableIncident(row.id, row.title, status, row.declared_at, row.closed_at, reason[:300])


def _incident_events(session: Session, incident_ids: Sequence[str]) -> dict[str, list[IncidentEventRow]]:
    found: dict[str, list[IncidentEventRow]] = {}
    for chunk in chunks(list(incident_ids)):
        stmt = (
            sa.select(IncidentEventRow)
            .where(IncidentEventRow.incident_id.in_(chunk))
            .order_by(IncidentEventRow.incident_id, IncidentEventRow.seq)
            .execution_options(populate_existing=True)
        )
        for row in session.scalars(stmt):
            found.setdefault(row.incident_id, []).append(row)
    return found


def _incident(row: IncidentRow, events: Sequence[IncidentEventRow]) -> Incident:
    from ringfence.core.incident import EventKind, Incident, IncidentEvent

    snapshot = cast(Mapping[str, Any], row.snapshot)
    return Incident(
        id=row.id,
        title=row.title,
        estate=str(snapshot["estate"]),
        failed=tuple(row.failed),
        declared_at=row.declared_at,
        declared_by=row.declared_by,
        items=tuple(_down_item(i) for i in snapshot["items"]),
        continuity=tuple(_continuity_action(c) for c in snapshot["continuity"]),
        events=tuple(
            IncidentEvent(e.at, EventKind(e.kind), e.actor, e.text, tuple(cast(list[str], e.items))) for e in events
        ),
        step_seconds=int(row.step_seconds),
        rollout_id=row.rollout_id,
        estate_version_id=row.estate_version_id,
    )


def _snapshot_document(incident: Incident) -> dict[str, JSONValue]:
    """What an incident was declared with, as the JSON of ``incidents.snapshot`` (read by :func:`_incident`)."""
    return {
        "estate": incident.estate,
        "items": [
            {
                "id": i.id,
                "kind": i.kind.value,
                "name": i.name,
                "step": i.step,
                "tier": i.tier,
                "rto": i.rto,
                "needs": list(i.needs),
                "groups": [{"k": g.k, "up": g.up, "members": list(g.members), "text": g.text} for g in i.groups],
                **_measured_document(i),
            }
            for i in incident.items
        ],
        "continuity": [
            {
                "service": c.service,
                "name": c.name,
                "tier": c.tier,
                "rto": c.rto,
                "plan": c.plan,
                "contacts": list(c.contacts),
            }
            for c in incident.continuity
        ],
    }


def _measured_document(item: DownItem) -> dict[str, JSONValue]:
    """An item's measured time to restore, as its snapshot keys; none for an estimate (the form stored before)."""
    if item.takes is None or item.measured_on is None:
        return {}
    return {"takes": item.takes, "measured_on": item.measured_on.isoformat()}


def _measured(doc: Mapping[str, Any]) -> tuple[int | None, date | None]:
    """``takes`` and ``measured_on`` of a stored item: both or neither, a time a restore test could have measured
    (1 s to the longest duration ringfence accepts) and a day; anything else is a record that does not hold."""
    from ringfence.core.incident import LONGEST_STEP

    if "takes" not in doc and "measured_on" not in doc:
        return None, None
    takes = _whole_or_none(doc["takes"])
    if takes is None or not 1 <= takes <= LONGEST_STEP:
        raise ValueError(f"a measured time to restore of {doc['takes']!r} s is not between 1 s and {LONGEST_STEP} s")
    day = doc["measured_on"]
    if not isinstance(day, str):
        raise ValueError(f"{day!r} is not the day of a restore test")
    return takes, date.fromisoformat(day)


def _down_item(doc: Mapping[str, Any]) -> DownItem:
    from ringfence.core.incident import DownItem, GroupNeed, ItemKind

    takes, measured_on = _measured(doc)
    return DownItem(
        id=doc["id"],
        kind=ItemKind(doc["kind"]),
        name=doc["name"],
        step=int(doc["step"]),
        tier=_whole_or_none(doc["tier"]),
        rto=_whole_or_none(doc["rto"]),
        needs=tuple(doc["needs"]),
        groups=tuple(GroupNeed(int(g["k"]), int(g["up"]), tuple(g["members"]), g["text"]) for g in doc["groups"]),
        takes=takes,
        measured_on=measured_on,
    )


def _continuity_action(doc: Mapping[str, Any]) -> ContinuityAction:
    from ringfence.core.recovery import ContinuityAction

    return ContinuityAction(
        doc["service"], doc["name"], int(doc["tier"]), _whole_or_none(doc["rto"]), doc["plan"], tuple(doc["contacts"])
    )


def _whole_or_none(value: Any) -> int | None:
    """A number of the snapshot as the int it was stored as: text or a fraction there is a record that does not
    hold, found when it is read (ValueError) rather than by the first clock that computes with it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


__all__ = [
    "add_incident",
    "add_incident_event",
    "get_incident",
    "incident_of_rollout",
    "list_incidents",
    "mark_incident_closed",
    "next_incident_id",
]
