"""Repository functions for what agents reported: operation results and heartbeats (``observations``).

The ``agent`` driver (``ringfence.drivers.agent``) reads these to poll a batch and to judge health; the agents
write them through ``POST /v1/heartbeats``. Like every module of the store, these take a Session and never
commit. Asset ids are read in chunks of :data:`CHUNK`, well under SQLite's limit on bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.core.rollout.state import RolloutPhase
from ringfence.store.records import ObservationKind
from ringfence.store.tables import ObservationRow, RolloutAssetRow, RolloutRow

CHUNK = 1000
"""Asset ids per ``IN (…)`` list."""

_ACTIVE_PHASES = tuple(p.value for p in RolloutPhase if not p.is_terminal)


@dataclass(frozen=True)
class ReportedResult:
    """An agent's latest report of one operation on its asset."""

    asset_id: str
    succeeded: bool
    detail: str = ""


@dataclass(frozen=True)
class FailedHeartbeat:
    """A heartbeat that reported failure: when, the signal it gave and its detail, as the agent sent them."""

    at: datetime
    signal: str | None
    detail: str | None


@dataclass(frozen=True)
class HeartbeatHistory:
    """What one asset's heartbeats say, as far as health needs (see :func:`heartbeat_histories`)."""

    installed_at: datetime | None = None
    """When its install by a rollout still under way succeeded (the latest such rollout), if any."""
    last_at: datetime | None = None
    """Its latest heartbeat within the window, if any."""
    failures: tuple[FailedHeartbeat, ...] = field(default=())
    """Its failed heartbeats from the earlier of the window's start and the install, oldest first."""


def latest_results(
    session: Session, rollout_id: str, kind: ObservationKind, asset_ids: Sequence[str]
) -> dict[str, ReportedResult]:
    """Each asset's latest ``kind`` report (``install_result`` or ``rollback_result``) in ``rollout_id``."""
    latest: dict[str, ReportedResult] = {}
    for chunk in _chunks(asset_ids):
        rows = session.execute(
            sa.select(ObservationRow.asset_id, ObservationRow.status, ObservationRow.detail)
            .where(
                ObservationRow.rollout_id == rollout_id,
                ObservationRow.kind == kind.value,
                ObservationRow.asset_id.in_(chunk),
            )
            .order_by(ObservationRow.at, ObservationRow.id)
        )
        for asset_id, status, detail in rows:
            note = detail.get("detail") if isinstance(detail, Mapping) else None
            latest[asset_id] = ReportedResult(asset_id, status == "succeeded", str(note or ""))
    return latest


def in_state_since(session: Session, rollout_id: str, state: str, asset_ids: Sequence[str]) -> dict[str, datetime]:
    """When each of ``asset_ids`` that is in ``state`` in ``rollout_id`` (``applying``…) was last written."""
    since: dict[str, datetime] = {}
    for chunk in _chunks(asset_ids):
        rows = session.execute(
            sa.select(RolloutAssetRow.asset_id, RolloutAssetRow.updated_at).where(
                RolloutAssetRow.rollout_id == rollout_id,
                RolloutAssetRow.state == state,
                RolloutAssetRow.asset_id.in_(chunk),
            )
        )
        for asset_id, at in rows:
            since[asset_id] = at
    return since


def heartbeat_histories(
    session: Session, asset_ids: Sequence[str], window_start: datetime
) -> dict[str, HeartbeatHistory]:
    """What the heartbeats of each of ``asset_ids`` say since ``window_start`` (and since its install).

    The install that counts is one of a rollout still under way (an asset updated by a finished rollout is a
    control like any other), at the time its first report says (the agent's own; the controller records the
    same result a little later). Read through the rollouts' own observations, which are few: heartbeats are
    not filed under a rollout.
    """
    found: dict[str, HeartbeatHistory] = {}
    active = list(session.scalars(sa.select(RolloutRow.id).where(RolloutRow.phase.in_(_ACTIVE_PHASES))))
    for chunk in _chunks(asset_ids):
        installed: dict[str, datetime] = {}
        for asset_id, at in session.execute(
            sa.select(ObservationRow.asset_id, sa.func.min(ObservationRow.at))
            .where(
                ObservationRow.rollout_id.in_(active),
                ObservationRow.kind == ObservationKind.INSTALL_RESULT.value,
                ObservationRow.status == "succeeded",
                ObservationRow.asset_id.in_(chunk),
            )
            .group_by(ObservationRow.asset_id, ObservationRow.rollout_id)
        ):
            if asset_id not in installed or at > installed[asset_id]:
                installed[asset_id] = at
        since = min([window_start, *installed.values()])
        beats = ObservationRow.kind == ObservationKind.HEARTBEAT.value
        last: dict[str, datetime] = {}
        for asset_id, at in session.execute(
            sa.select(ObservationRow.asset_id, sa.func.max(ObservationRow.at))
            .where(ObservationRow.asset_id.in_(chunk), beats, ObservationRow.at >= window_start)
            .group_by(ObservationRow.asset_id)
        ):
            last[asset_id] = at
        # Failed heartbeats are few: read them whole, from the earliest install on.
        failures: dict[str, list[FailedHeartbeat]] = {}
        for asset_id, at, detail in session.execute(
            sa.select(ObservationRow.asset_id, ObservationRow.at, ObservationRow.detail)
            .where(
                ObservationRow.asset_id.in_(chunk),
                beats,
                ObservationRow.status == "failed",
                ObservationRow.at >= since,
            )
            .order_by(ObservationRow.at, ObservationRow.id)
        ):
            info = detail if isinstance(detail, Mapping) else {}
            signal = info.get("signal")
            note = info.get("detail")
            failures.setdefault(asset_id, []).append(
                FailedHeartbeat(at, str(signal) if signal else None, str(note) if note else None)
            )
        for asset_id in chunk:
            found[asset_id] = HeartbeatHistory(
                installed.get(asset_id), last.get(asset_id), tuple(failures.get(asset_id, ()))
            )
    return found


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


__all__ = [
    "CHUNK",
    "FailedHeartbeat",
    "HeartbeatHistory",
    "ReportedResult",
    "heartbeat_histories",
    "in_state_since",
    "latest_results",
]
