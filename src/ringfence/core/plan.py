"""A plan as the planner makes it: its rings (canary waves marked, each added ring with its reason), warnings and
notes. The rules a plan holds, and how it is made, are the planner's (:mod:`ringfence.core.planner`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ringfence.core.rollout.record import RedundancyGroup
from ringfence.core.update import HoldOverride, Update

Stratum = tuple[str | None, ...]


def format_stratum(stratum: Stratum) -> str:
    """``("host", "esxi", None, "city")`` → ``host/esxi/-/city``."""
    return "/".join("-" if v is None else v for v in stratum)


@dataclass(frozen=True)
class Ring:
    index: int
    name: str
    """``canary`` (ring 0), ``canary wave 2``, ``canary wave 3``… then ``ring N`` with N its index."""
    assets: tuple[str, ...]
    """Sorted by id."""
    strata: tuple[int, ...]
    """Stratum number (into :attr:`Plan.strata`) of each asset, aligned with ``assets``."""
    tiers: tuple[int, ...]
    """Impact tier of each asset, aligned with ``assets``."""
    bake: int
    canary: bool = False
    """Part of the canary phase (rules 2 and 3 hold over these rings together)."""
    why: str | None = None
    """Why this ring exists, when the planner added it rather than a step of ``rings``; None otherwise."""

    @property
    def size(self) -> int:
        return len(self.assets)

    def tier_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for tier in self.tiers:
            counts[tier] = counts.get(tier, 0) + 1
        return dict(sorted(counts.items()))


@dataclass(frozen=True)
class PlanWarning:
    """A group that this plan cannot update without dropping below K up."""

    kind: str
    """``no-slack``: the group has n − K ≤ 0, so updating any member is an outage."""
    owners: tuple[str, ...]
    members: tuple[str, ...]
    k: int
    message: str


PlanGroup = RedundancyGroup
"""A distinct ``any: K`` group with at least one target among its members (exempt ones too): the plan hands the
run-time rules the same value the rollout persists (``ringfence.core.rollout.record``)."""


@dataclass(frozen=True)
class Plan:
    update: Update
    strata_keys: tuple[str, ...]
    strata: tuple[Stratum, ...]
    rings: tuple[Ring, ...]
    warnings: tuple[PlanWarning, ...]
    hold_override: HoldOverride | None = None
    groups: tuple[PlanGroup, ...] = ()
    """Every distinct any-group with a target among its members; the rollout keeps them up at run time."""
    notes: tuple[str, ...] = ()
    """Sentences about the plan as a whole, e.g. a step of ``rings`` that adds no asset on this estate."""
    targets: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", sum(r.size for r in self.rings))

    @property
    def canary_rings(self) -> int:
        """How many leading rings form the canary phase (canary waves included)."""
        canary = 0
        for ring in self.rings:
            if not ring.canary:
                break
            canary += 1
        return canary

    @property
    def minimum_duration(self) -> int:
        """Seconds from start to done if every gate passes at once: per ring, restore points, apply, bake."""
        timing = self.update.timing
        per_ring = timing.apply + (timing.restore_point if self.update.rollback == "snapshot" else 0)
        return sum(per_ring + ring.bake for ring in self.rings)

    @property
    def worst_case_rollback(self) -> int | None:
        """Seconds to roll back everything, ring by ring, if the last gate fails; None without a rollback path."""
        if self.update.rollback == "none":
            return None
        return self.update.timing.rollback * len(self.rings)

    def ring_of(self) -> dict[str, int]:
        return {asset: ring.index for ring in self.rings for asset in ring.assets}

    def stratum_of(self) -> dict[str, Stratum]:
        return {a: self.strata[s] for ring in self.rings for a, s in zip(ring.assets, ring.strata, strict=True)}


__all__ = ["Plan", "PlanGroup", "PlanWarning", "Ring", "Stratum", "format_stratum"]
