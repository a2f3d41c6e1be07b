"""The ``agent`` driver: the assets' own agents pull the update; this driver reads what they report.

Nothing is pushed. When the controller starts a batch it has already written the batch's assets as
``applying`` (or ``rolling_back``) in ``rollout_assets``; the directive endpoint reads exactly that and tells
each asset's agent to install (or roll back) the next time it asks (``ringfence.service.agents``). So
:meth:`AgentDriver.start` has nothing to send: it checks the operation is one agents can do and notes
when the batch opened. The agents' reports arrive through ``POST /v1/heartbeats`` as observations:

- :meth:`~AgentDriver.poll` reads each asset's latest ``install_result`` / ``rollback_result`` of the batch's
  rollout. An asset that has not reported ``install_timeout`` (default 1h) after its batch opened is
  reported failed ("no install result from the agent within 1h of the batch opening"; the same bound, and
  sentence, for a rollback): a silent agent must not hold a ring open for ever. The batch opened when the
  controller wrote the asset as applying (or rolling back); when that row no longer says so, when this
  driver was first asked about the asset. So every operation this driver is asked about ends, at the latest,
  ``install_timeout`` after it opened;
- :meth:`~AgentDriver.observe` turns heartbeats into health (:func:`health_from_heartbeats`): a heartbeat
  reporting failure since the install → failed with the signal it gave; no heartbeat for
  ``heartbeat_timeout`` (default 2m) after the install → failed, ``heartbeat_lost``; a recent ok heartbeat →
  healthy; nothing yet → unknown (which is never a pass). An asset not updated by a rollout under way
  (a gate's control group) is judged by its latest heartbeat alone, and a silent one is unknown, not failed.

Restore points are not something agents take: the driver declares it (:meth:`AgentDriver.always_refuses`),
so a rollout whose update rolls back by ``snapshot`` is refused when it is created on this driver (CLI exit 2,
API 422) with :data:`NO_RESTORE_POINTS`; use ``rollback: reinstall``. Should one reach the driver anyway (a
rollout stored before the check existed), ``start`` raises a DriverError with the same sentence and
``poll`` reports each asked restore point failed with it, so no asset waits for one and none is updated
without one.

Construction: the driver needs the database the server and agents share.

- in the server's controller loop, ``AgentDriver(engine=engine)`` — the routes register that factory with
  ``ringfence.service.runner`` (``heartbeat_timeout`` and ``install_timeout`` from the environment
  variables ``RINGFENCE_AGENT_HEARTBEAT_TIMEOUT`` and ``RINGFENCE_AGENT_INSTALL_TIMEOUT``);
- from the command line, ``ringfence rollout run ID --driver-option database=URL`` (default: the database
  ``ringfence`` uses, ``RINGFENCE_DATABASE_URL`` or the SQLite file under ``RINGFENCE_HOME``), with
  ``--driver-option heartbeat_timeout=2m`` and ``--driver-option install_timeout=1h``. Each is above zero
  and at most :data:`MAX_TIMEOUT` (7 days): longer, and a silent agent would hold its ring open for longer
  than anyone watches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ringfence.core.driver import Batch, OperationKind, OperationResult
from ringfence.core.durations import humanize_duration, parse_duration
from ringfence.core.errors import DriverError, InputError, Problem
from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.core.update import Update
from ringfence.store.db import make_engine, session_scope
from ringfence.store.records import ObservationKind
from ringfence.store.tables import ObservationRow, RolloutAssetRow, RolloutRow

HEARTBEAT_TIMEOUT_ENV = "RINGFENCE_AGENT_HEARTBEAT_TIMEOUT"
INSTALL_TIMEOUT_ENV = "RINGFENCE_AGENT_INSTALL_TIMEOUT"

NO_RESTORE_POINTS = "the agent driver cannot take restore points: agents reinstall; use rollback: reinstall"
"""Why a rollout that rolls back by snapshot cannot run on agents."""

MAX_TIMEOUT = 7 * 86400
"""The longest ``heartbeat_timeout`` or ``install_timeout``, in seconds."""

_RESULT_KIND = {
    OperationKind.apply: ObservationKind.INSTALL_RESULT,
    OperationKind.rollback: ObservationKind.ROLLBACK_RESULT,
}
_IN_FLIGHT = {OperationKind.apply: AssetState.APPLYING.value, OperationKind.rollback: AssetState.ROLLING_BACK.value}
_CHUNK = 1000  # asset ids per IN (…) list: well under SQLite's limit on bound parameters
_ACTIVE_PHASES = tuple(p.value for p in RolloutPhase if not p.is_terminal)


@dataclass(frozen=True)
class HeartbeatSummary:
    """What the heartbeats of one asset say, as far as health needs: the latest one and the first failure."""

    last_at: datetime | None = None
    last_failed: bool = False
    last_signal: FailureSignal | None = None
    first_failure_at: datetime | None = None
    """The earliest failed heartbeat since the install (only looked for when the asset is installed)."""
    first_failure_signal: FailureSignal | None = None
    first_failure_detail: str | None = None


def health_from_heartbeats(
    asset_id: str,
    installed_at: datetime | None,
    beats: HeartbeatSummary,
    now: datetime,
    timeout: float,
) -> AssetHealth:
    """An asset's health from its heartbeats (the rules are in the module docstring). Pure.

    ``beats.last_at`` may be None when the last heartbeat is older than the window that was read; the
    window always reaches back at least ``timeout``, so such an asset is silent either way.
    """
    if installed_at is None:
        recent = beats.last_at is not None and (now - beats.last_at).total_seconds() <= timeout
        if not recent:
            return AssetHealth(asset_id, AssetStatus.unknown)
        if beats.last_failed:
            return AssetHealth(asset_id, AssetStatus.failed, beats.last_signal or FailureSignal.service_check_failed)
        return AssetHealth(asset_id, AssetStatus.healthy)
    if beats.first_failure_at is not None:
        after = max(0.0, (beats.first_failure_at - installed_at).total_seconds())
        signal = beats.first_failure_signal or FailureSignal.service_check_failed
        return AssetHealth(asset_id, AssetStatus.failed, signal, after, beats.first_failure_detail)
    seen = beats.last_at if beats.last_at is not None and beats.last_at >= installed_at else None
    silent_since = seen or installed_at
    silence = (now - silent_since).total_seconds()
    if silence > timeout:
        # Lost: the agent died, or the asset with it. When it was last heard of is when it was lost.
        after = max(0.0, (silent_since - installed_at).total_seconds())
        detail = f"no heartbeat for {humanize_duration(silence)} (timeout {humanize_duration(timeout)})"
        return AssetHealth(asset_id, AssetStatus.failed, FailureSignal.heartbeat_lost, after, detail)
    if seen is None:
        return AssetHealth(asset_id, AssetStatus.unknown)  # installed, no heartbeat yet, not yet overdue
    return AssetHealth(asset_id, AssetStatus.healthy)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _seconds(key: str, value: str) -> int:
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = 0
    if not 0 < seconds <= MAX_TIMEOUT:
        expected = f"a duration above zero and at most {humanize_duration(MAX_TIMEOUT)}, such as 30s, 5m or 1h"
        raise InputError(
            [Problem(f"agent driver option {key}={value!r}: expected {expected}", path=("--driver-option",))]
        )
    return seconds


class AgentDriver:
    """Rollouts pulled by ``ringfence agent`` processes (see the module docstring)."""

    name = "agent"

    def __init__(
        self,
        *,
        database: str | None = None,
        heartbeat_timeout: str = "2m",
        install_timeout: str = "1h",
        engine: Engine | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.heartbeat_timeout = _seconds("heartbeat_timeout", heartbeat_timeout)
        self.install_timeout = _seconds("install_timeout", install_timeout)
        self.engine = engine if engine is not None else make_engine(database)
        self.clock = clock
        self.opened: dict[tuple[str, OperationKind], datetime] = {}
        """(rollout, operation) → when this driver first opened it (for inspection; the database is the record)."""
        self._first_asked: dict[tuple[str, OperationKind, str], datetime] = {}
        """(rollout, operation, asset) → when ``poll`` first asked about an asset no row showed in flight."""

    # ------------------------------------------------------------------------------ abilities

    @classmethod
    def always_refuses(cls, kind: OperationKind, update: Update) -> str | None:
        """Agents install and roll back; they never take restore points, whatever the options."""
        return NO_RESTORE_POINTS if kind is OperationKind.restore_point else None

    # ------------------------------------------------------------------------------ the protocol

    def start(self, batch: Batch) -> None:
        if batch.kind is OperationKind.restore_point:
            raise DriverError(f"rollout {batch.rollout_id}: {NO_RESTORE_POINTS}")
        # The controller wrote these assets as applying / rolling back before calling: that *is* the
        # directive the agents will read. Nothing to send.
        self.opened.setdefault((batch.rollout_id, batch.kind), self.clock())

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        if not batch.assets:
            return ()
        if batch.kind not in _RESULT_KIND:
            # Asked for restore points anyway: each fails now, so none is waited on for ever and no asset
            # is updated without one.
            return [OperationResult(a, "failed", NO_RESTORE_POINTS) for a in dict.fromkeys(batch.assets)]
        kind = _RESULT_KIND[batch.kind]
        now = self.clock()
        latest: dict[str, OperationResult] = {}
        waiting_since: dict[str, datetime] = {}
        with session_scope(self.engine, readonly=True) as session:
            for chunk in _chunks(batch.assets):
                rows = session.execute(
                    sa.select(ObservationRow.asset_id, ObservationRow.status, ObservationRow.detail)
                    .where(
                        ObservationRow.rollout_id == batch.rollout_id,
                        ObservationRow.kind == kind.value,
                        ObservationRow.asset_id.in_(chunk),
                    )
                    .order_by(ObservationRow.at, ObservationRow.id)
                )
                for asset_id, status, detail in rows:
                    note = detail.get("detail") if isinstance(detail, Mapping) else None
                    ok = status == "succeeded"
                    latest[asset_id] = OperationResult(asset_id, "succeeded" if ok else "failed", str(note or ""))
                opened = session.execute(
                    sa.select(RolloutAssetRow.asset_id, RolloutAssetRow.updated_at).where(
                        RolloutAssetRow.rollout_id == batch.rollout_id,
                        RolloutAssetRow.state == _IN_FLIGHT[batch.kind],
                        RolloutAssetRow.asset_id.in_(chunk),
                    )
                )
                for asset_id, opened_at in opened:
                    waiting_since[asset_id] = opened_at
        results: list[OperationResult] = []
        verb = "install" if batch.kind is OperationKind.apply else "rollback"
        for asset_id in batch.assets:
            found = latest.get(asset_id)
            if found is not None:
                results.append(found)
                continue
            since = waiting_since.get(asset_id)
            if since is None:
                # No row says when it opened (the asset was moved on meanwhile): from when this driver first
                # asked about it, so that no operation is waited on for ever either way.
                since = self._first_asked.setdefault((batch.rollout_id, batch.kind, asset_id), now)
            if (now - since).total_seconds() > self.install_timeout:
                detail = (
                    f"no {verb} result from the agent within {humanize_duration(self.install_timeout)} "
                    "of the batch opening"
                )
                results.append(OperationResult(asset_id, "failed", detail))
            else:
                results.append(OperationResult(asset_id, "running"))
        return results

    def cancel(self, batch: Batch) -> None:
        # An agent already installing finishes (an install is never cut in half); agents that have not
        # asked yet are told to wait once the controller has moved their assets on.
        return None

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        if not asset_ids:
            return {}
        now = self.clock()
        window_start = now - timedelta(seconds=self.heartbeat_timeout)
        health: dict[str, AssetHealth] = {}
        with session_scope(self.engine, readonly=True) as session:
            active = list(session.scalars(sa.select(RolloutRow.id).where(RolloutRow.phase.in_(_ACTIVE_PHASES))))
            for chunk in _chunks(asset_ids):
                # The install that counts is one of a rollout still under way (an asset updated by a
                # finished rollout is a control like any other), at the time its first report says (the
                # agent's own; the controller records the same result a little later). Read through the
                # rollouts' own observations, which are few: heartbeats are not filed under a rollout.
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
                failures: dict[str, list[tuple[datetime, str | None, str | None]]] = {}
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
                        (at, str(signal) if signal else None, str(note) if note else None)
                    )
                for asset_id in chunk:
                    summary = _summary(installed.get(asset_id), last.get(asset_id), failures.get(asset_id, []))
                    reading = health_from_heartbeats(
                        asset_id, installed.get(asset_id), summary, now, self.heartbeat_timeout
                    )
                    if reading.status is not AssetStatus.unknown:
                        health[asset_id] = reading
        return health

    def next_event_at(self) -> datetime | None:
        return None


def _signal(value: str | None) -> FailureSignal | None:
    if value is None:
        return None
    try:
        return FailureSignal(value)
    except ValueError:
        return FailureSignal.service_check_failed


def _summary(
    installed_at: datetime | None,
    last_at: datetime | None,
    failures: list[tuple[datetime, str | None, str | None]],
) -> HeartbeatSummary:
    last_failure = failures[-1] if failures else None
    last_failed = last_failure is not None and last_at is not None and last_failure[0] >= last_at
    first = next((f for f in failures if installed_at is not None and f[0] >= installed_at), None)
    return HeartbeatSummary(
        last_at=last_at,
        last_failed=last_failed,
        last_signal=_signal(last_failure[1]) if last_failed and last_failure else None,
        first_failure_at=first[0] if first else None,
        first_failure_signal=_signal(first[1]) if first else None,
        first_failure_detail=first[2] if first else None,
    )


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


__all__ = [
    "HEARTBEAT_TIMEOUT_ENV",
    "INSTALL_TIMEOUT_ENV",
    "MAX_TIMEOUT",
    "NO_RESTORE_POINTS",
    "AgentDriver",
    "HeartbeatSummary",
    "health_from_heartbeats",
]
