"""The gate of a ring: its verdict from the health of the assets updated in it, by the strategy's gate mode."""

from __future__ import annotations

from ringfence.core.gates import (
    AssetHealth,
    AssetStatus,
    FailureSignal,
    GateOutcome,
    GatePolicy,
    RingVerdict,
    StratumSample,
    judge_ring,
)
from ringfence.core.planner import Stratum
from ringfence.core.rollout.state import AssetState
from ringfence.core.rollout.strategy import GateMode
from ringfence.core.rollout.view import _NOT_YET_UPDATED, _UPDATED, AssetProgress, RolloutView
from ringfence.core.update import Update
from ringfence.core.words import names


def _stratum_key(stratum: Stratum) -> list[str]:
    return [v or "" for v in stratum]


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
                f"batch {r} failed: {len(failed)} of {len(updated)} updated assets failed ({names(failed)}); "
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
        for stratum, members in sorted(updated.items(), key=lambda item: _stratum_key(item[0]))
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
