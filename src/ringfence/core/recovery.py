"""Recovery: in which order to restore what is down, which continuity plans to enact, which RTOs are at risk.

Restore order is the blast radius run backwards. Every down item gets one step: the earliest at which its
requirements are met by what is up or restored in earlier steps — a hard requirement must be back, an
``any: K`` group needs only its K earliest members. Computed level by level with counters over the same CSR
arrays as the blast radius: restoring an item decrements what its dependents still wait for.

Two things the simple rule cannot order are handled explicitly, and said in ``notes``:

* items that need each other (a dependency cycle, all down) are restored **together**, in one step, once
  everything outside the cycle that they need is back;
* an item that can never be met (a ``where`` group that matches fewer than K assets) goes in a final step.

With ``parallel=N`` a step holds at most N items; ready items are taken by clinical priority — the most
critical tier among the down services that need them, then the shortest RTO, then id — and the rest wait.
Items that need each other are one unit that is never split (restoring part of a cycle restores nothing):
a cycle that does not fit in the room a step has left waits for a later step, and a cycle larger than N
is restored alone in a step of its own, which then holds more than N items — said in ``notes``.

How long each step takes: as long as its slowest item. An item with a **measured** time to restore (the
latest restore test of that asset or service, handed in as ``measured``; the assurance file's
:func:`ringfence.core.assurance.measured_restores`) takes that time; every other item takes ``step_seconds``,
an **estimate**. A step is measured only when every item in it is, and a time to restore only when every step
up to it is: one guess makes the sum a guess, and it is said so ("estimate"), never passed off as measured.
A measured time is dated by its oldest test. Without any measured time every step takes ``step_seconds``.

An RTO is **at risk** when the time left is less than the estimated time to restore
(:func:`is_rto_at_risk`): exactly enough time is not at risk, since a service restored at its deadline
meets its RTO. The same function decides it here (at declaration, the time left is the whole RTO) and on an
incident's clocks (:mod:`ringfence.core.incident`).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ringfence.core.clinical import ContinuityAction as ContinuityAction
from ringfence.core.clinical import is_rto_at_risk as is_rto_at_risk
from ringfence.core.clinical import time_basis as time_basis
from ringfence.core.estate import NO_SERVICE_TIER
from ringfence.core.graph import EstateGraph, Failure, IntArray, distinct, gather

EVIDENCE_LABEL = (
    "Evidence of the restore order given interdependencies (DSPT B5.a): computed by ringfence from the "
    "estate's recorded dependencies."
)
_NO_RTO = np.iinfo(np.int64).max


@dataclass(frozen=True)
class MeasuredRestore:
    """An item's measured time to restore, and the day of the test that measured it."""

    seconds: int
    day: date


@dataclass(frozen=True)
class RestoreStep:
    step: int
    restore: tuple[str, ...]
    """Ids, sorted."""
    seconds: int = 0
    """How long the step takes: its slowest item, measured or estimated."""
    measured_on: date | None = None
    """The oldest test behind the step's time when every item in it is measured; ``None``: an estimate."""
    measured: tuple[str, ...] = ()
    """The items with a measured time, sorted; the others are estimates."""

    @property
    def basis(self) -> str:
        return time_basis(self.measured_on)


@dataclass(frozen=True)
class RtoRisk:
    service: str
    tier: int
    rto: int
    restored_by: int
    """Seconds until restored: the steps up to its own, one after the other."""
    measured_on: date | None = None
    """The oldest test behind ``restored_by`` when every step up to it is measured; ``None``: an estimate."""

    @property
    def basis(self) -> str:
        return time_basis(self.measured_on)


@dataclass(frozen=True)
class RecoveryPlan:
    failed: tuple[str, ...]
    steps: tuple[RestoreStep, ...]
    continuity: tuple[ContinuityAction, ...]
    rto_at_risk: tuple[RtoRisk, ...]
    notes: tuple[str, ...]
    step_seconds: int
    parallel: int | None

    def step_of(self) -> dict[str, int]:
        return {item: s.step for s in self.steps for item in s.restore}

    def restored_by(self, step: int) -> tuple[int, date | None]:
        """Seconds from the failure until ``step`` is done, and the oldest test behind it (``None``: an estimate)."""
        return step_ends(self.steps)[step]


def step_ends(steps: Sequence[RestoreStep]) -> list[tuple[int, date | None]]:
    """Per step (0: the failure), the seconds until it is done, one step after the other, and the oldest test
    behind that time: ``None`` from the first step that is an estimate on (one guess makes the sum a guess)."""
    ends: list[tuple[int, date | None]] = [(0, None)]
    is_measured, oldest = True, None
    for step in steps:
        is_measured = is_measured and step.measured_on is not None
        if step.measured_on is not None and (oldest is None or step.measured_on < oldest):
            oldest = step.measured_on
        ends.append((ends[-1][0] + step.seconds, oldest if is_measured else None))
    return ends


def plan_recovery(
    graph: EstateGraph,
    failures: Sequence[Failure],
    *,
    parallel: int | None = None,
    step_seconds: int = 3600,
    measured: Mapping[str, MeasuredRestore] | None = None,
) -> RecoveryPlan:
    """Restore steps for everything ``failures`` take down, continuity plans to enact, RTOs at risk.

    ``measured``: the measured time to restore of assets and services (by id; ids not in the estate are
    ignored): each takes its measured time in its step, every other item ``step_seconds`` (an estimate)."""
    if parallel is not None and parallel < 1:
        raise ValueError("parallel must be at least 1")
    down = graph.down_after(failures).mask
    step_of, notes = _restore_steps(graph, down, parallel)
    measured = measured or {}

    steps: dict[int, list[str]] = {}
    for node in np.flatnonzero(down).tolist():
        steps.setdefault(int(step_of[node]), []).append(graph.ids[node])
    ordered = tuple(timed_step(s, sorted(items), measured, step_seconds) for s, items in sorted(steps.items()))
    ends = step_ends(ordered)

    estate = graph.estate
    down_services = [estate.services[i] for i in np.flatnonzero(down[: graph.n_services]).tolist()]
    continuity = tuple(
        ContinuityAction(s.id, s.label, s.tier, s.rto, s.continuity, s.contacts)
        for s in sorted(down_services, key=lambda s: (s.tier, s.rto if s.rto is not None else _NO_RTO, s.id))
    )
    # Seen from the moment of the failure, the time left is the whole RTO.
    at_risk = tuple(
        RtoRisk(a.service, a.tier, a.rto, *ends[int(step_of[graph.index[a.service]])])
        for a in continuity
        if a.rto is not None and is_rto_at_risk(a.rto, ends[int(step_of[graph.index[a.service]])][0])
    )
    return RecoveryPlan(
        failed=tuple(sorted({f.ref for f in failures})),
        steps=ordered,
        continuity=continuity,
        rto_at_risk=at_risk,
        notes=tuple(notes),
        step_seconds=step_seconds,
        parallel=parallel,
    )


def timed_step(step: int, items: list[str], measured: Mapping[str, MeasuredRestore], step_seconds: int) -> RestoreStep:
    """A step and how long it takes: its slowest item, each measured where a test says, else ``step_seconds``."""
    known = [(i, measured[i]) for i in items if i in measured]
    seconds = max((m.seconds for _, m in known), default=0)
    if len(known) < len(items):
        seconds = max(seconds, step_seconds)
    measured_on = min(m.day for _, m in known) if known and len(known) == len(items) else None
    return RestoreStep(step, tuple(items), seconds, measured_on, tuple(i for i, _ in known))


def _restore_steps(graph: EstateGraph, down: np.ndarray, parallel: int | None) -> tuple[IntArray, list[str]]:
    """Step of every down node (0 for nodes that are up)."""
    n, n_groups = graph.n, graph.group_owner.size
    step = np.zeros(n, dtype=np.int64)
    notes: list[str] = []

    # What each down node still waits for: down hard requirements, and groups short of K members up.
    hard_from, hard_to = graph.requirement_edges
    waiting_hard = np.bincount(hard_to[down[hard_from]], minlength=n).astype(np.int64)
    members_up = np.bincount(graph.member_groups[~down[graph.member_nodes]], minlength=n_groups)
    short = np.maximum(graph.group_k - members_up, 0)
    waiting_groups = np.bincount(graph.group_owner[short > 0], minlength=n).astype(np.int64)

    # With a cap, ready units wait in a queue, most critical first: a step costs what it takes, not what waits.
    queue = _ReadyQueue(graph, _priorities(graph, down), down) if parallel is not None else None
    pending = down.copy()
    left = int(np.count_nonzero(down))
    ready = np.flatnonzero(pending & (waiting_hard == 0) & (waiting_groups == 0))
    is_ready = np.zeros(n, dtype=np.bool_)  # ready (or released with its cycle) and not yet restored
    is_ready[ready] = True
    # A sub-graph of a graph without cycles has none: look for them only when the down items have some.
    has_cycles = _blocked_components(graph, pending, short)[1]
    current = 0
    while left:
        cycles, cycle_unit = (
            _unblocked_cycles(graph, pending, short, is_ready, notes) if has_cycles else (ready[:0], ready[:0])
        )
        is_ready[cycles] = True
        if queue is not None:
            queue.add(ready)
            queue.add_units(cycles, cycle_unit)
            ready = ready[:0]
        else:
            ready = np.union1d(ready, cycles)
        if ready.size == 0 and not queue:
            released = _unmeetable(graph, pending, notes)
            is_ready[released] = True
            if queue is not None:
                queue.add(released)
            else:
                ready = released
        current += 1
        if queue is not None:
            assert parallel is not None
            taken = queue.take(parallel)
            if taken.size > parallel:
                shown = ", ".join(sorted(graph.ids[i] for i in taken.tolist())[:8]) + (" …" if taken.size > 8 else "")
                notes.append(
                    f"step {current} restores {taken.size} items, more than the {parallel} a step allows: they "
                    f"need each other, so they come back together or not at all: {shown}"
                )
        else:
            taken = ready
        left -= taken.size
        step[taken] = current
        pending[taken] = False
        is_ready[taken] = False
        waiting_hard[taken] = 0
        waiting_groups[taken] = 0
        # Restoring `taken` releases what waited on them.
        dependents = gather(graph.dependents_ptr, graph.dependents, taken)
        dependents = dependents[pending[dependents]]
        np.subtract.at(waiting_hard, dependents, 1)
        groups = gather(graph.member_groups_ptr, graph.member_groups, taken)
        groups, restored_members = np.unique(groups, return_counts=True)
        was_short = short[groups] > 0
        # A group is met the step its K-th member is back; members beyond K change nothing.
        short[groups] = np.maximum(short[groups] - restored_members, 0)
        met = groups[was_short & (short[groups] == 0)]
        owners = graph.group_owner[met]
        owners = owners[pending[owners]]
        np.subtract.at(waiting_groups, owners, 1)
        touched = distinct(np.concatenate((dependents, owners)))
        # Items already queued with their cycle are not queued again when their own waits run out.
        ready = touched[
            (waiting_hard[touched] == 0) & (waiting_groups[touched] == 0) & pending[touched] & ~is_ready[touched]
        ]
        is_ready[ready] = True
    return step, notes


class _ReadyQueue:
    """Units ready to be restored, most critical first (:func:`_priorities`, then id): a heap.

    A unit is one item, or items that need each other (a cycle), which are never split. ``take`` fills one
    step: the most critical unit always goes (alone, when it is a cycle larger than the step); then each
    next unit that fits in the room left. A unit that does not fit waits for the next step, so no room is
    left idle that a ready unit could use.
    """

    def __init__(self, graph: EstateGraph, priority: IntArray, down: np.ndarray) -> None:
        self.priority = priority
        self.rank = _id_rank(graph, down)
        self.heap: list[tuple[int, int, int]] = []
        self.cycles: dict[int, IntArray] = {}
        """A cycle's items, by the node that names it in the heap (its lowest)."""

    def __bool__(self) -> bool:
        return bool(self.heap)

    def add(self, nodes: IntArray) -> None:
        for entry in zip(self.priority[nodes].tolist(), self.rank[nodes].tolist(), nodes.tolist(), strict=True):
            heapq.heappush(self.heap, entry)

    def add_units(self, nodes: IntArray, unit: IntArray) -> None:
        for name in distinct(unit).tolist():
            items = nodes[unit == name]
            self.cycles[name] = items
            heapq.heappush(self.heap, (int(self.priority[items].min()), int(self.rank[items].min()), name))

    def take(self, parallel: int) -> IntArray:
        taken: list[IntArray] = []
        waiting: list[tuple[int, int, int]] = []
        room = parallel
        while self.heap and room > 0:
            entry = heapq.heappop(self.heap)
            items = self.cycles.get(entry[2])
            size = 1 if items is None else items.size
            if size <= room or not taken:
                taken.append(np.array([entry[2]], dtype=np.int64) if items is None else self.cycles.pop(entry[2]))
                room -= size
            else:
                waiting.append(entry)
        for entry in waiting:
            heapq.heappush(self.heap, entry)
        return np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)


def _blocked_components(graph: EstateGraph, pending: np.ndarray, short: IntArray) -> tuple[_Components, bool]:
    """Strongly connected components of the pending items under "waits for" edges, and whether any is a cycle."""
    nodes = np.flatnonzero(pending)
    local = np.full(graph.n, -1, dtype=np.int64)
    local[nodes] = np.arange(nodes.size)
    req_h, dep_h = graph.requirement_edges
    keep = pending[req_h] & pending[dep_h]
    member = graph.member_nodes
    owner = graph.group_owner[graph.member_groups]
    keep_g = pending[member] & pending[owner] & (short[graph.member_groups] > 0)
    src = np.concatenate((local[req_h[keep]], local[member[keep_g]]))
    dst = np.concatenate((local[dep_h[keep]], local[owner[keep_g]]))
    adjacency = csr_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(nodes.size, nodes.size))
    count, component = connected_components(adjacency, directed=True, connection="strong")
    sizes = np.bincount(component, minlength=count)
    return _Components(nodes, component, sizes, src, dst), bool((sizes > 1).any())


@dataclass(frozen=True)
class _Components:
    nodes: IntArray
    component: IntArray
    sizes: IntArray
    src: IntArray
    dst: IntArray

    def sources(self) -> IntArray:
        """Components no other pending component's item waits on: nothing outside them holds them back."""
        crossing = self.component[self.src] != self.component[self.dst]
        blocked = np.zeros(self.sizes.size, dtype=np.bool_)
        blocked[self.component[self.dst[crossing]]] = True
        return np.flatnonzero(~blocked)


def _unblocked_cycles(
    graph: EstateGraph, pending: np.ndarray, short: IntArray, is_ready: np.ndarray, notes: list[str]
) -> tuple[IntArray, IntArray]:
    """Items that need each other come back together as soon as nothing outside their cycle holds them back:
    the items, and the unit of each (its cycle, named by its lowest node)."""
    # Items ready but not yet restored still hold back what needs them: they stay in the graph (as singletons).
    found, _ = _blocked_components(graph, pending, short)
    cycles = found.sources()
    cycles = cycles[found.sizes[cycles] > 1]
    in_cycle = np.isin(found.component, cycles) & ~is_ready[found.nodes]  # a cycle left waiting is known
    if not in_cycle.any():
        return found.nodes[:0], found.nodes[:0]
    released = found.nodes[in_cycle]
    lowest = np.full(found.sizes.size, graph.n, dtype=np.int64)
    np.minimum.at(lowest, found.component[in_cycle], released)
    shown = ", ".join(sorted(graph.ids[i] for i in released.tolist())[:8]) + (" …" if released.size > 8 else "")
    notes.append(f"restored together because they need each other: {shown}")
    return released, lowest[found.component[in_cycle]]


def _unmeetable(graph: EstateGraph, pending: np.ndarray, notes: list[str]) -> IntArray:
    """Nothing can progress: what is left waits on a group that needs more members than exist. Last, on its own."""
    found, _ = _blocked_components(graph, pending, np.zeros(graph.group_owner.size, dtype=np.int64))
    released = found.nodes[np.isin(found.component, found.sources())]
    shown = ", ".join(sorted(graph.ids[i] for i in released.tolist())[:8]) + (" …" if released.size > 8 else "")
    notes.append(f"cannot be met by restoring anything (a group needs more members than exist): {shown}")
    return released


def _id_rank(graph: EstateGraph, down: np.ndarray) -> IntArray:
    """Each down node's place among the down nodes sorted by id (what ties are broken by)."""
    nodes = np.flatnonzero(down)
    order = np.argsort(np.asarray([graph.ids[i] for i in nodes.tolist()], dtype=object), kind="stable")
    rank = np.zeros(graph.n, dtype=np.int64)
    rank[nodes[order]] = np.arange(nodes.size)
    return rank


def _priorities(graph: EstateGraph, down: np.ndarray) -> IntArray:
    """Per node, the (tier, RTO) of the most critical down service that needs it, as one sortable key.

    The pair is taken from one service, never mixed: a tier-4 service's short RTO does not lift an item above
    one a tier-2 service needs. No RTO sorts after every RTO; no service after every tier.
    """
    key = np.full(graph.n, _key(NO_SERVICE_TIER, None), dtype=np.int64)
    services = np.flatnonzero(down[: graph.n_services])
    key[services] = [_key(graph.estate.services[i].tier, graph.estate.services[i].rto) for i in services.tolist()]
    # Pass each key from a down node to what it requires, until nothing changes (a few rounds: the graph's depth).
    req_h, dep_h = graph.requirement_edges
    member = graph.member_nodes
    owner = graph.group_owner[graph.member_groups]
    needs = np.concatenate((dep_h, owner))
    needed = np.concatenate((req_h, member))
    keep = down[needs] & down[needed]
    needs, needed = needs[keep], needed[keep]
    while needs.size:
        updated = key.copy()
        np.minimum.at(updated, needed, key[needs])
        if np.array_equal(updated, key):
            break
        key = updated
    return key


_RTO_LIMIT = 1 << 40  # seconds: some 35,000 years, well past any RTO


def _key(tier: int, rto: int | None) -> int:
    return tier * _RTO_LIMIT + (min(rto, _RTO_LIMIT - 2) if rto is not None else _RTO_LIMIT - 1)
