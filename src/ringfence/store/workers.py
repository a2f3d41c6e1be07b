"""Repository functions for workers' heartbeats and the driver options rollouts are driven with (0010).

A controller loop (``ringfence serve`` or ``ringfence worker``) writes its row at every turn: the drivers it
can run and the rollouts it drives. What a row says is believed until ``seen_at`` is older than the loop's own
staleness limit (:func:`live_workers`). Like every resource module of the store, these take a Session, flush and
never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.store.rollouts import require_rollout
from ringfence.store.rows import upsert
from ringfence.store.tables import RolloutDriverOptionsRow, WorkerRow

STALE_AFTER_MIN = 15.0
"""Seconds: a worker is believed alive while its last heartbeat is younger than max(3 × its interval, this)."""


@dataclass(frozen=True)
class WorkerBeat:
    """One worker as its last heartbeat described it."""

    id: str
    host: str
    pid: int
    role: str
    drivers: tuple[str, ...]
    driving: tuple[str, ...]
    interval: float
    started_at: datetime
    seen_at: datetime

    def alive_at(self, now: datetime) -> bool:
        """Whether the worker's last heartbeat is recent enough for it to be running still."""
        return now - self.seen_at <= timedelta(seconds=max(3 * self.interval, STALE_AFTER_MIN))


def put_worker(session: Session, beat: WorkerBeat) -> None:
    """Record ``beat`` as the worker's heartbeat, in place of the one before."""
    row: dict[str, Any] = {
        "id": beat.id,
        "host": beat.host,
        "pid": beat.pid,
        "role": beat.role,
        "drivers": list(beat.drivers),
        "driving": list(beat.driving),
        "interval": beat.interval,
        "started_at": beat.started_at,
        "seen_at": beat.seen_at,
    }
    columns = ["drivers", "driving", "interval", "seen_at"]
    session.execute(upsert(session, WorkerRow.__table__, ["id"], columns), row)


def delete_worker(session: Session, worker_id: str) -> None:
    """Forget a worker that stopped cleanly."""
    session.execute(sa.delete(WorkerRow).where(WorkerRow.id == worker_id))


def list_workers(session: Session) -> list[WorkerBeat]:
    """Every worker's last heartbeat, live or not, by id."""
    rows = session.execute(sa.select(WorkerRow).order_by(WorkerRow.id)).scalars()
    return [
        WorkerBeat(
            id=r.id,
            host=r.host,
            pid=r.pid,
            role=r.role,
            drivers=tuple(str(d) for d in r.drivers or ()),
            driving=tuple(str(d) for d in r.driving or ()),
            interval=float(r.interval),
            started_at=r.started_at,
            seen_at=r.seen_at,
        )
        for r in rows
    ]


def live_workers(session: Session, now: datetime) -> list[WorkerBeat]:
    """The workers whose last heartbeat says they still run (see :meth:`WorkerBeat.alive_at`)."""
    return [w for w in list_workers(session) if w.alive_at(now)]


def prune_workers(session: Session, before: datetime) -> int:
    """Forget workers silent since before ``before`` (killed ones leave their row behind); how many."""
    found = session.execute(sa.delete(WorkerRow).where(WorkerRow.seen_at < before))
    return int(getattr(found, "rowcount", 0) or 0)


def put_driver_options(
    session: Session, rollout_id: str, driver: str, options: Mapping[str, str], *, at: datetime
) -> None:
    """Keep ``options`` as what ``rollout_id``'s driver is built with, in place of any kept before."""
    require_rollout(session, rollout_id)
    row = {"rollout_id": rollout_id, "driver": driver, "options": dict(options), "updated_at": at}
    session.execute(
        upsert(session, RolloutDriverOptionsRow.__table__, ["rollout_id"], ["driver", "options", "updated_at"]), row
    )


def put_health_options(
    session: Session, rollout_id: str, driver: str, options: Mapping[str, str], *, at: datetime
) -> None:
    """Keep ``options`` as what ``rollout_id``'s health source is built with, leaving its driver options be."""
    require_rollout(session, rollout_id)
    row = {"rollout_id": rollout_id, "driver": driver, "options": {}, "health_options": dict(options), "updated_at": at}
    session.execute(
        upsert(session, RolloutDriverOptionsRow.__table__, ["rollout_id"], ["health_options", "updated_at"]), row
    )


def get_rollout_options(session: Session, rollout_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """The driver options and the health-source options kept for ``rollout_id`` (each empty when none were given)."""
    found = session.execute(
        sa.select(RolloutDriverOptionsRow.options, RolloutDriverOptionsRow.health_options).where(
            RolloutDriverOptionsRow.rollout_id == rollout_id
        )
    ).first()
    if found is None:
        return {}, {}
    return _texts(found.options), _texts(found.health_options)


def get_driver_options(session: Session, rollout_id: str) -> dict[str, str]:
    """The driver options kept for ``rollout_id`` (empty when none were given)."""
    return get_rollout_options(session, rollout_id)[0]


def get_health_options(session: Session, rollout_id: str) -> dict[str, str]:
    """The health-source options kept for ``rollout_id`` (empty when none were given)."""
    return get_rollout_options(session, rollout_id)[1]


def _texts(stored: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}


__all__ = [
    "STALE_AFTER_MIN",
    "WorkerBeat",
    "delete_worker",
    "get_driver_options",
    "get_health_options",
    "get_rollout_options",
    "list_workers",
    "live_workers",
    "prune_workers",
    "put_driver_options",
    "put_health_options",
    "put_worker",
]
