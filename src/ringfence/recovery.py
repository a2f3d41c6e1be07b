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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ringfence.estate import NO_SERVICE_TIER
from ringfence.graph import EstateGraph, Failure, IntArray, gather

EVIDENCE_LABEL = (
    "Evidence of the restore order given interdependencies (DSPT B5.a): computed by ringfence from the "
    "estate's recorded dependencies."
)
_NO_RTO = np.iinfo(np.int64).max


@dataclass(frozen=True)
class RestoreStep:
    step: int
    restore: tuple[str, ...]
    """Ids, sorted."""


@dataclass(frozen=True)
class ContinuityAction:
    service: str
    name: str
    tier: int
    rto: int | None
    plan: str | None
    contacts: tuple[str, ...]


@dataclass(frozen=True)
class RtoRisk:
    service: str
    tier: int
    rto: int
    restored_by: int
    """Estimated seconds until restored: its step times the time a step takes."""


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


def plan_recovery(
    graph: EstateGraph,
    failures: Sequence[Failure],
    *,
    parallel: int | None = None,
    step_seconds: int = 3600,
) -> RecoveryPlan:
    """Restore steps for everything ``failures`` take down, continuity plans to enact, RTOs at risk."""
    if parallel is not None and parallel < 1:
        raise ValueError("parallel must be at least 1")
    down = graph.down_after(failures).mask
    step_of, notes = _restore_steps(graph, down, parallel)

    steps: dict[int, list[str]] = {}
    for node in np.flatnonzero(down).tolist():
        steps.setdefault(int(step_of[node]), []).append(graph.ids[node])
    ordered = tuple(RestoreStep(s, tuple(sorted(items))) for s, items in sorted(steps.items()))

    estate = graph.estate
    down_services = [estate.services[i] for i in np.flatnonzero(down[: graph.n_services]).tolist()]
    continuity = tuple(
        ContinuityAction(s.id, s.label, s.tier, s.rto, s.continuity, s.contacts)
        for s in sorted(down_services, key=lambda s: (s.tier, s.rto if s.rto is not None else _NO_RTO, s.id))
    )
    at_risk = tuple(
        RtoRisk(a.service, a.tier, a.rto, int(step_of[graph.index[a.service]]) * step_seconds)
        for a in continuity
        if a.rto is not None and int(step_of[graph.index[a.service]]) * step_seconds > a.rto
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

    priority = _priorities(graph, down)
    id_rank = _id_rank(graph) if parallel is not None else None
    pending = down.copy()
    ready = np.flatnonzero(pending & (waiting_hard == 0) & (waiting_groups == 0))
    # A sub-graph of a graph without cycles has none: look for them only when the down items have some.
    has_cycles = _blocked_components(graph, pending, short)[1]
    current = 0
    while pending.any():
        if has_cycles:
            ready = np.union1d(ready, _unblocked_cycles(graph, pending, short, notes))
        if ready.size == 0:
            ready = _unmeetable(graph, pending, notes)
        current += 1
        if parallel is not None and ready.size > parallel:
            assert id_rank is not None
            order = np.lexsort((id_rank[ready], priority[ready]))
            taken, ready = ready[order[:parallel]], ready[order[parallel:]]
        else:
            taken, ready = ready, ready[:0]
        step[taken] = current
        pending[taken] = False
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
        touched = np.unique(np.concatenate((dependents, owners)))
        newly = touched[(waiting_hard[touched] == 0) & (waiting_groups[touched] == 0) & pending[touched]]
        ready = np.union1d(ready, newly)
    return step, notes


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


def _unblocked_cycles(graph: EstateGraph, pending: np.ndarray, short: IntArray, notes: list[str]) -> IntArray:
    """Items that need each other come back together as soon as nothing outside their cycle holds them back."""
    # Items ready but not yet restored still hold back what needs them: they stay in the graph (as singletons).
    found, _ = _blocked_components(graph, pending, short)
    cycles = found.sources()
    cycles = cycles[found.sizes[cycles] > 1]
    if cycles.size == 0:
        return found.nodes[:0]
    released = found.nodes[np.isin(found.component, cycles)]
    shown = ", ".join(sorted(graph.ids[i] for i in released.tolist())[:8]) + (" …" if released.size > 8 else "")
    notes.append(f"restored together because they need each other: {shown}")
    return released


def _unmeetable(graph: EstateGraph, pending: np.ndarray, notes: list[str]) -> IntArray:
    """Nothing can progress: what is left waits on a group that needs more members than exist. Last, on its own."""
    found, _ = _blocked_components(graph, pending, np.zeros(graph.group_owner.size, dtype=np.int64))
    released = found.nodes[np.isin(found.component, found.sources())]
    shown = ", ".join(sorted(graph.ids[i] for i in released.tolist())[:8]) + (" …" if released.size > 8 else "")
    notes.append(f"cannot be met by restoring anything (a group needs more members than exist): {shown}")
    return released


def _id_rank(graph: EstateGraph) -> IntArray:
    order = np.argsort(np.asarray(graph.ids, dtype=object), kind="stable")
    rank = np.empty(graph.n, dtype=np.int64)
    rank[order] = np.arange(graph.n)
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
