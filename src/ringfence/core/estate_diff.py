"""What a change to an estate does to its risk: the facts behind ``ringfence diff OLD NEW``.

Each estate is asked the same questions, on its own, by the analyses of :mod:`ringfence.core.impact` (single
points of failure, impact tiers, supplier concentration), and the answers are compared by id. Nothing here
propagates a failure itself: a diff is exactly "the two answers, compared", so it can never disagree with
``ringfence spof`` or ``ringfence concentration`` run on either side.

Invariants the property tests hold:

* every fact is a difference: what is the same on both sides is never listed;
* ids are identity: an asset or service renamed is one removed and one added (nothing guesses a rename);
* :attr:`EstateDiff.adds_tier_1_single_point` is true exactly when, after the change, some single point of
  failure takes down a tier-1 service that it did not take down (as a tier-1 service) before — a new single
  point, an old one that now reaches a tier-1 service, or a service raised to tier 1 behind an old one;
* a service down before anything fails (a group that can never be met) is nobody's single point of failure
  and no supplier's loss: it is reported as a service that is *down*, once, not as a risk that went away.

Also the wire document of the diff (:class:`EstateDiffDocument`, ``ringfence diff --json`` and the API's
``/v1/estates/{name}/diff``), built from the facts once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict

from ringfence.core.clinical import TIERS
from ringfence.core.graph import EstateGraph
from ringfence.core.impact import (
    ServiceDown,
    find_single_points_of_failure,
    impact_tiers,
    supplier_concentration,
)


class Exposure(StrEnum):
    """How exposed a service is to the loss of one asset."""

    REDUNDANT = "redundant"
    """Up, and no single asset's loss takes it down."""
    SINGLE_POINT = "single-point"
    """Up, and at least one asset's loss alone takes it down."""
    DOWN = "down"
    """Down before anything fails: a group of its (or of something it needs) can never be met."""
    ABSENT = "absent"
    """Not in this estate."""


@dataclass(frozen=True)
class SinglePointChange:
    """A failure (``asset:ID``, ``supplier:ID``, ``software:P``, ``site:N``) whose reach as a single point of
    failure changed: the services it alone takes down, before and after (empty: not a single point there)."""

    ref: str
    before: tuple[ServiceDown, ...]
    after: tuple[ServiceDown, ...]

    @property
    def is_added(self) -> bool:
        return not self.before

    @property
    def is_removed(self) -> bool:
        return not self.after

    @property
    def gained(self) -> tuple[ServiceDown, ...]:
        """Services (with their tier now) it takes down after and did not, at that tier, before."""
        return _only_in(self.after, self.before)

    @property
    def lost(self) -> tuple[ServiceDown, ...]:
        """Services (with their tier then) it took down before and does not, at that tier, after."""
        return _only_in(self.before, self.after)

    @property
    def tier_1_gained(self) -> tuple[ServiceDown, ...]:
        return tuple(s for s in self.gained if s.tier == 1)

    @property
    def worst_tier_before(self) -> int | None:
        return min((s.tier for s in self.before), default=None)

    @property
    def worst_tier_after(self) -> int | None:
        return min((s.tier for s in self.after), default=None)


@dataclass(frozen=True)
class ServiceChange:
    """A service added, removed, moved between tiers, or whose exposure to one asset's loss changed.

    ``single_points_gained``/``single_points_lost``: the ``asset:`` refs that alone take it down after and
    not before, and the other way round (suppliers, products and sites are in :class:`SinglePointChange`)."""

    id: str
    tier_before: int | None
    tier_after: int | None
    exposure_before: Exposure
    exposure_after: Exposure
    single_points_gained: tuple[str, ...] = ()
    single_points_lost: tuple[str, ...] = ()

    @property
    def is_added(self) -> bool:
        return self.tier_before is None

    @property
    def is_removed(self) -> bool:
        return self.tier_after is None

    @property
    def tier_changed(self) -> bool:
        return self.tier_before is not None and self.tier_after is not None and self.tier_before != self.tier_after

    @property
    def loses_redundancy(self) -> bool:
        return self.exposure_before is Exposure.REDUNDANT and self.exposure_after is Exposure.SINGLE_POINT

    @property
    def gains_redundancy(self) -> bool:
        return self.exposure_before is Exposure.SINGLE_POINT and self.exposure_after is Exposure.REDUNDANT


@dataclass(frozen=True)
class AssetImpactChange:
    """An asset whose impact tier (:func:`ringfence.core.impact.impact_tiers`: the most critical tier down when
    it alone fails, 5 for none) changed; None on the side where the asset does not exist."""

    id: str
    tier_before: int | None
    tier_after: int | None

    @property
    def is_worse(self) -> bool:
        """More critical after (a lower tier), or a new asset whose loss takes a service down."""
        before = 5 if self.tier_before is None else self.tier_before
        return self.tier_after is not None and self.tier_after < before


@dataclass(frozen=True)
class SupplierMove:
    """A supplier whose loss takes down other services after the change: the services its failure takes down
    (those up with nothing failed), before and after. A supplier absent on one side takes down nothing there."""

    id: str
    before: tuple[ServiceDown, ...]
    after: tuple[ServiceDown, ...]

    @property
    def down_by_tier_before(self) -> Mapping[int, int]:
        return _by_tier(self.before)

    @property
    def down_by_tier_after(self) -> Mapping[int, int]:
        return _by_tier(self.after)

    @property
    def gained(self) -> tuple[ServiceDown, ...]:
        return _only_in(self.after, self.before)

    @property
    def lost(self) -> tuple[ServiceDown, ...]:
        return _only_in(self.before, self.after)


def _only_in(these: Sequence[ServiceDown], others: Sequence[ServiceDown]) -> tuple[ServiceDown, ...]:
    """``these`` that ``others`` does not hold (a service at another tier counts as another), in their order."""
    held = set(others)
    return tuple(s for s in these if s not in held)


def _by_tier(services: Sequence[ServiceDown]) -> dict[int, int]:
    counts = dict.fromkeys(TIERS, 0)
    for s in services:
        counts[s.tier] += 1
    return counts


@dataclass(frozen=True)
class EstateSummary:
    name: str
    assets: int
    services: int


@dataclass(frozen=True)
class EstateDiff:
    """Every risk fact that differs between two estates; each list sorted by ref or id."""

    old: EstateSummary
    new: EstateSummary
    single_points: tuple[SinglePointChange, ...]
    services: tuple[ServiceChange, ...]
    assets: tuple[AssetImpactChange, ...]
    suppliers: tuple[SupplierMove, ...]

    @property
    def tier_1_single_points_added(self) -> tuple[SinglePointChange, ...]:
        """The single points of failure that take down a tier-1 service they did not take down before."""
        return tuple(c for c in self.single_points if c.tier_1_gained)

    @property
    def adds_tier_1_single_point(self) -> bool:
        """The gate of ``ringfence diff`` (exit 1): the change leaves a tier-1 service exposed to a single
        failure it was not exposed to before."""
        return bool(self.tier_1_single_points_added)

    @property
    def is_empty(self) -> bool:
        return not (self.single_points or self.services or self.assets or self.suppliers)


# ------------------------------------------------------------------------------------------ the diff


def diff_estates(old: EstateGraph, new: EstateGraph) -> EstateDiff:
    """What changing ``old`` into ``new`` does to risk. Each side is analysed on its own; the answers are
    compared by id (see the module's invariants)."""
    spofs_old = _single_points(old)
    spofs_new = _single_points(new)
    single_points = tuple(
        SinglePointChange(ref, spofs_old.get(ref, ()), spofs_new.get(ref, ()))
        for ref in sorted(spofs_old.keys() | spofs_new.keys())
        if spofs_old.get(ref, ()) != spofs_new.get(ref, ())
    )
    return EstateDiff(
        old=_summary(old),
        new=_summary(new),
        single_points=single_points,
        services=_service_changes(old, new, spofs_old, spofs_new),
        assets=_impact_changes(old, new),
        suppliers=_supplier_moves(old, new),
    )


def _summary(graph: EstateGraph) -> EstateSummary:
    return EstateSummary(graph.estate.name, graph.n_assets, graph.n_services)


def _single_points(graph: EstateGraph) -> dict[str, tuple[ServiceDown, ...]]:
    """Each single point of failure's ref and the services (sorted by id) it alone takes down."""
    return {s.ref: s.services for s in find_single_points_of_failure(graph)}


def _exposures(
    graph: EstateGraph, spofs: Mapping[str, Sequence[ServiceDown]]
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Each service's tier, and the ``asset:`` single points that take it down (absent: none)."""
    tiers = {graph.ids[i]: int(graph.service_tier[i]) for i in range(graph.n_services)}
    by_service: dict[str, list[str]] = {}
    for ref, services in spofs.items():
        if ref.startswith("asset:"):
            for s in services:
                by_service.setdefault(s.id, []).append(ref)
    return tiers, by_service


def _exposure(graph: EstateGraph, service: str, single_points: Mapping[str, list[str]]) -> Exposure:
    i = graph.index.get(service)
    if i is None or i >= graph.n_services:
        return Exposure.ABSENT
    if graph.baseline[i]:
        return Exposure.DOWN
    return Exposure.SINGLE_POINT if service in single_points else Exposure.REDUNDANT


def _service_changes(
    old: EstateGraph,
    new: EstateGraph,
    spofs_old: Mapping[str, Sequence[ServiceDown]],
    spofs_new: Mapping[str, Sequence[ServiceDown]],
) -> tuple[ServiceChange, ...]:
    tiers_old, points_old = _exposures(old, spofs_old)
    tiers_new, points_new = _exposures(new, spofs_new)
    changes = []
    for service in sorted(tiers_old.keys() | tiers_new.keys()):
        was = set(points_old.get(service, ()))
        now = set(points_new.get(service, ()))
        change = ServiceChange(
            id=service,
            tier_before=tiers_old.get(service),
            tier_after=tiers_new.get(service),
            exposure_before=_exposure(old, service, points_old),
            exposure_after=_exposure(new, service, points_new),
            single_points_gained=tuple(sorted(now - was)),
            single_points_lost=tuple(sorted(was - now)),
        )
        if (
            change.tier_before != change.tier_after
            or change.exposure_before is not change.exposure_after
            or change.single_points_gained
            or change.single_points_lost
        ):
            changes.append(change)
    return tuple(changes)


def _impact_changes(old: EstateGraph, new: EstateGraph) -> tuple[AssetImpactChange, ...]:
    """The assets whose impact tier differs, matched by id with arrays: at 200,000 assets a dictionary per side
    and a pass over the union of their ids took longer than the impact tiers themselves."""
    before = impact_tiers(old)
    after = impact_tiers(new)
    old_ids = old.ids[old.n_services :]
    new_ids = new.ids[new.n_services :]
    # Each new asset's position among the old assets; -1 where old has no asset of that id (a service's counts).
    found = np.fromiter((old.index.get(i, -1) for i in new_ids), dtype=np.int64, count=len(new_ids))
    at = np.where(found >= old.n_services, found - old.n_services, -1)
    is_shared = at >= 0
    kept = np.zeros(len(old_ids), dtype=np.bool_)
    kept[at[is_shared]] = True
    differs = ~is_shared
    differs[is_shared] = before[at[is_shared]] != after[is_shared]
    changes = [
        AssetImpactChange(new_ids[k], int(before[at[k]]) if at[k] >= 0 else None, int(after[k]))
        for k in np.flatnonzero(differs).tolist()
    ]
    changes += [AssetImpactChange(old_ids[k], int(before[k]), None) for k in np.flatnonzero(~kept).tolist()]
    return tuple(sorted(changes, key=lambda c: c.id))


def _supplier_reach(graph: EstateGraph) -> dict[str, tuple[ServiceDown, ...]]:
    """Per supplier, the services its loss takes down: :func:`supplier_concentration`'s answer less the services
    down before anything fails, which no supplier's loss takes down (they are reported once, as down)."""
    baseline = graph.baseline
    index = graph.index
    reach = {}
    for row in supplier_concentration(graph):
        reach[row.id] = tuple(s for s in row.services_down if not baseline[index[s.id]])
    return reach


def _supplier_moves(old: EstateGraph, new: EstateGraph) -> tuple[SupplierMove, ...]:
    before = _supplier_reach(old)
    after = _supplier_reach(new)
    return tuple(
        SupplierMove(supplier, before.get(supplier, ()), after.get(supplier, ()))
        for supplier in sorted(before.keys() | after.keys())
        if before.get(supplier, ()) != after.get(supplier, ())
    )


# ---------------------------------------------------------------------------------------- the document


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiffServiceTier(_Document):
    id: str
    tier: int


class DiffEstateOut(_Document):
    estate: str
    assets: int
    services: int


class SinglePointChangeOut(_Document):
    ref: str
    change: str
    """``added`` (not a single point before), ``removed`` (not one after) or ``changed``."""
    worst_tier_before: int | None
    worst_tier_after: int | None
    services_before: list[DiffServiceTier]
    services_after: list[DiffServiceTier]
    services_gained: list[DiffServiceTier]
    services_lost: list[DiffServiceTier]


class ServiceChangeOut(_Document):
    id: str
    tier_before: int | None
    tier_after: int | None
    exposure_before: str
    exposure_after: str
    single_points_gained: list[str]
    single_points_lost: list[str]


class AssetImpactChangeOut(_Document):
    id: str
    impact_tier_before: int | None
    impact_tier_after: int | None


class SupplierMoveOut(_Document):
    id: str
    down_by_tier_before: dict[str, int]
    down_by_tier_after: dict[str, int]
    services_gained: list[DiffServiceTier]
    services_lost: list[DiffServiceTier]


class EstateDiffDocument(_Document):
    """``ringfence diff --json`` and ``GET /v1/estates/{name}/diff``."""

    old: DiffEstateOut
    new: DiffEstateOut
    adds_tier_1_single_point: bool
    single_points: list[SinglePointChangeOut]
    services: list[ServiceChangeOut]
    assets: list[AssetImpactChangeOut]
    suppliers: list[SupplierMoveOut]


def _tiers_out(services: Sequence[ServiceDown]) -> list[DiffServiceTier]:
    return [DiffServiceTier(id=s.id, tier=s.tier) for s in services]


def _by_tier_out(counts: Mapping[int, int]) -> dict[str, int]:
    return {str(t): n for t, n in sorted(counts.items())}


def _estate_out(summary: EstateSummary) -> DiffEstateOut:
    return DiffEstateOut(estate=summary.name, assets=summary.assets, services=summary.services)


def diff_document(diff: EstateDiff) -> EstateDiffDocument:
    return EstateDiffDocument(
        old=_estate_out(diff.old),
        new=_estate_out(diff.new),
        adds_tier_1_single_point=diff.adds_tier_1_single_point,
        single_points=[
            SinglePointChangeOut(
                ref=c.ref,
                change="added" if c.is_added else "removed" if c.is_removed else "changed",
                worst_tier_before=c.worst_tier_before,
                worst_tier_after=c.worst_tier_after,
                services_before=_tiers_out(c.before),
                services_after=_tiers_out(c.after),
                services_gained=_tiers_out(c.gained),
                services_lost=_tiers_out(c.lost),
            )
            for c in diff.single_points
        ],
        services=[
            ServiceChangeOut(
                id=c.id,
                tier_before=c.tier_before,
                tier_after=c.tier_after,
                exposure_before=c.exposure_before.value,
                exposure_after=c.exposure_after.value,
                single_points_gained=list(c.single_points_gained),
                single_points_lost=list(c.single_points_lost),
            )
            for c in diff.services
        ],
        assets=[
            AssetImpactChangeOut(id=c.id, impact_tier_before=c.tier_before, impact_tier_after=c.tier_after)
            for c in diff.assets
        ],
        suppliers=[
            SupplierMoveOut(
                id=m.id,
                down_by_tier_before=_by_tier_out(m.down_by_tier_before),
                down_by_tier_after=_by_tier_out(m.down_by_tier_after),
                services_gained=_tiers_out(m.gained),
                services_lost=_tiers_out(m.lost),
            )
            for m in diff.suppliers
        ],
    )


__all__ = [
    "AssetImpactChange",
    "EstateDiff",
    "EstateDiffDocument",
    "EstateSummary",
    "Exposure",
    "ServiceChange",
    "SinglePointChange",
    "SupplierMove",
    "diff_document",
    "diff_estates",
]
