"""Repository functions for observations: what was seen about an asset — heartbeats, install and rollback
results, health checks, restore points (``observations``), appended to only.

Heartbeats arrive by the hundred in a batch and the table grows without bound, so a batch can be written
through COPY (:func:`add_observations_by_copy`) and the lag readers probe an index per asset instead of
grouping every heartbeat. Like every resource module of the store, these take a Session, flush and never
commit.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.core.rollout.state import RolloutPhase
from ringfence.store.records import Observation, ObservationKind
from ringfence.store.rows import chunks, record_of, where_in
from ringfence.store.tables import ObservationRow, RolloutAssetRow, RolloutRow


def add_observations(session: Session, observations: Iterable[Observation]) -> int:
    """Store observations (their ``id`` is ignored and assigned); returns how many were stored."""
    rows = [
        {
            "rollout_id": obs.rollout_id,
            "asset_id": obs.asset_id,
            "at": obs.at,
            "kind": ObservationKind(obs.kind).value,
            "status": obs.status,
            "detail": dict(obs.detail),
        }
        for obs in observations
    ]
    for chunk in chunks(rows):
        session.execute(sa.insert(cast(sa.Table, ObservationRow.__table__)), chunk)
    return len(rows)


def list_observations(
    session: Session,
    *,
    since: datetime,
    until: datetime | None = None,
    rollout_id: str | None = None,
    asset_ids: Collection[str] | None = None,
    kinds: Collection[ObservationKind] | None = None,
) -> list[Observation]:
    """Observations at or after ``since`` (and before ``until``), oldest first, optionally narrowed."""
    stmt = sa.select(ObservationRow).where(ObservationRow.at >= since).order_by(ObservationRow.at, ObservationRow.id)
    if until is not None:
        stmt = stmt.where(ObservationRow.at < until)
    if rollout_id is not None:
        stmt = stmt.where(ObservationRow.rollout_id == rollout_id)
    stmt = where_in(where_in(stmt, ObservationRow.asset_id, asset_ids), ObservationRow.kind, kinds, ObservationKind)
    return [_observation(row) for row in session.scalars(stmt)]


def _observation(row: ObservationRow) -> Observation:
    return record_of(Observation, row, kind=ObservationKind(row.kind))


def add_observations_by_copy(session: Session, observations: Sequence[Observation]) -> None:
    """Store observations as :func:`add_observations` does; on PostgreSQL through ``COPY``.

    COPY, the batch written as one block of text, is several times faster than executemany, and than
    writing row by row, for a batch of hundreds of heartbeats.
    """
    if session.get_bind().dialect.name != "postgresql":
        add_observations(session, observations)
        return
    connection: Any = session.connection().connection.driver_connection
    columns = "rollout_id, asset_id, at, kind, status, detail"
    lines = []
    times: dict[datetime, str] = {}  # most of a batch shares the time it was received
    for obs in observations:
        detail = _copy_text(json.dumps(dict(obs.detail))) if obs.detail else "{}"
        rollout = _copy_text(obs.rollout_id) if obs.rollout_id is not None else "\\N"
        at = times.get(obs.at)
        if at is None:
            at = times[obs.at] = obs.at.isoformat()
        # kind and status are names from closed sets, with nothing to escape.
        lines.append("\t".join((rollout, _copy_text(obs.asset_id), at, obs.kind.value, obs.status, detail)))
    lines.append("")
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {ObservationRow.__tablename__} ({columns}) FROM STDIN") as copy,
    ):
        copy.write("\n".join(lines))


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format (backslash, tab, newline and return escaped)."""
    return value.translate(_COPY_ESCAPES)


def newest_heartbeat_at(session: Session) -> datetime | None:
    """When the newest heartbeat from any asset was sent; None before the first."""
    return session.scalar(
        sa.select(sa.func.max(ObservationRow.at)).where(ObservationRow.kind == ObservationKind.HEARTBEAT.value)
    )


def oldest_latest_heartbeat_at(session: Session, phases: Collection[RolloutPhase]) -> datetime | None:
    """Over the targets of rollouts in ``phases`` that have sent a heartbeat: the oldest of their latest ones."""
    # One index probe per asset of such a rollout (the newest heartbeat, from the end of its (asset_id, at)
    # entries), not a grouping of every heartbeat those assets ever sent: the table grows without bound.
    latest = (
        sa.select(sa.func.max(ObservationRow.at))
        .where(
            ObservationRow.asset_id == RolloutAssetRow.asset_id,
            ObservationRow.kind == ObservationKind.HEARTBEAT.value,
        )
        .correlate(RolloutAssetRow)
        .scalar_subquery()
    )
    return session.scalar(
        sa.select(sa.func.min(latest))
        .select_from(RolloutAssetRow)
        .join(RolloutRow, RolloutRow.id == RolloutAssetRow.rollout_id)
        .where(RolloutRow.phase.in_([RolloutPhase(p).value for p in phases]))
    )


__all__ = [
    "add_observations",
    "add_observations_by_copy",
    "list_observations",
    "newest_heartbeat_at",
    "oldest_latest_heartbeat_at",
]
