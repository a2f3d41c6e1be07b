"""The estate page: an estate version's services by tier, its single points of failure and its supplier
concentration, from the impact analyses."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup
from sqlalchemy.engine import Engine

from ringfence.core.estate import Estate
from ringfence.core.graph import EstateGraph
from ringfence.core.impact import (
    TIERS,
    SinglePointOfFailure,
    SupplierConcentration,
    advice_for,
    find_single_points_of_failure,
    supplier_concentration,
)
from ringfence.service import estates as estates_service
from ringfence.service.estates import CompiledEstates, LoadedEstate
from ringfence.web.charts import concentration_svg, harm_order, tier_counts
from ringfence.web.views.shared import Recent, Tier, duration, tier, when


@dataclass(frozen=True)
class EstateChoice:
    name: str
    version: int
    created_at: str
    created_by: str


@dataclass(frozen=True)
class ServiceRow:
    id: str
    name: str
    rto: str
    rpo: str
    continuity: str
    spofs: int
    """How many single points of failure take this service down."""


@dataclass(frozen=True)
class TierSection:
    tier: Tier
    services: tuple[ServiceRow, ...]


@dataclass(frozen=True)
class SpofRow:
    ref: str
    form: str
    """asset, supplier, software or site."""
    name: str
    worst: Tier
    services: tuple[tuple[Tier, tuple[str, ...]], ...]
    """The services it takes down, grouped by tier, worst tier first."""
    advice: str


@dataclass(frozen=True)
class SupplierRow:
    id: str
    name: str
    counts: tuple[tuple[Tier, int], ...]
    total: int
    services: tuple[str, ...]


@dataclass(frozen=True)
class EstateOverview:
    name: str
    version: int
    uploaded: str
    uploaded_by: str
    assets: int
    services: int
    sites: tuple[str, ...]
    tiers: tuple[TierSection, ...]
    spofs: tuple[SpofRow, ...]
    concentration_chart: Markup
    suppliers: tuple[SupplierRow, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Analyses:
    """What the overview shows of one estate version (versions never change, so neither do these)."""

    spofs: tuple[SinglePointOfFailure, ...]
    concentration: tuple[SupplierConcentration, ...]


# Keyed by the estate text's SHA-256: the analyses are a function of the text alone, whichever database
# (or version number) it came from.
_ANALYSES: Recent[str, Analyses] = Recent(4)


def estate_choices(engine: Engine) -> list[EstateChoice]:
    """Each stored estate's newest version, most recently uploaded first."""
    found = sorted(estates_service.list_estates(engine), key=lambda e: e.latest.id, reverse=True)
    return [EstateChoice(e.name, e.latest.id, when(e.latest.created_at), e.latest.created_by) for e in found]


def current_estate(engine: Engine, cache: CompiledEstates, name: str | None) -> LoadedEstate | None:
    """Estate ``name`` (default: the most recently uploaded one) at its newest version, compiled."""
    if name is None:
        choices = estate_choices(engine)
        if not choices:
            return None
        name = choices[0].name
    return cache.get(engine, name)


def estate_overview(loaded: LoadedEstate) -> EstateOverview:
    estate, graph, version = loaded.estate, loaded.graph, loaded.version
    analysed = _ANALYSES.get(
        version.sha256,
        lambda: Analyses(tuple(find_single_points_of_failure(graph)), tuple(supplier_concentration(graph))),
    )
    exposure: dict[str, int] = {}
    for spof in analysed.spofs:
        for service in spof.services:
            exposure[service.id] = exposure.get(service.id, 0) + 1
    sections = []
    for number in TIERS:
        rows = tuple(
            ServiceRow(
                id=s.id,
                name=s.label,
                rto=duration(s.rto),
                rpo=duration(s.rpo),
                continuity=s.continuity or "",
                spofs=exposure.get(s.id, 0),
            )
            for s in sorted(estate.services, key=lambda s: s.id)
            if s.tier == number
        )
        if rows:
            sections.append(TierSection(tier(number), rows))
    spofs = tuple(_spof_row(graph, spof) for spof in analysed.spofs)
    suppliers = tuple(
        SupplierRow(
            id=s.id,
            name=_supplier_name(estate, s.id),
            counts=tuple((tier(t), n) for t, n in tier_counts(s).items() if n),
            total=len(s.services_down),
            services=tuple(d.id for d in s.services_down),
        )
        for s in harm_order(analysed.concentration)
    )
    return EstateOverview(
        name=estate.name,
        version=version.id,
        uploaded=when(version.created_at),
        uploaded_by=version.created_by,
        assets=len(estate.assets),
        services=len(estate.services),
        sites=estate.sites,
        tiers=tuple(sections),
        spofs=spofs,
        concentration_chart=concentration_svg(analysed.concentration),
        suppliers=suppliers,
        warnings=tuple(str(w) for w in loaded.checked.warnings),
    )


def _spof_row(graph: EstateGraph, spof: SinglePointOfFailure) -> SpofRow:
    form, _, name = spof.ref.partition(":")
    return SpofRow(
        ref=spof.ref,
        form=form,
        name=name,
        worst=tier(spof.worst_tier),
        services=tuple(
            (tier(t), tuple(sorted(s.id for s in spof.services if s.tier == t)))
            for t in sorted({s.tier for s in spof.services})
        ),
        advice=advice_for(graph, spof),
    )


def _supplier_name(estate: Estate, supplier_id: str) -> str:
    supplier = estate.supplier_by_id.get(supplier_id)
    return supplier.label if supplier is not None else supplier_id
