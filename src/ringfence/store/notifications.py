"""Repository functions for notifications: the outbox of deliveries, the cursor on the audit log, RTO clocks seen.

The notifier (``ringfence.service.notifications``) reads the audit log after its cursor and enqueues one
delivery per (event, channel) in the transaction that moves the cursor on, so an event is enqueued exactly
once, whether the process dies before, during or after. Sending happens outside any transaction: a delivery
is *claimed* (``sending``, due again after a lease) before it is sent, and its attempt recorded after, so a
notifier that dies mid-send leaves a delivery that is tried again when its lease runs out (at least once: a
message may, rarely, arrive twice; it is never lost). Like every resource module of the store, these take a
Session, flush and never commit.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ringfence.store.audit import audit_anchor
from ringfence.store.rows import record_of
from ringfence.store.tables import NotificationClockRow, NotificationCursorRow, NotificationDeliveryRow

AUDIT_CURSOR = "audit"
"""The name of the notifier's cursor on the audit log."""

DUE_STATUSES = ("pending", "failed", "sending")
"""A delivery in one of these, whose ``next_attempt_at`` has come, is due (``sending``: its sender died)."""


@dataclass(frozen=True)
class Delivery:
    """One message to one channel, and what became of it."""

    id: int
    event_key: str
    event: str
    channel: str
    subject: str
    title: str
    body: str
    urgent: bool
    status: str
    """``pending`` (never tried), ``sending`` (claimed), ``sent``, ``failed`` (tried again at ``next_attempt_at``),
    ``gave_up`` (every attempt failed)."""
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None


def _insert(session: Session, table: Any) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


# ------------------------------------------------------------------------------------------------ cursor


def lock_cursor(session: Session, *, at: datetime) -> int:
    """The audit cursor, locked until the transaction ends (so two notifiers never enqueue one entry twice).

    The first time (no cursor yet) it starts at the log's last entry: what happened before notifications
    were set up is not sent.
    """
    start = audit_anchor(session).seq
    stmt = _insert(session, NotificationCursorRow.__table__).values(name=AUDIT_CURSOR, seq=start, updated_at=at)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
    found = session.execute(
        sa.select(NotificationCursorRow.seq).where(NotificationCursorRow.name == AUDIT_CURSOR).with_for_update()
    ).scalar_one()
    return int(found)


def read_cursor(session: Session) -> int | None:
    """Where the audit cursor stands (None before the notifier first ran)."""
    found = session.execute(sa.select(NotificationCursorRow.seq).where(NotificationCursorRow.name == AUDIT_CURSOR))
    seq = found.scalar_one_or_none()
    return None if seq is None else int(seq)


def move_cursor(session: Session, seq: int, *, at: datetime) -> None:
    """Record that every audit entry up to ``seq`` has been enqueued."""
    session.execute(
        sa.update(NotificationCursorRow)
        .where(NotificationCursorRow.name == AUDIT_CURSOR)
        .values(seq=seq, updated_at=at)
        .execution_options(synchronize_session=False)
    )


# -------------------------------------------------------------------------------------------- deliveries


def enqueue_delivery(
    session: Session,
    *,
    event_key: str,
    event: str,
    channel: str,
    subject: str,
    title: str,
    body: str,
    urgent: bool,
    at: datetime,
) -> bool:
    """Store a message for ``channel``, due now; False when this event was already enqueued for it."""
    stmt = _insert(session, NotificationDeliveryRow.__table__).values(
        event_key=event_key[:300],
        event=event,
        channel=channel,
        subject=subject[:200],
        title=title,
        body=body,
        urgent=urgent,
        status="pending",
        attempts=0,
        last_error=None,
        created_at=at,
        next_attempt_at=at,
        sent_at=None,
    )
    result = session.execute(stmt.on_conflict_do_nothing(index_elements=["event_key", "channel"]))
    return cast(CursorResult[Any], result).rowcount == 1


def claim_due(session: Session, *, now: datetime, lease: timedelta, limit: int = 20) -> list[Delivery]:
    """Up to ``limit`` deliveries due at ``now``, oldest first, claimed (``sending``) until ``now + lease``.

    On PostgreSQL rows another notifier is claiming are skipped, not waited for.
    """
    table = NotificationDeliveryRow
    stmt = (
        sa.select(table.id)
        .where(table.status.in_(DUE_STATUSES), table.next_attempt_at <= now)
        .order_by(table.next_attempt_at, table.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list(session.scalars(stmt))
    if not ids:
        return []
    session.execute(
        sa.update(table)
        .where(table.id.in_(ids))
        .values(status="sending", next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    return deliveries_by_id(session, ids)


def record_attempt(
    session: Session, delivery_id: int, *, error: str | None, at: datetime, retry_at: datetime | None
) -> None:
    """Record one attempt: sent (``error`` None), failed and due again at ``retry_at``, or given up (no retry)."""
    values: dict[str, Any] = {"attempts": NotificationDeliveryRow.attempts + 1}
    if error is None:
        values |= {"status": "sent", "sent_at": at, "last_error": None, "next_attempt_at": at}
    elif retry_at is not None:
        values |= {"status": "failed", "last_error": error[:2000], "next_attempt_at": retry_at}
    else:
        values |= {"status": "gave_up", "last_error": error[:2000], "next_attempt_at": at}
    session.execute(
        sa.update(NotificationDeliveryRow)
        .where(NotificationDeliveryRow.id == delivery_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def release_claims(session: Session, delivery_ids: Collection[int], *, at: datetime) -> None:
    """Give claimed deliveries back unsent and due at ``at``, no attempt counted (their channel just failed)."""
    if not delivery_ids:
        return
    table = NotificationDeliveryRow
    session.execute(
        sa.update(table)
        .where(table.id.in_(list(delivery_ids)), table.status == "sending")
        .values(status=sa.case((table.attempts == 0, "pending"), else_="failed"), next_attempt_at=at)
        .execution_options(synchronize_session=False)
    )


def deliveries_by_id(session: Session, ids: Collection[int]) -> list[Delivery]:
    stmt = sa.select(NotificationDeliveryRow).where(NotificationDeliveryRow.id.in_(list(ids)))
    rows = session.scalars(stmt.order_by(NotificationDeliveryRow.id).execution_options(populate_existing=True))
    return [record_of(Delivery, row) for row in rows]


def list_deliveries(
    session: Session, *, limit: int = 100, status: str | None = None, event: str | None = None
) -> list[Delivery]:
    """The most recent deliveries first (with ``status`` or of ``event``, when given)."""
    stmt = sa.select(NotificationDeliveryRow).order_by(NotificationDeliveryRow.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(NotificationDeliveryRow.status == status)
    if event is not None:
        stmt = stmt.where(NotificationDeliveryRow.event == event)
    return [record_of(Delivery, row) for row in session.scalars(stmt.execution_options(populate_existing=True))]


# ------------------------------------------------------------------------------------------- RTO clocks


def clock_states(session: Session, incident_ids: Iterable[str]) -> dict[tuple[str, str], tuple[str, int]]:
    """(incident, service) → (the status last seen, how many times it changed), for these incidents."""
    wanted = list(incident_ids)
    if not wanted:
        return {}
    rows = session.execute(
        sa.select(
            NotificationClockRow.incident_id,
            NotificationClockRow.service,
            NotificationClockRow.status,
            NotificationClockRow.changes,
        ).where(NotificationClockRow.incident_id.in_(wanted))
    )
    return {(r.incident_id, r.service): (r.status, r.changes) for r in rows}


def save_clock_states(session: Session, states: Mapping[tuple[str, str], tuple[str, int]], *, at: datetime) -> None:
    """Store each (incident, service)'s status now and its count of changes."""
    if not states:
        return
    table = NotificationClockRow.__table__
    rows = [
        {"incident_id": i, "service": s, "status": status, "changes": changes, "updated_at": at}
        for (i, s), (status, changes) in states.items()
    ]
    stmt = _insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["incident_id", "service"],
        set_={"status": stmt.excluded.status, "changes": stmt.excluded.changes, "updated_at": stmt.excluded.updated_at},
    )
    session.execute(stmt, rows)


__all__ = [
    "AUDIT_CURSOR",
    "Delivery",
    "claim_due",
    "clock_states",
    "deliveries_by_id",
    "enqueue_delivery",
    "list_deliveries",
    "lock_cursor",
    "move_cursor",
    "read_cursor",
    "record_attempt",
    "release_claims",
    "save_clock_states",
]
