"""Items that need each other (dependency cycles) in ``plan_recovery``, with and without ``--parallel N``.

The estates here are hard requirements only — a forward DAG of assets with rings added on top (each asset of
a ring requires the next) — so the units that must come back together are exactly the strongly connected
parts of the hard requirements among the down items, which a few lines of brute force find (no code shared
with ``ringfence.core.recovery``). What must hold, for any such estate, failure and cap:

* a cycle is one unit: all its items share a step, and a note says they are restored together;
* nothing comes back before what it needs outside its own cycle;
* without a cap every unit comes back at the earliest step it can (the contract's rule over units);
* with ``parallel=N`` a step holds at most N items — unless it is one cycle larger than N alone, which a
  note says in a sentence; no room is left idle that a ready unit would fit in; and the more critical go
  first (a waiting unit is never more critical than a unit taken in its place).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle
from ringfence.core.estate import Estate, parse_estate_document
from ringfence.core.graph import compile_estate
from ringfence.core.recovery import RecoveryPlan, plan_recovery

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RTOS = (None, "30m", "1h", "4h")


@st.composite
def cyclic_estates(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(3, 24))
    ids = [f"a{i}" for i in draw(st.permutations(range(n)))]
    requires: dict[str, list[str]] = {}
    for position, asset in enumerate(ids):
        later = ids[position + 1 :]
        if later:
            picks = draw(st.lists(st.integers(0, len(later) - 1), max_size=2))
            requires[asset] = sorted({later[p] for p in picks})
    # Rings: each asset of a ring requires the next, the last the first. Some larger than any cap drawn.
    for _ in range(draw(st.integers(1, 3))):
        ring = draw(st.lists(st.sampled_from(ids), min_size=2, max_size=min(7, n), unique=True))
        for a, b in zip(ring, [*ring[1:], ring[0]], strict=True):
            requires.setdefault(a, [])
            if b not in requires[a]:
                requires[a].append(b)
    services = []
    for s in range(draw(st.integers(1, 4))):
        needs = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=2, unique=True))
        service: dict[str, Any] = {"id": f"s{s}", "tier": draw(st.integers(1, 4)), "requires": needs}
        rto = draw(st.sampled_from(RTOS))
        if rto is not None:
            service["rto"] = rto
        services.append(service)
    assets = [{"id": a, "kind": "vm", **({"requires": requires[a]} if requires.get(a) else {})} for a in ids]
    return {"apiVersion": "ringfence/v1", "estate": "cycles", "services": services, "assets": assets}


FAILURES = st.lists(st.integers(0, 63), min_size=1, max_size=3)


def scenario(doc: dict[str, Any], picks: list[int]) -> tuple[Estate, list[str], frozenset[str], oracle.Rules]:
    estate = parse_estate_document(doc, source="<hypothesis>")
    assets = [a.id for a in estate.assets]
    refs = sorted({f"asset:{assets[p % len(assets)]}" for p in picks})
    rules = oracle.rules_of(estate)
    return estate, refs, oracle.down_after(estate, refs, rules), rules


def units_of(down: frozenset[str], rules: oracle.Rules) -> dict[str, frozenset[str]]:
    """Each down item's unit: the down items it needs (through down items) that also need it."""
    reach: dict[str, set[str]] = {}
    for x in down:
        seen, stack = set(), [x]
        while stack:
            for r in rules.hard[stack.pop()]:
                if r in down and r not in seen:
                    seen.add(r)
                    stack.append(r)
        reach[x] = seen
    return {x: frozenset({x} | {y for y in reach[x] if x in reach[y]}) for x in down}


def needs_outside(x: str, unit: frozenset[str], down: frozenset[str], rules: oracle.Rules) -> set[str]:
    return {r for r in rules.hard[x] if r in down and r not in unit}


def planned(estate: Estate, refs: list[str], parallel: int | None) -> RecoveryPlan:
    graph = compile_estate(estate)
    return plan_recovery(graph, graph.resolve_failures(refs), parallel=parallel)


def listed(note: str) -> set[str]:
    return set(note.split(": ", 1)[1].removesuffix(" …").split(", "))


def check_units(
    got: RecoveryPlan, down: frozenset[str], rules: oracle.Rules
) -> tuple[dict[str, int], dict[str, frozenset[str]]]:
    """Every down item once; cycles whole and noted; nothing before what it needs outside its cycle."""
    step = got.step_of()
    assert sorted(step) == sorted(down), "each down item exactly once, and nothing else"
    assert [s.step for s in got.steps] == list(range(1, len(got.steps) + 1))
    units = units_of(down, rules)
    together = [n for n in got.notes if n.startswith("restored together because they need each other: ")]
    for cycle in {u for u in units.values() if len(u) > 1}:
        assert len({step[x] for x in cycle}) == 1, f"{sorted(cycle)} need each other but were split: {step}"
        assert any(cycle & listed(n) or n.endswith(" …") for n in together), (sorted(cycle), got.notes)
    for x in down:
        for r in needs_outside(x, units[x], down, rules):
            assert step[r] < step[x], f"{x} (step {step[x]}) before {r} (step {step[r]}), which it needs"
    return step, units


def earliest(unit: frozenset[str], step: dict[str, int], down: frozenset[str], rules: oracle.Rules) -> int:
    """The step after the last thing the unit needs outside itself."""
    return 1 + max((step[r] for y in unit for r in needs_outside(y, unit, down, rules)), default=0)


@PROPERTY
@given(doc=cyclic_estates(), picks=FAILURES)
def test_without_a_cap_each_cycle_comes_back_whole_at_the_earliest_step(doc: dict[str, Any], picks: list[int]) -> None:
    estate, refs, down, rules = scenario(doc, picks)
    got = planned(estate, refs, None)
    step, units = check_units(got, down, rules)
    for x in down:
        assert step[x] == earliest(units[x], step, down, rules), (x, step)
    assert not [n for n in got.notes if "more than the" in n]


@PROPERTY
@given(doc=cyclic_estates(), picks=FAILURES, parallel=st.integers(1, 4))
def test_a_cap_never_splits_a_cycle_and_says_when_one_exceeds_it(
    doc: dict[str, Any], picks: list[int], parallel: int
) -> None:
    estate, refs, down, rules = scenario(doc, picks)
    got = planned(estate, refs, parallel)
    step, units = check_units(got, down, rules)
    key = oracle.criticality(estate, down, rules)

    def order(unit: frozenset[str]) -> tuple[tuple[int, float], str]:
        """The order a step takes ready units in: most critical first, then id."""
        return min(key[y] for y in unit), min(unit)

    oversized = [n for n in got.notes if "more than the" in n]
    for restore_step in got.steps:
        s, items = restore_step.step, frozenset(restore_step.restore)
        taken = {units[x] for x in items}
        if len(items) > parallel:
            # One cycle larger than the cap, alone, and a sentence that says so.
            assert len(taken) == 1, f"step {s} holds {sorted(items)}, more than {parallel}"
            assert (
                f"step {s} restores {len(items)} items, more than the {parallel} a step allows: they need each "
                f"other, so they come back together or not at all: {', '.join(sorted(items)[:8])}"
                + (" …" if len(items) > 8 else "")
            ) in oversized, got.notes
        ready = {units[x] for x in down if step[x] >= s and earliest(units[x], step, down, rules) <= s}
        assert taken <= ready, f"step {s} restores something before what it needs"
        first = min(ready, key=order)
        assert first in taken, f"step {s}: the most critical ready unit {sorted(first)} waits"
        for unit in ready - taken:
            # It waited only because it did not fit in the room left when its turn came.
            room = parallel - sum(len(t) for t in taken if order(t) < order(unit))
            assert len(unit) > room, f"step {s}: {sorted(unit)} fitted in the {room} left, yet waits"
    assert len(oversized) == sum(1 for s in got.steps if len(s.restore) > parallel)


def test_a_cycle_larger_than_the_cap_is_restored_whole_in_a_step_of_its_own() -> None:
    doc = {
        "apiVersion": "ringfence/v1",
        "estate": "ring",
        "services": [{"id": "ehr", "tier": 1, "rto": "4h", "requires": ["db"]}],
        "assets": [
            {"id": "san", "kind": "storage"},
            {"id": "db", "kind": "vm", "requires": ["app-1", "san"]},
            {"id": "app-1", "kind": "vm", "requires": ["app-2"]},
            {"id": "app-2", "kind": "vm", "requires": ["db"]},
        ],
    }
    estate = parse_estate_document(doc, source="ring.yaml")
    got = planned(estate, ["asset:san"], 2)
    assert [s.restore for s in got.steps] == [("san",), ("app-1", "app-2", "db"), ("ehr",)]
    assert got.notes == (
        "restored together because they need each other: app-1, app-2, db",
        "step 2 restores 3 items, more than the 2 a step allows: they need each other, so they come back "
        "together or not at all: app-1, app-2, db",
    )
