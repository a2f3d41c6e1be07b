"""The estate graph engine held against the brute-force oracle (tests/oracle.py) on random estates.

Estates are generated as documents (plain dicts, as a YAML file would load) that are valid by construction:
unique ids, references to existing ids, nothing requiring itself, no id twice in one list, K no larger than
its ``of`` list. Kinds, sites, attrs, software, suppliers and selectors are drawn from small pools so that
selectors and failures actually hit things, and random edges make cycles common. ``where`` groups may
match fewer than K assets, which makes their owner down from the start.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import oracle
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.errors import InputError
from ringfence.estate import Estate, parse_estate_document
from ringfence.graph import AssetIndex, compile_estate
from ringfence.impact import (
    compute_blast_radius,
    find_single_points_of_failure,
    impact_tiers,
    supplier_concentration,
)
from ringfence.selectors import parse_selector

# Not derandomized: CI should meet fresh examples; hypothesis prints the failing one.
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

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


@st.composite
def selector_texts(draw: st.DrawFn, ids: tuple[str, ...]) -> str:
    """One to three terms over every selector key, with = or != and up to three alternatives."""
    values = {**SELECTOR_VALUES, "id": (*ids, "zz-none")}
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(values)))
        op = draw(st.sampled_from(("=", "=", "!=")))
        alternatives = draw(st.lists(st.sampled_from(values[key]), min_size=1, max_size=3, unique=True))
        terms.append(f"{key}{op}{'|'.join(alternatives)}")
    return ",".join(terms)


@st.composite
def software_lists(draw: st.DrawFn) -> list[dict[str, str]]:
    pairs = draw(
        st.lists(st.tuples(st.sampled_from(PRODUCTS), st.sampled_from(VERSIONS)), max_size=3, unique=True)
    )
    items = []
    for product, version in pairs:
        item = {"product": product, "version": version}
        override = draw(st.sampled_from(SOFTWARE_OVERRIDES))
        if override is not None:
            item["supplier"] = override
        items.append(item)
    return items


@st.composite
def requirement_lists(draw: st.DrawFn, owner: str, ids: tuple[str, ...]) -> list[Any]:
    others = [i for i in ids if i != owner]
    requires: list[Any] = draw(st.lists(st.sampled_from(others), max_size=2, unique=True))
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            members = draw(st.lists(st.sampled_from(others), min_size=1, max_size=4, unique=True))
            group: dict[str, Any] = {"of": members}
            k = draw(st.integers(1, len(members)))
        else:
            group = {"where": draw(selector_texts(ids))}
            k = draw(st.integers(1, 3))
        if k != 1 or draw(st.booleans()):  # K defaults to 1: sometimes leave it out
            group["any"] = k
        requires.append(group)
    return list(draw(st.permutations(requires)))


@st.composite
def estate_documents(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(2, 40))
    n_services = draw(st.integers(0, min(n, 12)))
    # Ids unrelated to position or kind, so sorting by id and by index disagree.
    ids = tuple(f"n{i}" for i in draw(st.permutations(range(n))))
    services = []
    for node_id in ids[:n_services]:
        service: dict[str, Any] = {"id": node_id, "tier": draw(st.integers(1, 4))}
        requires = draw(requirement_lists(node_id, ids))
        if requires:
            service["requires"] = requires
        services.append(service)
    assets = []
    for node_id in ids[n_services:]:
        asset: dict[str, Any] = {"id": node_id, "kind": draw(st.sampled_from(KINDS))}
        site = draw(st.sampled_from((None, *SITES)))
        if site is not None:
            asset["site"] = site
        supplier = draw(st.sampled_from((None, None, *ASSET_SUPPLIERS)))
        if supplier is not None:
            asset["supplier"] = supplier
        attrs = {key: draw(st.sampled_from(values)) for key, values in ATTRS.items() if draw(st.booleans())}
        if attrs:
            asset["attrs"] = attrs
        software = draw(software_lists())
        if software:
            asset["software"] = software
        requires = draw(requirement_lists(node_id, ids))
        if requires:
            asset["requires"] = requires
        assets.append(asset)
    suppliers = [{"id": s} for s in draw(st.lists(st.sampled_from(DECLARABLE_SUPPLIERS), unique=True))]
    return {"apiVersion": "ringfence/v1", "estate": "prop", "suppliers": suppliers, "services": services, "assets": assets}


def failure_refs(estate: Estate) -> st.SearchStrategy[str]:
    """Every failure form, over names the estate has."""
    asset_ids = [a.id for a in estate.assets]
    service_ids = [s.id for s in estate.services]
    ids = tuple(asset_ids + service_ids)
    forms: list[st.SearchStrategy[str]] = [
        st.sampled_from(ids),
        st.sampled_from(ids).map(lambda i: f"where:id={i}"),
        selector_texts(ids).map(lambda s: f"where:{s}"),
        st.sampled_from(sorted(oracle.all_suppliers(estate)) or ["x"]).map(lambda s: f"supplier:{s}"),
    ]
    if asset_ids:
        forms.append(st.sampled_from(asset_ids).map(lambda i: f"asset:{i}"))
    if service_ids:
        forms.append(st.sampled_from(service_ids).map(lambda i: f"service:{i}"))
    products = sorted(oracle.all_products(estate))
    if products:
        forms.append(st.sampled_from(products).map(lambda p: f"software:{p}"))
        forms.append(
            st.tuples(st.sampled_from(products), st.sampled_from(VERSIONS)).map(lambda pv: f"software:{pv[0]}@{pv[1]}")
        )
    sites = sorted(oracle.all_sites(estate))
    if sites:
        forms.append(st.sampled_from(sites).map(lambda s: f"site:{s}"))
    return st.one_of(forms)


def build(doc: dict[str, Any]) -> Estate:
    return parse_estate_document(doc, source="<hypothesis>")


# ----------------------------------------------------------------------------------- down sets


@PROPERTY
@given(doc=estate_documents(), data=st.data())
def test_down_set_equals_oracle(doc: dict[str, Any], data: st.DataObject) -> None:
    estate = build(doc)
    graph = compile_estate(estate)
    refs = data.draw(st.lists(failure_refs(estate), max_size=4), label="failures")
    got = compute_blast_radius(graph, refs)
    down = oracle.down_after(estate, refs)
    assert list(got.assets_down) == oracle.assets_in(estate, down)
    tier = {s.id: s.tier for s in estate.services}
    assert [(s.id, s.tier) for s in got.services_down] == [(s, tier[s]) for s in oracle.services_in(estate, down)]
    assert got.failed == tuple(sorted(refs))
    down_set = graph.down_after(graph.resolve_failures(refs))
    assert {i for i in graph.ids if down_set.is_down(i)} == down


@PROPERTY
@given(doc=estate_documents())
def test_baseline_equals_oracle_with_nothing_failed(doc: dict[str, Any]) -> None:
    estate = build(doc)
    graph = compile_estate(estate)
    assert {graph.ids[i] for i in np.flatnonzero(graph.baseline).tolist()} == oracle.down_set(estate, set())


@PROPERTY
@given(doc=estate_documents(), data=st.data())
def test_failure_resolution_equals_oracle(doc: dict[str, Any], data: st.DataObject) -> None:
    """Each form fails the same nodes, and names the estate lacks are bad input for both."""
    estate = build(doc)
    graph = compile_estate(estate)
    unknown = ["asset:zz-none", "service:zz-none", "zz-none", "supplier:nobody", "software:nobody/thing",
               "site:west", "rack:n1", "where:kind", "where:colour=red"]
    unknown += [f"asset:{s.id}" for s in estate.services] + [f"service:{a.id}" for a in estate.assets]
    ref = data.draw(st.one_of(failure_refs(estate), st.sampled_from(unknown)), label="failure")
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
    texts = data.draw(st.lists(selector_texts(ids), min_size=1, max_size=6), label="selectors")
    for text in texts + texts[:2]:
        selector = parse_selector(text)
        expected = [i for i, a in enumerate(estate.assets) if selector.matches(a)]
        assert index.match(selector).tolist() == expected, text
