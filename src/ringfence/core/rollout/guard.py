"""The safety guard: before a ring opens, re-check the rules of the update format and refuse with a sentence.

The guard is the last line of defence against a planner or controller bug, so it shares no code with them:
it reads its own input types (:class:`GuardPlan`, the plan as persisted when the rollout was created, and
:class:`GuardState`, the rollout now) and works every rule out again from the text of the update format
(``update-and-drill-format.md``, rules 1–7). It imports nothing from the planner, reconcile, the gates, the
graph or impact. Pure: standard library and numpy, no I/O.

:func:`check_opening` is called before a ring opens, before a further canary wave of the current ring
opens, and before any batch of installs starts; ``starting`` are the assets about to be installed. It
returns every :class:`Violation` found (none: go ahead); :func:`refusal_sentence` turns them into the one
sentence a paused rollout shows. What each rule checks, exactly:

1. **Partition** — the persisted plan names each target once; the current assignment holds exactly the
   plan's targets, each in a ring the plan has; the ring being worked exists and is not empty; every
   asset in ``starting`` is a target, and none belongs to a ring after the one being worked. (A planned
   ring emptied at run time by replacements is fine, as long as it is not the one opening.)
2. **Coverage** — the plan has at least one canary ring and no more canary rings than rings; every
   target has a stratum; the canary rings (``0 .. canary_rings - 1``, which by numbering come before
   every other ring) currently hold at least one asset of every stratum among the targets; and nothing
   after the canary phase starts before every canary ring has passed its gate.
3. **Least critical canaries** — every target has an impact tier; in each stratum, the earliest canary
   ring that holds the stratum holds an asset of the stratum's highest (least critical) tier.
4. **Redundancy kept, canaries included** — for each non-exempt group (n distinct members, ``any: K``,
   n − K > 0), no ring of the current assignment holds more than n − K of its members.
5. **Criticality last** (a weak form, checkable without re-planning): among the rings after the canary
   phase, whenever ring i holds a target of tier t and a later ring j holds a target b of a higher tier
   (less critical, yet later), some non-exempt group of b is *full* in ring i — it holds n − K members
   there — so redundancy kept b out of ring i. Ring i's members are counted as planned *and* as now
   (their union), so a spare moved out of ring i into a canary ring as a replacement never removes the
   evidence that held when the plan was made. A plan built "least critical first, deferring an asset
   only when one of its groups is full" always passes; so does any run-time state that only moved spares
   into canary rings. Canary rings are exempt (rule 3 orders them).
6. **No stratum widens unjudged** — every asset in ``starting`` that belongs to a ring after the canary
   phase has a stratum of which at least one asset, in a canary ring that has passed its gate
   (``ring < min(judged_rings, canary_rings)``), is ``applied``.
7. **Redundancy at run time** — for each non-exempt group that holds an asset in ``starting``: its
   members unavailable now (a target being updated, failed, rolling back or whose rollback failed —
   ``applying``, ``failed``, ``rolling_back``, ``rollback_failed`` — and any member in ``down``, target or
   not), plus the members in ``starting`` not already counted, number at most n − K. Taking a restore
   point is not counted: a snapshot does not take the asset out of service. Groups ``starting`` does not
   touch are left alone: this opening cannot make them worse.

A group with n − K ≤ 0 cannot be updated without an outage; the plan warned about it, and it is exempt
from rules 4, 5 and 7 (:attr:`GuardPlan.exempt`).

Cost: the plan is compiled once, on the first check (integer ids, CSR arrays), and kept on the
:class:`GuardPlan`: keep one GuardPlan per rollout (the persisted plan never changes). Each check then reads
the assignment once — one sequential pass over its values when its keys come in the plan's order or in the
order of the last assignment checked, one look-up per target otherwise — and runs rules 1–5 as numpy
passes; the result of rules 2–5 is cached by a fingerprint of the assignment, so an unchanged assignment is
not checked twice. Rules 6 and 7 cost in proportion to ``starting`` and the members of the groups it
touches.
"""

from __future__ import annotations

import hashlib
import operator
from collections import Counter
from collections.abc import Callable, Collection, ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from copy import copy
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import chain, compress, repeat
from types import MappingProxyType
from typing import Final, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from ringfence.core.errors import InputError
from ringfence.core.rollout.state import AssetState

Stratum = tuple[str | None, ...]
V = TypeVar("V")
T = TypeVar("T")
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

RULES: Final[Mapping[int, str]] = MappingProxyType(
    {
        1: "partition",
        2: "coverage",
        3: "least critical canaries",
        4: "redundancy kept, canaries included",
        5: "criticality last",
        6: "no stratum widens unjudged",
        7: "redundancy at run time",
    }
)
"""The rules of the update format, by number, named as the format names them."""

# What each unavailable state does to the asset, for the sentence of rule 7 (singular, plural).
_UNAVAILABLE_WORDS: Final[Mapping[AssetState, tuple[str, str]]] = MappingProxyType(
    {
        AssetState.APPLYING: ("is being updated", "are being updated"),
        AssetState.FAILED: ("has failed", "have failed"),
        AssetState.ROLLING_BACK: ("is rolling back", "are rolling back"),
        AssetState.ROLLBACK_FAILED: ("could not be rolled back", "could not be rolled back"),
    }
)
UNAVAILABLE_STATES: Final[frozenset[AssetState]] = frozenset(_UNAVAILABLE_WORDS)
"""Target states that take an asset out of service because of the rollout (rule 7): being updated and
restarting (``applying``), failed, rolling back, or left broken by a rollback that failed."""

SHOWN_PER_RULE: Final = 10
"""Violations of one rule given in full; any more are counted in one further violation of that rule."""
ASSETS_PER_VIOLATION: Final = 100
"""At most this many assets in :attr:`Violation.assets`; the sentence gives the full count."""

_NO_TIER: Final = -(2**62)  # a target the plan gives no tier: lower than any tier, and refused by rule 3
_NO_RING: Final = -1  # a target the assignment puts in no ring (or in a ring the plan does not have)
# Up to this many (group, ring) pairs are counted in a dense array; beyond, by sorting the pairs.
_DENSE_PAIRS: Final = 1 << 22


# ------------------------------------------------------------------------------------------ input types


class Columns(Mapping[str, V]):
    """A read-only mapping held as two columns of the same length: its keys, and the value of each.

    What a caller that holds its rows as objects (a rollout's million targets) hands the guard: reading the
    rows into two lists costs a fraction of building a dict of them, and the guard reads columns in one pass
    — an assignment whose keys come in the plan's order (or in the order of the last assignment checked),
    and the states of a :class:`GuardState` whose ``states`` shares the very key list of its ``assignment``.
    Looking a key up builds the dict, once. The keys must be distinct, as a mapping's are: the guard checks
    that an assignment read in one pass holds each target once, and building the dict refuses a repeat.
    """

    __slots__ = ("_lookup", "keys_column", "values_column")

    def __init__(self, keys: Sequence[str], values: Sequence[V]) -> None:
        if len(keys) != len(values):
            raise InputError(f"columns of {len(keys):,} keys and {len(values):,} values: give one value per key")
        self.keys_column = keys
        self.values_column = values
        self._lookup: dict[str, V] | None = None

    def __len__(self) -> int:
        return len(self.keys_column)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_column)

    def __getitem__(self, key: str) -> V:
        return self._dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._dict()

    def values(self) -> ValuesView[V]:
        return _ColumnValues(self)

    def items(self) -> ItemsView[str, V]:
        return _ColumnItems(self)

    def _dict(self) -> dict[str, V]:
        if self._lookup is None:
            lookup = dict(zip(self.keys_column, self.values_column, strict=True))
            if len(lookup) != len(self.keys_column):
                repeated = [k for k, n in Counter(self.keys_column).items() if n > 1]
                raise InputError(f"columns name {_names(repeated)} more than once: a mapping names each key once")
            self._lookup = lookup
        return self._lookup


class _ColumnValues(ValuesView[V]):
    """The values of :class:`Columns`, read from their column without building the dict."""

    def __init__(self, columns: Columns[V]) -> None:
        super().__init__(columns)
        self._column = columns.values_column

    def __iter__(self) -> Iterator[V]:
        return iter(self._column)

    def __contains__(self, value: object) -> bool:
        return any(v is value or v == value for v in self._column)


class _ColumnItems(ItemsView[str, V]):
    """The items of :class:`Columns`, paired from their columns without building the dict."""

    def __init__(self, columns: Columns[V]) -> None:
        super().__init__(columns)
        self._columns = columns

    def __iter__(self) -> Iterator[tuple[str, V]]:
        return zip(self._columns.keys_column, self._columns.values_column, strict=True)


@dataclass(frozen=True)
class GuardGroup:
    """An ``any: K`` group of the estate with at least one target among its members.

    ``members`` lists every member, target of the rollout or not; a member listed twice counts once.
    """

    owners: tuple[str, ...]
    members: tuple[str, ...]
    k: int

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


@dataclass(frozen=True)
class Violation:
    """One rule broken: its number, a sentence naming the group or stratum, and the assets concerned.

    ``assets`` holds at most :data:`ASSETS_PER_VIOLATION` ids; ``ring`` is the ring that was about to open.
    """

    rule: int
    sentence: str
    assets: tuple[str, ...]
    ring: int | None = None

    def __str__(self) -> str:
        return f"rule {self.rule} ({RULES[self.rule]}): {self.sentence}"


# ------------------------------------------------------------------------------------------ the check


def check_opening(plan: GuardPlan, state: GuardState, starting: Collection[str]) -> tuple[Violation, ...]:
    """Every rule the opening of ``state.ring`` with ``starting`` would break, in rule order; none: go ahead.

    See the module docstring for what each rule checks. A plan or state that breaks the partition is
    reported, not raised: a plan that names a target twice, an assignment that loses a target or puts one
    in a ring the plan does not have, a ring that does not exist are violations like any other.
    """
    compiled = plan._compiled
    findings = _Findings()
    findings.extend(compiled.problems)
    ring_now, fingerprint, slots = _current_rings(compiled, state.assignment, findings)
    cached = compiled.checked.get(fingerprint)
    if cached is None:
        assignment_findings = _Findings()
        _check_assignment(plan, compiled, ring_now, assignment_findings)
        cached = assignment_findings.violations()
        compiled.remember(fingerprint, cached)
    findings.extend(cached)
    _check_ring_opening(compiled, state, ring_now, findings)
    states = _TargetStates(compiled, state, slots)
    _check_starting(plan, compiled, state, ring_now, states, starting, findings)
    return tuple(replace(v, ring=state.ring) for v in findings.violations())


def refusal_sentence(violations: Sequence[Violation], *, limit: int = 3) -> str:
    """One sentence naming the rules broken, the groups or strata and the assets, and the ring not opened.

    ``safety guard: rule 7 (redundancy at run time): epr needs 1 of 2 (epr-db-1, epr-db-2) up; epr-db-1 is
    down and starting epr-db-2 would leave 0 up — ring 1 not opened``. Shows the first ``limit``
    violations and counts the rest.
    """
    if not violations:
        raise InputError("the safety guard refuses only with a reason: give at least one violation")
    shown = "; ".join(str(v) for v in violations[:limit])
    if len(violations) > limit:
        shown += f"; and {_count(len(violations) - limit, 'more violation')}"
    rings = sorted({v.ring for v in violations if v.ring is not None})
    tail = f" — ring {rings[0]} not opened" if len(rings) == 1 else " — nothing opened"
    return f"safety guard: {shown}{tail}"


# ------------------------------------------------------------------------------------------ the compiled plan


@dataclass(eq=False)
class _CompiledPlan:
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
            f"the plan has {_count(plan.canary_rings, 'canary ring')} among its {_count(n_rings, 'ring')}; "
            "a canary phase of at least one ring must come first",
            (),
        )

    raw_strata = _in_order(plan.strata, ids, index)
    # An empty tuple is a real stratum (an update with no strata keys): only a missing one is None.
    strata: list[Stratum] = [s for s in dict.fromkeys(raw_strata) if s is not None]
    numbers: dict[Stratum | None, int] = {s: i for i, s in enumerate(strata)}
    numbers[None] = -1
    stratum = np.fromiter(map(numbers.__getitem__, raw_strata), np.int64, n)
    no_stratum = np.flatnonzero(stratum < 0)
    if no_stratum.size:
        missing = _pick(ids, no_stratum)
        findings.add(
            2,
            f"the plan gives no stratum for {_count(no_stratum.size, 'target')} ({_names(missing)}): "
            "coverage cannot be checked for them",
            missing,
        )

    raw_tiers = _in_order(plan.tiers, ids, index)
    if None in raw_tiers:
        has_tier = np.fromiter((t is not None for t in raw_tiers), np.bool_, n)
        tier = np.fromiter((_NO_TIER if t is None else t for t in raw_tiers), np.int64, n)
        missing = _pick(ids, np.flatnonzero(~has_tier))
        findings.add(
            3,
            f"the plan gives no impact tier for {_count(n - int(has_tier.sum()), 'target')} ({_names(missing)})",
            missing,
        )
    else:
        has_tier = np.ones(n, np.bool_)
        tier = np.fromiter(raw_tiers, np.int64, n)
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
        member_ids=groups.member_ids,
        outside_index=groups.outside_index,
        capacity=groups.capacity,
        counted=groups.counted,
        entry_group=groups.entry_group,
        entry_target=groups.entry_target,
        groups_ptr=groups.groups_ptr,
        groups_of=groups.groups_of,
        members_ptr=groups.members_ptr,
        members_of=groups.members_of,
    )


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
        where = _and([f"ring {r}" for r in rings_of[asset]])
        findings.add(1, f"the plan puts {asset} in {where}: a target belongs to exactly one ring", (asset,))
    if len(repeated) > SHOWN_PER_RULE:
        rest = repeated[SHOWN_PER_RULE:]
        findings.add(1, f"{_count(len(rest), 'more target')} planned in several rings ({_names(rest)})", rest)
    planned = np.fromiter((rings_of[a][0] for a in ids), np.int64, len(ids))
    return ids, _Numbering(ids), planned


class _Numbering:
    """Asset ids to their numbers (their positions in ``ids``), looked up a batch at a time.

    A dict of a million ids costs half a second to build (an insert per id into a table scattered over
    memory) and as long again to look a million ids up. Here the ids' hashes (kept on each string) are read
    in one pass and sorted, and bucketed by their top bits (a str hash is uniform): a batch of look-ups is a
    pass of hashing, a few vectorised probes of its buckets and a check that the id found is the id asked —
    by address when it is the very same string object (ids read from one source usually are), else by value.
    Distinct ids may share a hash, rarely: a look-up then searches the run of that hash.
    """

    def __init__(self, ids: list[str]) -> None:
        self._ids = ids
        self._addresses = np.fromiter(map(id, ids), np.int64, len(ids))
        hashes = np.fromiter(map(hash, ids), np.int64, len(ids)).view(np.uint64)
        self._order = np.argsort(hashes)
        self._hashes = hashes[self._order]
        # About two buckets per id: most look-ups find their id at the first probe.
        bits = (2 * len(ids)).bit_length()
        self._shift = np.uint64(64 - bits)
        per_bucket = np.bincount((self._hashes >> self._shift).astype(np.int64), minlength=1 << bits)
        self._bucket_start = np.concatenate([[0], np.cumsum(per_bucket)]).astype(np.int64)
        # An id given twice has one hash twice: the ids are distinct when those that share a hash are.
        shared = np.flatnonzero(self._hashes[1:] == self._hashes[:-1])
        involved = _distinct(np.concatenate([shared, shared + 1]))
        self.distinct = len({ids[i] for i in self._order[involved].tolist()}) == involved.size

    def numbers(self, asked: Sequence[str]) -> IntArray:
        """The number of each id asked; -1 for an id that is not one of ``ids``."""
        found = np.full(len(asked), -1, np.int64)
        if not asked or not self._ids:
            return found
        wanted = np.fromiter(map(hash, asked), np.int64, len(asked)).view(np.uint64)
        bucket = (wanted >> self._shift).astype(np.int64)
        # Probe each bucket from its start, all look-ups at once, until the hash is found or the bucket ends; the
        # first probe (most look-ups end there) is made over the whole batch, without indirection.
        start, end = self._bucket_start[bucket], self._bucket_start[bucket + 1]
        hit = (start < end) & (self._hashes[np.minimum(start, self._hashes.size - 1)] == wanted)
        first = np.where(hit, start, -1)
        rest = np.flatnonzero(~hit & (start + 1 < end))
        position, end = start[rest] + 1, end[rest]
        while rest.size:
            hit = self._hashes[position] == wanted[rest]
            first[rest[hit]] = position[hit]
            live = ~hit & (position + 1 < end)
            rest, position, end = rest[live], position[live] + 1, end[live]
        hashed = np.flatnonzero(first >= 0)
        candidates = self._order[first[hashed]]
        # The same object is the same id, read without touching a string; other objects are compared by value.
        addresses = np.fromiter(map(id, asked), np.int64, len(asked))
        same = self._addresses[candidates] == addresses[hashed]
        other = np.flatnonzero(~same)
        same[other] = np.fromiter(
            map(operator.eq, _pick_all(self._ids, candidates[other]), _pick_all(asked, hashed[other])),
            np.bool_,
            other.size,
        )
        found[hashed[same]] = candidates[same]
        for q in hashed[~same].tolist():
            found[q] = self._search_run(asked[q], int(first[q]))
        return found

    def _search_run(self, asset: str, start: int) -> int:
        """The number of ``asset`` among the ids after ``start`` that share its hash (a collision), or -1."""
        hashes, position = self._hashes, start + 1
        while position < hashes.size and hashes[position] == hashes[start]:
            number = int(self._order[position])
            if self._ids[number] == asset:
                return number
            position += 1
        return -1


class _GroupArrays(NamedTuple):
    member_ids: list[str]
    outside_index: dict[str, int]
    capacity: IntArray
    counted: BoolArray
    entry_group: IntArray
    entry_target: IntArray
    groups_ptr: IntArray
    groups_of: IntArray
    members_ptr: IntArray
    members_of: IntArray


def _compile_groups(plan: GuardPlan, ids: list[str], index: _Numbering) -> _GroupArrays:
    """The groups as integer arrays: distinct members, capacities, and both directions of membership."""
    n = len(ids)
    n_groups = len(plan.groups)
    listed = [group.members for group in plan.groups]
    sizes = np.fromiter(map(len, listed), np.int64, n_groups)
    flat = list(chain.from_iterable(listed))
    member = index.numbers(flat)
    outside_index: dict[str, int] = {}
    for position in np.flatnonzero(member < 0).tolist():
        member[position] = outside_index.setdefault(flat[position], n + len(outside_index))
    n_members = n + len(outside_index)
    group = np.repeat(np.arange(n_groups, dtype=np.int64), sizes)
    # One sort gives distinct (member, group) pairs, ordered by member: a member listed twice counts once.
    width = max(n_groups, 1)
    pairs = _distinct(member * width + group)
    member, group = pairs // width, pairs % width
    k = np.fromiter((g.k for g in plan.groups), np.int64, n_groups)
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
                f"{_count(len(lost), 'target')} of the plan {_is_are(len(lost))} in no ring now ({_names(lost)})",
                lost,
            )
        keys = list(assignment)
        strangers = [keys[p] for p in np.flatnonzero(compiled.index.numbers(keys) < 0).tolist()]
        if strangers:
            findings.add(
                1,
                f"{_names(strangers)} {_is_are(len(strangers))} assigned to a ring but not "
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


def _check_ring_opening(compiled: _CompiledPlan, state: GuardState, ring_now: IntArray, findings: _Findings) -> None:
    if not 0 <= state.ring < compiled.n_rings:
        findings.add(1, f"ring {state.ring} does not exist: {_plan_rings(compiled.n_rings)}", ())
    elif not (ring_now == state.ring).any():
        findings.add(1, f"ring {state.ring} holds no asset: an empty ring is never opened", ())


# ------------------------------------------------------------------------------------------ rules 2–5


def _check_assignment(plan: GuardPlan, compiled: _CompiledPlan, ring_now: IntArray, findings: _Findings) -> None:
    in_canary = (ring_now >= 0) & (ring_now < compiled.canary_rings)
    canaries = np.flatnonzero(in_canary)
    _check_coverage(compiled, canaries, findings)
    _check_least_critical(compiled, ring_now, canaries, findings)
    counts = _ring_loads(compiled, ring_now)
    _check_redundancy(plan, compiled, ring_now, counts, findings)
    _check_criticality_last(plan, compiled, ring_now, counts, findings)


def _check_coverage(compiled: _CompiledPlan, canaries: IntArray, findings: _Findings) -> None:
    covered = np.zeros(len(compiled.strata), np.bool_)
    numbers = compiled.stratum[canaries]
    covered[numbers[numbers >= 0]] = True
    uncovered = np.flatnonzero(~covered)
    span = _canary_span(compiled.canary_rings)
    for s in uncovered[:SHOWN_PER_RULE].tolist():
        of_stratum = np.flatnonzero(compiled.stratum == s)
        members = _pick(compiled.ids, of_stratum)
        findings.add(
            2,
            f"stratum {_stratum(compiled.strata[s])} has none of its {_count(of_stratum.size, 'target')} "
            f"({_names(members)}) in the canary phase ({span})",
            members,
        )
    if uncovered.size > SHOWN_PER_RULE:
        rest = [_stratum(compiled.strata[s]) for s in uncovered[SHOWN_PER_RULE:].tolist()]
        findings.add(2, f"{_count(len(rest), 'more stratum')} {_has_have(len(rest))} no canary ({_names(rest)})", ())


def _check_least_critical(compiled: _CompiledPlan, ring_now: IntArray, canaries: IntArray, findings: _Findings) -> None:
    numbered = canaries[compiled.stratum[canaries] >= 0]
    if numbered.size == 0:
        return
    strata = compiled.stratum[numbered]
    rings = ring_now[numbered]
    tiers = compiled.tier[numbered]
    earliest = np.full(len(compiled.strata), compiled.n_rings, np.int64)
    np.minimum.at(earliest, strata, rings)
    first = rings == earliest[strata]
    best = np.full(len(compiled.strata), _NO_TIER, np.int64)
    np.maximum.at(best, strata[first], tiers[first])
    held = earliest < compiled.n_rings
    short = np.flatnonzero(held & (best < compiled.top_tier))
    for s in short[:SHOWN_PER_RULE].tolist():
        ring = int(earliest[s])
        there = numbered[first & (strata == s)]
        held_by = ", ".join(f"{compiled.ids[i]} ({_tier(int(compiled.tier[i]))})" for i in there[:5].tolist())
        top = int(compiled.top_tier[s])
        least = _pick(compiled.ids, np.flatnonzero((compiled.stratum == s) & (compiled.tier == top)))
        findings.add(
            3,
            f"stratum {_stratum(compiled.strata[s])}: its earliest canary ring, ring {ring}, holds {held_by}, "
            f"but its least critical targets are tier {top} ({_names(least)})",
            (*_pick(compiled.ids, there), *least),
        )
    if short.size > SHOWN_PER_RULE:
        rest = [_stratum(compiled.strata[s]) for s in short[SHOWN_PER_RULE:].tolist()]
        findings.add(
            3,
            f"{_count(len(rest), 'more stratum')} {_verb(len(rest), 'opens', 'open')} with a canary more critical "
            f"than needed ({_names(rest)})",
            (),
        )


class _PairCounts:
    """How many members of each non-exempt group each ring holds, keyed by ``group * rings + ring``."""

    def __init__(self, keys: IntArray, size: int) -> None:
        self.size = size
        self.dense: IntArray | None = None
        self.keys: IntArray = keys
        self.counts: IntArray = keys
        if size <= max(_DENSE_PAIRS, 4 * keys.size):
            self.dense = np.bincount(keys, minlength=size).astype(np.int64, copy=False)
        else:
            ordered = np.sort(keys)
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            self.keys = ordered[starts]
            self.counts = np.diff(np.r_[starts, ordered.size]).astype(np.int64, copy=False)

    def plus(self, keys: IntArray) -> _PairCounts:
        """These counts with ``keys`` counted once more each (a few moved members: no recount of the rest)."""
        if self.dense is None:
            return _PairCounts(np.concatenate([np.repeat(self.keys, self.counts), keys]), self.size)
        more = copy(self)
        more.dense = self.dense.copy()
        np.add.at(more.dense, keys, 1)
        return more

    def __getitem__(self, query: IntArray) -> IntArray:
        if self.dense is not None:
            return self.dense[query]
        if self.keys.size == 0:
            return np.zeros(query.size, np.int64)
        position = np.minimum(np.searchsorted(self.keys, query), self.keys.size - 1)
        return np.where(self.keys[position] == query, self.counts[position], 0)

    def items(self) -> tuple[IntArray, IntArray]:
        if self.dense is not None:
            keys = np.flatnonzero(self.dense).astype(np.int64)
            return keys, self.dense[keys]
        return self.keys, self.counts


def _ring_loads(compiled: _CompiledPlan, ring_now: IntArray) -> _PairCounts:
    rings = ring_now[compiled.entry_target]
    placed = rings >= 0
    keys = compiled.entry_group[placed] * compiled.n_rings + rings[placed]
    return _PairCounts(keys, compiled.capacity.size * compiled.n_rings)


def _check_redundancy(
    plan: GuardPlan, compiled: _CompiledPlan, ring_now: IntArray, counts: _PairCounts, findings: _Findings
) -> None:
    keys, loads = counts.items()
    groups = keys // max(compiled.n_rings, 1)
    over = np.flatnonzero(loads > compiled.capacity[groups])
    for position in over[:SHOWN_PER_RULE].tolist():
        g = int(groups[position])
        ring = int(keys[position] % compiled.n_rings)
        group = plan.groups[g]
        listed = list(dict.fromkeys(group.members))
        numbers = compiled.index.numbers(listed)
        rings = np.where(numbers >= 0, ring_now[numbers], _NO_RING)
        here = [listed[p] for p in np.flatnonzero(rings == ring).tolist()]
        findings.add(
            4,
            f"{_needs(group, compiled, g)}; ring {ring} holds {len(here)} of them ({_names(here)}), "
            f"more than the {compiled.capacity[g]} that may be down at once",
            tuple(here),
        )
    if over.size > SHOWN_PER_RULE:
        more = int(over.size) - SHOWN_PER_RULE
        findings.add(4, f"{_count(more, 'more group')} {_verb(more, 'overfills', 'overfill')} a ring the same way", ())


def _check_criticality_last(
    plan: GuardPlan, compiled: _CompiledPlan, ring_now: IntArray, counts: _PairCounts, findings: _Findings
) -> None:
    first, n_rings = compiled.canary_rings, compiled.n_rings
    if n_rings - first < 2:
        return
    after = (ring_now >= first) & compiled.has_tier
    big = np.iinfo(np.int64).max
    # The most critical tier each ring after the canary holds (big: the ring holds nothing).
    most_critical = np.full(n_rings, big, np.int64)
    np.minimum.at(most_critical, ring_now[after], compiled.tier[after])
    before = np.full(n_rings, big, np.int64)
    before[first + 1 :] = np.minimum.accumulate(most_critical[first:-1])
    # A target less critical than something in an earlier ring after the canary: it needs a reason.
    candidates = np.flatnonzero(after & (compiled.tier > before[np.maximum(ring_now, 0)]))
    if candidates.size == 0:
        return
    union = _planned_or_current_loads(compiled, ring_now, counts)
    cand_ring = ring_now[candidates]
    cand_tier = compiled.tier[candidates]
    reported: dict[int, int] = {}
    for ring in range(first, n_rings - 1):
        waiting = (cand_ring > ring) & (cand_tier > most_critical[ring])
        picked = candidates[waiting]
        if picked.size == 0:
            continue
        owner, groups = _gather(compiled.groups_ptr, compiled.groups_of, picked)
        full = union[groups * n_rings + ring] >= compiled.capacity[groups]
        kept_out = np.bincount(owner[full], minlength=picked.size) > 0
        for b in picked[~kept_out].tolist():
            reported.setdefault(b, ring)
    if not reported:
        return
    for b, ring in list(reported.items())[:SHOWN_PER_RULE]:
        tier_b, tier_a = int(compiled.tier[b]), int(most_critical[ring])
        a = compiled.ids[int(np.flatnonzero((ring_now == ring) & (compiled.tier == tier_a))[0])]
        asset = compiled.ids[b]
        has_groups = compiled.groups_ptr[b + 1] > compiled.groups_ptr[b]
        why = (
            f"none of {asset}'s redundancy groups is full in ring {ring}"
            if has_groups
            else f"{asset} is in no redundancy group that could have kept it out"
        )
        findings.add(
            5,
            f"{asset} ({_tier(tier_b)}) waits for ring {ring_now[b]} although ring {ring} takes the more critical "
            f"{a} ({_tier(tier_a)}), and {why}",
            (asset, a),
        )
    if len(reported) > SHOWN_PER_RULE:
        rest = [compiled.ids[b] for b in list(reported)[SHOWN_PER_RULE:]]
        findings.add(
            5,
            f"{_count(len(rest), 'more target')} {_verb(len(rest), 'waits', 'wait')} behind more critical ones "
            f"({_names(rest)})",
            rest,
        )


def _planned_or_current_loads(compiled: _CompiledPlan, ring_now: IntArray, counts: _PairCounts) -> _PairCounts:
    """Group loads per ring counting a member in both its planned and its current ring.

    A replacement canary moved out of ring i after planning must not erase the evidence that its group was
    full in ring i when the plan deferred another member (rule 5 is a property of the plan)."""
    planned = compiled.planned[compiled.entry_target]
    moved = planned != ring_now[compiled.entry_target]
    if not moved.any():
        return counts
    return counts.plus(compiled.entry_group[moved] * compiled.n_rings + planned[moved])


# ------------------------------------------------------------------------------------------ rules 1, 2, 6, 7: starting


def _check_starting(
    plan: GuardPlan,
    compiled: _CompiledPlan,
    state: GuardState,
    ring_now: IntArray,
    states: _TargetStates,
    starting: Collection[str],
    findings: _Findings,
) -> None:
    if not starting:
        return
    listed = list(starting)
    number = compiled.index.numbers(listed)
    strangers = list(dict.fromkeys(listed[p] for p in np.flatnonzero(number < 0).tolist()))
    if strangers:
        findings.add(
            1,
            f"starting {_names(strangers)}, which {_is_are(len(strangers))} not "
            f"{'a target' if len(strangers) == 1 else 'targets'} of this rollout",
            strangers,
        )
    targets = _distinct(number[number >= 0])
    rings = ring_now[targets]
    early = targets[rings > state.ring]
    if early.size:
        shown = ", ".join(f"{compiled.ids[i]} (ring {ring_now[i]})" for i in early[:5].tolist())
        more = f" and {early.size - 5} more" if early.size > 5 else ""
        findings.add(
            1,
            f"starting {shown}{more} while ring {state.ring} is worked: a ring opens only in its turn",
            _pick(compiled.ids, early),
        )
    after = targets[rings >= compiled.canary_rings]
    if after.size:
        _check_judged(compiled, state, ring_now, states, after, findings)
    outside = [compiled.outside_index[a] for a in strangers if a in compiled.outside_index]
    members = np.concatenate([targets, np.array(outside, np.int64)]) if outside else targets
    _check_run_time_redundancy(plan, compiled, state, states, members, findings)


def _check_judged(
    compiled: _CompiledPlan,
    state: GuardState,
    ring_now: IntArray,
    states: _TargetStates,
    after: IntArray,
    findings: _Findings,
) -> None:
    """Rules 2 (the canary phase comes first) and 6 (no stratum widens unjudged) for ``after``."""
    first = compiled.canary_rings
    ids = compiled.ids
    if state.judged_rings < first:
        findings.add(
            2,
            f"starting {_names(_pick(ids, after))} after the canary phase ({_canary_span(first)}) while "
            f"ring {max(state.judged_rings, 0)} of it has not passed its gate",
            _pick(ids, after),
        )
    judged_rings = min(max(state.judged_rings, 0), first)
    canaries = np.flatnonzero((ring_now >= 0) & (ring_now < judged_rings))
    # Equality, not identity: a state read back as its plain string value ("applied") is the same state.
    applied = np.fromiter((s == AssetState.APPLIED for s in states.of(canaries)), np.bool_, canaries.size)
    judged = np.zeros(len(compiled.strata) + 1, np.bool_)  # the last slot: no stratum, never judged
    numbers = compiled.stratum[canaries[applied]]
    judged[numbers[numbers >= 0]] = True
    strata = compiled.stratum[after]
    unjudged = after[~judged[strata]]
    if unjudged.size == 0:
        return
    by_stratum: dict[int, list[int]] = {}
    for i in unjudged.tolist():
        by_stratum.setdefault(int(compiled.stratum[i]), []).append(i)
    for s, members in list(by_stratum.items())[:SHOWN_PER_RULE]:
        names = [ids[i] for i in members]
        label = "no stratum" if s < 0 else f"stratum {_stratum(compiled.strata[s])}"
        findings.add(
            6,
            f"{label} would widen to {_names(names)} but no canary of it has been updated and judged healthy"
            f"{_canary_states(compiled, state, ring_now, states, s)}",
            tuple(names),
        )
    if len(by_stratum) > SHOWN_PER_RULE:
        findings.add(6, f"{_count(len(by_stratum) - SHOWN_PER_RULE, 'more stratum')} would widen unjudged", ())


def _canary_states(
    compiled: _CompiledPlan, state: GuardState, ring_now: IntArray, states: _TargetStates, s: int
) -> str:
    if s < 0:
        return ""
    first = compiled.canary_rings
    canaries = np.flatnonzero((compiled.stratum == s) & (ring_now >= 0) & (ring_now < first))
    if canaries.size == 0:
        return f" (it has no canary in {_canary_span(first)})"
    shown = [
        f"{compiled.ids[i]} in ring {ring_now[i]} is {states.get(i, AssetState.PENDING)}" for i in canaries[:5].tolist()
    ]
    judged = f"{_count(max(min(state.judged_rings, first), 0), 'ring')} of the canary judged"
    return f" ({', '.join(shown)}; {judged})"


def _check_run_time_redundancy(
    plan: GuardPlan,
    compiled: _CompiledPlan,
    state: GuardState,
    states: _TargetStates,
    starting: IntArray,
    findings: _Findings,
) -> None:
    """Rule 7 over the non-exempt groups ``starting`` (member numbers) touches, vectorised over their members."""
    _, groups = _gather(compiled.groups_ptr, compiled.groups_of, starting)
    if groups.size == 0:
        return
    touched = _distinct(groups)
    _, members = _gather(compiled.members_ptr, compiled.members_of, touched)
    sizes = compiled.members_ptr[touched + 1] - compiled.members_ptr[touched]
    of_group = np.repeat(np.arange(touched.size, dtype=np.int64), sizes)
    n_members = len(compiled.member_ids)
    is_starting = np.zeros(n_members, np.bool_)
    is_starting[starting] = True
    # Down is usually a handful of assets: mark them by id rather than asking each member.
    is_down = np.zeros(n_members, np.bool_)
    down = list(state.down)
    numbers = compiled.index.numbers(down)
    for position in np.flatnonzero(numbers < 0).tolist():
        numbers[position] = compiled.outside_index.get(down[position], -1)
    is_down[numbers[numbers >= 0]] = True
    n = len(compiled.ids)
    unavailable = is_down | states.unavailable(members[members < n], n_members, compiled.index)
    out = unavailable[members] | is_starting[members]
    load = np.bincount(of_group, weights=out, minlength=touched.size).astype(np.int64)
    over = np.flatnonzero(load > compiled.capacity[touched])
    for position in over[:SHOWN_PER_RULE].tolist():
        g = int(touched[position])
        findings.add(7, *_run_time_sentence(plan, compiled, states, g, is_starting, is_down))
    if over.size > SHOWN_PER_RULE:
        findings.add(7, f"{_count(over.size - SHOWN_PER_RULE, 'more group')} would drop below K up the same way", ())


def _run_time_sentence(
    plan: GuardPlan, compiled: _CompiledPlan, states: _TargetStates, g: int, is_starting: BoolArray, is_down: BoolArray
) -> tuple[str, tuple[str, ...]]:
    group = plan.groups[g]
    members = compiled.members_of[compiled.members_ptr[g] : compiled.members_ptr[g + 1]].tolist()
    down: list[str] = []
    why: dict[AssetState, list[str]] = {s: [] for s in _UNAVAILABLE_WORDS}
    starting: list[str] = []
    for m in sorted(members, key=compiled.member_ids.__getitem__):
        asset = compiled.member_ids[m]
        asset_state = states.get(m) if m < len(compiled.ids) else None
        if is_down[m]:
            down.append(asset)
        elif asset_state in why:
            why[asset_state].append(asset)
        elif is_starting[m]:
            starting.append(asset)
    parts = [f"{_names(down)} {_is_are(len(down))} down"] if down else []
    for asset_state, assets in why.items():
        if assets:
            singular, plural = _UNAVAILABLE_WORDS[asset_state]
            parts.append(f"{_names(assets)} {singular if len(assets) == 1 else plural}")
    unavailable = len(down) + sum(len(a) for a in why.values())
    left = int(compiled.capacity[g]) + group.k - unavailable - len(starting)
    if starting:
        parts.append(f"starting {_names(starting)} would leave {left} up")
    else:
        parts.append(f"{left} would be up")
    sentence = f"{_needs(group, compiled, g)}; {_and(parts)}"
    return sentence, (*starting, *down, *chain.from_iterable(why.values()))


# ------------------------------------------------------------------------------------------ helpers


class _Findings:
    """Violations as they are found, at most ``ASSETS_PER_VIOLATION`` assets each."""

    def __init__(self) -> None:
        self._found: list[Violation] = []

    def add(self, rule: int, sentence: str, assets: Iterable[str]) -> None:
        self._found.append(Violation(rule, sentence, tuple(assets)[:ASSETS_PER_VIOLATION]))

    def extend(self, violations: Iterable[Violation]) -> None:
        self._found.extend(violations)

    def violations(self) -> tuple[Violation, ...]:
        return tuple(sorted(self._found, key=lambda v: v.rule))


def _distinct(values: IntArray) -> IntArray:
    """The distinct values, sorted: numpy 2's hash-based unique is many times slower on large integer arrays."""
    ordered = np.sort(values)
    if ordered.size == 0:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def _pointers(sorted_keys: IntArray, size: int) -> IntArray:
    """CSR row pointers for keys already sorted, one row per key ``0 .. size - 1``."""
    return np.concatenate([[0], np.cumsum(np.bincount(sorted_keys, minlength=size))]).astype(np.int64)


def _gather(ptr: IntArray, values: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    """The CSR rows ``rows`` concatenated, and for each value the position in ``rows`` it came from."""
    starts = ptr[rows]
    sizes = ptr[rows + 1] - starts
    total = int(sizes.sum())
    owner = np.repeat(np.arange(rows.size, dtype=np.int64), sizes)
    if total == 0:
        return owner, np.zeros(0, np.int64)
    # Position within its row, added to the row's start: one vectorised pass for any number of rows.
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return owner, values[np.repeat(starts, sizes) + offsets]


def _pick(ids: list[str], numbers: IntArray) -> tuple[str, ...]:
    return tuple(ids[i] for i in numbers[:ASSETS_PER_VIOLATION].tolist())


def _pick_all(ids: Sequence[str], numbers: IntArray) -> list[str]:
    getter: Callable[[int], str] = ids.__getitem__
    return list(map(getter, numbers.tolist()))


def _needs(group: GuardGroup, compiled: _CompiledPlan, g: int) -> str:
    """``epr needs 1 of 2 (epr-db-1, epr-db-2) up``."""
    owners = _names(group.owners, 3) if group.owners else "a group"
    members = list(dict.fromkeys(group.members))
    return (
        f"{owners} {'need' if len(group.owners) > 1 else 'needs'} {group.k} of {len(members)} ({_names(members, 8)}) up"
    )


def _stratum(stratum: Stratum) -> str:
    """``("host", "esxi", None, "north")`` → ``host/esxi/-/north``; the one stratum of no keys → ``(all)``."""
    return "/".join("-" if v is None else v for v in stratum) if stratum else "(all)"


def _plan_rings(n_rings: int) -> str:
    return "the plan has no ring" if n_rings == 0 else f"the plan has rings 0–{n_rings - 1} only"


def _canary_span(canary_rings: int) -> str:
    return "ring 0" if canary_rings <= 1 else f"rings 0–{canary_rings - 1}"


def _tier(tier: int) -> str:
    return "no tier" if tier == _NO_TIER else f"tier {tier}"


def _names(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown if len(ids) <= limit else f"{shown} and {len(ids) - limit} more"


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _count(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    plural = noun[:-2] + "a" if noun.endswith("stratum") else noun + "s"
    return f"{n:,} {plural}"


def _verb(n: int, singular: str, plural: str) -> str:
    return singular if n == 1 else plural


def _is_are(n: int) -> str:
    return _verb(n, "is", "are")


def _has_have(n: int) -> str:
    return _verb(n, "has", "have")


__all__ = [
    "RULES",
    "UNAVAILABLE_STATES",
    "Columns",
    "GuardGroup",
    "GuardPlan",
    "GuardState",
    "Violation",
    "check_opening",
    "refusal_sentence",
]
