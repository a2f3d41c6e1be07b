"""The estate page: an estate version's services by tier, its single points of failure and its supplier
concentration, from the impact analyses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode

from markupsafe import Markup
from sqlalchemy.engine import Engine

from ringfence.core.errors import InputError, NotFoundError, Problem
from ringfence.core.estate import Estate
from ringfence.core.graph import EstateGraph
from ringfence.core.impact import (
    TIERS,
    SinglePointOfFailure,
    SupplierConcentration,
    advice_for,
    compute_blast_radius,
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
    href: str


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
    services: tuple[tuple[Tier, tuple[NodeLink, ...]], ...]
    """The services it takes down, grouped by tier, worst tier first."""
    advice: str
    href: str
    """Its own page (an asset's, a supplier's), or the what-if of its failure (a product, a site)."""


@dataclass(frozen=True)
class SupplierRow:
    id: str
    name: str
    counts: tuple[tuple[Tier, int], ...]
    total: int
    services: tuple[str, ...]
    href: str


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
    whatif_href: str
    spofs_href: str


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
    analysed = _analyses(loaded)
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
                href=page_href(estate.name, "services", s.id),
            )
            for s in sorted(estate.services, key=lambda s: s.id)
            if s.tier == number
        )
        if rows:
            sections.append(TierSection(tier(number), rows))
    spofs = tuple(_spof_row(graph, spof, estate.name) for spof in analysed.spofs)
    suppliers = tuple(
        SupplierRow(
            id=s.id,
            name=_supplier_name(estate, s.id),
            counts=tuple((tier(t), n) for t, n in tier_counts(s).items() if n),
            total=len(s.services_down),
            services=tuple(d.id for d in s.services_down),
            href=page_href(estate.name, "suppliers", s.id),
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
        whatif_href=whatif_href(estate.name),
        spofs_href=spofs_href(estate.name),
    )


def _spof_row(graph: EstateGraph, spof: SinglePointOfFailure, estate_name: str) -> SpofRow:
    form, _, name = spof.ref.partition(":")
    if form in ("asset", "supplier"):
        href = page_href(estate_name, f"{form}s", name)
    else:
        href = whatif_href(estate_name, [spof.ref])
    return SpofRow(
        ref=spof.ref,
        form=form,
        name=name,
        worst=tier(spof.worst_tier),
        services=tuple(
            (
                tier(t),
                tuple(_node_link(graph, graph.index[i]) for i in sorted(s.id for s in spof.services if s.tier == t)),
            )
            for t in sorted({s.tier for s in spof.services})
        ),
        advice=advice_for(graph, spof),
        href=href,
    )


def _supplier_name(estate: Estate, supplier_id: str) -> str:
    supplier = estate.supplier_by_id.get(supplier_id)
    return supplier.label if supplier is not None else supplier_id


# ------------------------------------------------------------------------------ walking the estate
#
# The service, asset and supplier pages: each name is a link to its own page, each page links back to the
# estate and to the pages that lead to it. Lists are cut at LIST_LIMIT (with how many more there are): a
# where-group of a large estate can match tens of thousands of assets.

LIST_LIMIT = 200
SPOF_PAGE_SIZE = 25
SPOF_KINDS = ("asset", "supplier", "software", "site")
MAX_FAILURES = 200
"""At most this many failures in one what-if (the form's own limit, so a pasted list cannot stall a worker)."""


def estate_href(name: str) -> str:
    return f"/?estate={quote(name, safe='')}"


def page_href(estate_name: str, section: str, ident: str) -> str:
    """``/estates/NAME/services/ID`` (or ``assets``, ``suppliers``)."""
    return f"/estates/{quote(estate_name, safe='')}/{section}/{quote(ident, safe='')}"


def whatif_href(estate_name: str, refs: Sequence[str] = ()) -> str:
    query = urlencode([("fail", ref) for ref in refs])
    return f"/estates/{quote(estate_name, safe='')}/whatif" + (f"?{query}" if query else "")


def spofs_href(estate_name: str, *, tier: int | None = None, kind: str | None = None, page: int = 1) -> str:
    query = urlencode(
        [(k, v) for k, v in (("tier", tier), ("kind", kind), ("page", page if page > 1 else None)) if v is not None]
    )
    return f"/estates/{quote(estate_name, safe='')}/spofs" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class NodeLink:
    """A service or an asset as a link: its id, its name when it has one, and (a service) its tier."""

    id: str
    label: str
    href: str
    tier: Tier | None = None


@dataclass(frozen=True)
class RequirementView:
    """One requirement: a hard one (``needs``) or an any-group (``any 2 of …``) with its members."""

    text: str
    members: tuple[NodeLink, ...]
    more: int
    """Members not listed (over :data:`LIST_LIMIT`)."""
    matched: int
    needed: int


@dataclass(frozen=True)
class DependentView:
    """Something that needs this node, and how: ``needs`` it, or counts it in a group (``any 1 of …``)."""

    node: NodeLink
    how: str


@dataclass(frozen=True)
class BlastView:
    """What a set of failures takes down, as the what-if form and the node pages show it."""

    failed: tuple[str, ...]
    tiers: tuple[tuple[Tier, tuple[NodeLink, ...]], ...]
    services_down: int
    assets_down: int
    assets: tuple[NodeLink, ...]
    more_assets: int
    already_down: tuple[NodeLink, ...]
    """Services down before anything failed (a group that can never be met): not the failures' doing."""


@dataclass(frozen=True)
class EstateHead:
    """Which estate a page is about, for its heading and its way back."""

    name: str
    version: int
    href: str
    spofs_href: str
    whatif_href: str


@dataclass(frozen=True)
class ServicePage:
    estate: EstateHead
    id: str
    name: str
    tier: Tier
    rto: str
    rpo: str
    continuity: str
    contacts: tuple[str, ...]
    requirements: tuple[RequirementView, ...]
    suppliers: tuple[NodeLink, ...]
    """Suppliers whose failure alone takes this service down."""
    spofs: tuple[SpofRow, ...]
    """Every single point of failure that takes this service down."""
    needed_by: tuple[DependentView, ...]
    down_already: bool


@dataclass(frozen=True)
class SoftwareView:
    ref: str
    supplier: NodeLink


@dataclass(frozen=True)
class AssetPage:
    estate: EstateHead
    id: str
    name: str
    kind: str
    site: str
    attrs: tuple[tuple[str, str], ...]
    supplier: NodeLink | None
    software: tuple[SoftwareView, ...]
    requirements: tuple[RequirementView, ...]
    needed_by: tuple[DependentView, ...]
    more_needed_by: int
    impact: BlastView
    whatif_href: str


@dataclass(frozen=True)
class ProductView:
    product: str
    versions: tuple[str, ...]
    assets: int


@dataclass(frozen=True)
class SupplierPage:
    estate: EstateHead
    id: str
    name: str
    contact: str
    declared: bool
    products: tuple[ProductView, ...]
    assets: tuple[NodeLink, ...]
    asset_count: int
    impact: BlastView
    whatif_href: str


@dataclass(frozen=True)
class Choice:
    """A failure the what-if form offers as a checkbox."""

    ref: str
    label: str
    checked: bool


@dataclass(frozen=True)
class WhatIfPage:
    estate: EstateHead
    typed: str
    """The failures typed in the text box, as typed (shown again after a refusal)."""
    suppliers: tuple[Choice, ...]
    sites: tuple[Choice, ...]
    products: tuple[Choice, ...]
    result: BlastView | None


@dataclass(frozen=True)
class PageLink:
    number: int
    href: str
    current: bool


@dataclass(frozen=True)
class KindCount:
    kind: str
    count: int
    href: str
    current: bool

    @property
    def words(self) -> str:
        """``3 assets``, ``1 product`` (a ``software:`` failure is a product failing everywhere it runs)."""
        noun = "product" if self.kind == "software" else self.kind
        return f"{self.count:,} {noun}{'' if self.count == 1 else 's'}"


@dataclass(frozen=True)
class SpofListPage:
    estate: EstateHead
    tier: int | None
    kind: str | None
    rows: tuple[SpofRow, ...]
    total: int
    """Single points of failure that pass both filters."""
    all_count: int
    """All of the estate's, before filtering."""
    kinds: tuple[KindCount, ...]
    """How many pass the tier filter, per kind."""
    page: int
    pages: int
    first: int
    last: int
    links: tuple[PageLink, ...]
    prev_href: str
    next_href: str
    tiers: tuple[Tier, ...]


def _head(loaded: LoadedEstate) -> EstateHead:
    name = loaded.estate.name
    return EstateHead(name, loaded.version.id, estate_href(name), spofs_href(name), whatif_href(name))


def _analyses(loaded: LoadedEstate) -> Analyses:
    graph = loaded.graph
    return _ANALYSES.get(
        loaded.version.sha256,
        lambda: Analyses(tuple(find_single_points_of_failure(graph)), tuple(supplier_concentration(graph))),
    )


def _node_link(graph: EstateGraph, i: int) -> NodeLink:
    """Node ``i`` of the graph (services first, then assets) as a link to its page."""
    estate = graph.estate
    if i < graph.n_services:
        service = estate.services[i]
        return NodeLink(service.id, service.label, page_href(estate.name, "services", service.id), tier(service.tier))
    asset = estate.assets[i - graph.n_services]
    return NodeLink(asset.id, asset.name or "", page_href(estate.name, "assets", asset.id))


def _supplier_link(estate: Estate, supplier_id: str) -> NodeLink:
    return NodeLink(supplier_id, _supplier_name(estate, supplier_id), page_href(estate.name, "suppliers", supplier_id))


def _requirements(graph: EstateGraph, owner: int) -> tuple[RequirementView, ...]:
    node = graph.estate.services[owner] if owner < graph.n_services else graph.estate.assets[owner - graph.n_services]
    found = []
    for requirement in node.requires:
        if isinstance(requirement, str):
            found.append(RequirementView("needs", (_node_link(graph, graph.index[requirement]),), 0, 1, 1))
            continue
        if requirement.of is not None:
            members = [graph.index[m] for m in requirement.of]
        else:
            assert requirement.selector is not None
            # A where-group never counts its own owner (the graph's rule, repeated for the list shown).
            members = [int(p) + graph.n_services for p in graph.assets.match(requirement.selector).tolist()]
            members = [m for m in members if m != owner]
        shown = tuple(_node_link(graph, m) for m in members[:LIST_LIMIT])
        found.append(
            RequirementView(requirement.describe(), shown, len(members) - len(shown), len(members), requirement.any)
        )
    return tuple(found)


def _dependents(graph: EstateGraph, i: int) -> tuple[list[DependentView], int]:
    """What needs node ``i``: hard dependents, then the owners of the groups it is a member of; and how many
    more there are beyond :data:`LIST_LIMIT`."""
    found: list[DependentView] = []
    total = 0
    for d in graph.dependents[graph.dependents_ptr[i] : graph.dependents_ptr[i + 1]].tolist():
        total += 1
        if len(found) < LIST_LIMIT:
            found.append(DependentView(_node_link(graph, d), "needs it"))
    for s in graph.member_sets[graph.member_sets_ptr[i] : graph.member_sets_ptr[i + 1]].tolist():
        for g in graph.set_groups[graph.set_groups_ptr[s] : graph.set_groups_ptr[s + 1]].tolist():
            owner = int(graph.group_owner[g])
            if owner == i:
                continue
            total += 1
            if len(found) < LIST_LIMIT:
                found.append(DependentView(_node_link(graph, owner), f"counts it in {graph.group_spec[g].describe()}"))
    return found, total - len(found)


def blast_view(graph: EstateGraph, refs: Sequence[str]) -> BlastView:
    """The blast radius of failure refs (``ringfence impact``'s), for a page; InputError on a bad ref."""
    radius = compute_blast_radius(graph, refs)
    baseline = graph.baseline
    by_tier: dict[int, list[NodeLink]] = {}
    already: list[NodeLink] = []
    for service in radius.services_down:
        i = graph.index[service.id]
        link = _node_link(graph, i)
        if baseline[i]:
            already.append(link)
        else:
            by_tier.setdefault(service.tier, []).append(link)
    assets = tuple(_node_link(graph, graph.index[a]) for a in radius.assets_down[:LIST_LIMIT])
    return BlastView(
        failed=radius.failed,
        tiers=tuple((tier(t), tuple(by_tier[t])) for t in sorted(by_tier)),
        services_down=sum(len(v) for v in by_tier.values()),
        assets_down=len(radius.assets_down),
        assets=assets,
        more_assets=len(radius.assets_down) - len(assets),
        already_down=tuple(already),
    )


def service_page(loaded: LoadedEstate, service_id: str) -> ServicePage:
    estate, graph = loaded.estate, loaded.graph
    service = estate.service_by_id.get(service_id)
    if service is None:
        raise NotFoundError(f"estate '{estate.name}' has no service '{service_id}'")
    analysed = _analyses(loaded)
    i = graph.index[service_id]
    needed_by, _ = _dependents(graph, i)
    return ServicePage(
        estate=_head(loaded),
        id=service.id,
        name=service.label,
        tier=tier(service.tier),
        rto=duration(service.rto),
        rpo=duration(service.rpo),
        continuity=service.continuity or "",
        contacts=service.contacts,
        requirements=_requirements(graph, i),
        suppliers=tuple(
            _supplier_link(estate, c.id)
            for c in harm_order(analysed.concentration)
            if any(s.id == service_id for s in c.services_down)
        ),
        spofs=tuple(
            _spof_row(graph, s, estate.name) for s in analysed.spofs if any(d.id == service_id for d in s.services)
        ),
        needed_by=tuple(needed_by),
        down_already=bool(graph.baseline[i]),
    )


def asset_page(loaded: LoadedEstate, asset_id: str) -> AssetPage:
    estate, graph = loaded.estate, loaded.graph
    asset = estate.asset_by_id.get(asset_id)
    if asset is None:
        raise NotFoundError(f"estate '{estate.name}' has no asset '{asset_id}'")
    i = graph.index[asset_id]
    needed_by, more = _dependents(graph, i)
    ref = f"asset:{asset_id}"
    return AssetPage(
        estate=_head(loaded),
        id=asset.id,
        name=asset.name or "",
        kind=str(asset.kind),
        site=asset.site or "",
        attrs=tuple(sorted(asset.attrs.items())),
        supplier=_supplier_link(estate, asset.supplier) if asset.supplier else None,
        software=tuple(SoftwareView(s.ref, _supplier_link(estate, s.supplier_id)) for s in asset.software),
        requirements=_requirements(graph, i),
        needed_by=tuple(needed_by),
        more_needed_by=more,
        impact=blast_view(graph, [ref]),
        whatif_href=whatif_href(estate.name, [ref]),
    )


def supplier_page(loaded: LoadedEstate, supplier_id: str) -> SupplierPage:
    estate, graph = loaded.estate, loaded.graph
    supplier = estate.supplier_by_id.get(supplier_id)
    if supplier is None:
        raise NotFoundError(f"estate '{estate.name}' has no supplier '{supplier_id}'")
    positions = graph.assets.supplied_by(supplier_id).tolist()
    versions: dict[str, set[str]] = {}
    running: dict[str, int] = {}
    for asset in estate.assets:
        for software in asset.software:
            if software.supplier_id == supplier_id:
                versions.setdefault(software.product, set()).add(software.version)
                running[software.product] = running.get(software.product, 0) + 1
    ref = f"supplier:{supplier_id}"
    declared = any(s.id == supplier_id for s in estate.suppliers[: estate.declared_suppliers])
    return SupplierPage(
        estate=_head(loaded),
        id=supplier.id,
        name=supplier.label,
        contact=supplier.contact or "",
        declared=declared,
        products=tuple(ProductView(p, tuple(sorted(versions[p])), running[p]) for p in sorted(versions)),
        assets=tuple(_node_link(graph, int(p) + graph.n_services) for p in positions[:LIST_LIMIT]),
        asset_count=len(positions),
        impact=blast_view(graph, [ref]),
        whatif_href=whatif_href(estate.name, [ref]),
    )


CHOICE_LIMIT = 60
"""The what-if form offers suppliers, sites and products as checkboxes up to this many of each (more would
be a wall of boxes; they can still be typed)."""


def failure_refs(picked: Sequence[str], typed: str) -> list[str]:
    """The failures of a what-if: the boxes ticked, then the text box's lines, in order, once each.

    One failure a line, so a ``where:`` selector keeps its commas (``where:kind=host,attrs.cluster=prod-a``).
    """
    refs = [r.strip() for r in picked] + [line.strip() for line in typed.splitlines()]
    found = list(dict.fromkeys(r for r in refs if r))
    if len(found) > MAX_FAILURES:
        raise InputError([Problem(f"at most {MAX_FAILURES} failures at once, not {len(found)}", path=("fail",))])
    return found


def whatif_form(loaded: LoadedEstate, picked: Sequence[str], typed: str) -> WhatIfPage:
    """The what-if form as it was filled in, without an answer (a refused what-if shows this)."""
    estate = loaded.estate
    ticked = {r.strip() for r in picked}

    def choices(form: str, items: Sequence[tuple[str, str]]) -> tuple[Choice, ...]:
        if len(items) > CHOICE_LIMIT:
            return ()
        return tuple(Choice(f"{form}:{i}", label, f"{form}:{i}" in ticked) for i, label in items)

    suppliers = choices("supplier", [(s.id, s.label) for s in estate.suppliers])
    sites = choices("site", [(s, s) for s in estate.sites])
    products = choices("software", [(p, p) for p in estate.products])
    # A failure that came in the query but has no box (a link from an asset's page) goes in the text box,
    # where it can be changed; a box keeps its own state.
    offered = {c.ref for c in (*suppliers, *sites, *products)}
    extra = [r.strip() for r in picked if r.strip() and r.strip() not in offered]
    lines = [line.strip() for line in typed.splitlines() if line.strip()]
    return WhatIfPage(
        estate=_head(loaded),
        typed="\n".join(dict.fromkeys([*extra, *lines])),
        suppliers=suppliers,
        sites=sites,
        products=products,
        result=None,
    )


def whatif_page(loaded: LoadedEstate, picked: Sequence[str], typed: str) -> WhatIfPage:
    """The what-if form with the blast radius of what was picked and typed (InputError on a bad failure)."""
    refs = failure_refs(picked, typed)
    form = whatif_form(loaded, picked, typed)
    return replace(form, result=blast_view(loaded.graph, refs) if refs else None)


def spof_list_page(loaded: LoadedEstate, *, tier_filter: int | None, kind: str | None, page: int) -> SpofListPage:
    """The single points of failure of an estate, filtered (``tier``: services of that tier or more critical,
    as ``ringfence spof --tier``; ``kind``: what fails) and cut into pages of :data:`SPOF_PAGE_SIZE`."""
    if tier_filter is not None and tier_filter not in TIERS:
        raise InputError([Problem(f"is 1 to 4, not {tier_filter}", path=("tier",))])
    if kind is not None and kind not in SPOF_KINDS:
        raise InputError([Problem(f"is one of {', '.join(SPOF_KINDS)}, not '{kind}'", path=("kind",))])
    if page < 1:
        raise InputError([Problem(f"starts at 1, not {page}", path=("page",))])
    estate, graph = loaded.estate, loaded.graph
    analysed = _analyses(loaded)
    kept = list(analysed.spofs)
    if tier_filter is not None:
        narrowed = (s.keeping_tiers(tier_filter) for s in kept)
        # Worst tier first, then most services (the order find_single_points_of_failure gives), after the cut.
        kept = sorted((s for s in narrowed if s is not None), key=lambda s: (s.worst_tier, -len(s.services), s.ref))
    per_kind = {k: sum(1 for s in kept if s.ref.partition(":")[0] == k) for k in SPOF_KINDS}
    if kind is not None:
        kept = [s for s in kept if s.ref.partition(":")[0] == kind]
    total = len(kept)
    pages = max(1, -(-total // SPOF_PAGE_SIZE))
    if page > pages:
        raise NotFoundError(
            f"there {'is' if pages == 1 else 'are'} {pages} page{'s' if pages != 1 else ''}, not {page}"
        )
    start = (page - 1) * SPOF_PAGE_SIZE
    shown = kept[start : start + SPOF_PAGE_SIZE]
    name = estate.name

    def at(number: int) -> str:
        return spofs_href(name, tier=tier_filter, kind=kind, page=number)

    return SpofListPage(
        estate=_head(loaded),
        tier=tier_filter,
        kind=kind,
        rows=tuple(_spof_row(graph, s, name) for s in shown),
        total=total,
        all_count=len(analysed.spofs),
        kinds=tuple(
            KindCount(k, n, spofs_href(name, tier=tier_filter, kind=k), k == kind) for k, n in per_kind.items()
        ),
        page=page,
        pages=pages,
        first=start + 1 if shown else 0,
        last=start + len(shown),
        links=tuple(PageLink(n, at(n), n == page) for n in _page_numbers(page, pages)),
        prev_href=at(page - 1) if page > 1 else "",
        next_href=at(page + 1) if page < pages else "",
        tiers=tuple(tier(t) for t in TIERS),
    )


def _page_numbers(page: int, pages: int) -> list[int]:
    """The first, the last and the pages around the current one: never hundreds of links."""
    return sorted({1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)})
