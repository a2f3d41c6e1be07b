"""A brute-force reference for the estate graph, written straight from the estate format spec (estate-format.md).

It shares no code with ``ringfence.core.graph`` or ``ringfence.core.impact``: everything here is ids and Python sets,
and the down set is found by the slowest obvious method (apply every rule to every node until nothing
changes). Only single-asset selector matching (``Selector.matches``) and the Estate model are reused.
Slow on purpose: it is the thing the fast engine is held against, so it must be easy to believe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ringfence.core.errors import InputError
from ringfence.core.estate import NO_SERVICE_TIER, AnyGroup, Asset, Estate, Service
from ringfence.core.selectors import parse_selector

NO_SERVICE = 5
"""Impact tier of an asset whose loss takes no service down."""


@dataclass(frozen=True)
class Group:
    """At least ``k`` of ``members`` must be up."""

    k: int
    members: frozenset[str]


@dataclass(frozen=True)
class Rules:
    """Each node's requirements with ``where`` selectors already turned into member ids."""

    hard: dict[str, frozenset[str]]
    groups: dict[str, tuple[Group, ...]]


@dataclass(frozen=True)
class Spof:
    ref: str
    services: tuple[str, ...]
    worst_tier: int


def nodes(estate: Estate) -> list[Service | Asset]:
    return [*estate.services, *estate.assets]


def where_members(estate: Estate, owner: str, selector_text: str) -> frozenset[str]:
    """Every asset the selector matches, never the owner itself."""
    selector = parse_selector(selector_text)
    return frozenset(a.id for a in estate.assets if selector.matches(a) and a.id != owner)


def rules_of(estate: Estate) -> Rules:
    hard: dict[str, frozenset[str]] = {}
    groups: dict[str, tuple[Group, ...]] = {}
    for node in nodes(estate):
        hard[node.id] = frozenset(r for r in node.requires if isinstance(r, str))
        found = []
        for r in node.requires:
            if isinstance(r, AnyGroup):
                if r.of is not None:
                    found.append(Group(r.any, frozenset(r.of)))
                else:
                    assert r.where is not None
                    found.append(Group(r.any, where_members(estate, node.id, r.where)))
        groups[node.id] = tuple(found)
    return Rules(hard, groups)


def down_set(estate: Estate, failed: set[str] | frozenset[str], rules: Rules | None = None) -> frozenset[str]:
    """The least set containing ``failed`` and closed under the rules, by naive fixpoint iteration."""
    rules = rules or rules_of(estate)
    down = set(failed)
    changed = True
    while changed:
        changed = False
        for node in nodes(estate):
            if node.id in down:
                continue
            hard_down = any(r in down for r in rules.hard[node.id])
            group_short = any(len(g.members - down) < g.k for g in rules.groups[node.id])
            if hard_down or group_short:
                down.add(node.id)
                changed = True
    return frozenset(down)


# ------------------------------------------------------------------------------------------ failures


def supplier_of(item_supplier: str | None, product: str) -> str:
    """A software item's supplier: its ``supplier:`` when given, else the VENDOR of VENDOR/NAME."""
    return item_supplier if item_supplier is not None else product.split("/")[0]


def all_suppliers(estate: Estate) -> set[str]:
    """Declared suppliers and every one named by an asset or by a software item."""
    found = {s.id for s in estate.suppliers}
    for asset in estate.assets:
        if asset.supplier is not None:
            found.add(asset.supplier)
        for item in asset.software:
            found.add(supplier_of(item.supplier, item.product))
    return found


def all_products(estate: Estate) -> set[str]:
    return {item.product for a in estate.assets for item in a.software}


def all_sites(estate: Estate) -> set[str]:
    return {a.site for a in estate.assets if a.site is not None}


def failed_by(estate: Estate, ref: str) -> frozenset[str]:
    """The ids a failure reference names. Names that do not exist are bad input."""
    services = {s.id for s in estate.services}
    assets = {a.id for a in estate.assets}
    if ":" not in ref:
        if ref in services or ref in assets:
            return frozenset({ref})
        raise InputError(f"oracle: no asset or service '{ref}'")
    form, name = ref.split(":", 1)
    name = name.strip()
    if form == "asset":
        if name not in assets:
            raise InputError(f"oracle: no asset '{name}'")
        return frozenset({name})
    if form == "service":
        if name not in services:
            raise InputError(f"oracle: no service '{name}'")
        return frozenset({name})
    if form == "supplier":
        if name not in all_suppliers(estate):
            raise InputError(f"oracle: no supplier '{name}'")
        hit = set()
        for a in estate.assets:
            if a.supplier == name:
                hit.add(a.id)
            for item in a.software:
                if supplier_of(item.supplier, item.product) == name:
                    hit.add(a.id)
        return frozenset(hit)
    if form == "software":
        if "@" in name:
            product, version = name.split("@", 1)
        else:
            product, version = name, None
        if product not in all_products(estate):
            raise InputError(f"oracle: no asset runs '{product}'")
        return frozenset(
            a.id
            for a in estate.assets
            for item in a.software
            if item.product == product and (version is None or item.version == version)
        )
    if form == "site":
        if name not in all_sites(estate):
            raise InputError(f"oracle: no site '{name}'")
        return frozenset(a.id for a in estate.assets if a.site == name)
    if form == "where":
        try:
            selector = parse_selector(name)
        except ValueError as exc:
            raise InputError(f"oracle: {exc}") from None
        return frozenset(a.id for a in estate.assets if selector.matches(a))
    raise InputError(f"oracle: unknown failure form '{form}'")


def down_after(estate: Estate, refs: list[str], rules: Rules | None = None) -> frozenset[str]:
    failed: set[str] = set()
    for ref in refs:
        failed |= failed_by(estate, ref)
    return down_set(estate, failed, rules)


def services_in(estate: Estate, down: frozenset[str]) -> list[str]:
    return sorted(s.id for s in estate.services if s.id in down)


def assets_in(estate: Estate, down: frozenset[str]) -> list[str]:
    return sorted(a.id for a in estate.assets if a.id in down)


# ---------------------------------------------------------------------------------- derived figures


def impact_tier(estate: Estate, asset_id: str, rules: Rules | None = None) -> int:
    """Lowest tier among the services down when this asset alone fails; 5 when none is."""
    down = down_set(estate, {asset_id}, rules)
    return min((s.tier for s in estate.services if s.id in down), default=NO_SERVICE)


def single_points_of_failure(estate: Estate, max_tier: int | None = None) -> list[Spof]:
    """Every asset, supplier, software product and site whose failure alone takes down a service that
    is up with nothing failed; ``max_tier`` keeps services of tier ≤ it and drops refs left with none."""
    rules = rules_of(estate)
    tier = {s.id: s.tier for s in estate.services}
    up_at_start = {s.id for s in estate.services} - down_set(estate, set(), rules)
    refs = (
        [f"asset:{a.id}" for a in estate.assets]
        + [f"supplier:{s}" for s in all_suppliers(estate)]
        + [f"software:{p}" for p in all_products(estate)]
        + [f"site:{n}" for n in all_sites(estate)]
    )
    found = []
    for ref in refs:
        down = down_after(estate, [ref], rules)
        taken = sorted(s for s in up_at_start if s in down and (max_tier is None or tier[s] <= max_tier))
        if taken:
            found.append(Spof(ref, tuple(taken), min(tier[s] for s in taken)))
    return sorted(found, key=lambda f: (f.worst_tier, -len(f.services), f.ref))


def supplier_concentration(estate: Estate) -> dict[str, list[str]]:
    """For each supplier, the services down when ``supplier:ID`` fails."""
    rules = rules_of(estate)
    return {s: services_in(estate, down_after(estate, [f"supplier:{s}"], rules)) for s in sorted(all_suppliers(estate))}


def share_by_tier(estate: Estate, services_down: list[str]) -> dict[int, float]:
    """Per tier present in the estate, the fraction of its services in ``services_down``."""
    tiers = sorted({s.tier for s in estate.services})
    return {
        t: sum(1 for s in estate.services if s.tier == t and s.id in services_down)
        / sum(1 for s in estate.services if s.tier == t)
        for t in tiers
    }


def rto_key(rto: int | None) -> float:
    return math.inf if rto is None else rto


def criticality(estate: Estate, down: frozenset[str], rules: Rules) -> dict[str, tuple[int, float]]:
    """Per down item, (tier, RTO) of the most critical down service that needs it, directly or through other
    down items (hard requirements and group members); (5, inf) when no down service does."""
    needs = {x: set(rules.hard[x]).union(*(g.members for g in rules.groups[x])) for x in down}
    result: dict[str, tuple[int, float]] = dict.fromkeys(down, (NO_SERVICE_TIER, math.inf))
    for service in estate.services:
        if service.id not in down:
            continue
        key = (service.tier, rto_key(service.rto))
        seen, stack = {service.id}, [service.id]
        while stack:
            for r in needs[stack.pop()]:
                if r in down and r not in seen:
                    seen.add(r)
                    stack.append(r)
        for x in seen:
            result[x] = min(result[x], key)
    return result
