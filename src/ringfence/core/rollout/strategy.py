"""Rollout strategies: how a release's targets are cut into rings and how each ring is judged.

- ``ringfence``: the planner's rings (least critical canaries first, redundancy kept), the update's bake,
  statistical gates per stratum, and an automatic rollback when a gate fails.
- ``all-at-once``: one ring holding every target, no bake, no gate that can halt — what a push to the
  whole fleet does (CrowdStrike, July 2024).
- ``batches``: rings of 1 asset, 10% of the targets, then the rest, in inventory (estate file) order, no
  strata and no bake; after each batch the tool stops at the first failure it has seen, without rolling
  back — as a fixed-batch tool such as Ansible ``serial`` with ``max_fail_percentage: 0`` does.

Pure: a strategy is computed from the compiled estate and the update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ringfence.core.driver import DRIVERS_OWN_HEALTH
from ringfence.core.errors import InputError, Problem
from ringfence.core.graph import EstateGraph
from ringfence.core.planner import Plan, Stratum, plan_rings
from ringfence.core.rollout.record import RedundancyGroup, StoredPlan
from ringfence.core.selectors import parse_selector
from ringfence.core.update import HoldOverride, Update
from ringfence.core.windows import rules_by_ring

STRATEGIES = ("ringfence", "all-at-once", "batches")


class GateMode(StrEnum):
    statistical = "statistical"  # judge each stratum against its not-yet-updated assets
    any_failure = "any-failure"  # any failure seen among the updated assets stops the rollout
    none = "none"  # nothing halts the rollout


@dataclass(frozen=True)
class StrategyPlan:
    """The rings a strategy rolls through and how it judges them.

    ``rings[i]`` lists ring i's asset ids; ``strata`` gives each target's stratum (empty for strategies
    that do not stratify); ``bake`` is the wait after each ring in seconds.
    """

    strategy: str
    update: Update
    """The update as this strategy runs it (the baselines never take restore points: they uninstall)."""
    rings: tuple[tuple[str, ...], ...]
    strata: dict[str, Stratum]
    gate_mode: GateMode
    rolls_back_on_halt: bool
    bake: int
    plan: Plan | None = None
    canary_rings: int = 0
    """Leading rings that form the canary phase (the planner's canary waves); 0 for the baselines."""
    groups: tuple[RedundancyGroup, ...] = ()
    """The any-groups the run-time redundancy rule holds the rollout to; none for the baselines."""
    tiers: dict[str, int] = field(default_factory=dict)
    ring_windows: tuple[tuple[int, ...], ...] = ()
    """For each ring, the update's window rules that apply to one of its assets (empty without windows)."""

    @property
    def targets(self) -> int:
        return sum(len(r) for r in self.rings)

    def stored(
        self, driver: str, override: HoldOverride | None = None, *, health_source: str = DRIVERS_OWN_HEALTH
    ) -> StoredPlan:
        """The plan as it is persisted with the rollout (with the hold it overrides, if any, and what judges it)."""
        warnings = tuple(w.message for w in self.plan.warnings) if self.plan else ()
        return StoredPlan(
            strategy=self.strategy,
            gate_mode=self.gate_mode.value,
            rolls_back_on_halt=self.rolls_back_on_halt,
            bake=self.bake,
            driver=driver,
            rings=self.rings,
            canary_rings=self.canary_rings,
            tiers=self.tiers,
            groups=self.groups,
            warnings=warnings,
            hold_override=(
                {"release": override.release, "reason": override.reason, "justification": override.justification}
                if override
                else None
            ),
            health_source=health_source,
            ring_windows=self.ring_windows,
        )


def plan_strategy(
    strategy: str, graph: EstateGraph, update: Update, *, hold_override: HoldOverride | None = None
) -> StrategyPlan:
    """The rings and gate of ``strategy`` for ``update`` on ``graph``'s estate, each ring with the change windows
    of its assets (every strategy keeps to the trust's windows: they are the organisation's, not the tool's)."""
    planned = _plan_strategy(strategy, graph, update, hold_override=hold_override)
    if not update.windows:
        return planned
    tiers = [ring.tiers for ring in planned.plan.rings] if planned.plan is not None else None
    return replace(planned, ring_windows=rules_by_ring(graph, update.windows, planned.rings, tiers))


def _plan_strategy(
    strategy: str, graph: EstateGraph, update: Update, *, hold_override: HoldOverride | None = None
) -> StrategyPlan:
    if strategy == "ringfence":
        plan = plan_rings(graph, update, hold_override=hold_override)
        return StrategyPlan(
            strategy=strategy,
            update=update,
            rings=tuple(ring.assets for ring in plan.rings),
            strata=plan.stratum_of(),
            gate_mode=GateMode.statistical,
            rolls_back_on_halt=True,
            bake=update.bake,
            plan=plan,
            canary_rings=plan.canary_rings,
            # The baselines stand for tools that know no redundancy; only ringfence's own rollouts are held to it.
            groups=plan.groups,
            tiers={a: t for ring in plan.rings for a, t in zip(ring.assets, ring.tiers, strict=True)},
        )
    if strategy not in STRATEGIES:
        raise InputError(
            [Problem(f"there is no strategy '{strategy}'; use one of {', '.join(STRATEGIES)}", path=("--strategy",))]
        )
    targets = _targets_in_inventory_order(graph, update)
    if strategy == "all-at-once":
        rings: tuple[tuple[str, ...], ...] = (targets,)
    else:
        second = max(1, math.ceil(len(targets) * 0.10))
        cuts = [targets[:1], targets[1 : 1 + second], targets[1 + second :]]
        rings = tuple(ring for ring in cuts if ring)
    # A fixed-batch tool or a push to the fleet takes no snapshots: removing a bad release means reinstalling.
    as_run = update if update.rollback == "none" else update.model_copy(update={"rollback": "reinstall"})
    return StrategyPlan(
        strategy=strategy,
        update=as_run,
        rings=rings,
        strata={},
        gate_mode=GateMode.none if strategy == "all-at-once" else GateMode.any_failure,
        rolls_back_on_halt=False,
        bake=0,
    )


def _targets_in_inventory_order(graph: EstateGraph, update: Update) -> tuple[str, ...]:
    positions = graph.assets.match(parse_selector(update.target_selector))
    if positions.size == 0:
        raise InputError(
            [
                Problem(
                    f"update '{update.id}' targets '{update.target_selector}', which matches no asset of "
                    f"estate '{graph.estate.name}'",
                    path=("update", "targets"),
                )
            ]
        )
    offset = graph.n_services
    # match() answers in ascending position, which is the order of the estate file.
    return tuple(graph.ids[int(p) + offset] for p in positions.tolist())


__all__ = ["STRATEGIES", "GateMode", "StrategyPlan", "plan_strategy"]
