"""Heartbeats: what agents report — that an asset is alive and healthy, and how an install or rollback it
was told to do ended (``POST /v1/heartbeats``).

:func:`record_heartbeats` stores a batch as observations in one transaction: every heartbeat as a
``heartbeat`` observation (``rollout_id`` left empty, so the rollout's own observations stay few), every
install or rollback result as an ``install_result`` / ``rollback_result`` observation of its rollout.
PostgreSQL takes the batch through ``COPY``; SQLite through ``executemany``. An agent token speaks only for
its own asset: a batch naming any other asset is refused whole (403) and nothing of it is stored, as is a
batch with an invalid item (422, with the item's field path). Results are audited (one entry per rollout per
batch, actor = the token's name); plain heartbeats are telemetry and are not.

The ``agent`` driver (``ringfence.drivers.agent``) turns these observations into operation results and health
for the controller's gates; what an agent is told to do is ``ringfence.service.agents``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.engine import Engine

from ringfence.core.durations import humanize_duration
from ringfence.core.errors import InputError, PermissionDeniedError, Problem
from ringfence.core.gates import FailureSignal
from ringfence.service.tokens import Caller, Role
from ringfence.store.audit import append_audit
from ringfence.store.db import session_scope
from ringfence.store.observations import add_observations_by_copy
from ringfence.store.records import JSONValue, Observation, ObservationKind
from ringfence.store.rollouts import known_rollout_ids

MAX_FUTURE_SKEW = timedelta(minutes=2)
"""How far ahead of the server's clock a heartbeat's ``at`` may be (agents' clocks drift a little)."""


class ReportedOperation(StrEnum):
    """What an agent reports the result of (the directive's actions)."""

    install = "install"
    rollback = "rollback"


class HeartbeatStatus(StrEnum):
    ok = "ok"
    failed = "failed"


_RESULT_KINDS = {
    ReportedOperation.install: ObservationKind.INSTALL_RESULT,
    ReportedOperation.rollback: ObservationKind.ROLLBACK_RESULT,
}


@dataclass(frozen=True)
class ReportedResult:
    """How an install or rollback the agent was told to do ended."""

    operation: ReportedOperation
    succeeded: bool
    detail: str = ""


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat from (or on behalf of) an asset; ``at`` None means "when the server received it"."""

    asset_id: str
    status: HeartbeatStatus
    at: datetime | None = None
    signal: FailureSignal | None = None
    detail: str | None = None
    rollout_id: str | None = None
    result: ReportedResult | None = None


@dataclass(frozen=True)
class HeartbeatReceipt:
    """What a batch stored."""

    heartbeats: int
    results: int


def check_heartbeats(caller: Caller, heartbeats: Sequence[Heartbeat], now: datetime) -> None:
    """Refuse the batch unless ``caller`` may speak for every asset in it and every item holds.

    An agent token speaks only for its own asset; people need the operator role (a proxy in front of a
    vendor's agents). Raises PermissionDeniedError (403) or InputError (422, naming each bad item).
    """
    if caller.role is not Role.AGENT:
        caller.require(Role.OPERATOR)
    else:
        others = sorted({h.asset_id for h in heartbeats if h.asset_id != caller.asset_id})
        if others:
            shown = ", ".join(f"'{a}'" for a in others[:5]) + (
                f" and {len(others) - 5} more" if len(others) > 5 else ""
            )
            raise PermissionDeniedError(
                f"agent token '{caller.name}' speaks for '{caller.asset_id}' only, and this batch also reports "
                f"for {shown}; nothing of it was stored"
            )
    problems: list[Problem] = []
    latest = now + MAX_FUTURE_SKEW
    for index, beat in enumerate(heartbeats):
        if not beat.asset_id.strip():
            problems.append(Problem("names no asset", path=(index, "asset")))
        if beat.at is not None and beat.at > latest:
            problems.append(
                Problem(
                    f"{beat.at.isoformat()} is more than {humanize_duration(MAX_FUTURE_SKEW.total_seconds())} "
                    f"ahead of the server's clock ({now.isoformat()})",
                    path=(index, "at"),
                )
            )
        if beat.signal is not None and beat.status is HeartbeatStatus.ok:
            problems.append(Problem(f"an ok heartbeat carries no signal, got '{beat.signal}'", path=(index, "signal")))
        if beat.result is not None and beat.rollout_id is None:
            problems.append(Problem("a result must name the rollout it belongs to", path=(index, "rollout")))
    if problems:
        raise InputError(problems)


def record_heartbeats(
    engine: Engine, caller: Caller, heartbeats: Sequence[Heartbeat], now: datetime
) -> HeartbeatReceipt:
    """Check and store a batch of heartbeats and results in one transaction (see the module docstring)."""
    check_heartbeats(caller, heartbeats, now)
    if not heartbeats:
        return HeartbeatReceipt(0, 0)
    named = sorted({h.rollout_id for h in heartbeats if h.rollout_id is not None})
    with session_scope(engine) as session:
        known = known_rollout_ids(session, named)
        unknown = [
            Problem(f"there is no rollout '{beat.rollout_id}'", path=(index, "rollout"))
            for index, beat in enumerate(heartbeats)
            if beat.rollout_id is not None and beat.rollout_id not in known
        ]
        if unknown:
            raise InputError(unknown)
        rows: list[Observation] = []
        reported: dict[str, dict[str, list[str]]] = {}
        for beat in heartbeats:
            at = beat.at or now
            detail: dict[str, JSONValue] = {}
            if beat.signal is not None or beat.status is HeartbeatStatus.failed:
                detail["signal"] = (beat.signal or FailureSignal.service_check_failed).value
            if beat.detail:
                detail["detail"] = beat.detail
            if beat.rollout_id is not None:
                detail["rollout"] = beat.rollout_id
            # A heartbeat is the asset's, not the rollout's: keeping rollout_id empty keeps each rollout's
            # own observations (results, gate readings) few, however often its agents beat.
            rows.append(Observation(beat.asset_id, at, ObservationKind.HEARTBEAT, beat.status.value, detail))
            if beat.result is not None and beat.rollout_id is not None:
                status = "succeeded" if beat.result.succeeded else "failed"
                rows.append(
                    Observation(
                        beat.asset_id,
                        at,
                        _RESULT_KINDS[beat.result.operation],
                        status,
                        {"detail": beat.result.detail, "source": "agent", "reported_by": caller.name},
                        rollout_id=beat.rollout_id,
                    )
                )
                key = f"{beat.result.operation.value}_{status}"
                reported.setdefault(beat.rollout_id, {}).setdefault(key, []).append(beat.asset_id)
        add_observations_by_copy(session, rows)
        for rollout_id, outcomes in sorted(reported.items()):
            append_audit(
                session,
                actor=caller.name,
                action="agent.report",
                subject=f"rollout:{rollout_id}",
                detail={key: sorted(assets) for key, assets in sorted(outcomes.items())},
                at=now,
            )
    results = sum(1 for beat in heartbeats if beat.result is not None)
    return HeartbeatReceipt(len(heartbeats), results)


__all__ = [
    "MAX_FUTURE_SKEW",
    "Heartbeat",
    "HeartbeatReceipt",
    "HeartbeatStatus",
    "ReportedOperation",
    "ReportedResult",
    "check_heartbeats",
    "record_heartbeats",
]
