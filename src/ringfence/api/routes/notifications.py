"""``/v1/notifications``: the recent deliveries (each attempt's outcome), and the notifier run by this server.

The notifier (``ringfence.service.notifications``) runs in the server when a notifications file is given
(``Settings.notifications``, else ``RINGFENCE_NOTIFICATIONS``; ``ringfence serve --notifications FILE``). A file
that does not hold stops the server's start, naming file, line and field.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict

from ringfence.api.deps import EngineDep, Viewer
from ringfence.core.notification import NotificationEvent
from ringfence.files.notifications_config import NOTIFICATIONS_ENV, load_notifications_config
from ringfence.service.notifications import Notifier, recent_deliveries

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

MAX_PAGE = 500

DeliveryStatus = Literal["pending", "sending", "sent", "failed", "gave_up"]


class DeliveryOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    event: str
    event_key: str
    """``audit:SEQ`` (the audit entry that is the event) or ``rto:INCIDENT:SERVICE:STATUS:N``."""
    channel: str
    subject: str
    title: str
    body: str
    status: DeliveryStatus
    """``pending``, ``sending``, ``sent``, ``failed`` (tried again at ``next_attempt_at``) or ``gave_up``."""
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None


class NotifierOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    running: bool
    last_turn_at: datetime | None
    sent: int
    failed: int
    last_error: str | None
    channels: list[str]
    channels_failing: dict[str, str]
    """Channel → the error of its last attempt, while that attempt failed."""


class NotificationsOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    notifier: NotifierOut | None
    """None when this server runs no notifier (no notifications file)."""
    cursor: int | None
    """The last audit entry the notifier has read for events (None before it first ran)."""
    deliveries: list[DeliveryOut]
    """Newest first."""


@router.get("", response_model=NotificationsOut, summary="Recent notification deliveries and the notifier")
def list_notifications(
    caller: Viewer,
    engine: EngineDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many deliveries.")] = 100,
    status: Annotated[DeliveryStatus | None, Query(description="Only deliveries in this status.")] = None,
    event: Annotated[NotificationEvent | None, Query(description="Only deliveries of this event.")] = None,
) -> NotificationsOut:
    """Each delivery (one message to one channel) with its status, attempts and last error, newest first."""
    found, cursor = recent_deliveries(engine, limit=limit, status=status, event=None if event is None else event.value)
    notifier: Notifier | None = getattr(request.app.state, "notifier", None)
    about = None
    if notifier is not None:
        stats = notifier.stats
        about = NotifierOut(
            running=notifier.is_running,
            last_turn_at=stats.last_turn_at,
            sent=stats.sent,
            failed=stats.failed,
            last_error=stats.last_error,
            channels=sorted(notifier.config.channels),
            channels_failing=dict(stats.channels_failing),
        )
    return NotificationsOut(
        notifier=about,
        cursor=cursor,
        deliveries=[DeliveryOut.model_validate(d, from_attributes=True) for d in found],
    )


def setup(app: FastAPI) -> None:
    """Run the notifier in this server while it is up, when a notifications file is given."""
    settings = app.state.settings
    path = settings.notifications or os.environ.get(NOTIFICATIONS_ENV) or None
    if not path:
        return
    config = load_notifications_config(path)  # a file that does not hold stops the start: file, line, field
    notifier = Notifier(app.state.engine, config, interval=settings.notification_interval)
    app.state.notifier = notifier

    async def start_notifier(app: FastAPI) -> None:
        notifier.start()

    async def stop_notifier(app: FastAPI) -> None:
        await asyncio.to_thread(notifier.stop)

    app.state.startup_hooks.append(start_notifier)
    app.state.shutdown_hooks.append(stop_notifier)
