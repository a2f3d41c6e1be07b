"""What reconcile looks at (:class:`RolloutView`) and what it decides (:class:`Decision`), with the deadlines
of operations: the vocabulary shared by reconcile, the gate, the controller and the repositories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from ringfence.core.driver import OperationKind
from ringfence.core.gates import (
    AssetHealth,
    RingVerdict,
)
from ringfence.core.planner import Stratum
from ringfence.core.rollout.record import RedundancyGroup
from ringfence.core.rollout.state import AssetState, RolloutPhase, RolloutState
from ringfence.core.rollout.strategy import GateMode
from ringfence.core.update import Update
from ringfence.core.windows import IncidentFreeze

_UPDATED = frozenset({AssetState.APPLIED, AssetState.FAILED})
_NOT_YET_UPDATED = frozenset({AssetState.PENDING, AssetState.RESTORE_POINT_REQUESTED, AssetState.RESTORE_POINT_TAKEN})
# Never reached: skipped once the rollout stops (a restore point still being taken is abandoned with them).
_UNREACHED = frozenset({AssetState.PENDING, AssetState.RESTORE_POINT_REQUESTED})

SINCE_INSTALL = frozenset({AssetState.APPLIED, AssetState.FAILED, AssetState.ROLLING_BACK, AssetState.ROLLBACK_FAILED})
"""States entered at or after the asset's install: only health reported since then counts for it."""


@dataclass(frozen=True)
class AssetProgress:
    """How far one target got in this rollout."""

    asset_id: str
    ring: int
    stratum: Stratum
    state: AssetState
    updated_at: datetime
    detail: str | None = None
    restore_point_ref: str | None = None

    @property
    def in_flight(self) -> OperationKind | None:
        """The operation started on this asset and not finished, if any."""
        return _IN_FLIGHT.get(self.state)


_IN_FLIGHT = {
    AssetState.RESTORE_POINT_REQUESTED: OperationKind.restore_point,
    AssetState.APPLYING: OperationKind.apply,
    AssetState.ROLLING_BACK: OperationKind.rollback,
}


@dataclass(frozen=True)
class RolloutView:
    """Everything reconcile looks at. ``health`` holds each asset's latest report since its install."""

    state: RolloutState
    update: Update
    gate_mode: GateMode
    rolls_back_on_halt: bool
    bake: int
    ring_count: int
    assets: tuple[AssetProgress, ...]
    health: Mapping[str, AssetHealth] = field(default_factory=dict)
    """The latest reading of each asset that reported: targets (since their install, once installed) and the
    members of ``groups`` outside the rollout."""
    canary_rings: int = 0
    """Rings ``0 .. canary_rings - 1`` are the canary phase; 0 (the baselines): no rule 6."""
    groups: tuple[RedundancyGroup, ...] = ()
    """The any-groups rule 7 holds the rollout to; none (the baselines): no rule 7."""
    tiers: Mapping[str, int] = field(default_factory=dict)
    """Each target's impact tier, to pick the least critical replacement canary."""
    planned_rings: tuple[tuple[str, ...], ...] = ()
    """The rings as planned when the rollout was created (replacement canaries move out of them later)."""
    ring_passed_at: datetime | None = None
    """When the current ring last passed its gate, before a further wave of it: its members updated by then
    were judged healthy."""
    ring_windows: tuple[tuple[int, ...], ...] = ()
    """For each planned ring, the update's window rules that apply to it (``StoredPlan.ring_windows``)."""
    incident_freezes: tuple[IncidentFreeze, ...] = ()
    """Open incidents that declared a change freeze: while any is open, no ring opens."""

    @property
    def phase_entered_at(self) -> datetime:
        return self.state.updated_at

    def ring(self, index: int) -> tuple[AssetProgress, ...]:
        return tuple(a for a in self.assets if a.ring == index)

    @cached_property
    def groups_of(self) -> Mapping[str, tuple[int, ...]]:
        """Each member's groups (indexes into ``groups``) that can lose a member; exempt groups are left out."""
        found: dict[str, list[int]] = {}
        for g, group in enumerate(self.groups):
            if not group.is_exempt:
                for member in group.members:
                    found.setdefault(member, []).append(g)
        return {member: tuple(gs) for member, gs in found.items()}


@dataclass(frozen=True)
class PhaseChange:
    to: RolloutPhase
    reason: str
    ring: int | None = None


@dataclass(frozen=True)
class StartOperation:
    kind: OperationKind
    assets: tuple[str, ...]


@dataclass(frozen=True)
class CancelOperation:
    kind: OperationKind
    assets: tuple[str, ...]


Action = StartOperation | CancelOperation


@dataclass(frozen=True)
class AssetUpdate:
    """A new state (and detail) for an asset; ``restore_point_ref`` None keeps the one recorded."""

    asset_id: str
    state: AssetState
    detail: str | None = None
    restore_point_ref: str | None = None


@dataclass(frozen=True)
class RingMove:
    """A not-yet-updated asset moved into the current canary ring, to replace a canary that was skipped."""

    asset_id: str
    ring: int
    detail: str


@dataclass(frozen=True)
class Decision:
    transitions: tuple[PhaseChange, ...] = ()
    actions: tuple[Action, ...] = ()
    asset_updates: tuple[AssetUpdate, ...] = ()
    verdict: RingVerdict | None = None
    ring_moves: tuple[RingMove, ...] = ()
    waiting: str | None = None
    """Why nothing happens now though the rollout runs: a ring waiting for its change window, and until when."""
    wake_at: datetime | None = None
    """When to look again for the wait to end (the window's opening); None: no time is known (an incident freeze)."""

    @property
    def is_empty(self) -> bool:
        return not (self.transitions or self.actions or self.asset_updates or self.ring_moves)

    def actions_document(self) -> list[dict[str, Any]]:
        """The actions as JSON, to persist with the decision."""
        return [
            {
                "op": "start" if isinstance(a, StartOperation) else "cancel",
                "kind": a.kind.value,
                "assets": list(a.assets),
            }
            for a in self.actions
        ]


def actions_from_document(document: object) -> tuple[Action, ...]:
    """The actions of a persisted decision (the inverse of :meth:`Decision.actions_document`)."""
    actions: list[Action] = []
    if isinstance(document, Mapping):
        document = document.get("actions", [])
    if not isinstance(document, Sequence):
        return ()
    for item in document:
        if not isinstance(item, Mapping):
            continue
        kind = OperationKind(str(item["kind"]))
        assets = tuple(str(a) for a in item["assets"])
        actions.append(StartOperation(kind, assets) if item["op"] == "start" else CancelOperation(kind, assets))
    return tuple(actions)


def first_phase(update: Update) -> RolloutPhase:
    """Where a started rollout goes first: restore points when it rolls back by snapshot, else applying."""
    return RolloutPhase.TAKING_RESTORE_POINTS if update.rollback == "snapshot" else RolloutPhase.APPLYING


DEADLINE_GRACE = 300
"""Seconds an operation may run beyond twice the time the update says it takes (see :func:`operation_deadline`)."""

MAX_SKIPPED_CANARIES = 3
"""Canaries of one stratum skipped in a row before a person is asked to look, rather than trying another."""


def operation_deadline(update: Update, kind: OperationKind) -> int:
    """Seconds an operation may stay in flight before its silence counts as a failure.

    Twice what the update's ``timing`` says it takes, and five minutes more: a driver that never answers
    (a host that never comes back, a lost agent, a killed process) becomes an observation, never a wait
    for ever."""
    timing = update.timing
    expected = {
        OperationKind.restore_point: timing.restore_point,
        OperationKind.apply: timing.apply,
        OperationKind.rollback: timing.rollback,
    }[kind]
    return 2 * expected + DEADLINE_GRACE
