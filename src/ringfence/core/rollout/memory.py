"""An in-memory rollout repository, for drills and tests: the same contract as the SQL one.

A session works on a copy and commits it when the block ends without an exception, so a refused
transition leaves nothing half-written, as a database transaction would. Health is kept as the latest
report per asset with its time; the view hands an updated asset's report to reconcile only when it came
after the asset's install (what an asset said before the update says nothing about the update).

Every asset write passes the asset door (``ringfence.core.rollout.state.move_asset``), as in the SQL repository.
There are no incidents here, so no after-transition policies (``ringfence.service.policies``) run: a drill
has no side effects beyond its own rollout.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

from ringfence.core.driver import OperationKind, OperationResult
from ringfence.core.errors import ConflictError, NotFoundError
from ringfence.core.gates import AssetHealth, GateOutcome, RingVerdict
from ringfence.core.rollout.controller import PendingDecision
from ringfence.core.rollout.reconcile import (
    SINCE_INSTALL,
    AssetProgress,
    AssetUpdate,
    Decision,
    RingMove,
    RolloutView,
    actions_from_document,
)
from ringfence.core.rollout.state import AssetState, RolloutState, Transition, check_asset_moves, new_rollout_state
from ringfence.core.rollout.strategy import StrategyPlan
from ringfence.core.update import Update


@dataclass
class _Decision:
    seq: int
    at: datetime
    actions: list[dict[str, object]]
    done_at: datetime | None = None


@dataclass
class _Rollout:
    state: RolloutState
    update: Update
    strategy: StrategyPlan
    assets: dict[str, AssetProgress]
    decisions: list[_Decision] = field(default_factory=list)
    health: dict[str, tuple[datetime, AssetHealth]] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    results: list[tuple[datetime, OperationKind, OperationResult]] = field(default_factory=list)
    verdicts: list[tuple[datetime, RingVerdict]] = field(default_factory=list)
    released: tuple[datetime, tuple[str, ...]] | None = None
    """When the driver was asked to let go of the restore points, and what it said."""


class MemoryRolloutRepository:
    """Rollouts kept in this process only."""

    def __init__(self) -> None:
        self._rollouts: dict[str, _Rollout] = {}

    def add(
        self, rollout_id: str, update: Update, strategy: StrategyPlan, *, at: datetime, needs_approval: bool = False
    ) -> RolloutState:
        if rollout_id in self._rollouts:
            raise ConflictError(f"rollout {rollout_id} already exists")
        state = new_rollout_state(rollout_id, at=at, needs_approval=needs_approval)
        assets = {
            asset: AssetProgress(asset, ring, strategy.strata.get(asset, ()), AssetState.PENDING, at)
            for ring, members in enumerate(strategy.rings)
            for asset in members
        }
        self._rollouts[rollout_id] = _Rollout(state, update, strategy, assets)
        return state

    def _get(self, rollout_id: str) -> _Rollout:
        found = self._rollouts.get(rollout_id)
        if found is None:
            raise NotFoundError(f"rollout {rollout_id} does not exist")
        return found

    @contextmanager
    def session(self, rollout_id: str) -> Iterator[_MemorySession]:
        stored = self._get(rollout_id)
        working = replace(
            stored,
            assets=dict(stored.assets),
            decisions=[replace(d) for d in stored.decisions],
            health=dict(stored.health),
            transitions=list(stored.transitions),
            results=list(stored.results),
            verdicts=list(stored.verdicts),
        )
        yield _MemorySession(working)
        self._rollouts[rollout_id] = working

    # -- reading, for drills and tests

    def state(self, rollout_id: str) -> RolloutState:
        return self._get(rollout_id).state

    def transitions(self, rollout_id: str) -> tuple[Transition, ...]:
        return tuple(self._get(rollout_id).transitions)

    def assets(self, rollout_id: str) -> tuple[AssetProgress, ...]:
        return tuple(self._get(rollout_id).assets.values())

    def decisions(self, rollout_id: str) -> int:
        return len(self._get(rollout_id).decisions)

    def verdicts(self, rollout_id: str) -> tuple[RingVerdict, ...]:
        """The gate's verdicts on the rollout's rings, in the order they were judged."""
        return tuple(v for _, v in self._get(rollout_id).verdicts)

    def released(self, rollout_id: str) -> tuple[str, ...] | None:
        """What the driver said when asked to let go of the restore points; None when it was not asked."""
        found = self._get(rollout_id).released
        return None if found is None else found[1]


class _MemorySession:
    def __init__(self, rollout: _Rollout) -> None:
        self._r = rollout

    def view(self) -> RolloutView:
        r = self._r
        health: dict[str, AssetHealth] = {}
        for asset_id, (at, reading) in r.health.items():
            progress = r.assets.get(asset_id)
            if progress is not None and progress.state in SINCE_INSTALL and at < progress.updated_at:
                continue
            health[asset_id] = reading
        return RolloutView(
            state=r.state,
            update=r.update,
            gate_mode=r.strategy.gate_mode,
            rolls_back_on_halt=r.strategy.rolls_back_on_halt,
            bake=r.strategy.bake,
            ring_count=len(r.strategy.rings),
            assets=tuple(r.assets.values()),
            health=health,
            canary_rings=r.strategy.canary_rings,
            groups=r.strategy.groups,
            tiers=r.strategy.tiers,
            planned_rings=r.strategy.rings,
            ring_windows=r.strategy.ring_windows,
            ring_passed_at=max(
                (at for at, v in r.verdicts if v.ring == r.state.ring and v.outcome is GateOutcome.passed),
                default=None,
            ),
        )

    def pending_decision(self) -> PendingDecision | None:
        for d in self._r.decisions:
            if d.done_at is None:
                return PendingDecision(d.seq, actions_from_document(d.actions))
        return None

    def apply_transition(self, new_state: RolloutState, record: Transition, *, actor: str) -> None:
        """Store the new state and its record. Nothing else happens: the SQL repository runs the after-transition
        policies (an incident declared on a halt, settled at the end), but a drill has no incidents to declare."""
        if new_state.version != self._r.state.version + 1:
            raise ConflictError(f"rollout {new_state.id} was changed by someone else; reload it and decide again")
        self._r.state = new_state
        self._r.transitions.append(record)

    def update_assets(self, updates: Sequence[AssetUpdate], at: datetime) -> None:
        assets = self._r.assets
        # The whole batch through the door before any of it is written: a refused move changes nothing.
        check_asset_moves(
            self._r.state.id,
            {u.asset_id: assets[u.asset_id].state for u in updates},
            ((u.asset_id, u.state) for u in updates),
        )
        for u in updates:
            old = assets[u.asset_id]
            ref = u.restore_point_ref if u.restore_point_ref is not None else old.restore_point_ref
            assets[u.asset_id] = replace(old, state=u.state, detail=u.detail, restore_point_ref=ref, updated_at=at)

    def move_assets(self, moves: Sequence[RingMove], at: datetime) -> None:
        assets = self._r.assets
        # A ring move keeps the state: through the door all the same, so every write of an asset passes it.
        check_asset_moves(
            self._r.state.id,
            {m.asset_id: assets[m.asset_id].state for m in moves},
            ((m.asset_id, assets[m.asset_id].state) for m in moves),
        )
        for m in moves:
            assets[m.asset_id] = replace(assets[m.asset_id], ring=m.ring, detail=m.detail, updated_at=at)

    def record_verdict(self, verdict: RingVerdict, at: datetime) -> None:
        self._r.verdicts.append((at, verdict))

    def add_decision(self, decision: Decision, at: datetime) -> int:
        seq = len(self._r.decisions) + 1
        self._r.decisions.append(_Decision(seq, at, decision.actions_document()))
        return seq

    def mark_decision_done(self, seq: int, at: datetime) -> None:
        d = self._r.decisions[seq - 1]
        if d.done_at is None:
            d.done_at = at

    def record_results(self, kind: OperationKind, results: Sequence[OperationResult], at: datetime) -> None:
        self._r.results.extend((at, kind, r) for r in results)

    def record_health(self, health: Mapping[str, AssetHealth], at: datetime) -> None:
        stored = self._r.health
        for asset_id, reading in health.items():
            stored[asset_id] = (at, reading)

    def restore_points_released(self) -> bool:
        return self._r.released is not None

    def record_restore_points_released(self, sentences: Sequence[str], at: datetime, *, actor: str) -> None:
        self._r.released = (at, tuple(sentences))


__all__ = ["MemoryRolloutRepository"]
