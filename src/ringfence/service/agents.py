"""The agent side of the service: directives (what an asset should do now) and heartbeats (what it did).

Agents pull. Nothing is pushed to an asset: the controller moves a ring's assets to ``applying`` (or a bad
release's assets to ``rolling_back``) in ``rollout_assets``, and each asset's agent, asking
``GET /v1/agents/{asset}/directive``, reads that as *install* (or *roll back*). The agent reports back through
``POST /v1/heartbeats``; the ``agent`` driver (``ringfence.drivers.agent``) turns those reports into operation
results and health for the controller's gates.

Directives
    :func:`decide_directive` is the whole rule, pure: from one rollout's phase and ring and one asset's ring
    and progress it says install, roll back or wait (with a sentence saying why, and a hint of when to ask
    again). An asset in several agent rollouts gets the most urgent one: a rollback before an install,
    an install before a wait, the oldest rollout first. Only rollouts whose driver is ``agent`` are
    considered: a rollout pushed by Ansible must never also be installed by the agent.

    An asset is told to *install* only once the controller has recorded its install as started
    (``applying``; the controller does that before it calls the driver), never while it is merely pending
    in the open ring: so every install an agent is ordered to do is one the controller waits for, records
    and can roll back, even when the rollout halts in the meantime.

    :class:`DirectiveBoard` answers fast, because thousands of agents ask every few seconds: each server
    worker keeps a snapshot of the active agent rollouts and their targets in memory. It re-reads the
    rollouts' versions (one small query) when they are older than ``ttl`` (1 s) for a *wait*, or older than
    ``confirm_ttl`` (0.25 s) for an *install* or *rollback*, so no asset is ordered to act on a rollout
    whose phase changed more than a quarter of a second ago. The targets' progress is read again when a
    version changed or the controller took a new decision (that is how a batch's installs are recorded as
    started, and a rollback's), and at least every ``max_age`` seconds (60 s): an agent told to install
    again after it reported is harmless (agents do an operation once per rollout). In the server a
    :class:`Refresher` thread keeps the snapshot (and the token table) fresh, so no request waits for
    the database.

Heartbeats
    :func:`record_heartbeats` stores a batch as observations in one transaction: every heartbeat as a
    ``heartbeat`` observation (``rollout_id`` left empty, so the rollout's own observations stay few), every
    install or rollback result as an ``install_result`` / ``rollback_result`` observation of its rollout.
    PostgreSQL takes the batch through ``COPY``; SQLite through ``executemany``. An agent token speaks only
    for its own asset: a batch naming any other asset is refused whole (403) and nothing of it is stored, as
    is a batch with an invalid item (422, with the item's field path). Results are audited (one entry per
    rollout per batch, actor = the token's name); plain heartbeats are telemetry and are not.

Tokens
    The server's :class:`~ringfence.service.tokens.TokenCache` (one per worker, shared with every other
    route) remembers who a token is, so the directive endpoint does not read ``api_tokens`` on every
    request; a revoked token stops working within two seconds all the same (it watches revocations).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.core.durations import humanize_duration
from ringfence.core.errors import InputError, PermissionDeniedError, Problem
from ringfence.core.gates import FailureSignal
from ringfence.core.rollout.record import StoredPlan
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.service.tokens import Caller, Role, TokenCache
from ringfence.store import repo
from ringfence.store.db import session_scope
from ringfence.store.records import JSONValue, Observation, ObservationKind
from ringfence.store.tables import DecisionRow, ObservationRow, RolloutAssetRow, RolloutRow

log = logging.getLogger("ringfence.agents")

AGENT_DRIVER = "agent"
"""The driver name of rollouts that agents pull."""

POLL_SOON = 5
"""Seconds an agent should wait before asking again when something may change for it soon."""
POLL_LATER = 15
"""… when its ring is two or more rings away, or the rollout waits for a person to approve or start it."""
POLL_IDLE = 30
"""… when no agent rollout includes the asset."""

MAX_FUTURE_SKEW = timedelta(minutes=2)
"""How far ahead of the server's clock a heartbeat's ``at`` may be (agents' clocks drift a little)."""

_ACTIVE_PHASES = tuple(p.value for p in RolloutPhase if not p.is_terminal)


class DirectiveAction(StrEnum):
    install = "install"
    rollback = "rollback"
    wait = "wait"


class ReportedOperation(StrEnum):
    """What an agent reports the result of (the directive's actions)."""

    install = "install"
    rollback = "rollback"


class HeartbeatStatus(StrEnum):
    ok = "ok"
    failed = "failed"


_URGENCY = {DirectiveAction.rollback: 0, DirectiveAction.install: 1, DirectiveAction.wait: 2}
_RESULT_KINDS = {
    ReportedOperation.install: ObservationKind.INSTALL_RESULT,
    ReportedOperation.rollback: ObservationKind.ROLLBACK_RESULT,
}


# ------------------------------------------------------------------------------------------ directives


@dataclass(frozen=True)
class AgentRollout:
    """What a directive needs to know of one rollout driven by agents."""

    id: str
    phase: RolloutPhase
    ring: int
    ring_count: int
    product: str
    version: str
    bake: int
    by_snapshot: bool
    """The update rolls back by snapshot: an asset installs only once its restore point is taken."""
    phase_since: datetime
    halt_reason: str | None
    state_version: int


@dataclass(frozen=True)
class AssetTarget:
    """One asset's place in one rollout: its ring and how far it got."""

    ring: int
    state: AssetState


@dataclass(frozen=True)
class Directive:
    """What an asset should do now, why, and when to ask again."""

    asset_id: str
    action: DirectiveAction
    reason: str
    retry_after: int
    rollout: str | None = None
    product: str | None = None
    version: str | None = None
    ring: int | None = None

    @property
    def is_actionable(self) -> bool:
        return self.action is not DirectiveAction.wait


def decide_directive(asset_id: str, rollout: AgentRollout, target: AssetTarget, now: datetime) -> Directive:
    """What ``asset_id`` should do now for ``rollout``, given where it is in it. Pure."""
    r, a, phase, state = rollout.ring, target.ring, rollout.phase, target.state
    release = f"{rollout.product} {rollout.version}"

    def act(action: DirectiveAction, reason: str) -> Directive:
        return Directive(asset_id, action, reason, 0, rollout.id, rollout.product, rollout.version, target.ring)

    def wait(reason: str, retry_after: int = POLL_SOON) -> Directive:
        return Directive(asset_id, DirectiveAction.wait, reason, retry_after, rollout.id, ring=target.ring)

    if state is AssetState.ROLLBACK_FAILED:
        # Whatever the rollout does next, the controller never rolls this asset back again.
        return wait(f"rolling back {release} failed here; a person must look at this asset", POLL_LATER)
    if phase is RolloutPhase.ROLLING_BACK:
        if state is AssetState.ROLLED_BACK:
            return wait(f"{release} was rolled back here; rollout {rollout.id} is rolling back the rest")
        if state is AssetState.ROLLING_BACK:
            why = f"rollout {rollout.id} is rolling back {release}"
            if rollout.halt_reason:
                why += f" ({rollout.halt_reason})"
            return act(DirectiveAction.rollback, why)
        if state in (AssetState.APPLIED, AssetState.FAILED):
            # Only once the controller has started this asset's rollback: it brings down members back first
            # and the rest as their groups' redundancy allows (rule 7), so not every asset goes at once.
            return wait(
                f"rollout {rollout.id} is rolling back {release}; the controller says when this asset's turn is"
            )
        if state is AssetState.APPLYING:
            # Rolled back once its install has finished, never in the middle (as reconcile does).
            return wait(f"rollout {rollout.id} is rolling back; report how the install of {release} ended")
        return wait(f"rollout {rollout.id} stopped before ring {a}; do not install {release}", POLL_LATER)

    if state is AssetState.SKIPPED:
        return wait(f"rollout {rollout.id} stopped before ring {a}; do not install {release}", POLL_LATER)
    if state is AssetState.RESTORE_POINT_FAILED:
        return wait(f"no verified restore point here, so rollout {rollout.id} will not install {release}", POLL_LATER)

    if phase is RolloutPhase.APPLYING and a == r:
        # Only once the controller has recorded this asset's install as started (``applying``, which also
        # means its restore point is verified when the update rolls back by snapshot): an install ordered
        # then is one the controller waits for and can roll back, even if the rollout halts meanwhile.
        if state is AssetState.APPLYING:
            return act(DirectiveAction.install, f"ring {r} of rollout {rollout.id} is open: install {release}")
        if state in (AssetState.PENDING, AssetState.RESTORE_POINT_TAKEN):
            return wait(f"ring {r} of rollout {rollout.id} is open; the controller is about to start this asset")

    if state in (AssetState.APPLIED, AssetState.FAILED, AssetState.APPLYING):
        done = "installed" if state is not AssetState.APPLYING else "installing"
        if phase is RolloutPhase.HALTED:
            return wait(f"{release} {done}; rollout {rollout.id} halted: {rollout.halt_reason or 'no reason given'}")
        if phase is RolloutPhase.PAUSED:
            return wait(f"{release} {done}; rollout {rollout.id} is paused until a person resumes it")
        return wait(f"{release} {done}; {_ring_progress(rollout, now)}")

    # Not updated yet.
    if phase is RolloutPhase.PENDING:
        return wait(f"rollout {rollout.id} of {release} has not been started", POLL_LATER)
    if phase is RolloutPhase.AWAITING_APPROVAL:
        return wait(f"rollout {rollout.id} of {release} is awaiting approval", POLL_LATER)
    if phase is RolloutPhase.HALTED:
        reason = rollout.halt_reason or "no reason given"
        return wait(f"rollout {rollout.id} halted before ring {a}: {reason}; do not install {release}", POLL_LATER)
    if phase is RolloutPhase.PAUSED:
        return wait(f"rollout {rollout.id} is paused; ring {a} waits until a person resumes it", POLL_LATER)
    if a <= r:
        # In the open ring but not ready (a restore point still being taken), or a straggler of an earlier one.
        return wait(f"{_ring_progress(rollout, now)}; this asset is not ready to install {release} yet")
    gate = f"ring {a} opens after ring {r} passes its gate" if a == r + 1 else f"ring {a} opens after ring {a - 1}"
    return wait(f"{gate}; {_ring_progress(rollout, now)}", POLL_SOON if a == r + 1 else POLL_LATER)


def _ring_progress(rollout: AgentRollout, now: datetime) -> str:
    r = rollout.ring
    phase = rollout.phase
    if phase is RolloutPhase.BAKING:
        until = rollout.phase_since + timedelta(seconds=rollout.bake)
        left = max(0.0, (until - now).total_seconds())
        return f"ring {r} is baking until {until.strftime('%H:%M:%S')}Z ({humanize_duration(left)} left)"
    if phase is RolloutPhase.JUDGING:
        return f"ring {r} is being judged"
    if phase is RolloutPhase.TAKING_RESTORE_POINTS:
        return f"ring {r} is taking restore points"
    if phase is RolloutPhase.APPLYING:
        return f"ring {r} is installing"
    return f"rollout {rollout.id} is {phase.value}"


def choose_directive(asset_id: str, entries: Sequence[tuple[AgentRollout, AssetTarget]], now: datetime) -> Directive:
    """The most urgent directive over every agent rollout that includes ``asset_id`` (oldest first)."""
    if not entries:
        return Directive(
            asset_id,
            DirectiveAction.wait,
            f"no rollout driven by agents includes asset '{asset_id}'",
            POLL_IDLE,
        )
    found = [decide_directive(asset_id, rollout, target, now) for rollout, target in entries]
    # min() keeps the first of equals: the oldest rollout wins a tie.
    return min(found, key=lambda d: _URGENCY[d.action])


@dataclass(frozen=True)
class _Snapshot:
    rollouts: tuple[AgentRollout, ...]
    targets: Mapping[str, tuple[tuple[int, AssetTarget], ...]]
    """Asset id → (index into ``rollouts``, its target) for each agent rollout that includes it."""
    versions: tuple[tuple[str, int, int], ...]
    """(rollout id, state version, last decision) of every active rollout: a change means reload."""
    loaded_at: float
    checked_at: float


class DirectiveBoard:
    """Answers directives from a per-process snapshot of the active agent rollouts (see the module docstring).

    ``ttl``: how old the rollouts' versions may be for a *wait*; ``confirm_ttl``: for an *install* or
    *rollback*; ``max_age``: how old the targets' progress may be while no rollout changed version.
    Thread-safe: the snapshot is replaced whole, never changed in place.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        ttl: float = 1.0,
        confirm_ttl: float = 0.25,
        max_age: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.ttl = ttl
        self.confirm_ttl = min(confirm_ttl, ttl)
        self.max_age = max_age
        self._monotonic = monotonic
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()
        self.reloads = 0
        self.checks = 0

    def answer_from_snapshot(self, asset_id: str, now: datetime) -> Directive | None:
        """The directive when the snapshot is fresh enough to give it; None when the database must be asked."""
        snapshot = self._snapshot
        if snapshot is None:
            return None
        age = self._monotonic() - snapshot.checked_at
        if age > self.ttl:
            return None
        found = choose_directive(asset_id, self._entries(snapshot, asset_id), now)
        if found.is_actionable and age > self.confirm_ttl:
            return None
        return found

    def directive(self, asset_id: str, now: datetime) -> Directive:
        """The directive for ``asset_id``, reading the database when the snapshot is too old for the answer."""
        snapshot = self._fresh_snapshot(self.ttl)
        found = choose_directive(asset_id, self._entries(snapshot, asset_id), now)
        if found.is_actionable and self._monotonic() - snapshot.checked_at > self.confirm_ttl:
            # An order to act is given only on rollout versions read a moment ago: never on a halted rollout.
            snapshot = self._fresh_snapshot(self.confirm_ttl)
            found = choose_directive(asset_id, self._entries(snapshot, asset_id), now)
        return found

    @staticmethod
    def _entries(snapshot: _Snapshot, asset_id: str) -> list[tuple[AgentRollout, AssetTarget]]:
        return [(snapshot.rollouts[i], target) for i, target in snapshot.targets.get(asset_id, ())]

    def refresh(self) -> None:
        """Read the rollouts' versions now (and the targets if they changed): what a :class:`Refresher` calls."""
        with self._lock:
            self._snapshot = self._refresh(self._snapshot, self._monotonic())

    def _fresh_snapshot(self, limit: float) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._monotonic() - snapshot.checked_at <= limit:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            now = self._monotonic()
            if snapshot is not None and now - snapshot.checked_at <= limit:
                return snapshot  # another thread refreshed it while this one waited
            self._snapshot = self._refresh(snapshot, now)
            return self._snapshot

    def _refresh(self, previous: _Snapshot | None, now: float) -> _Snapshot:
        self.checks += 1
        with session_scope(self.engine, readonly=True) as session:
            # A new decision is how targets' progress changes in a way a directive cares about (the
            # controller records a batch's installs as started with the decision that starts them).
            decided = (
                sa.select(sa.func.max(DecisionRow.seq)).where(DecisionRow.rollout_id == RolloutRow.id).scalar_subquery()
            )
            versions = tuple(
                (row.id, row.version, row.decided or 0)
                for row in session.execute(
                    sa.select(RolloutRow.id, RolloutRow.version, decided.label("decided"))
                    .where(RolloutRow.phase.in_(_ACTIVE_PHASES))
                    .order_by(RolloutRow.created_at, RolloutRow.id)
                )
            )
            if previous is not None and previous.versions == versions and now - previous.loaded_at <= self.max_age:
                return _Snapshot(previous.rollouts, previous.targets, versions, previous.loaded_at, now)
            self.reloads += 1
            return self._load(session, versions, now)

    @staticmethod
    def _load(session: Session, versions: tuple[tuple[str, int, int], ...], now: float) -> _Snapshot:
        rollouts: list[AgentRollout] = []
        targets: dict[str, list[tuple[int, AssetTarget]]] = {}
        ids = {rollout_id for rollout_id, _, _ in versions}
        for found in repo.list_rollouts(session, phases=[p for p in RolloutPhase if not p.is_terminal]):
            if found.id not in ids:
                continue
            plan = StoredPlan.from_document(found.plan, rollout_id=found.id)
            if plan.driver != AGENT_DRIVER:
                continue
            update = found.update_doc if isinstance(found.update_doc, Mapping) else {}
            index = len(rollouts)
            rollouts.append(
                AgentRollout(
                    id=found.id,
                    phase=found.state.phase,
                    ring=found.state.ring,
                    ring_count=plan.ring_count,
                    product=str(update.get("product", "")),
                    version=str(update.get("version", "")),
                    bake=plan.bake,
                    by_snapshot=update.get("rollback") == "snapshot",
                    phase_since=found.state.updated_at,
                    halt_reason=found.state.halt_reason,
                    state_version=found.state.version,
                )
            )
            rows = session.execute(
                sa.select(RolloutAssetRow.asset_id, RolloutAssetRow.ring, RolloutAssetRow.state).where(
                    RolloutAssetRow.rollout_id == found.id
                )
            )
            for asset_id, ring, state in rows:
                targets.setdefault(asset_id, []).append((index, AssetTarget(ring, AssetState(state))))
        frozen = {asset_id: tuple(entries) for asset_id, entries in targets.items()}
        return _Snapshot(tuple(rollouts), frozen, versions, now, now)


class Refresher:
    """Keeps a worker's :class:`DirectiveBoard` and :class:`TokenCache` fresh from a background thread.

    Requests then never wait for the database: the board's versions are read every ``interval`` seconds
    (well inside its ``confirm_ttl``), the token table looked at as its ``check`` says. Without a running
    refresher (or if it falls behind) requests refresh on demand, so nothing depends on it but speed.
    """

    def __init__(self, board: DirectiveBoard, tokens: TokenCache, *, interval: float = 0.1) -> None:
        self.board = board
        self.tokens = tokens
        self.interval = interval
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ringfence-agent-gate", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.board.refresh()
                self.tokens.refresh()
            except Exception as exc:  # the database may be restarting: requests fall back to reading it
                self.errors += 1
                log.warning("refreshing the agent gate failed: %s", exc)
                self._stop.wait(min(5.0, self.interval * 2**self.errors))
                continue
            self.errors = 0
            self._stop.wait(self.interval)


# ------------------------------------------------------------------------------------------ heartbeats


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
        known: set[str] = set()
        if named:
            known = set(session.scalars(sa.select(RolloutRow.id).where(RolloutRow.id.in_(named))))
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
        _insert_observations(session, rows)
        for rollout_id, outcomes in sorted(reported.items()):
            repo.append_audit(
                session,
                actor=caller.name,
                action="agent.report",
                subject=f"rollout:{rollout_id}",
                detail={key: sorted(assets) for key, assets in sorted(outcomes.items())},
                at=now,
            )
    results = sum(1 for beat in heartbeats if beat.result is not None)
    return HeartbeatReceipt(len(heartbeats), results)


def _insert_observations(session: Session, rows: Sequence[Observation]) -> None:
    if session.get_bind().dialect.name != "postgresql":
        repo.add_observations(session, rows)
        return
    # COPY, the batch written as one block of text: several times faster than executemany, and than
    # writing row by row, for a batch of hundreds of heartbeats.
    connection: Any = session.connection().connection.driver_connection
    columns = "rollout_id, asset_id, at, kind, status, detail"
    lines = []
    times: dict[datetime, str] = {}  # most of a batch shares the time it was received
    for obs in rows:
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


def utc_now() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "AGENT_DRIVER",
    "POLL_IDLE",
    "POLL_LATER",
    "POLL_SOON",
    "AgentRollout",
    "AssetTarget",
    "Directive",
    "DirectiveAction",
    "DirectiveBoard",
    "Heartbeat",
    "HeartbeatReceipt",
    "HeartbeatStatus",
    "Refresher",
    "ReportedOperation",
    "ReportedResult",
    "TokenCache",
    "check_heartbeats",
    "choose_directive",
    "decide_directive",
    "record_heartbeats",
    "utc_now",
]
