"""Risk questions about an estate: blast radius, impact tiers, single points of failure, supplier concentration.

All answers come from one propagation (:meth:`EstateGraph.propagate`); this module decides what to ask it and
how to state the answer in ids and tiers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ringfence.core.clinical import TIERS as TIERS
from ringfence.core.estate import NO_SERVICE_TIER
from ringfence.core.graph import DownSet, EstateGraph, Failure, IntArray


@dataclass(frozen=True)
class ServiceDown:
    id: str
    tier: int


@dataclass(frozen=True)
class BlastRadius:
    """What a set of failures takes down.

    ``services_down`` and ``assets_down`` are everything down afterwards; ``already_down`` names those of them
    that were down before anything failed (a group that can never be met, and what needs it), so that no one
    blames the failure for them."""

    failed: tuple[str, ...]
    services_down: tuple[ServiceDown, ...]
    assets_down: tuple[str, ...]
    already_down: frozenset[str] = frozenset()

    @property
    def services_taken_down(self) -> tuple[ServiceDown, ...]:
        """The services this failure takes down: those down afterwards that were up before it."""
        return tuple(s for s in self.services_down if s.id not in self.already_down)

    @property
    def by_tier(self) -> dict[int, int]:
        counts = dict.fromkeys(TIERS, 0)
        for service in self.services_down:
            counts[service.tier] += 1
        return counts

    @property
    def worst_tier(self) -> int | None:
        return min((s.tier for s in self.services_down), default=None)


def services_of(graph: EstateGraph, service_indices: IntArray) -> tuple[ServiceDown, ...]:
    tiers = graph.service_tier
    found = [ServiceDown(graph.ids[i], int(tiers[i])) for i in service_indices.tolist()]
    return tuple(sorted(found, key=lambda s: s.id))


def blast_radius(graph: EstateGraph, failures: Sequence[Failure]) -> BlastRadius:
    """Everything down after ``failures``: the least fixed point of the estate's rules."""
    down = graph.down_after(failures)
    return describe(down)


def describe(down: DownSet) -> BlastRadius:
    graph = down.graph
    # Down with nothing failed is down after any failure too (propagation only adds), so the baseline is the
    # part of the down set that the failure did not cause.
    before = np.flatnonzero(graph.baseline & down.mask)
    return BlastRadius(
        failed=tuple(sorted({f.ref for f in down.failed})),
        services_down=services_of(graph, down.service_indices),
        assets_down=tuple(down.asset_ids),
        already_down=frozenset(graph.ids[i] for i in before.tolist()),
    )


def compute_blast_radius(graph: EstateGraph, refs: Sequence[str]) -> BlastRadius:
    """Blast radius of failure references as a user writes them (``supplier:crowdstrike``, ``site:city``…)."""
    return blast_radius(graph, graph.resolve_failures(refs))


# ------------------------------------------------------------------------------------ impact tier


def impact_tiers(graph: EstateGraph, asset_positions: IntArray | None = None) -> np.ndarray:
    """Impact tier of each asset: the lowest tier among the services down when that asset alone fails; 5 when none.

    Only assets that can cascade (something needs them, or they sit in a group with no slack) are propagated;
    any other asset, lost alone, takes down nothing but itself, so its tier is that of what is down anyway.
    """
    positions = np.arange(graph.n_assets, dtype=np.int64) if asset_positions is None else asset_positions
    baseline_services = np.flatnonzero(graph.baseline[: graph.n_services])
    floor = int(graph.service_tier[baseline_services].min()) if baseline_services.size else NO_SERVICE_TIER
    result = np.full(positions.size, floor, dtype=np.int8)
    nodes = positions + graph.n_services
    cascading = np.flatnonzero(graph.could_cascade[nodes])
    for k in cascading.tolist():
        down = graph.propagate(nodes[k : k + 1])
        services = np.flatnonzero(down[: graph.n_services])
        if services.size:
            result[k] = min(floor, int(graph.service_tier[services].min()))
    return result


# --------------------------------------------------------------------------- single points of failure


@dataclass(frozen=True)
class SinglePointOfFailure:
    """A thing whose failure alone takes down at least one service that was up."""

    ref: str
    services: tuple[ServiceDown, ...]

    @property
    def worst_tier(self) -> int:
        return min(s.tier for s in self.services)

    def keeping_tiers(self, max_tier: int) -> SinglePointOfFailure | None:
        kept = tuple(s for s in self.services if s.tier <= max_tier)
        return SinglePointOfFailure(self.ref, kept) if kept else None


def spof_candidates(graph: EstateGraph) -> list[Failure]:
    """Every candidate of the format: each asset, supplier, software product and site — minus the assets
    whose loss alone cannot cascade (nothing depends on them, no group of theirs is tight)."""
    estate = graph.estate
    candidates: list[Failure] = []
    cascading = np.flatnonzero(graph.could_cascade[graph.n_services :])
    for position in cascading.tolist():
        candidates.append(Failure(f"asset:{estate.assets[position].id}", np.asarray([position + graph.n_services])))
    for supplier in estate.suppliers:
        candidates.append(graph.resolve_failure(f"supplier:{supplier.id}"))
    for product in estate.products:
        candidates.append(graph.resolve_failure(f"software:{product}"))
    for site in estate.sites:
        candidates.append(graph.resolve_failure(f"site:{site}"))
    return candidates


def find_single_points_of_failure(
    graph: EstateGraph,
    *,
    max_tier: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SinglePointOfFailure]:
    """Single points of failure, sorted by worst tier, then most services, then ref.

    A service counts only if this failure takes it down: services down before anything fails (a group
    that can never be met) are nobody's single point of failure.
    """
    baseline = graph.baseline[: graph.n_services]
    found: list[SinglePointOfFailure] = []
    candidates = spof_candidates(graph)
    for done, candidate in enumerate(candidates, start=1):
        if candidate.nodes.size:
            down = graph.propagate(candidate.nodes)
            taken = np.flatnonzero(down[: graph.n_services] & ~baseline)
            if taken.size:
                spof: SinglePointOfFailure | None = SinglePointOfFailure(candidate.ref, services_of(graph, taken))
                if max_tier is not None and spof is not None:
                    spof = spof.keeping_tiers(max_tier)
                if spof is not None:
                    found.append(spof)
        if progress is not None and (done % 256 == 0 or done == len(candidates)):
            progress(done, len(candidates))
    return sorted(found, key=lambda s: (s.worst_tier, -len(s.services), s.ref))


def advice_for(graph: EstateGraph, spof: SinglePointOfFailure) -> str:
    """What a team can do about a single point of failure, in one sentence."""
    form, _, name = spof.ref.partition(":")
    if form == "asset":
        asset = graph.estate.asset_by_id[name]
        return (
            f"add a second {asset.kind} and require any 1 of the pair, or rehearse the continuity plan "
            f"of {', '.join(s.id for s in spof.services[:3])}"
        )
    if form == "supplier":
        return "agree an exit and downtime plan with the supplier; stage their updates through ringfence rings"
    if form == "software":
        return "stage every update of this product through rings with a canary per stratum; keep a rollback path"
    if form == "site":
        return "replicate the services' assets to another site, or plan paper continuity for a site loss"
    return "review the dependency"


# --------------------------------------------------------------------------------- concentration


@dataclass(frozen=True)
class SupplierConcentration:
    """The effect of one supplier failing: services down, and the share of each tier they make."""

    id: str
    services_down: tuple[ServiceDown, ...]
    share_by_tier: dict[int, float]


def supplier_concentration(graph: EstateGraph) -> list[SupplierConcentration]:
    """For every supplier (declared or only named), what ``supplier:ID`` failing takes down, sorted by id."""
    totals = {t: int((graph.service_tier == t).sum()) for t in TIERS if (graph.service_tier == t).any()}
    found = []
    for supplier in sorted(graph.estate.suppliers, key=lambda s: s.id):
        down = graph.down_after([graph.resolve_failure(f"supplier:{supplier.id}")])
        services = services_of(graph, down.service_indices)
        share = {t: sum(1 for s in services if s.tier == t) / total for t, total in totals.items()}
        found.append(SupplierConcentration(supplier.id, services, share))
    return found
