"""The reconcile step: from what is persisted and observed, and the clock, decide what to do next.

:func:`reconcile` is pure and idempotent: the same view at the same time gives the same decision, and a
decision never repeats work the view shows as started. When unsure it does nothing and lets the next
pass act. The controller persists a decision (its phase changes and asset progress) before it calls a
driver, so a crash between deciding and acting repeats at most idempotent driver calls.

Per phase (ring ``r`` is the rollout's current ring):

- pending, awaiting approval, paused, completed, rolled back, failed: nothing (people act);
- taking restore points (rollback ``snapshot`` only): start a restore point on each of ring r's assets
  not yet asked; once each is taken or failed verification, apply. An asset whose restore point failed
  is never updated;
- applying: start the install on ring r's eligible assets (restore point taken, or pending when the
  update does not roll back by snapshot); once none is installing, bake (and judge at once without a
  bake);
- baking: judge when the bake is over — or at once when a gate judged now would fail (a crashed canary
  does not wait out the bake). Never earlier on a pass;
- judging: passed → the next ring (or completed); failed → halted, and rolling back in the same decision
  when the strategy rolls back and the update can; inconclusive or error → paused for a human;
- rolling back: roll back every asset updated in this rollout, all rings (the release is bad); when
  each is rolled back or its rollback failed → rolled back, or failed naming the assets;
- halted (and every stopped phase): assets never reached are marked skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ringfence.drivers.base import OperationKind
from ringfence.durations import humanize_duration
from ringfence.gates import (
    AssetHealth,
    AssetStatus,
    FailureSignal,
    GateOutcome,
    GatePolicy,
    RingVerdict,
    StratumSample,
    StratumVerdict,
    judge_ring,
)
from ringfence.planner import Stratum
from ringfence.rollout.state import AssetState, RolloutPhase, RolloutState
from ringfence.rollout.strategy import GateMode
from ringfence.update import Update

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

    @property
    def phase_entered_at(self) -> datetime:
        return self.state.updated_at

    def ring(self, index: int) -> tuple[AssetProgress, ...]:
        return tuple(a for a in self.assets if a.ring == index)


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
class Decision:
    transitions: tuple[PhaseChange, ...] = ()
    actions: tuple[Action, ...] = ()
    asset_updates: tuple[AssetUpdate, ...] = ()
    verdict: RingVerdict | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.transitions or self.actions or self.asset_updates)

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


def reconcile(view: RolloutView, now: datetime) -> Decision:
    """The next decision for the rollout in ``view`` at ``now``. See the module docstring."""
    phase = view.state.phase
    if phase is RolloutPhase.TAKING_RESTORE_POINTS:
        return _taking_restore_points(view)
    if phase is RolloutPhase.APPLYING:
        return _applying(view)
    if phase is RolloutPhase.BAKING:
        return _baking(view, now)
    if phase is RolloutPhase.JUDGING:
        return _judging(view)
    if phase is RolloutPhase.ROLLING_BACK:
        return _rolling_back(view)
    if phase is RolloutPhase.HALTED or phase.is_terminal:
        return Decision(asset_updates=_skip_unreached(view))
    return Decision()


# ------------------------------------------------------------------------------------------ the phases


def _taking_restore_points(view: RolloutView) -> Decision:
    r = view.state.ring
    ring = view.ring(r)
    to_ask = tuple(a.asset_id for a in ring if a.state is AssetState.PENDING)
    if to_ask:
        return Decision(
            actions=(StartOperation(OperationKind.restore_point, to_ask),),
            asset_updates=tuple(AssetUpdate(a, AssetState.RESTORE_POINT_REQUESTED) for a in to_ask),
        )
    if any(a.state is AssetState.RESTORE_POINT_REQUESTED for a in ring):
        return Decision()  # restore points still being taken
    taken = [a for a in ring if a.state is AssetState.RESTORE_POINT_TAKEN]
    failed = [a.asset_id for a in ring if a.state is AssetState.RESTORE_POINT_FAILED]
    reason = f"ring {r}: {len(taken)} of {len(ring)} restore points taken and verified"
    if failed:
        reason += (
            f"; {_count(len(failed), 'asset')} whose restore point failed verification "
            f"will not be updated ({_names(failed)})"
        )
    return Decision(transitions=(PhaseChange(RolloutPhase.APPLYING, reason),))


def _applying(view: RolloutView) -> Decision:
    r = view.state.ring
    ring = view.ring(r)
    by_snapshot = view.update.rollback == "snapshot"

    def eligible(a: AssetProgress) -> bool:
        # No asset is ever updated without a verified restore point when the update rolls back by snapshot.
        if by_snapshot:
            return a.state is AssetState.RESTORE_POINT_TAKEN
        return a.state is AssetState.PENDING

    to_apply = tuple(a.asset_id for a in ring if eligible(a))
    if to_apply:
        return Decision(
            actions=(StartOperation(OperationKind.apply, to_apply),),
            asset_updates=tuple(AssetUpdate(a, AssetState.APPLYING) for a in to_apply),
        )
    if any(a.state in (AssetState.APPLYING, AssetState.RESTORE_POINT_REQUESTED) for a in ring):
        return Decision()  # installs still running
    stragglers = [a.asset_id for a in ring if a.state is AssetState.PENDING]
    applied = sum(1 for a in ring if a.state is AssetState.APPLIED)
    install_failed = [a.asset_id for a in ring if a.state is AssetState.FAILED]
    skipped = [a.asset_id for a in ring if a.state is AssetState.RESTORE_POINT_FAILED] + stragglers
    reason = f"ring {r}: {applied} of {len(ring)} assets updated"
    if install_failed:
        reason += f", {len(install_failed)} failed to install ({_names(install_failed)})"
    if skipped:
        reason += f", {len(skipped)} skipped without a verified restore point ({_names(skipped)})"
    transitions = [PhaseChange(RolloutPhase.BAKING, f"{reason}; baking for {humanize_duration(view.bake)}")]
    if view.bake <= 0:
        transitions = [
            PhaseChange(RolloutPhase.BAKING, f"{reason}; no bake"),
            PhaseChange(RolloutPhase.JUDGING, f"ring {r} has no bake: judged as soon as it is applied"),
        ]
    updates = tuple(AssetUpdate(a, AssetState.SKIPPED, "never updated: no verified restore point") for a in stragglers)
    return Decision(transitions=tuple(transitions), asset_updates=updates)


def _baking(view: RolloutView, now: datetime) -> Decision:
    r = view.state.ring
    elapsed = (now - view.phase_entered_at).total_seconds()
    if elapsed >= view.bake:
        return Decision(
            transitions=(PhaseChange(RolloutPhase.JUDGING, f"ring {r} baked for {humanize_duration(view.bake)}"),)
        )
    # A crashed canary should not wait out the bake: judge now, and leave early only on a failure.
    if view.gate_mode is not GateMode.none:
        verdict = judge(view)
        if verdict.outcome is GateOutcome.failed:
            reason = (
                f"ring {r}: a failure seen {humanize_duration(elapsed)} into the "
                f"{humanize_duration(view.bake)} bake; judging now"
            )
            return Decision(transitions=(PhaseChange(RolloutPhase.JUDGING, reason),))
    return Decision()


def _judging(view: RolloutView) -> Decision:
    r = view.state.ring
    verdict = judge(view)
    sentence = explain(verdict)
    if verdict.outcome is GateOutcome.passed:
        if r + 1 < view.ring_count:
            nxt = len(view.ring(r + 1))
            reason = f"{sentence}; starting ring {r + 1} ({_count(nxt, 'asset')})"
            return Decision(transitions=(PhaseChange(first_phase(view.update), reason, r + 1),), verdict=verdict)
        done = sum(1 for a in view.assets if a.state is AssetState.APPLIED)
        reason = f"{sentence}; {done} of {len(view.assets)} targets updated"
        return Decision(transitions=(PhaseChange(RolloutPhase.COMPLETED, reason),), verdict=verdict)
    if verdict.outcome is GateOutcome.failed:
        transitions = [PhaseChange(RolloutPhase.HALTED, sentence)]
        if view.rolls_back_on_halt and view.update.rollback != "none":
            updated = sum(1 for a in view.assets if a.state in _UPDATED or a.state is AssetState.APPLYING)
            how = "from their verified restore points" if view.update.rollback == "snapshot" else "by reinstalling"
            transitions.append(
                PhaseChange(
                    RolloutPhase.ROLLING_BACK,
                    f"ring {r} failed its gate: rolling back the {_count(updated, 'asset')} updated so far, {how}",
                )
            )
        return Decision(transitions=tuple(transitions), asset_updates=_skip_unreached(view), verdict=verdict)
    # Inconclusive or error: a person decides; missing telemetry is never a pass.
    return Decision(transitions=(PhaseChange(RolloutPhase.PAUSED, sentence),), verdict=verdict)


def _rolling_back(view: RolloutView) -> Decision:
    to_roll = tuple(a.asset_id for a in view.assets if a.state in (AssetState.APPLIED, AssetState.FAILED))
    skip = _skip_unreached(view)
    if to_roll:
        return Decision(
            actions=(StartOperation(OperationKind.rollback, to_roll),),
            asset_updates=(*skip, *(AssetUpdate(a, AssetState.ROLLING_BACK) for a in to_roll)),
        )
    # An install still running is rolled back once it has finished, never in the middle.
    if any(a.state in (AssetState.APPLYING, AssetState.ROLLING_BACK) for a in view.assets):
        return Decision(asset_updates=skip)
    rolled = sum(1 for a in view.assets if a.state is AssetState.ROLLED_BACK)
    failed = [a.asset_id for a in view.assets if a.state is AssetState.ROLLBACK_FAILED]
    if failed:
        reason = f"{len(failed)} of {len(failed) + rolled} rollbacks failed ({_names(failed)}); they need a person"
        return Decision(transitions=(PhaseChange(RolloutPhase.FAILED, reason),), asset_updates=skip)
    return Decision(
        transitions=(PhaseChange(RolloutPhase.ROLLED_BACK, f"all {_count(rolled, 'updated asset')} rolled back"),),
        asset_updates=skip,
    )


def _skip_unreached(view: RolloutView) -> tuple[AssetUpdate, ...]:
    why = f"never updated: the rollout stopped at ring {view.state.ring}"
    return tuple(AssetUpdate(a.asset_id, AssetState.SKIPPED, why) for a in view.assets if a.state in _UNREACHED)


# ------------------------------------------------------------------------------------------ the gate


def judge(view: RolloutView) -> RingVerdict:
    """The gate's verdict on the rollout's current ring, by the strategy's gate mode."""
    r = view.state.ring
    updated = [a for a in view.assets if a.state in _UPDATED]
    if view.gate_mode is GateMode.none:
        return RingVerdict(r, GateOutcome.passed, (), f"ring {r} passed: this strategy has no gate")
    if view.gate_mode is GateMode.any_failure:
        failed = [a.asset_id for a in updated if _health(view, a).status is AssetStatus.failed]
        if failed:
            sentence = (
                f"batch {r} failed: {len(failed)} of {len(updated)} updated assets failed ({_names(failed)}); "
                "any failure stops a fixed-batch rollout"
            )
            return RingVerdict(r, GateOutcome.failed, (), sentence)
        return RingVerdict(r, GateOutcome.passed, (), f"batch {r} passed: 0 of {len(updated)} updated assets failed")
    return judge_ring(r, _samples(view), _policy(view.update))


def explain(verdict: RingVerdict, limit: int = 3) -> str:
    """The ring's sentence followed by the sentences of the strata that decided it, with their numbers."""
    deciding = [v for v in verdict.strata if v.outcome is verdict.outcome] if verdict.outcome != "passed" else []
    if not deciding:
        return verdict.sentence
    shown = "; ".join(v.sentence for v in deciding[:limit])
    more = f"; and {len(deciding) - limit} more" if len(deciding) > limit else ""
    return f"{verdict.sentence} — {shown}{more}"


def _samples(view: RolloutView) -> list[StratumSample]:
    """One sample per stratum with updated members: them against the stratum's not-yet-updated assets."""
    updated: dict[Stratum, list[AssetHealth]] = {}
    control: dict[Stratum, list[AssetHealth]] = {}
    for a in view.assets:
        if a.state in _UPDATED:
            updated.setdefault(a.stratum, []).append(_health(view, a))
        elif a.state in _NOT_YET_UPDATED:
            control.setdefault(a.stratum, []).append(_health(view, a))
    return [
        StratumSample(stratum, tuple(members), tuple(control.get(stratum, ())))
        for stratum, members in sorted(updated.items(), key=lambda item: [v or "" for v in item[0]])
    ]


def _health(view: RolloutView, a: AssetProgress) -> AssetHealth:
    if a.state is AssetState.FAILED:
        return AssetHealth(a.asset_id, AssetStatus.failed, FailureSignal.install_failed, 0.0, a.detail)
    found = view.health.get(a.asset_id)
    # No report since the install: unknown, which is never a pass.
    return found if found is not None else AssetHealth(a.asset_id, AssetStatus.unknown)


def _policy(update: Update) -> GatePolicy:
    gate = update.gate
    return GatePolicy(
        alpha=gate.alpha,
        baseline_failure_rate=gate.baseline_failure_rate,
        max_failures=gate.max_failures,
        min_coverage=gate.min_coverage,
    )


# ------------------------------------------------------------------------------------------ sentences


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _names(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown if len(ids) <= limit else f"{shown} and {len(ids) - limit} more"


__all__ = [
    "SINCE_INSTALL",
    "Action",
    "AssetProgress",
    "AssetUpdate",
    "CancelOperation",
    "Decision",
    "PhaseChange",
    "RolloutView",
    "StartOperation",
    "StratumVerdict",
    "actions_from_document",
    "explain",
    "first_phase",
    "judge",
    "reconcile",
]
