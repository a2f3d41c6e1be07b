"""The guard's input types, and the plan compiled once into integer ids and CSR arrays."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from itertools import chain, compress, repeat
from typing import NamedTuple, TypeVar

import numpy as np

from ringfence.core.rollout.guard.columns import Columns, _Numbering
from ringfence.core.rollout.guard.violations import (
    _NO_RING,
    _NO_TIER,
    _SKIPPED_STATES,
    SHOWN_PER_RULE,
    UNAVAILABLE_STATES,
    BoolArray,
    IntArray,
    Stratum,
    Violation,
    _distinct,
    _Findings,
    _is_are,
    _pick,
    _pick_all,
    _plan_rings,
    _pointers,
)
from ringfence.core.rollout.record import MemberNumbers
from ringfence.core.rollout.state import AssetState
from ringfence.core.words import and_list, count, names

T = TypeVar("T")


class GuardGroup(NamedTuple):
    """An ``any: K`` group of the estate with at least one target among its members.

    ``members`` lists every member, target of the rollout or not; a member listed twice counts once. (A named
    tuple, not a dataclass: a plan of a million assets carries thousands of groups, built at each first check.)
    """

    owners: tuple[str, ...]
    members: tuple[str, ...]
    k: int
    numbers: MemberNumbers | None = None
    """The same members as the plan numbered them (targets by position among the plan's targets, see
    record.MemberNumbers), when it did: the guard then looks up only the members outside the rollout by id."""

    @property
    def n(self) -> int:
        """How many distinct members the group has."""
        return len(set(self.members))

    @property
    def capacity(self) -> int:
        """How many members may be unavailable at once: n − K."""
        return self.n - self.k

    @property
    def is_exempt(self) -> bool:
        """No member can be updated without an outage (n − K ≤ 0): the plan warned, rules 4, 5 and 7 skip it."""
        return self.capacity <= 0


@dataclass(frozen=True)
class GuardPlan:
    """The plan as persisted when the rollout was created.

    ``rings`` holds the planned ring membership (asset ids); rings ``0 .. canary_rings - 1`` form the canary
    phase. ``strata`` and ``tiers`` give each target's stratum and impact tier (1 most critical .. 5 none).
    ``groups`` are the any-K groups with at least one target among their members. The plan is compiled once,
    on the first check, and the compiled form is kept on this object: keep one GuardPlan per rollout.
    """

    rings: tuple[tuple[str, ...], ...]
    canary_rings: int
    strata: Mapping[str, Stratum]
    tiers: Mapping[str, int]
    groups: tuple[GuardGroup, ...]

    @cached_property
    def exempt(self) -> tuple[GuardGroup, ...]:
        """The groups with n − K ≤ 0: exempt from rules 4, 5 and 7 (the plan listed them under warnings)."""
        counted = self._compiled.counted
        return tuple(group for g, group in enumerate(self.groups) if not counted[g])

    @cached_property
    def _compiled(self) -> _CompiledPlan:
        return _compile(self)


@dataclass(frozen=True)
class GuardState:
    """The rollout now.

    ``ring`` is the ring about to open or being worked. ``assignment`` gives each target's current ring (run
    time may move a spare asset into a canary ring as a replacement canary wave). ``states`` gives each
    target's state (a target missing counts as pending). ``down`` holds the assets health knows are down,
    targets or not. Rings ``0 .. judged_rings - 1`` have had a gate verdict ``passed``.
    """

    ring: int
    assignment: Mapping[str, int]
    states: Mapping[str, AssetState]
    down: frozenset[str]
    judged_rings: int


@dataclass(eq=False)
class _GroupArrays:
    """The plan's groups as integer arrays (see :func:`_compile_groups`)."""

    member_ids: list[str]
    """Every group member by number: the targets, then the members outside the rollout."""
    outside_index: dict[str, int]
    capacity: IntArray
    """Per group: n − K, with n its distinct members."""
    counted: BoolArray
    """Per group: not exempt (n − K > 0)."""
    entry_group: IntArray
    entry_target: IntArray
    """(non-exempt group, target member) pairs, for rules 4 and 5."""
    groups_ptr: IntArray
    groups_of: IntArray
    """Non-exempt groups of each member (CSR over member numbers), for rules 5 and 7."""
    members_ptr: IntArray
    members_of: IntArray
    """Distinct members of each non-exempt group (CSR over group numbers), for rule 7."""


@dataclass(eq=False)
class _CompiledPlan(_GroupArrays):
    """The plan in integer ids: targets ``0 .. n-1`` in plan order, then members outside the rollout."""

    ids: list[str]
    index: _Numbering
    planned: IntArray
    n_rings: int
    canary_rings: int
    stratum: IntArray
    """Stratum number of each target; -1 where the plan gives none."""
    strata: list[Stratum]
    tier: IntArray
    has_tier: BoolArray
    top_tier: IntArray
    """Per stratum: the highest (least critical) tier among its targets."""
    problems: tuple[Violation, ...]
    planned_over: frozenset[int] | None = None
    """(group, ring) keys that the plan as made overfills (rule 4), once worked out on the first check; their
    violations are then among ``problems``."""
    checked: dict[bytes, tuple[Violation, ...]] = field(default_factory=dict)
    """Rules 2–5 already worked out, by fingerprint of the assignment."""
    order: tuple[list[str], IntArray, IntArray] | None = None
    """The last order of assignment keys seen that was not the plan's, each key's target number, and each
    target's position among the keys."""

    def remember(self, fingerprint: bytes, violations: tuple[Violation, ...]) -> None:
        # A handful of assignments per rollout at most (one per replacement wave); keep the latest few.
        if len(self.checked) >= 4:
            del self.checked[next(iter(self.checked))]
        self.checked[fingerprint] = violations


def _compile(plan: GuardPlan) -> _CompiledPlan:
    findings = _Findings()
    n_rings = len(plan.rings)
    ids, index, planned = _targets(plan, findings)
    n = len(ids)
    canary_rings = min(max(plan.canary_rings, 0), n_rings)
    if n and not 1 <= plan.canary_rings <= n_rings:
        findings.add(
            2,
            f"the plan has {count(plan.canary_rings, 'canary ring')} among its {count(n_rings, 'ring')}; "
            "a canary phase of at least one ring must come first",
            (),
        )

    raw_strata = _in_order(plan.strata, ids, index)
    # An empty tuple is a real stratum (an update with no strata keys): only a missing one is None.
    stratum, strata = _number_strata(raw_strata)
    no_stratum = np.flatnonzero(stratum < 0)
    if no_stratum.size:
        missing = _pick(ids, no_stratum)
        findings.add(
            2,
            f"the plan gives no stratum for {count(no_stratum.size, 'target')} ({names(missing)}): "
            "coverage cannot be checked for them",
            missing,
        )

    raw_tiers = _in_order(plan.tiers, ids, index)
    try:
        tier = np.fromiter(raw_tiers, np.int64, n)
        has_tier = np.ones(n, np.bool_)
    except TypeError:  # a target without a tier (None)
        has_tier = np.fromiter((t is not None for t in raw_tiers), np.bool_, n)
        tier = np.fromiter((_NO_TIER if t is None else t for t in raw_tiers), np.int64, n)
        missing = _pick(ids, np.flatnonzero(~has_tier))
        findings.add(
            3,
            f"the plan gives no impact tier for {count(n - int(has_tier.sum()), 'target')} ({names(missing)})",
            missing,
        )
    top_tier = np.full(len(strata), _NO_TIER, np.int64)
    known = (stratum >= 0) & has_tier
    np.maximum.at(top_tier, stratum[known], tier[known])

    groups = _compile_groups(plan, ids, index)
    return _CompiledPlan(
        ids=ids,
        index=index,
        planned=planned,
        n_rings=n_rings,
        canary_rings=canary_rings,
        stratum=stratum,
        strata=strata,
        tier=tier,
        has_tier=has_tier,
        top_tier=top_tier,
        problems=findings.violations(),
        **{f.name: getattr(groups, f.name) for f in fields(_GroupArrays)},
    )


def _number_strata(raw: list[Stratum | None]) -> tuple[IntArray, list[Stratum]]:
    """Each target's stratum number (-1: none) in order of first sight, and the strata so numbered.

    A stratum tuple hashes anew at every look-up, but the strata of a plan are a few objects shared by many
    targets: the objects are told apart by address (one sort), and only one of each is hashed."""
    n = len(raw)
    addresses = np.fromiter(map(id, raw), np.int64, n)
    distinct, first, inverse = np.unique(addresses, return_index=True, return_inverse=True)
    # Equal strata held by different objects are one stratum: number each distinct object's value once.
    numbers: dict[Stratum | None, int] = {None: -1}
    by_sight = np.argsort(first, kind="stable")
    value_number = np.empty(distinct.size, np.int64)
    for d in by_sight.tolist():
        value = raw[int(first[d])]
        value_number[d] = numbers.setdefault(value, len(numbers) - 1)
    strata: list[Stratum] = [s for s in numbers if s is not None]
    return value_number[inverse.reshape(-1)] if n else np.zeros(0, np.int64), strata


def _in_order(mapping: Mapping[str, T], ids: list[str], index: _Numbering) -> list[T | None]:
    """``mapping``'s value for each target, in plan order (None where it has none).

    One pass over its values when its keys come in plan order; :class:`Columns` in another order are placed by
    each key's target number, without building their dict; anything else is looked up by id."""
    keys = list(mapping)
    if keys == ids:
        return list(mapping.values())
    if not isinstance(mapping, Columns):
        return list(map(mapping.get, ids))
    positions = index.numbers(keys)
    placed = positions[positions >= 0]
    if placed.size and np.bincount(placed).max() > 1:
        return list(map(mapping.get, ids))  # a key given twice: the dict refuses it with a sentence
    found: list[T | None] = [None] * len(ids)
    for number, value in zip(positions.tolist(), mapping.values_column, strict=True):
        if number >= 0:
            found[number] = value
    return found


def _targets(plan: GuardPlan, findings: _Findings) -> tuple[list[str], _Numbering, IntArray]:
    """The plan's targets in ring order, each once, their numbers and planned rings; a repeat is a violation."""
    flat = list(chain.from_iterable(plan.rings))
    sizes = [len(ring) for ring in plan.rings]
    index = _Numbering(flat)
    if index.distinct:
        return flat, index, np.repeat(np.arange(len(plan.rings), dtype=np.int64), sizes)
    ids: list[str] = []
    rings_of: dict[str, list[int]] = {}
    for r, ring in enumerate(plan.rings):
        for asset in ring:
            rings_of.setdefault(asset, []).append(r)
    ids = list(rings_of)
    repeated = [a for a, rings in rings_of.items() if len(rings) > 1]
    for asset in repeated[:SHOWN_PER_RULE]:
        where = and_list([f"ring {r}" for r in rings_of[asset]])
        findings.add(1, f"the plan puts {asset} in {where}: a target belongs to exactly one ring", (asset,))
    if len(repeated) > SHOWN_PER_RULE:
        rest = repeated[SHOWN_PER_RULE:]
        findings.add(1, f"{count(len(rest), 'more target')} planned in several rings ({names(rest)})", rest)
    planned = np.fromiter((rings_of[a][0] for a in ids), np.int64, len(ids))
    return ids, _Numbering(ids), planned


def _compile_groups(plan: GuardPlan, ids: list[str], index: _Numbering) -> _GroupArrays:
    """The groups as integer arrays: distinct members, capacities, and both directions of membership."""
    n = len(ids)
    n_groups = len(plan.groups)
    numbered = _numbered_members(plan, n) if index.distinct else None
    outside_index: dict[str, int] = {}
    if numbered is not None:
        # Targets by their positions, as the plan numbered them; only members outside the rollout by id.
        member, sizes, outside = numbered
        if outside:
            found = index.numbers(outside)
            if (found >= 0).any():
                numbered = None  # an "outside" member that is a target: numbers that cannot be trusted
            else:
                slots = np.flatnonzero(member < 0)
                member[slots] = [outside_index.setdefault(a, n + len(outside_index)) for a in outside]
    if numbered is None:
        listed = [group.members for group in plan.groups]
        sizes = np.fromiter(map(len, listed), np.int64, n_groups)
        flat = list(chain.from_iterable(listed))
        member = index.numbers(flat)
        for position in np.flatnonzero(member < 0).tolist():
            member[position] = outside_index.setdefault(flat[position], n + len(outside_index))
    n_members = n + len(outside_index)
    group = np.repeat(np.arange(n_groups, dtype=np.int64), sizes)
    width = max(n_groups, 1)
    k = np.fromiter((g.k for g in plan.groups), np.int64, n_groups)
    if numbered is not None and not outside_index:
        # As the plan numbered them: each group's targets ascending, each once (checked), so the pairs are distinct
        # and already in group order. A stable sort by member keeps each member's groups ascending; it runs over
        # ascending runs, one per group (several times faster than sorting the pairs).
        capacity = sizes - k
        counted = capacity > 0
        keep = counted[group]
        member, group = member[keep], group[keep]
        by_member = np.argsort(member, kind="stable")
        return _GroupArrays(
            member_ids=ids,
            outside_index=outside_index,
            capacity=capacity,
            counted=counted,
            entry_group=group,
            entry_target=member,
            groups_ptr=_pointers(member[by_member], n_members),
            groups_of=group[by_member],
            members_ptr=_pointers(group, n_groups),
            members_of=member,
        )
    # One sort gives distinct (member, group) pairs, ordered by member: a member listed twice counts once.
    pairs = _distinct(member * width + group)
    member, group = pairs // width, pairs % width
    capacity = np.bincount(group, minlength=n_groups).astype(np.int64) - k
    counted = capacity > 0
    keep = counted[group]
    member, group = member[keep], group[keep]
    # The same pairs ordered by group (sorting values is many times faster than a stable argsort).
    by_group = np.sort(group * max(n_members, 1) + member)
    is_target = member < n
    return _GroupArrays(
        member_ids=ids + list(outside_index),
        outside_index=outside_index,
        capacity=capacity,
        counted=counted,
        entry_group=group[is_target],
        entry_target=member[is_target],
        groups_ptr=_pointers(member, n_members),
        groups_of=group,
        members_ptr=_pointers(by_group // max(n_members, 1), n_groups),
        members_of=by_group % max(n_members, 1),
    )


def _numbered_members(plan: GuardPlan, n: int) -> tuple[IntArray, IntArray, list[str]] | None:
    """Every group's members as the plan numbered them (record.MemberNumbers): each group's targets by position,
    then -1 for each member outside the rollout; the groups' sizes; the outside members' ids in that order.

    None when a group carries no numbers (a plan built by hand, or stored before numbers were kept), or when
    they cannot be the plan's (a position out of range or not ascending): the members are then looked up by id.
    """
    numbers = [group.numbers for group in plan.groups]
    if any(found is None for found in numbers):
        return None
    known = [found for found in numbers if found is not None]
    n_targets = np.fromiter((len(found.targets) for found in known), np.int64, len(known))
    n_outside = np.fromiter((len(found.outside) for found in known), np.int64, len(known))
    targets = np.fromiter(chain.from_iterable(found.targets for found in known), np.int64, int(n_targets.sum()))
    if targets.size and (targets.min() < 0 or targets.max() >= n):
        return None
    # Ascending within each group: every step up, except where a group starts.
    starts = np.cumsum(n_targets)[:-1]
    steps = np.diff(targets)
    first_of_group = np.zeros(steps.size, np.bool_)
    first_of_group[starts[(starts > 0) & (starts <= steps.size)] - 1] = True
    if (steps[~first_of_group] <= 0).any():
        return None
    outside = list(chain.from_iterable(found.outside for found in known))
    if not outside:
        return targets, n_targets, outside
    # Each group's targets, then a -1 per member outside the rollout (numbered by id by the caller).
    sizes = n_targets + n_outside
    member = np.full(int(sizes.sum()), -1, np.int64)
    group_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    offset_in_group = np.arange(targets.size) - np.repeat(np.concatenate([[0], np.cumsum(n_targets)[:-1]]), n_targets)
    member[np.repeat(group_start, n_targets) + offset_in_group] = targets
    return member, sizes, outside


# ------------------------------------------------------------------------------------------ rule 1: the assignment


def _current_rings(
    compiled: _CompiledPlan, assignment: Mapping[str, int], findings: _Findings
) -> tuple[IntArray, bytes, IntArray | None]:
    """Each target's current ring (-1: none the plan has), a fingerprint of the assignment, and each target's
    position among the assignment's keys when they hold exactly the plan's targets (else None)."""
    ids = compiled.ids
    n = len(ids)
    read = _read_permutation(compiled, assignment) if len(assignment) == n else None
    slots: IntArray | None = None
    if read is not None:
        ring_now, slots = read
        present = np.ones(n, np.bool_)
    else:
        present = np.fromiter(map(assignment.__contains__, ids), np.bool_, n)
        ring_now = np.fromiter(map(assignment.get, ids, repeat(_NO_RING)), np.int64, n)
        ring_now[~present] = _NO_RING
        lost = _pick(ids, np.flatnonzero(~present))
        if lost:
            findings.add(
                1,
                f"{count(len(lost), 'target')} of the plan {_is_are(len(lost))} in no ring now ({names(lost)})",
                lost,
            )
        keys = list(assignment)
        strangers = [keys[p] for p in np.flatnonzero(compiled.index.numbers(keys) < 0).tolist()]
        if strangers:
            findings.add(
                1,
                f"{names(strangers)} {_is_are(len(strangers))} assigned to a ring but not "
                f"{'a target' if len(strangers) == 1 else 'targets'} of the plan",
                strangers,
            )
    outside = present & ((ring_now < 0) | (ring_now >= compiled.n_rings))
    if outside.any():
        where = np.flatnonzero(outside)
        shown = [f"{ids[i]} in ring {ring_now[i]}" for i in where[:5].tolist()]
        more = f" and {where.size - 5} more" if where.size > 5 else ""
        findings.add(
            1,
            f"{', '.join(shown)}{more}: {_plan_rings(compiled.n_rings)}",
            _pick(ids, where),
        )
        ring_now[outside] = _NO_RING
    # Ring numbers fit 16 bits in any real plan: a quarter of the bytes to hash.
    narrow = ring_now.astype(np.int16) if compiled.n_rings < 2**15 else ring_now
    return ring_now, hashlib.blake2b(narrow.tobytes(), digest_size=16).digest(), slots


def _read_permutation(compiled: _CompiledPlan, assignment: Mapping[str, int]) -> tuple[IntArray, IntArray] | None:
    """The current rings, and each target's position among the keys, when ``assignment`` (as long as the plan)
    holds exactly the plan's targets; else None.

    Looking a million ids up one by one is memory-bound and costs ten times a sequential read of the values,
    so the order of the assignment's keys is remembered: the plan's own order, or the last order seen (a
    controller that loads the assignment the same way each time), is read in one pass."""
    keys = list(assignment)
    values = np.fromiter(assignment.values(), np.int64, len(keys))
    if keys == compiled.ids:
        return values, np.arange(len(keys), dtype=np.int64)
    if compiled.order is not None and keys == compiled.order[0]:
        positions, slots = compiled.order[1], compiled.order[2]
    else:
        positions = compiled.index.numbers(keys)
        if (positions < 0).any():
            return None
        slots = np.full(len(keys), -1, np.int64)
        slots[positions] = np.arange(len(keys), dtype=np.int64)
        if (slots < 0).any():
            return None  # a key given twice (columns can repeat one): not a permutation, read key by key
        compiled.order = (keys, positions, slots)
    ring_now = np.empty(len(keys), np.int64)
    ring_now[positions] = values
    return ring_now, slots


class _TargetStates:
    """Each target's state, by target number (a target the states do not name counts as pending).

    When ``state.states`` is :class:`Columns` on the very key list of an assignment that was read as a
    permutation of the targets, a target's state is read at its position: no dict of a million entries is
    built. Otherwise each state is looked up by id."""

    def __init__(self, compiled: _CompiledPlan, state: GuardState, slots: IntArray | None) -> None:
        self._ids = compiled.ids
        self._states = state.states
        self._column: Sequence[AssetState] | None = None
        self._slots = slots
        states, assignment = state.states, state.assignment
        if (
            slots is not None
            and isinstance(states, Columns)
            and isinstance(assignment, Columns)
            and states.keys_column is assignment.keys_column
        ):
            self._column = states.values_column

    def of(self, targets: IntArray) -> list[AssetState | None]:
        if self._column is not None and self._slots is not None:
            return list(map(self._column.__getitem__, self._slots[targets].tolist()))
        return list(map(self._states.get, _pick_all(self._ids, targets)))

    def get(self, target: int, default: AssetState | None = None) -> AssetState | None:
        if self._column is not None and self._slots is not None:
            return self._column[int(self._slots[target])]
        return self._states.get(self._ids[target], default)

    def final_without_install(self) -> BoolArray:
        """Which targets were skipped before their install (``skipped``, ``restore_point_failed``): both are final
        states of the asset state machine, so such a target is never updated in this rollout."""
        n = len(self._ids)
        if self._column is not None and self._slots is not None:
            by_position = np.fromiter(map(_SKIPPED_STATES.__contains__, self._column), np.bool_, len(self._column))
            return by_position[self._slots]
        return np.fromiter(map(_SKIPPED_STATES.__contains__, map(self._states.get, self._ids)), np.bool_, n)

    def unavailable(self, targets: IntArray, n_members: int, index: _Numbering) -> BoolArray:
        """Which member numbers are targets in a state that takes them out of service, for ``targets``."""
        unavailable = np.zeros(n_members, np.bool_)
        states = self._states
        if targets.size * 8 < len(states):
            # Few members touched: ask for each one's state.
            asked = _distinct(targets)
            unavailable[asked] = np.fromiter(map(UNAVAILABLE_STATES.__contains__, self.of(asked)), np.bool_, asked.size)
            return unavailable
        # A large batch: one sequential pass over every state beats scattered look-ups.
        if self._column is not None and self._slots is not None:
            by_position = np.fromiter(map(UNAVAILABLE_STATES.__contains__, self._column), np.bool_, len(self._column))
            unavailable[: self._slots.size] = by_position[self._slots]
            return unavailable
        # A plain mapping: then only the unavailable assets (usually few) are looked up by id.
        flags = np.fromiter(map(UNAVAILABLE_STATES.__contains__, states.values()), np.bool_, len(states))
        named = compress(states.keys(), flags.tolist())
        found = index.numbers(list(named))
        unavailable[found[found >= 0]] = True
        return unavailable
