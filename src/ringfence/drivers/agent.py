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

- in the server's controller loop, :meth:`AgentDriver.for_server` on the server's database
  (``heartbeat_timeout`` and ``install_timeout`` from the environment variables
  ``RINGFENCE_AGENT_HEARTBEAT_TIMEOUT`` and ``RINGFENCE_AGENT_INSTALL_TIMEOUT``);
- from the command line, ``ringfence rollout run ID --driver-option database=URL`` (default: the database
  ``ringfence`` uses, ``RINGFENCE_DATABASE_URL`` or the SQLite file under ``RINGFENCE_HOME``), with
  ``--driver-option heartbeat_timeout=2m`` and ``--driver-option install_timeout=1h``. Each is above zero
  and at most :data:`MAX_TIMEOUT` (7 days): longer, and a silent agent would hold its ring open for longer
  than anyone watches it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from ringfence.core.clock import utc_now
from ringfence.core.driver import Batch, DriverOption, DriverOptions, OperationKind, OperationResult
from ringfence.core.durations import humanize_duration
from ringfence.core.errors import DriverError
from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal
from ringfence.core.rollout.state import AssetState
from ringfence.core.update import Update
from ringfence.drivers.registry import DriverContext
from ringfence.store.agent_reports import FailedHeartbeat, heartbeat_histories, in_state_since, latest_results
from ringfence.store.db import make_engine, session_scope
from ringfence.store.records import ObservationKind

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
_TIMEOUT_EXPECTED = (
    f"expected a duration above zero and at most {humanize_duration(MAX_TIMEOUT)}, such as 30s, 5m or 1h"
)


def _timeout(name: str, help: str, default: str) -> DriverOption:
    # A silent agent must not hold a ring open for ever, nor for longer than anyone watches it.
    return DriverOption(
        name, help, "duration", default=default, minimum=1, maximum=MAX_TIMEOUT, expected=_TIMEOUT_EXPECTED
    )


_DATABASE = DriverOption("database", "the database the server and agents share (default: ringfence's own)")
_HEARTBEAT_TIMEOUT = _timeout("heartbeat_timeout", "an asset silent this long after its install has failed", "2m")
OPTIONS = DriverOptions(
    "agent",
    (
        _DATABASE,
        _HEARTBEAT_TIMEOUT,
        _timeout("install_timeout", "an asset with no result this long after its batch opened has failed", "1h"),
    ),
)
"""The options of the ``agent`` driver."""

HEARTBEAT_OPTIONS = DriverOptions("heartbeats", (_DATABASE, _HEARTBEAT_TIMEOUT))
"""The options of the ``heartbeats`` health source."""


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


class AgentHeartbeats:
    """The health source ``heartbeats``: agents' heartbeats turned into health (:func:`health_from_heartbeats`).

    The ``agent`` driver judges its rollouts by it; another driver's rollout may name it too (Ansible
    installs, the assets' agents say whether they are well).
    """

    name = "heartbeats"
    options = HEARTBEAT_OPTIONS

    def __init__(
        self, *, engine: Engine | None = None, clock: Callable[[], datetime] = utc_now, **options: str
    ) -> None:
        read = HEARTBEAT_OPTIONS.read(options)
        self.heartbeat_timeout = read.seconds("heartbeat_timeout")
        self.engine = engine if engine is not None else make_engine(read.text("database"))
        self.clock = clock

    @classmethod
    def from_context(cls, options: Mapping[str, str], context: DriverContext) -> AgentHeartbeats:
        given = dict(options)
        if "heartbeat_timeout" not in given and HEARTBEAT_TIMEOUT_ENV in context.environ:
            given["heartbeat_timeout"] = context.environ[HEARTBEAT_TIMEOUT_ENV]
        engine = context.engine if "database" not in given else None
        return cls(engine=engine, clock=utc_now, **given)

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        if not asset_ids:
            return {}
        now = self.clock()
        window_start = now - timedelta(seconds=self.heartbeat_timeout)
        with session_scope(self.engine, readonly=True) as session:
            histories = heartbeat_histories(session, asset_ids, window_start)
        health: dict[str, AssetHealth] = {}
        for asset_id, history in histories.items():
            summary = _summary(history.installed_at, history.last_at, history.failures)
            reading = health_from_heartbeats(asset_id, history.installed_at, summary, now, self.heartbeat_timeout)
            if reading.status is not AssetStatus.unknown:
                health[asset_id] = reading
        return health


class AgentDriver:
    """Rollouts pulled by ``ringfence agent`` processes (see the module docstring)."""

    name = "agent"

    options = OPTIONS

    def __init__(
        self, *, engine: Engine | None = None, clock: Callable[[], datetime] = utc_now, **options: str
    ) -> None:
        read = OPTIONS.read(options)
        self.heartbeat_timeout = read.seconds("heartbeat_timeout")
        self.install_timeout = read.seconds("install_timeout")
        self.engine = engine if engine is not None else make_engine(read.text("database"))
        self.clock = clock
        self.heartbeats = AgentHeartbeats(
            engine=self.engine, clock=self._now, heartbeat_timeout=f"{self.heartbeat_timeout}s"
        )
        """How this driver reads health: its assets' heartbeats."""
        self.opened: dict[tuple[str, OperationKind], datetime] = {}
        """(rollout, operation) → when this driver first opened it (for inspection; the database is the record)."""
        self._first_asked: dict[tuple[str, OperationKind, str], datetime] = {}
        """(rollout, operation, asset) → when ``poll`` first asked about an asset no row showed in flight."""

    def _now(self) -> datetime:
        return self.clock()  # through the attribute, so a clock set after building is the one heartbeats use

    @classmethod
    def from_context(cls, options: Mapping[str, str], context: DriverContext) -> AgentDriver:
        """Built on the context's database unless ``options`` name one (``--driver-option database=URL``)."""
        engine = context.engine if "database" not in options else None
        return cls(engine=engine, clock=utc_now, **options)

    @classmethod
    def for_server(cls, context: DriverContext) -> AgentDriver:
        """In the server's loop, on its database, with the timeouts of its environment
        (:data:`HEARTBEAT_TIMEOUT_ENV`, :data:`INSTALL_TIMEOUT_ENV`)."""
        given = {
            key: context.environ[env]
            for key, env in (("heartbeat_timeout", HEARTBEAT_TIMEOUT_ENV), ("install_timeout", INSTALL_TIMEOUT_ENV))
            if context.environ.get(env)
        }
        return cls(engine=context.engine, clock=utc_now, **given)

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
        with session_scope(self.engine, readonly=True) as session:
            reported = latest_results(session, batch.rollout_id, kind, batch.assets)
            waiting_since = in_state_since(session, batch.rollout_id, _IN_FLIGHT[batch.kind], batch.assets)
        latest = {
            asset_id: OperationResult(asset_id, "succeeded" if found.succeeded else "failed", found.detail)
            for asset_id, found in reported.items()
        }
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
        return self.heartbeats.observe(asset_ids)

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
    installed_at: datetime | None, last_at: datetime | None, failures: Sequence[FailedHeartbeat]
) -> HeartbeatSummary:
    last_failure = failures[-1] if failures else None
    last_failed = last_failure is not None and last_at is not None and last_failure.at >= last_at
    first = next((f for f in failures if installed_at is not None and f.at >= installed_at), None)
    return HeartbeatSummary(
        last_at=last_at,
        last_failed=last_failed,
        last_signal=_signal(last_failure.signal) if last_failed and last_failure else None,
        first_failure_at=first.at if first else None,
        first_failure_signal=_signal(first.signal) if first else None,
        first_failure_detail=first.detail if first else None,
    )


__all__ = [
    "HEARTBEAT_TIMEOUT_ENV",
    "INSTALL_TIMEOUT_ENV",
    "MAX_TIMEOUT",
    "NO_RESTORE_POINTS",
    "OPTIONS",
    "AgentDriver",
    "AgentHeartbeats",
    "HeartbeatSummary",
    "health_from_heartbeats",
]
