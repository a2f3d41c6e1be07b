"""The safety guard read from columns, and its numbering of asset ids, give the answers of plain dicts.

The controller hands the guard its million targets as :class:`~ringfence.core.rollout.guard.Columns` (one key list
shared by the assignment, the states and the strata) rather than dicts, and the guard numbers asset ids by
their sorted hashes rather than through a dict. Neither may change a verdict:

- Columns is a read-only mapping like any other, refuses columns of different lengths and a repeated key.
- On arbitrary plans and states, right or wrong, keys in the plan's order or not, a check over columns
  reports exactly the violations a check over dicts reports, on a first check and on a later one.
- Ids whose hashes collide (a str subclass with one hash for all) are told apart: the guard reports what
  it reports for the same ids with their own hashes, strangers sharing a target's hash included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.core.errors import InputError
from ringfence.core.rollout.guard import Columns, GuardGroup, GuardPlan, GuardState, Violation, check_opening
from ringfence.core.rollout.state import AssetState

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STRATA = (("host", "esxi"), ("vm", "linux"), ("endpoint", None), ())


# ------------------------------------------------------------------------------ Columns as a mapping


def test_columns_read_as_the_mapping_they_hold() -> None:
    columns = Columns(["ws-1", "ws-2", "db-1"], [0, 1, 1])
    assert dict(columns) == {"ws-1": 0, "ws-2": 1, "db-1": 1}
    assert columns == {"ws-1": 0, "ws-2": 1, "db-1": 1}
    assert len(columns) == 3
    assert list(columns) == ["ws-1", "ws-2", "db-1"]
    assert list(columns.values()) == [0, 1, 1]
    assert list(columns.items()) == [("ws-1", 0), ("ws-2", 1), ("db-1", 1)]
    assert list(columns.keys()) == ["ws-1", "ws-2", "db-1"]
    assert columns["db-1"] == 1
    assert columns.get("nobody") is None
    assert "ws-2" in columns
    assert "nobody" not in columns
    assert 1 in columns.values()
    assert 2 not in columns.values()
    assert ("ws-1", 0) in columns.items()
    assert ("ws-1", 1) not in columns.items()
    with pytest.raises(KeyError):
        columns["nobody"]


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(InputError, match="columns of 2 keys and 1 values"):
        Columns(["ws-1", "ws-2"], [0])


def test_a_key_given_twice_is_refused_when_looked_up() -> None:
    columns = Columns(["ws-1", "ws-2", "ws-1"], [0, 1, 2])
    with pytest.raises(InputError, match="columns name ws-1 more than once"):
        columns.get("ws-2")


def test_an_assignment_naming_a_target_twice_is_refused_not_misread() -> None:
    # ws-1 twice and ws-2 missing: as long as the plan, but not a permutation of its targets.
    plan = GuardPlan((("ws-1", "ws-2"),), 1, dict.fromkeys(["ws-1", "ws-2"], ("endpoint",)), {"ws-1": 5, "ws-2": 5}, ())
    keys = ["ws-1", "ws-1"]
    state = GuardState(0, Columns(keys, [0, 0]), Columns(keys, [AssetState.PENDING] * 2), frozenset(), 0)
    with pytest.raises(InputError, match="columns name ws-1 more than once"):
        check_opening(plan, state, ["ws-1"])


# ------------------------------------------------------------------------------ columns against dicts


@dataclass(frozen=True)
class Case:
    rings: tuple[tuple[str, ...], ...]
    canary_rings: int
    strata: dict[str, tuple[str | None, ...]]
    tiers: dict[str, int]
    groups: tuple[GuardGroup, ...]
    assignment: dict[str, int]
    states: dict[str, AssetState]
    down: frozenset[str]
    ring: int
    judged: int
    starting: tuple[str, ...]
    strata_order: tuple[str, ...]
    later_order: tuple[str, ...]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Any plan and any opening, right or wrong: repeated or missing targets, strangers, moves, any states."""
    n = draw(st.integers(1, 14))
    targets = [f"t-{i}" for i in range(n)]
    outsiders = [f"o-{i}" for i in range(draw(st.integers(0, 3)))]
    n_rings = draw(st.integers(1, 5))
    ring_of = {t: draw(st.integers(0, n_rings - 1)) for t in targets}
    rings = [[t for t in targets if ring_of[t] == r] for r in range(n_rings)]
    if draw(st.integers(0, 3)) == 0:  # a target planned twice breaks rule 1
        rings[draw(st.integers(0, n_rings - 1))].append(draw(st.sampled_from(targets)))
    strata = {t: draw(st.sampled_from(STRATA)) for t in targets if draw(st.integers(0, 9))}
    tiers = {t: draw(st.integers(1, 5)) for t in targets if draw(st.integers(0, 9))}
    members = targets + outsiders
    groups = tuple(
        GuardGroup((f"svc-{g}",), tuple(draw(st.lists(st.sampled_from(members), min_size=1, max_size=6))), 0)
        for g in range(draw(st.integers(0, 4)))
    )
    groups = tuple(GuardGroup(g.owners, g.members, draw(st.integers(0, len(set(g.members))))) for g in groups)
    current = dict(ring_of)
    for t in draw(st.lists(st.sampled_from(targets), max_size=3)):
        current[t] = draw(st.integers(-1, n_rings))  # a ring the plan may not have
    if draw(st.integers(0, 3)) == 0:
        del current[draw(st.sampled_from(targets))]  # a target lost
    if draw(st.integers(0, 3)) == 0:
        current["stranger"] = 0
    order = draw(st.permutations(list(current)))
    assignment = {k: current[k] for k in order}
    states = {k: draw(st.sampled_from(list(AssetState))) for k in order}
    pool = (*targets, *outsiders, "nobody")
    return Case(
        rings=tuple(tuple(r) for r in rings),
        canary_rings=draw(st.integers(0, n_rings)),
        strata=strata,
        tiers=tiers,
        groups=groups,
        assignment=assignment,
        states=states,
        down=frozenset(draw(st.lists(st.sampled_from(pool), max_size=4))),
        ring=draw(st.integers(-1, n_rings)),
        judged=draw(st.integers(0, n_rings)),
        starting=tuple(draw(st.lists(st.sampled_from(pool), max_size=8))),
        strata_order=tuple(draw(st.permutations(list(strata)))),
        later_order=tuple(draw(st.permutations(list(assignment)))),
    )


def as_dicts(case: Case) -> tuple[GuardPlan, GuardState]:
    plan = GuardPlan(case.rings, case.canary_rings, case.strata, case.tiers, case.groups)
    return plan, GuardState(case.ring, case.assignment, case.states, case.down, case.judged)


def as_columns(case: Case, order: Sequence[str]) -> GuardState:
    """The state as the controller hands it: columns on one key list, in ``order``."""
    keys = list(order)
    ring = Columns(keys, [case.assignment[k] for k in keys])
    return GuardState(case.ring, ring, Columns(keys, [case.states[k] for k in keys]), case.down, case.judged)


def columns_plan(case: Case) -> GuardPlan:
    keys = list(case.strata_order)
    strata = Columns(keys, [case.strata[k] for k in keys])
    return GuardPlan(case.rings, case.canary_rings, strata, case.tiers, case.groups)


@PROPERTY
@given(cases())
def test_columns_and_dicts_get_the_same_verdict(case: Case) -> None:
    plan, state = as_dicts(case)
    expected = check_opening(plan, state, case.starting)
    by_columns = columns_plan(case)
    assert check_opening(by_columns, as_columns(case, list(case.assignment)), case.starting) == expected
    # A later check, the keys in another order (the guard remembers the last order it read).
    later = {k: case.assignment[k] for k in case.later_order}
    plan_later = GuardPlan(case.rings, case.canary_rings, case.strata, case.tiers, case.groups)
    expected_later = check_opening(
        plan_later, GuardState(case.ring, later, case.states, case.down, case.judged), case.starting
    )
    assert check_opening(by_columns, as_columns(case, case.later_order), case.starting) == expected_later


@PROPERTY
@given(cases())
def test_columns_in_the_plans_order_are_read_as_dicts_are(case: Case) -> None:
    # The controller's usual case: every key once, in the plan's order, strata and states included.
    targets = list(dict.fromkeys(t for ring in case.rings for t in ring))
    assignment = {t: case.assignment.get(t, 0) for t in targets}
    states = {t: case.states.get(t, AssetState.PENDING) for t in targets}
    strata = {t: case.strata.get(t, ()) for t in targets}
    expected = check_opening(
        GuardPlan(case.rings, case.canary_rings, strata, case.tiers, case.groups),
        GuardState(case.ring, assignment, states, case.down, case.judged),
        case.starting,
    )
    by_columns = GuardPlan(
        case.rings, case.canary_rings, Columns(targets, list(strata.values())), case.tiers, case.groups
    )
    state = GuardState(
        case.ring,
        Columns(targets, list(assignment.values())),
        Columns(targets, list(states.values())),
        case.down,
        case.judged,
    )
    assert check_opening(by_columns, state, case.starting) == expected


# ------------------------------------------------------------------------------ ids whose hashes collide


class Clash(str):
    """An id whose hash is every other Clash's: the guard must still tell the ids apart."""

    __slots__ = ()

    def __hash__(self) -> int:
        return 7


def clashing(case: Case) -> Case:
    """The same case with every id a Clash (outsiders, strangers and ids that are no asset included)."""

    def c(ids: Sequence[str]) -> tuple[str, ...]:
        return tuple(Clash(i) for i in ids)

    def keyed(mapping: Mapping[str, object]) -> dict[str, object]:
        return {Clash(k): v for k, v in mapping.items()}

    return Case(
        rings=tuple(c(r) for r in case.rings),
        canary_rings=case.canary_rings,
        strata=keyed(case.strata),  # type: ignore[arg-type]
        tiers=keyed(case.tiers),  # type: ignore[arg-type]
        groups=tuple(GuardGroup(g.owners, c(g.members), g.k) for g in case.groups),
        assignment=keyed(case.assignment),  # type: ignore[arg-type]
        states=keyed(case.states),  # type: ignore[arg-type]
        down=frozenset(c(sorted(case.down))),
        ring=case.ring,
        judged=case.judged,
        starting=c(case.starting),
        strata_order=c(case.strata_order),
        later_order=c(case.later_order),
    )


def plain(violations: Sequence[Violation]) -> list[tuple[int, str, tuple[str, ...], int | None]]:
    return [(v.rule, v.sentence, tuple(map(str, v.assets)), v.ring) for v in violations]


@PROPERTY
@given(cases())
def test_ids_whose_hashes_collide_are_told_apart(case: Case) -> None:
    expected = plain(check_opening(*as_dicts(case), case.starting))
    clash = clashing(case)
    assert plain(check_opening(*as_dicts(clash), clash.starting)) == expected
    assert (
        plain(check_opening(columns_plan(clash), as_columns(clash, list(clash.assignment)), clash.starting)) == expected
    )


def test_a_stranger_sharing_a_targets_hash_is_no_target() -> None:
    targets = (Clash("ws-1"), Clash("ws-2"))
    plan = GuardPlan((targets,), 1, dict.fromkeys(targets, ("endpoint",)), dict.fromkeys(targets, 5), ())
    state = GuardState(0, dict.fromkeys(targets, 0), dict.fromkeys(targets, AssetState.PENDING), frozenset(), 0)
    found = check_opening(plan, state, [Clash("ws-2"), Clash("ws-3")])
    assert [(v.rule, v.assets) for v in found] == [(1, ("ws-3",))]
