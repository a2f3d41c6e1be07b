"""``diff_estates`` held against recomputing both estates from scratch, each on its own, by brute force.

The expected diff is built here from ``tests/oracle.py`` alone (the slowest obvious method: fail each asset,
supplier, product and site, apply every rule to every node until nothing changes, look at the services) and
plain set arithmetic; it shares no code with ``ringfence.core.graph``, ``impact`` or ``estate_diff``.

The new estate is the old one changed the ways a real change (or an adversary) would: ids renamed (and every
reference with them), services moved between tiers, any-groups whose K changes, members dropped from or added
to a group, assets removed, added, moved to another supplier or site, assets made down before anything fails (a
group that can never be met), requirements added or taken away. Now and then the new estate is drawn afresh.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle
from ringfence.core.estate import Estate, parse_estate_document
from ringfence.core.estate_diff import EstateDiff, Exposure, diff_estates
from ringfence.core.graph import compile_estate

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KINDS = ("host", "vm", "storage")
SITES = ("north", "south")
SUPPLIERS = ("acme", "globex", "initech")
PRODUCTS = ("acme/agent", "globex/db", "hooli/os")
WHERES = ("kind=host", "kind=vm", "site=north", "supplier=acme", "software=globex/db", "kind=host,site=south")
NEVER_MET = {"any": 2, "where": "kind=network"}
"""No generated asset is a network device, so a group of this is never met: its owner is down from the start."""

Document = dict[str, Any]


# ------------------------------------------------------------------------------------------- estates


@st.composite
def documents(draw: st.DrawFn) -> Document:
    n_services = draw(st.integers(1, 4))
    n_assets = draw(st.integers(1, 8))
    services = [f"svc-{i}" for i in range(n_services)]
    assets = [f"a-{i}" for i in range(n_assets)]
    document: Document = {
        "apiVersion": "ringfence/v1",
        "estate": "prop",
        "suppliers": [{"id": s} for s in draw(st.lists(st.sampled_from(SUPPLIERS), unique=True, max_size=2))],
        "services": [],
        "assets": [],
    }
    for i, service in enumerate(services):
        entry: Document = {"id": service, "tier": draw(st.integers(1, 4))}
        # A service may need an earlier service too, so outages cascade through services.
        entry["requires"] = draw(requirements(assets + services[:i], service))
        document["services"].append(entry)
    for asset in assets:
        entry = {"id": asset, "kind": draw(st.sampled_from(KINDS))}
        site = draw(st.sampled_from((None, *SITES)))
        if site is not None:
            entry["site"] = site
        supplier = draw(st.sampled_from((None, *SUPPLIERS)))
        if supplier is not None:
            entry["supplier"] = supplier
        products = draw(st.lists(st.sampled_from(PRODUCTS), unique=True, max_size=2))
        if products:
            entry["software"] = [{"product": p, "version": "1.0"} for p in products]
        # Assets need other assets (cycles included): the engine must take a cycle down only from outside.
        entry["requires"] = draw(requirements([a for a in assets if a != asset], asset, sparse=True))
        document["assets"].append(entry)
    return document


@st.composite
def requirements(draw: st.DrawFn, pool: list[str], owner: str, sparse: bool = False) -> list[Any]:
    if not pool:
        return []
    found: list[Any] = []
    for _ in range(draw(st.integers(0, 1 if sparse else 2))):
        form = draw(st.sampled_from(("hard", "of", "of", "where")))
        if form == "hard":
            found.append(draw(st.sampled_from(pool)))
        elif form == "of":
            members = draw(st.lists(st.sampled_from(pool), unique=True, min_size=1, max_size=4))
            found.append({"any": draw(st.integers(1, len(members))), "of": members})
        else:
            found.append({"any": draw(st.sampled_from((1, 1, 2))), "where": draw(st.sampled_from(WHERES))})
    return _dedupe_hard(found, owner)


def _dedupe_hard(requires: list[Any], owner: str) -> list[Any]:
    """Each hard requirement once, and never the owner itself."""
    seen: set[str] = set()
    kept: list[Any] = []
    for r in requires:
        if isinstance(r, str):
            if r in seen or r == owner:
                continue
            seen.add(r)
        kept.append(r)
    return kept


# ------------------------------------------------------------------------------------------ changes


def _every_node(document: Document) -> list[Document]:
    return [*document["services"], *document["assets"]]


def _rename(document: Document, old: str, new: str) -> None:
    for node in _every_node(document):
        if node["id"] == old:
            node["id"] = new
        node["requires"] = [
            (new if r == old else r)
            if isinstance(r, str)
            else ({**r, "of": [new if m == old else m for m in r["of"]]} if "of" in r else r)
            for r in node["requires"]
        ]


def _drop_asset(document: Document, asset: str) -> None:
    document["assets"] = [a for a in document["assets"] if a["id"] != asset]
    for node in _every_node(document):
        kept: list[Any] = []
        for r in node["requires"]:
            if isinstance(r, str):
                if r != asset:
                    kept.append(r)
            elif "of" in r:
                members = [m for m in r["of"] if m != asset]
                if members:
                    kept.append({**r, "of": members, "any": min(r["any"], len(members))})
            else:
                kept.append(r)
        node["requires"] = kept


CHANGES = (
    "rename-asset",
    "rename-service",
    "tier",
    "k",
    "member-out",
    "member-in",
    "drop-asset",
    "add-asset",
    "supplier",
    "site",
    "down",
    "drop-requirement",
    "add-requirement",
    "reuse-id",
)


@st.composite
def changed(draw: st.DrawFn, before: Document) -> Document:
    """``before`` changed by one to four edits; now and then an estate drawn afresh."""
    if draw(st.integers(0, 9)) == 0:
        fresh: Document = draw(documents())
        return fresh
    after = copy.deepcopy(before)
    for n in range(draw(st.integers(1, 4))):
        change = draw(st.sampled_from(CHANGES))
        assets = [a["id"] for a in after["assets"]]
        services = [s["id"] for s in after["services"]]
        nodes = _every_node(after)
        if change == "rename-asset" and assets:
            _rename(after, draw(st.sampled_from(assets)), f"renamed-{n}")
        elif change == "rename-service":
            _rename(after, draw(st.sampled_from(services)), f"renamed-svc-{n}")
        elif change == "tier":
            service = draw(st.sampled_from(after["services"]))
            service["tier"] = draw(st.integers(1, 4))
        elif change in ("k", "member-out", "member-in"):
            groups = [r for node in nodes for r in node["requires"] if isinstance(r, dict) and "of" in r]
            owners = [node for node in nodes for r in node["requires"] if isinstance(r, dict) and "of" in r]
            if not groups:
                continue
            at = draw(st.integers(0, len(groups) - 1))
            group, owner = groups[at], owners[at]
            members = list(group["of"])
            if change == "member-out" and len(members) > 1:
                members.remove(draw(st.sampled_from(members)))
            elif change == "member-in":
                extra = [a for a in assets if a not in members and a != owner["id"]]
                if extra:
                    members.append(draw(st.sampled_from(extra)))
            k = draw(st.integers(1, len(members))) if change == "k" else min(group["any"], len(members))
            owner["requires"] = [{"any": k, "of": members} if r is group else r for r in owner["requires"]]
        elif change == "drop-asset" and len(assets) > 1:
            _drop_asset(after, draw(st.sampled_from(assets)))
        elif change == "add-asset":
            new_id = f"added-{n}"
            pool = list(assets)
            after["assets"].append(
                {
                    "id": new_id,
                    "kind": draw(st.sampled_from(KINDS)),
                    "supplier": draw(st.sampled_from(SUPPLIERS)),
                    "requires": draw(requirements(pool, new_id, sparse=True)),
                }
            )
            # Something comes to need it, or may: a new asset only matters once it is needed.
            needer = draw(st.sampled_from(_every_node(after)))
            if needer["id"] != new_id and draw(st.booleans()):
                needer["requires"] = _dedupe_hard([*needer["requires"], new_id], needer["id"])
        elif change == "supplier" and assets:
            asset = draw(st.sampled_from(after["assets"]))
            asset["supplier"] = draw(st.sampled_from(SUPPLIERS))
        elif change == "site" and assets:
            asset = draw(st.sampled_from(after["assets"]))
            asset["site"] = draw(st.sampled_from(SITES))
        elif change == "down":
            node = draw(st.sampled_from(nodes))
            node["requires"] = [*node["requires"], dict(NEVER_MET)]
        elif change == "drop-requirement":
            node = draw(st.sampled_from(nodes))
            if node["requires"]:
                node["requires"] = node["requires"][1:]
        elif change == "reuse-id" and assets:
            # An id that named a service names an asset now: the two sides must not be matched across kinds.
            service_id = draw(st.sampled_from(services))
            _rename(after, service_id, f"renamed-svc-{n}")
            _rename(after, draw(st.sampled_from(assets)), service_id)
        elif change == "add-requirement":
            node = draw(st.sampled_from(nodes))
            pool = [a for a in assets if a != node["id"]]
            node["requires"] = _dedupe_hard([*node["requires"], *draw(requirements(pool, node["id"]))], node["id"])
    return after


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Estate, Estate]:
    before = draw(documents())
    after = draw(changed(before))
    return parse_estate_document(before, "old.yaml"), parse_estate_document(after, "new.yaml")


# ------------------------------------------------------------------------------------------ the oracle


ServiceTiers = frozenset[tuple[str, int]]


def brute_spofs(estate: Estate) -> dict[str, ServiceTiers]:
    """Every single point of failure (oracle: fail each candidate alone, look at the services that were up)."""
    tier = {s.id: s.tier for s in estate.services}
    return {f.ref: frozenset((s, tier[s]) for s in f.services) for f in oracle.single_points_of_failure(estate)}


def brute_baseline(estate: Estate) -> frozenset[str]:
    return oracle.down_set(estate, set())


def brute_exposure(estate: Estate, service: str, spofs: dict[str, ServiceTiers]) -> Exposure:
    if service not in {s.id for s in estate.services}:
        return Exposure.ABSENT
    if service in brute_baseline(estate):
        return Exposure.DOWN
    by_asset = any(ref.startswith("asset:") and service in {s for s, _ in taken} for ref, taken in spofs.items())
    return Exposure.SINGLE_POINT if by_asset else Exposure.REDUNDANT


def brute_asset_points(service: str, spofs: dict[str, ServiceTiers]) -> set[str]:
    return {ref for ref, taken in spofs.items() if ref.startswith("asset:") and service in {s for s, _ in taken}}


def brute_supplier_reach(estate: Estate) -> dict[str, ServiceTiers]:
    tier = {s.id: s.tier for s in estate.services}
    up = {s.id for s in estate.services} - brute_baseline(estate)
    return {
        supplier: frozenset((s, tier[s]) for s in down if s in up)
        for supplier, down in oracle.supplier_concentration(estate).items()
    }


def brute_impact(estate: Estate) -> dict[str, int]:
    rules = oracle.rules_of(estate)
    return {a.id: oracle.impact_tier(estate, a.id, rules) for a in estate.assets}


def _differ(before: dict[str, Any], after: dict[str, Any], empty: Any) -> dict[str, tuple[Any, Any]]:
    return {
        key: (before.get(key, empty), after.get(key, empty))
        for key in before.keys() | after.keys()
        if before.get(key, empty) != after.get(key, empty)
    }


def _as_set(services: tuple[Any, ...]) -> ServiceTiers:
    return frozenset((s.id, s.tier) for s in services)


# ------------------------------------------------------------------------------------------ properties


@PROPERTY
@given(pairs())
def test_diff_equals_both_estates_recomputed_from_scratch(pair: tuple[Estate, Estate]) -> None:
    old, new = pair
    found = diff_estates(compile_estate(old), compile_estate(new))

    spofs_old, spofs_new = brute_spofs(old), brute_spofs(new)
    expected_points = _differ(spofs_old, spofs_new, frozenset())
    assert {c.ref: (_as_set(c.before), _as_set(c.after)) for c in found.single_points} == expected_points
    expected_gate = any(
        (service, 1) in after and (service, 1) not in before
        for before, after in expected_points.values()
        for service, _ in after
    )
    assert found.adds_tier_1_single_point is expected_gate

    tiers_old = {s.id: s.tier for s in old.services}
    tiers_new = {s.id: s.tier for s in new.services}
    expected_services = {}
    for service in tiers_old.keys() | tiers_new.keys():
        row = (
            tiers_old.get(service),
            tiers_new.get(service),
            brute_exposure(old, service, spofs_old),
            brute_exposure(new, service, spofs_new),
            brute_asset_points(service, spofs_new) - brute_asset_points(service, spofs_old),
            brute_asset_points(service, spofs_old) - brute_asset_points(service, spofs_new),
        )
        if row[0] != row[1] or row[2] != row[3] or row[4] or row[5]:
            expected_services[service] = row
    assert {
        c.id: (
            c.tier_before,
            c.tier_after,
            c.exposure_before,
            c.exposure_after,
            set(c.single_points_gained),
            set(c.single_points_lost),
        )
        for c in found.services
    } == expected_services

    expected_assets = _differ(brute_impact(old), brute_impact(new), None)
    assert {c.id: (c.tier_before, c.tier_after) for c in found.assets} == expected_assets

    expected_suppliers = _differ(brute_supplier_reach(old), brute_supplier_reach(new), frozenset())
    assert {m.id: (_as_set(m.before), _as_set(m.after)) for m in found.suppliers} == expected_suppliers
    for m in found.suppliers:
        for tier in (1, 2, 3, 4):
            assert m.down_by_tier_after[tier] == sum(1 for _, t in expected_suppliers[m.id][1] if t == tier)


def _mirrored(diff: EstateDiff) -> tuple[Any, ...]:
    """The diff read backwards: before and after swapped, gains and losses swapped."""
    return (
        {c.ref: (c.after, c.before) for c in diff.single_points},
        {c.id: (c.tier_after, c.tier_before, c.single_points_lost, c.single_points_gained) for c in diff.services},
        {c.id: (c.tier_after, c.tier_before) for c in diff.assets},
        {m.id: (m.after, m.before) for m in diff.suppliers},
    )


def _plain(diff: EstateDiff) -> tuple[Any, ...]:
    return (
        {c.ref: (c.before, c.after) for c in diff.single_points},
        {c.id: (c.tier_before, c.tier_after, c.single_points_gained, c.single_points_lost) for c in diff.services},
        {c.id: (c.tier_before, c.tier_after) for c in diff.assets},
        {m.id: (m.before, m.after) for m in diff.suppliers},
    )


@PROPERTY
@given(pairs())
def test_a_diff_read_backwards_is_the_reverse_change_and_no_change_is_empty(pair: tuple[Estate, Estate]) -> None:
    old, new = (compile_estate(e) for e in pair)
    forwards, backwards = diff_estates(old, new), diff_estates(new, old)
    assert _mirrored(forwards) == _plain(backwards)
    assert diff_estates(old, compile_estate(pair[0])).is_empty
    # Every listed fact is a difference.
    assert all(c.before != c.after for c in forwards.single_points)
    assert all(c.tier_before != c.tier_after for c in forwards.assets)
    assert all(m.before != m.after for m in forwards.suppliers)


def test_a_service_raised_to_tier_1_behind_an_old_single_point_trips_the_gate() -> None:
    """Not a new single point, but a new tier-1 exposure: the gate must see it."""
    doc: Document = {
        "apiVersion": "ringfence/v1",
        "estate": "raised",
        "services": [{"id": "lab", "tier": 3, "requires": ["db"]}],
        "assets": [{"id": "db", "kind": "vm"}],
    }
    raised = copy.deepcopy(doc)
    raised["services"][0]["tier"] = 1
    found = diff_estates(compile_estate(parse_estate_document(doc)), compile_estate(parse_estate_document(raised)))
    assert [c.ref for c in found.tier_1_single_points_added] == ["asset:db"]
    assert [(c.id, c.tier_before, c.tier_after) for c in found.services] == [("lab", 3, 1)]
    assert found.adds_tier_1_single_point
    lowered = diff_estates(compile_estate(parse_estate_document(raised)), compile_estate(parse_estate_document(doc)))
    assert not lowered.adds_tier_1_single_point


def test_a_service_down_from_the_start_is_down_not_redundant() -> None:
    """A group that can never be met takes its owner down before anything fails: its single points vanish,
    and the diff says it is down rather than that it gained redundancy."""
    doc: Document = {
        "apiVersion": "ringfence/v1",
        "estate": "down",
        "services": [{"id": "lab", "tier": 1, "requires": ["db"]}],
        "assets": [{"id": "db", "kind": "vm"}],
    }
    broken = copy.deepcopy(doc)
    broken["services"][0]["requires"].append(dict(NEVER_MET))
    found = diff_estates(compile_estate(parse_estate_document(doc)), compile_estate(parse_estate_document(broken)))
    (service,) = found.services
    assert (service.exposure_before, service.exposure_after) == (Exposure.SINGLE_POINT, Exposure.DOWN)
    assert not service.gains_redundancy
    assert [(c.ref, c.is_removed) for c in found.single_points] == [("asset:db", True)]
    assert not found.adds_tier_1_single_point
