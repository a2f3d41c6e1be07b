"""The notifications page: the outbox's recent deliveries (what was sent, what failed and why, what is due again)
and the notifier this server runs. A failing channel never blocks a rollout; this is where it is shown."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from ringfence.service.notifications import Notifier, recent_deliveries
from ringfence.web.views.shared import when

DELIVERIES_SHOWN = 200
STATUSES = ("pending", "sending", "sent", "failed", "gave_up")
FAILING = frozenset({"failed", "gave_up"})


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    at: str
    event: str
    channel: str
    subject: str
    title: str
    status: str
    is_failing: bool
    attempts: int
    last_error: str
    next_attempt: str
    """When a failed delivery is tried again (``""`` unless it is)."""
    sent_at: str


@dataclass(frozen=True)
class ChannelFailing:
    channel: str
    error: str


@dataclass(frozen=True)
class NotifierState:
    running: bool
    channels: tuple[str, ...]
    last_turn: str
    sent: int
    failed: int
    last_error: str
    failing: tuple[ChannelFailing, ...]


@dataclass(frozen=True)
class NotificationsPage:
    notifier: NotifierState | None
    """None when this server runs no notifier (no notifications file)."""
    cursor: int | None
    rows: tuple[DeliveryRow, ...]
    status: str
    statuses: tuple[str, ...]
    failing: int
    """Deliveries shown that failed or were given up."""


def notifications_page(engine: Engine, notifier: Notifier | None, *, status: str) -> NotificationsPage:
    found, cursor = recent_deliveries(engine, limit=DELIVERIES_SHOWN, status=status or None)
    rows = tuple(
        DeliveryRow(
            id=d.id,
            at=when(d.created_at),
            event=d.event,
            channel=d.channel,
            subject=d.subject,
            title=d.title,
            status=d.status,
            is_failing=d.status in FAILING,
            attempts=d.attempts,
            last_error=d.last_error or "",
            next_attempt=when(d.next_attempt_at) if d.status == "failed" else "",
            sent_at=when(d.sent_at) if d.sent_at else "",
        )
        for d in found
    )
    state = None
    if notifier is not None:
        stats = notifier.stats
        state = NotifierState(
            running=notifier.is_running,
            channels=tuple(sorted(notifier.config.channels)),
            last_turn=when(stats.last_turn_at) if stats.last_turn_at else "not yet",
            sent=stats.sent,
            failed=stats.failed,
            last_error=stats.last_error or "",
            failing=tuple(ChannelFailing(c, e) for c, e in sorted(stats.channels_failing.items())),
        )
    return NotificationsPage(state, cursor, rows, status, STATUSES, sum(r.is_failing for r in rows))
