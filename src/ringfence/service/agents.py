"""The agent side of the service: directives (what an asset should do now), answered fast.

Agents pull. Nothing is pushed to an asset: the controller moves a ring's assets to ``applying`` (or a bad
release's assets to ``rolling_back``) in ``rollout_assets``, and each asset's agent, asking
``GET /v1/agents/{asset}/directive``, reads that as *install* (or *roll back*). The rule itself is pure and
lives in the core (:mod:`ringfence.core.rollout.directive`); the agent reports back through
``POST /v1/heartbeats`` (:mod:`ringfence.service.heartbeats`). Only rollouts whose driver is ``agent`` are
considered: a rollout pushed by Ansible must never also be installed by the agent. And an asset is answered
only for rollouts planned on the estate of record that holds it (its estate's current version): a rollout on a
shadow estate, on a proposal, or on a version since replaced, never tells an agent to act
(:mod:`ringfence.service.estates`).

:class:`DirectiveBoard` answers fast, because thousands of agents ask every few seconds: each server worker
keeps a snapshot of the active agent rollouts and their targets in memory. It re-reads the rollouts' versions
(one small query) when they are older than ``ttl`` (1 s) for a *wait*, or older than ``confirm_ttl`` (0.25 s)
for an *install* or *rollback*, so no asset is ordered to act on a rollout whose phase changed more than a
quarter of a second ago. The targets' progress is read again when a version changed, a version of an estate
became current (its record mark), or the controller took a new decision (that is how a batch's installs are
recorded as started, and a rollback's), and at least every ``max_age`` seconds (60 s): an agent told to
install again after it reported is harmless (agents do an operation once per rollout). In the server a
:class:`Refresher` thread keeps the snapshot (and the token table) fresh, so no request waits for the
database.

Tokens
    The server's :class:`~ringfence.service.tokens.TokenCache` (one per worker, shared with every other
    route) remembers who a token is, so the directive endpoint does not read ``api_tokens`` on every
    request; a revoked token stops working within two seconds all the same (it watches revocations).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.core.rollout.directive import AgentRollout, AssetTarget, Directive, choose_directive
from ringfence.core.rollout.record import StoredPlan
from ringfence.core.rollout.state import RolloutPhase
from ringfence.service.tokens import TokenCache
from ringfence.store.db import session_scope
from ringfence.store.estates import record_mark, targets_of_record
from ringfence.store.rollouts import list_rollouts, rollout_versions

log = logging.getLogger("ringfence.agents")

AGENT_DRIVER = "agent"
"""The driver name of rollouts that agents pull."""

_ACTIVE_PHASES = tuple(p for p in RolloutPhase if not p.is_terminal)


@dataclass(frozen=True)
class _Snapshot:
    rollouts: tuple[AgentRollout, ...]
    targets: Mapping[str, tuple[tuple[int, AssetTarget], ...]]
    """Asset id → (index into ``rollouts``, its target) for each agent rollout that includes it."""
    versions: tuple[tuple[str, int, int], ...]
    """(rollout id, state version, last decision) of every active rollout: a change means reload."""
    loaded_at: float
    checked_at: float
    record: tuple[int, datetime | None] = (0, None)
    """The estate of record's mark: a version became current (assets may have changed holder) means reload."""


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
            versions = rollout_versions(session, _ACTIVE_PHASES)
            record = record_mark(session)
            if (
                previous is not None
                and previous.versions == versions
                and previous.record == record
                and now - previous.loaded_at <= self.max_age
            ):
                return _Snapshot(previous.rollouts, previous.targets, versions, previous.loaded_at, now, record)
            self.reloads += 1
            return self._load(session, versions, record, now)

    @staticmethod
    def _load(
        session: Session, versions: tuple[tuple[str, int, int], ...], record: tuple[int, datetime | None], now: float
    ) -> _Snapshot:
        rollouts: list[AgentRollout] = []
        targets: dict[str, list[tuple[int, AssetTarget]]] = {}
        ids = {rollout_id for rollout_id, _, _ in versions}
        for found in list_rollouts(session, phases=_ACTIVE_PHASES):
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
            # Only a target this rollout's estate version holds of record is told to install: an asset of a
            # shadow estate, or one moved to another estate, or any asset once the version is no longer current,
            # waits. Every target is told to roll back: undoing an install must never wait on the record.
            for asset_id, ring, state, held in targets_of_record(session, found.id, found.estate_version_id):
                targets.setdefault(asset_id, []).append((index, AssetTarget(ring, state, of_record=held)))
        frozen = {asset_id: tuple(entries) for asset_id, entries in targets.items()}
        return _Snapshot(tuple(rollouts), frozen, versions, now, now, record)


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


__all__ = [
    "AGENT_DRIVER",
    "DirectiveBoard",
    "Refresher",
    "TokenCache",
]
