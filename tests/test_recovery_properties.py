"""``plan_recovery`` held against a brute-force oracle on random estates and random failures.

The oracle shares no code with ``ringfence.core.recovery`` or ``ringfence.core.graph``: the down set comes from
tests/oracle.py (naive fixpoint over ids and sets), and the restore steps from the contract's rule applied
the slowest obvious way — for s = 1, 2, …, every down item not yet assigned whose hard requirements are all
up or assigned a step < s, and each of whose ``any: K`` groups has at least K members up or assigned a step
< s, gets step s.

Estates are valid documents of 2–40 nodes. ``where`` groups never match fewer than K assets (K is lowered
to what they match, and a group matching nothing is dropped), so nothing is down before anything fails.
Dependency cycles may be generated, but an example whose down items wait on each other (the oracle finds
nothing to assign while items remain) is rejected: the fallback for cycles and unmeetable groups is pinned
by the example cases in tests/cases/recovery/, not here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import oracle
from ringfence.core.durations import parse_duration
from ringfence.core.estate import Estate, parse_estate_document
from ringfence.core.graph import compile_estate
from ringfence.core.incident import ClockStatus, rto_clocks
from ringfence.core.incident_declaration import declare_incident
from ringfence.core.recovery import RecoveryPlan, plan_recovery

# Not derandomized: CI should meet fresh examples; hypothesis prints the failing one.
PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KINDS = ("host", "vm", "storage", "saas")
SITES = ("north", "south")
SUPPLIERS = ("acme", "globex")
RTOS = (None, "30m", "1h", "2h", "4h", "1d")
STEP_TIMES = ("30m", "1h", "2h")
SELECTOR_VALUES: dict[str, tuple[str, ...]] = {"kind": KINDS, "site": SITES, "supplier": SUPPLIERS}

RAW_GROUP = st.one_of(
    st.tuples(st.just("of"), st.lists(st.integers(0, 63), min_size=1, max_size=4), st.integers(1, 3)),
    st.tuples(
        st.just("where"),
        st.tuples(st.sampled_from(tuple(SELECTOR_VALUES)), st.lists(st.integers(0, 7), min_size=1, max_size=2)),
        st.integers(1, 3),
    ),
)
# A node's tier, RTO, kind, site and supplier are decoded from one integer: one draw instead of five keeps
# generation (and so shrinking, which regenerates) fast.
NODE_FIELDS: tuple[tuple[object, ...], ...] = (
    (1, 2, 3, 4),
    RTOS,
    KINDS,
    (None, *SITES),
    (None, *SUPPLIERS),
)
RAW_NODE = st.tuples(
    st.integers(0, math.prod(len(f) for f in NODE_FIELDS) - 1),
    st.lists(st.integers(0, 63), max_size=3),  # hard requirements
    st.lists(RAW_GROUP, max_size=2),
)
# Suppliers, sites and kinds fail many assets at once: weighted up so that much goes down.
FAILURE_FORMS = ("bare", "asset", "service", "supplier", "supplier", "site", "site", "where")
RAW_FAILURE = st.tuples(st.sampled_from(FAILURE_FORMS), st.integers(0, 63))


def pick(pool: Sequence[str], i: int) -> str:
    return pool[i % len(pool)]


def unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ------------------------------------------------------------------------------------------ estates


def node_fields(code: int) -> list[Any]:
    values = []
    for field in NODE_FIELDS:
        code, i = divmod(code, len(field))
        values.append(field[i])
    return values


@st.composite
def estate_documents(draw: st.DrawFn) -> dict[str, Any]:
    # The size drawn first: a bare list strategy stays mostly small, and big estates cascade further.
    n = draw(st.integers(2, 40))
    raw_nodes = draw(st.lists(RAW_NODE, min_size=n, max_size=n))
    n_services = min(draw(st.integers(1, 10)), n - 1)
    # Ids unrelated to position, so that sorting by id and by position disagree.
    ids = tuple(f"n{i}" for i in draw(st.permutations(range(n))))
    # Most estates point hard and `of` requirements only forward (a DAG); the rest anywhere (cycles, which
    # the oracle mostly rejects, but loops through groups met by members that stayed up are kept).
    forward_only = draw(st.sampled_from((True,) * 7 + (False,)))

    def requirements(position: int, raw: tuple[Any, ...]) -> list[Any]:
        *_, hard_picks, raw_groups = raw
        pool = ids[position + 1 :] if forward_only else ids[:position] + ids[position + 1 :]
        if not pool:
            return []
        requires: list[Any] = unique([pick(pool, i) for i in hard_picks])
        for form, what, k in raw_groups:
            if form == "of":
                members = unique([pick(pool, i) for i in what])
                requires.append({"any": min(k, len(members)), "of": members})
            else:
                key, picks = what
                values = unique([pick(SELECTOR_VALUES[key], i) for i in picks])
                selector = f"{key}={'|'.join(values)}"
                if forward_only and position >= n_services:
                    # Only later assets, so that a DAG stays one (services are never `where` members).
                    selector += f",id={'|'.join(pool)}"
                requires.append({"any": k, "where": selector})
        return requires

    services, assets = [], []
    for position, (node_id, raw) in enumerate(zip(ids, raw_nodes, strict=True)):
        tier, rto, kind, site, supplier = node_fields(raw[0])
        node: dict[str, Any]
        if position < n_services:
            node = {"id": node_id, "tier": tier}
            if rto is not None:
                node["rto"] = rto
            services.append(node)
        else:
            node = {"id": node_id, "kind": kind}
            if site is not None:
                node["site"] = site
            if supplier is not None:
                node["supplier"] = supplier
            assets.append(node)
        requires = requirements(position, raw)
        if requires:
            node["requires"] = requires
    doc: dict[str, Any] = {
        "apiVersion": "ringfence/v1",
        "estate": "prop",
        "suppliers": [{"id": s} for s in SUPPLIERS],
        "services": services,
        "assets": assets,
    }
    return meetable(doc)


def meetable(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with every ``where`` group's K lowered to what it matches (dropped when it matches none)."""
    estate = parse_estate_document(doc, source="<hypothesis>")
    for node in [*doc["services"], *doc["assets"]]:
        kept = []
        for requirement in node.get("requires", []):
            if isinstance(requirement, dict) and "where" in requirement:
                matched = len(oracle.where_members(estate, node["id"], requirement["where"]))
                if matched == 0:
                    continue
                requirement = {**requirement, "any": min(requirement["any"], matched)}
            kept.append(requirement)
        if kept:
            node["requires"] = kept
        else:
            node.pop("requires", None)
    return doc


def failure_refs(estate: Estate, raws: list[tuple[str, int]]) -> list[str]:
    asset_ids = [a.id for a in estate.assets]
    service_ids = [s.id for s in estate.services]
    sites = sorted(oracle.all_sites(estate))
    refs = []
    for form, i in raws:
        if form == "asset" and asset_ids:
            refs.append(f"asset:{pick(asset_ids, i)}")
        elif form == "service" and service_ids:
            refs.append(f"service:{pick(service_ids, i)}")
        elif form == "supplier":
            refs.append(f"supplier:{pick(SUPPLIERS, i)}")
        elif form == "site" and sites:
            refs.append(f"site:{pick(sites, i)}")
        elif form == "where":
            refs.append(f"where:kind={pick(KINDS, i)}")
        else:
            refs.append(pick(asset_ids + service_ids, i))
    return refs


# ------------------------------------------------------------------------------------------ the oracle


def requirements_met(node_id: str, rules: oracle.Rules, back: Callable[[str], bool]) -> bool:
    """Every hard requirement back, and at least K members of each group back."""
    if not all(back(r) for r in rules.hard[node_id]):
        return False
    return all(sum(1 for m in g.members if back(m)) >= g.k for g in rules.groups[node_id])


def back_before(down: frozenset[str], step: dict[str, int], s: int) -> Callable[[str], bool]:
    """Whether an item is up, or restored in a step before ``s``."""
    return lambda x: x not in down or (x in step and step[x] < s)


def oracle_steps(down: frozenset[str], rules: oracle.Rules) -> dict[str, int] | None:
    """Each down item's step by the contract's rule; None when some items wait only on each other."""
    step: dict[str, int] = {}
    s = 0
    while len(step) < len(down):
        s += 1
        back = back_before(down, step, s)
        ready = [x for x in sorted(down) if x not in step and requirements_met(x, rules, back)]
        if not ready:
            return None
        for x in ready:
            step[x] = s
    return step


# ------------------------------------------------------------------------------------------ helpers


def scenario(doc: dict[str, Any], raws: list[tuple[str, int]]) -> tuple[Estate, list[str], frozenset[str]]:
    estate = parse_estate_document(doc, source="<hypothesis>")
    refs = failure_refs(estate, raws)
    return estate, refs, oracle.down_after(estate, refs)


def plan(estate: Estate, refs: list[str], **options: Any) -> RecoveryPlan:
    graph = compile_estate(estate)
    return plan_recovery(graph, graph.resolve_failures(refs), **options)


def assert_partition(got: RecoveryPlan, down: frozenset[str]) -> dict[str, int]:
    """Every down item in exactly one step, nothing else, steps 1..n without gaps, ids sorted in a step."""
    listed = [x for s in got.steps for x in s.restore]
    assert sorted(listed) == sorted(down), "each down item exactly once, and nothing else"
    assert [s.step for s in got.steps] == list(range(1, len(got.steps) + 1))
    assert all(s.restore for s in got.steps), "no empty step"
    assert all(list(s.restore) == sorted(s.restore) for s in got.steps)
    return got.step_of()


RAW_FAILURES = st.lists(RAW_FAILURE, min_size=1, max_size=4)


# ------------------------------------------------------------------------------------------ properties


@PROPERTY
@given(doc=estate_documents(), raws=RAW_FAILURES)
def test_every_item_restored_at_the_earliest_step_its_requirements_allow(
    doc: dict[str, Any], raws: list[tuple[str, int]]
) -> None:
    estate, refs, down = scenario(doc, raws)
    rules = oracle.rules_of(estate)
    expected = oracle_steps(down, rules)
    assume(expected is not None)
    got = plan(estate, refs)
    assert got.step_of() == expected
    assert_partition(got, down)
    assert got.failed == tuple(sorted(set(refs)))  # the same failure named twice is one failure
    assert got.notes == (), "the plain rule decided everything: nothing to note"
    assert got.parallel is None


def capped_plan(
    doc: dict[str, Any], raws: list[tuple[str, int]], parallel: int
) -> tuple[Estate, oracle.Rules, frozenset[str], RecoveryPlan, dict[str, int]]:
    estate, refs, down = scenario(doc, raws)
    rules = oracle.rules_of(estate)
    assume(oracle_steps(down, rules) is not None)
    got = plan(estate, refs, parallel=parallel)
    return estate, rules, down, got, assert_partition(got, down)


def ready_at(s: int, down: frozenset[str], rules: oracle.Rules, step: dict[str, int]) -> list[str]:
    """Items not restored before step ``s`` whose requirements are up or restored before it."""
    back = back_before(down, step, s)
    return sorted(x for x in down if step[x] >= s and requirements_met(x, rules, back))


@PROPERTY
@given(doc=estate_documents(), raws=RAW_FAILURES, parallel=st.integers(1, 5))
def test_parallel_caps_steps_restores_nothing_early_and_leaves_no_room_idle(
    doc: dict[str, Any], raws: list[tuple[str, int]], parallel: int
) -> None:
    estate, rules, down, got, step = capped_plan(doc, raws, parallel)
    assert got.parallel == parallel
    tier = {x: key[0] for x, key in oracle.criticality(estate, down, rules).items()}
    for restore_step in got.steps:
        s = restore_step.step
        assert len(restore_step.restore) <= parallel
        ready = ready_at(s, down, rules, step)
        assert set(restore_step.restore) <= set(ready), f"step {s} restores items before their requirements"
        # Nothing ready is left waiting while the step has room.
        assert len(restore_step.restore) == min(parallel, len(ready)), f"step {s}: ready {ready}"
        waiting = [y for y in ready if step[y] > s]
        for x in restore_step.restore:
            for y in waiting:
                assert tier[x] <= tier[y], f"step {s}: {x} (tier {tier[x]}) taken before {y} (tier {tier[y]})"


# An item's criticality is that of the most critical down service needing it: tier, then that service's RTO.
# Here x serves a tier-2 service with no RTO and a tier-4 one with a 1h RTO; y serves a tier-2 service with a
# 4h RTO. y is the more critical: a tier-4 service's RTO must not lift x above a tier-2 service's.
# (Explicit, so that it fails at once instead of after minutes of shrinking.)
PRIORITY_BY_MOST_CRITICAL_SERVICE = {
    "apiVersion": "ringfence/v1",
    "estate": "priority",
    "services": [
        {"id": "s1", "tier": 2, "requires": ["x"]},
        {"id": "s2", "tier": 2, "rto": "4h", "requires": ["y"]},
        {"id": "s4", "tier": 4, "rto": "1h", "requires": ["x"]},
    ],
    "assets": [{"id": "x", "kind": "vm"}, {"id": "y", "kind": "vm"}],
}


@PROPERTY
@example(doc=PRIORITY_BY_MOST_CRITICAL_SERVICE, raws=[("asset", 0), ("asset", 1)], parallel=1)
@given(doc=estate_documents(), raws=RAW_FAILURES, parallel=st.integers(1, 4))
def test_parallel_takes_ready_items_by_tier_then_rto_of_the_most_critical_service_needing_them(
    doc: dict[str, Any], raws: list[tuple[str, int]], parallel: int
) -> None:
    estate, rules, down, got, step = capped_plan(doc, raws, parallel)
    key = oracle.criticality(estate, down, rules)
    for restore_step in got.steps:
        s = restore_step.step
        waiting = [y for y in ready_at(s, down, rules, step) if step[y] > s]
        for x in restore_step.restore:
            for y in waiting:
                assert key[x] <= key[y], f"step {s}: {x} {key[x]} taken before more critical {y} {key[y]}"


@PROPERTY
@given(doc=estate_documents(), raws=RAW_FAILURES)
def test_parallel_at_least_everything_down_changes_nothing(doc: dict[str, Any], raws: list[tuple[str, int]]) -> None:
    estate, refs, down = scenario(doc, raws)
    assume(oracle_steps(down, oracle.rules_of(estate)) is not None)
    graph = compile_estate(estate)
    failures = graph.resolve_failures(refs)
    unlimited = plan_recovery(graph, failures)
    capped = plan_recovery(graph, failures, parallel=max(1, len(down)))
    assert capped.steps == unlimited.steps


@PROPERTY
@given(
    doc=estate_documents(),
    raws=RAW_FAILURES,
    parallel=st.one_of(st.none(), st.integers(1, 4)),
    step_time=st.sampled_from(STEP_TIMES),
)
def test_continuity_lists_the_down_services_most_critical_first_and_the_rtos_at_risk(
    doc: dict[str, Any], raws: list[tuple[str, int]], parallel: int | None, step_time: str
) -> None:
    estate, refs, down = scenario(doc, raws)
    assume(oracle_steps(down, oracle.rules_of(estate)) is not None)
    step_seconds = parse_duration(step_time)
    got = plan(estate, refs, parallel=parallel, step_seconds=step_seconds)
    step = got.step_of()
    services = sorted((s for s in estate.services if s.id in down), key=lambda s: (s.tier, oracle.rto_key(s.rto), s.id))
    assert [(c.service, c.tier, c.rto, c.plan) for c in got.continuity] == [
        (s.id, s.tier, s.rto, s.continuity) for s in services
    ]
    expected_risk = [
        (s.id, s.tier, s.rto, step[s.id] * step_seconds)
        for s in services
        if s.rto is not None and step[s.id] * step_seconds > s.rto
    ]
    assert [(r.service, r.tier, r.rto, r.restored_by) for r in got.rto_at_risk] == expected_risk
    assert got.step_seconds == step_seconds


def test_the_generator_reaches_what_the_properties_are_about() -> None:
    """Guard against a generator that never produces the interesting cases: several steps, services down,
    groups with more down members than they need (only the K earliest count), and not too many rejects."""
    seen = {"deep": 0, "k_of_n": 0, "rejected": 0, "services_down": 0}

    @settings(max_examples=60, deadline=None, database=None)
    @given(doc=estate_documents(), raws=RAW_FAILURES)
    def explore(doc: dict[str, Any], raws: list[tuple[str, int]]) -> None:
        estate, _, down = scenario(doc, raws)
        rules = oracle.rules_of(estate)
        steps = oracle_steps(down, rules)
        if steps is None:
            seen["rejected"] += 1
            return
        seen["deep"] += max(steps.values(), default=0) >= 3
        seen["services_down"] += any(s.id in down for s in estate.services)
        # A down item with a group that has more down members than it still needs from them.
        seen["k_of_n"] += any(
            len(g.members & down) > g.k - len(g.members - down) > 0 for x in down for g in rules.groups[x]
        )

    explore()
    assert seen["deep"] >= 8, seen
    assert seen["k_of_n"] >= 5, seen
    assert seen["services_down"] >= 10, seen
    assert seen["rejected"] <= 30, seen


@PROPERTY
@given(doc=estate_documents(), raws=RAW_FAILURES, step_time=st.sampled_from(STEP_TIMES))
def test_an_incident_declared_now_puts_at_risk_what_the_recovery_plan_does(
    doc: dict[str, Any], raws: list[tuple[str, int]], step_time: str
) -> None:
    """`ringfence recover` and an incident's clocks at its declaration name the same RTOs at risk — the step
    times are whole divisors of the RTOs, so "exactly enough time" comes up often."""
    estate, refs, down = scenario(doc, raws)
    assume(oracle_steps(down, oracle.rules_of(estate)) is not None)
    graph = compile_estate(estate)
    failures = graph.resolve_failures(refs)
    step_seconds = parse_duration(step_time)
    got = plan_recovery(graph, failures, step_seconds=step_seconds)
    assume(got.steps)
    declared_at = datetime(2022, 8, 4, 7, 0, tzinfo=UTC)
    incident = declare_incident(
        graph, failures, incident_id="inc-1", at=declared_at, actor="olga", step_seconds=step_seconds
    )
    clocks = rto_clocks(incident, declared_at)
    assert [c.service for c in clocks if c.status is ClockStatus.AT_RISK] == [r.service for r in got.rto_at_risk]
