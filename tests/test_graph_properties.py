"""The estate graph engine held against the brute-force oracle (tests/oracle.py) on random estates.

Estates are generated as documents (plain dicts, as a YAML file would load) that are valid by construction:
unique ids, references to existing ids, nothing requiring itself, no id twice in one list, K no larger than
its ``of`` list. Kinds, sites, attrs, software, suppliers and selectors are drawn from small pools so that
selectors and failures actually hit things, and random edges make cycles common. ``where`` groups may
match fewer than K assets, which makes their owner down from the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle
from ringfence.core.errors import InputError
from ringfence.core.estate import Estate, parse_estate_document
from ringfence.core.graph import AssetIndex, compile_estate
from ringfence.core.impact import (
    compute_blast_radius,
    find_single_points_of_failure,
    impact_tiers,
    supplier_concentration,
)
from ringfence.core.selectors import parse_selector

# Not derandomized: CI should meet fresh examples; hypothesis prints the failing one.
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KINDS = ("host", "vm", "storage", "saas")
SITES = ("north", "south", "east wing")
ASSET_SUPPLIERS = ("acme", "globex", "initech")
DECLARABLE_SUPPLIERS = ("acme", "globex", "initech", "umbrella", "hooli")
PRODUCTS = ("acme/agent", "globex/db", "hooli/os", "vendo/app")
VERSIONS = ("1.0", "2.0")
SOFTWARE_OVERRIDES = (None, None, None, "globex", "umbrella")
ATTRS = {"os": ("win", "linux"), "cluster": ("a", "b")}

# Values selectors may ask for, including some no asset has.
SELECTOR_VALUES: dict[str, tuple[str, ...]] = {
    "kind": (*KINDS, "network"),
    "site": (*SITES, "west"),
    "supplier": (*ASSET_SUPPLIERS, "umbrella"),
    "attrs.os": (*ATTRS["os"], "bsd"),
    "attrs.cluster": (*ATTRS["cluster"], "c"),
    "software": (
        *PRODUCTS,
        *(f"{p}@{v}" for p in PRODUCTS for v in VERSIONS),
        "nobody/thing",
        "acme/agent@9.9",
    ),
}


# Strategies draw small integers and tuples from module-level strategies, then map them onto the
# estate's names: building strategies per node (sampled_from over each node's own list) made generation
# take most of the run time.
SELECTOR_KEYS = ("id", *SELECTOR_VALUES)
RAW_TERM = st.tuples(
    st.sampled_from(SELECTOR_KEYS),
    st.sampled_from(("=", "=", "!=")),
    st.lists(st.integers(0, 63), min_size=1, max_size=3),
)
RAW_SELECTOR = st.lists(RAW_TERM, min_size=1, max_size=3)
# Where-groups take at most two terms and no id: narrower selectors leave most owners down from the start.
RAW_WHERE = st.lists(
    st.tuples(
        st.sampled_from(tuple(SELECTOR_VALUES)),
        st.sampled_from(("=", "=", "!=")),
        st.lists(st.integers(0, 63), min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=2,
)
RAW_GROUP = st.one_of(
    # The third field is the slack (members that may be down), so both tight and tolerant groups are common.
    st.tuples(st.just("of"), st.lists(st.integers(0, 63), min_size=1, max_size=4), st.integers(0, 3), st.booleans()),
    # Mostly K=1 over a selector: with larger K most owners would be down from the start.
    st.tuples(st.just("where"), RAW_WHERE, st.sampled_from((1, 1, 1, 2, 3)), st.booleans()),
)
RAW_NODE = st.tuples(
    st.integers(1, 4),  # tier, when a service
    st.sampled_from(KINDS),
    st.sampled_from((None, *SITES)),
    st.sampled_from((None, None, *ASSET_SUPPLIERS)),
    st.tuples(st.sampled_from((None, *ATTRS["os"])), st.sampled_from((None, *ATTRS["cluster"]))),
    st.lists(
        st.tuples(st.sampled_from(PRODUCTS), st.sampled_from(VERSIONS), st.sampled_from(SOFTWARE_OVERRIDES)),
        max_size=3,
    ),
    st.lists(st.integers(0, 63), max_size=2),  # hard requirements
    st.lists(RAW_GROUP, max_size=2),
    st.booleans(),  # groups before or after the hard requirements
)
FAILURE_FORMS = ("bare", "asset", "service", "supplier", "software", "software@", "site", "where", "where-id")
RAW_FAILURE = st.tuples(st.sampled_from(FAILURE_FORMS), st.integers(0, 63), st.sampled_from(VERSIONS), RAW_SELECTOR)


def pick(pool: Sequence[str], i: int) -> str:
    return pool[i % len(pool)]


def unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def selector_text(raw: list[tuple[str, str, list[int]]], ids: Sequence[str]) -> str:
    """One to three terms over every selector key, with = or != and up to three alternatives."""
    values = {**SELECTOR_VALUES, "id": (*ids, "zz-none")}
    terms = []
    for key, op, picks in raw:
        alternatives = unique([pick(values[key], i) for i in picks])
        terms.append(f"{key}{op}{'|'.join(alternatives)}")
    return ",".join(terms)


def requirements(
    raw: tuple[Any, ...], owner: str, ids: Sequence[str], density: tuple[int, int], shared: list[Any]
) -> list[Any]:
    *_, hard_picks, raw_groups, groups_first = raw
    others = [i for i in ids if i != owner]
    max_hard, max_groups = density
    hard: list[Any] = unique([pick(others, i) for i in hard_picks[:max_hard]])
    groups: list[Any] = []
    for form, drawn, number, write_k in raw_groups[:max_groups]:
        # In some estates every group draws its selector or list from a small shared pool, as in real estates
        # where many owners name the same selector: the graph stores each distinct set once and must still
        # count each group (and leave a where-group's own owner out of it) on its own.
        what = shared[number % len(shared)][1 if form == "where" else 0] if shared else drawn
        if form == "of":
            members = unique([pick(others, i) for i in what])
            group: dict[str, Any] = {"of": members}
            k = max(1, len(members) - number)
        else:
            group = {"where": selector_text(what, ids)}
            k = number
        if k != 1 or write_k:  # K defaults to 1: sometimes leave it out
            group["any"] = k
        groups.append(group)
    return groups + hard if groups_first else hard + groups


@st.composite
def estate_documents(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(2, 40))
    raw_nodes = draw(st.lists(RAW_NODE, min_size=n, max_size=n))
    # Per estate, at most this many hard requirements and any-groups per node: some estates are sparse,
    # some have only groups (so slack alone decides), some are dense and full of cycles.
    density = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    n_services = min(draw(st.integers(0, 12)), n)
    shared = draw(
        st.one_of(
            st.just([]),
            st.lists(
                st.tuples(st.lists(st.integers(0, 63), min_size=1, max_size=4), RAW_WHERE), min_size=1, max_size=3
            ),
        )
    )
    # Ids unrelated to position or kind, so sorting by id and by index disagree.
    ids = tuple(f"n{i}" for i in draw(st.permutations(range(n))))
    services = []
    for node_id, raw in zip(ids[:n_services], raw_nodes, strict=False):
        service: dict[str, Any] = {"id": node_id, "tier": raw[0]}
        requires = requirements(raw, node_id, ids, density, shared)
        if requires:
            service["requires"] = requires
        services.append(service)
    assets = []
    for node_id, raw in zip(ids[n_services:], raw_nodes[n_services:], strict=True):
        _, kind, site, supplier, (os_name, cluster), software, *_ = raw
        asset: dict[str, Any] = {"id": node_id, "kind": kind}
        if site is not None:
            asset["site"] = site
        if supplier is not None:
            asset["supplier"] = supplier
        attrs = {key: value for key, value in (("os", os_name), ("cluster", cluster)) if value is not None}
        if attrs:
            asset["attrs"] = attrs
        items = []
        for product, version, override in {(p, v): (p, v, o) for p, v, o in software}.values():
            item = {"product": product, "version": version}
            if override is not None:
                item["supplier"] = override
            items.append(item)
        if items:
            asset["software"] = items
        requires = requirements(raw, node_id, ids, density, shared)
        if requires:
            asset["requires"] = requires
        assets.append(asset)
    declared = draw(st.lists(st.sampled_from(DECLARABLE_SUPPLIERS), unique=True))
    return {
        "apiVersion": "ringfence/v1",
        "estate": "prop",
        "suppliers": [{"id": s} for s in declared],
        "services": services,
        "assets": assets,
    }


def failure_ref(estate: Estate, raw: tuple[str, int, str, list[tuple[str, str, list[int]]]]) -> str:
    """A failure of the drawn form over names the estate has (or an asset/service id when it has none)."""
    form, i, version, raw_selector = raw
    asset_ids = [a.id for a in estate.assets]
    service_ids = [s.id for s in estate.services]
    ids = asset_ids + service_ids
    products = sorted(oracle.all_products(estate))
    sites = sorted(oracle.all_sites(estate))
    suppliers = sorted(oracle.all_suppliers(estate))
    if form == "asset" and asset_ids:
        return f"asset:{pick(asset_ids, i)}"
    if form == "service" and service_ids:
        return f"service:{pick(service_ids, i)}"
    if form == "supplier" and suppliers:
        return f"supplier:{pick(suppliers, i)}"
    if form == "software" and products:
        return f"software:{pick(products, i)}"
    if form == "software@" and products:
        return f"software:{pick(products, i)}@{version}"
    if form == "site" and sites:
        return f"site:{pick(sites, i)}"
    if form == "where":
        return f"where:{selector_text(raw_selector, ids)}"
    if form == "where-id":
        return f"where:id={pick(ids, i)}"
    return pick(ids, i)


def build(doc: dict[str, Any]) -> Estate:
    return parse_estate_document(doc, source="<hypothesis>")


# ----------------------------------------------------------------------------------- down sets


@PROPERTY
@given(doc=estate_documents(), data=st.data())
def test_down_set_equals_oracle(doc: dict[str, Any], data: st.DataObject) -> None:
    estate = build(doc)
    graph = compile_estate(estate)
    refs = [failure_ref(estate, raw) for raw in data.draw(st.lists(RAW_FAILURE, max_size=4), label="failures")]
    got = compute_blast_radius(graph, refs)
    down = oracle.down_after(estate, refs)
    assert list(got.assets_down) == oracle.assets_in(estate, down)
    tier = {s.id: s.tier for s in estate.services}
    assert [(s.id, s.tier) for s in got.services_down] == [(s, tier[s]) for s in oracle.services_in(estate, down)]
    assert got.failed == tuple(sorted(set(refs)))  # each reference once, sorted
    down_set = graph.down_after(graph.resolve_failures(refs))
    assert {i for i in graph.ids if down_set.is_down(i)} == down
    # With nothing failed: only what needs a group that can never be met.
    assert {graph.ids[i] for i in np.flatnonzero(graph.baseline).tolist()} == oracle.down_set(estate, set())


@PROPERTY
@given(doc=estate_documents(), data=st.data())
def test_failure_resolution_equals_oracle(doc: dict[str, Any], data: st.DataObject) -> None:
    """Each form fails the same nodes, and names the estate lacks are bad input for both."""
    estate = build(doc)
    graph = compile_estate(estate)
    unknown = [
        "asset:zz-none",
        "service:zz-none",
        "zz-none",
        "supplier:nobody",
        "software:nobody/thing",
        "site:west",
        "rack:n1",
        "where:kind",
        "where:colour=red",
    ]
    unknown += [f"asset:{s.id}" for s in estate.services] + [f"service:{a.id}" for a in estate.assets]
    raw, bad = data.draw(st.tuples(RAW_FAILURE, st.one_of(st.none(), st.integers(0, 63))), label="failure")
    ref = failure_ref(estate, raw) if bad is None else pick(unknown, bad)
    try:
        expected: frozenset[str] | None = oracle.failed_by(estate, ref)
    except InputError:
        expected = None
    if expected is None:
        with pytest.raises(InputError):
            graph.resolve_failure(ref)
    else:
        failure = graph.resolve_failure(ref)
        assert failure.ref == ref
        assert sorted(graph.ids[i] for i in failure.nodes.tolist()) == sorted(expected)


@PROPERTY
@given(doc=estate_documents())
def test_nodes_that_cannot_cascade_take_down_only_themselves(doc: dict[str, Any]) -> None:
    """``could_cascade`` is False only for nodes whose loss alone adds nothing but themselves to the baseline."""
    estate = build(doc)
    graph = compile_estate(estate)
    rules = oracle.rules_of(estate)
    baseline = oracle.down_set(estate, set(), rules)
    for i, node_id in enumerate(graph.ids):
        if not graph.could_cascade[i]:
            assert oracle.down_set(estate, {node_id}, rules) == baseline | {node_id}, node_id


# ----------------------------------------------------------------------------------- derived figures


@PROPERTY
@given(doc=estate_documents(), data=st.data())
def test_impact_tiers_equal_oracle(doc: dict[str, Any], data: st.DataObject) -> None:
    estate = build(doc)
    graph = compile_estate(estate)
    rules = oracle.rules_of(estate)
    expected = [oracle.impact_tier(estate, a.id, rules) for a in estate.assets]
    assert impact_tiers(graph).tolist() == expected
    if estate.assets:
        positions = data.draw(
            st.lists(st.integers(0, len(estate.assets) - 1), max_size=len(estate.assets)), label="positions"
        )
        got = impact_tiers(graph, np.asarray(positions, dtype=np.int64)).tolist()
        assert got == [expected[p] for p in positions]


@PROPERTY
@given(doc=estate_documents(), max_tier=st.sampled_from((None, 1, 2, 3, 4)))
def test_single_points_of_failure_equal_oracle(doc: dict[str, Any], max_tier: int | None) -> None:
    estate = build(doc)
    graph = compile_estate(estate)
    got = [
        (s.ref, tuple(x.id for x in s.services), s.worst_tier)
        for s in find_single_points_of_failure(graph, max_tier=max_tier)
    ]
    expected = [(s.ref, s.services, s.worst_tier) for s in oracle.single_points_of_failure(estate, max_tier)]
    assert got == expected


@PROPERTY
@given(doc=estate_documents())
def test_supplier_concentration_equals_oracle(doc: dict[str, Any]) -> None:
    estate = build(doc)
    graph = compile_estate(estate)
    expected = oracle.supplier_concentration(estate)
    got = supplier_concentration(graph)
    assert [c.id for c in got] == list(expected)
    for c in got:
        assert [s.id for s in c.services_down] == expected[c.id], c.id
        assert c.share_by_tier == oracle.share_by_tier(estate, expected[c.id]), c.id


# ----------------------------------------------------------------------------------- selectors


@PROPERTY
@given(doc=estate_documents(), data=st.data())
def test_asset_index_match_equals_selector_matches(doc: dict[str, Any], data: st.DataObject) -> None:
    estate = build(doc)
    ids = tuple(a.id for a in estate.assets) + tuple(s.id for s in estate.services)
    index = AssetIndex(estate.assets)
    # Several selectors on one index, some repeated, so the per-key columns and the answer cache are reused.
    raws = data.draw(st.lists(RAW_SELECTOR, min_size=1, max_size=6), label="selectors")
    texts = [selector_text(raw, ids) for raw in raws]
    for text in texts + texts[:2]:
        selector = parse_selector(text)
        expected = [i for i, a in enumerate(estate.assets) if selector.matches(a)]
        assert index.match(selector).tolist() == expected, text
