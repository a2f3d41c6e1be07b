"""The ring planner: an estate and an update in, ordered rings out.

Every plan, on every estate, holds the rules of the update format:

1. **Partition** — each target is in exactly one ring; nothing else is; no ring is empty.
2. **Coverage** — the canary phase (the leading rings marked ``canary``) holds at least one asset of every
   stratum among the targets, and it comes before every other ring.
3. **Least critical canaries** — in each stratum, the earliest canary ring holding the stratum holds an asset
   of the highest impact tier (least critical) found among that stratum's targets. The canary phase holds
   exactly one asset per stratum, so that ring is the only one.
4. **Redundancy kept, canaries included** — no ring holds more than ``n − K`` members of any ``any: K`` group
   of ``n``. When a stratum's least-critical asset would overfill a group in the canary, it goes into a
   further *canary wave* (another ring of the canary phase), never into the same ring: redundancy is never
   traded for coverage. A group with no slack (``n − K ≤ 0``) cannot be updated without an outage: it is
   listed under ``warnings`` with its owners and members, and it is the only kind of group a ring may overfill.
5. **Criticality last** — after the canary phase, targets go in order of impact tier, least critical first;
   an asset is only moved later than that order when redundancy (rule 4) demands it.

A ring the planner adds on its own account (a canary wave beyond the first, a ring for assets redundancy
deferred, a ring for targets past the last step of ``rings``) says why in :attr:`Ring.why`; a step of
``rings`` that adds no asset on this estate is named in :attr:`Plan.notes`, so nothing vanishes silently.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import NO_SERVICE_TIER
from ringfence.core.graph import EstateGraph, IntArray
from ringfence.core.impact import impact_tiers
from ringfence.core.plan import Plan, PlanGroup, PlanWarning, Ring, Stratum, format_stratum
from ringfence.core.rollout.record import MemberNumbers
from ringfence.core.selectors import parse_selector
from ringfence.core.update import HoldOverride, Update
from ringfence.core.words import count, names

_SHOWN = 8
"""Members named in a sentence about a group; the rest are counted."""


@dataclass
class _Group:
    """One distinct any-group among the targets (identical member sets and K are merged)."""

    capacity: int
    """How many members may be down at once: n − K. Groups with none are exempt (and warned about)."""
    owners: list[int]
    members: IntArray
    k: int
    members_key: bytes
    """The sorted member nodes as bytes: groups with the same key have the same members, whatever their K."""


@dataclass(frozen=True)
class _Targets:
    """The targets by number (0..n-1, in estate order): each one's id and stratum, for rings and sentences."""

    id_of: list[str]
    strata: tuple[Stratum, ...]
    stratum_of: IntArray

    def id(self, t: int) -> str:
        return self.id_of[t]

    def ids(self, ts: Sequence[int]) -> str:
        return ", ".join(sorted(self.id(t) for t in ts))

    def stratum(self, t: int) -> str:
        return format_stratum(self.strata[int(self.stratum_of[t])])


def plan_rings(graph: EstateGraph, update: Update, *, hold_override: HoldOverride | None = None) -> Plan:
    """Plan the rings of ``update`` over ``graph``'s estate. Raises InputError when it targets nothing."""
    targets = graph.assets.match(parse_selector(update.target_selector))
    if targets.size == 0:
        raise InputError(
            [
                Problem(
                    f"update '{update.id}' targets '{update.target_selector}', which matches no asset of "
                    f"estate '{graph.estate.name}'",
                    path=("update", "targets"),
                )
            ]
        )
    n = int(targets.size)
    strata, stratum_of = _strata(graph, targets, update.strata)
    tiers = impact_tiers(graph, targets)
    groups, groups_of_target = _groups(graph, targets)
    named = _Targets([graph.ids[node] for node in (targets + graph.n_services).tolist()], strata, stratum_of)
    warnings = [_no_slack_warning(graph, g) for g in groups if g.capacity <= 0]
    exempt = {g for g, group in enumerate(groups) if group.capacity <= 0}

    # The canary phase: one least-critical asset per stratum, in few waves (greedy) that keep redundancy.
    waves = _canary_waves(stratum_of, tiers, len(strata), groups, groups_of_target)
    whys: list[str | None] = [None]
    for w in range(1, len(waves)):
        whys.append(_wave_why(w, waves[w - 1], waves[w], named, graph, groups, groups_of_target))

    # The rest, least critical first (criticality last); ties in estate order, which is stable and cheap.
    in_canary = np.zeros(n, dtype=np.bool_)
    for wave in waves:
        in_canary[wave] = True
    rest = np.flatnonzero(~in_canary)
    queue = rest[np.lexsort((rest, -tiers[rest].astype(np.int64)))].tolist()

    rings_members: list[list[int]] = list(waves)
    notes: list[str] = []
    done = sum(len(wave) for wave in waves)
    reached_by = "the canary phase"
    # The steps, then n: a ring that redundancy kept short leaves its deferred assets for extra rings here.
    steps: list[tuple[int | str | None, int]] = [(step, _cumulative_end(step, n)) for step in update.rings]
    for j, (step, end) in enumerate([*steps, (None, n)]):
        if step is not None and end <= done:
            notes.append(_idle_step_note(j, step, end, n, done, reached_by))
            continue
        # A ring for targets past the last step: the planner's doing, so it says so.
        why = None if step is not None or done >= n else _tail_why(len(rings_members), done, n)
        while done < end and queue:
            members, queue, blocked = _fill(queue, end - done, groups, groups_of_target, exempt)
            rings_members.append(members)
            whys.append(why)
            done += len(members)
            if done < end:
                # Cut short by redundancy: every target left was deferred, to a ring added here.
                why = _deferred_why(len(rings_members), len(queue), blocked, graph, groups)
        if step is not None:
            reached_by = f"rings[{j}] ({_step_text(step)})"

    canaries = len(waves)
    # Each ring sorted by id with one lookup per asset; strata and tiers follow by indexing the arrays.
    ordered = [np.asarray(sorted(members, key=named.id_of.__getitem__), dtype=np.int64) for members in rings_members]
    rings = tuple(
        _ring(i, members, named, tiers, update.bake, canary=i < canaries, why=whys[i])
        for i, members in enumerate(ordered)
    )
    # Each target's position in the plan (its rings read in order), by graph node: how the groups number their
    # members for the safety guard (see record.MemberNumbers).
    position = np.full(len(graph.ids), -1, np.int64)
    if ordered:
        position[targets[np.concatenate(ordered)] + graph.n_services] = np.arange(n, dtype=np.int64)
    return Plan(
        update=update,
        strata_keys=update.strata,
        strata=strata,
        rings=rings,
        warnings=tuple(warnings),
        hold_override=hold_override,
        groups=_plan_groups(graph, groups, position),
        notes=tuple(notes),
    )


def _strata(graph: EstateGraph, targets: IntArray, keys: Sequence[str]) -> tuple[tuple[Stratum, ...], IntArray]:
    """Distinct strata among the targets, and each target's stratum number (missing values count as a value)."""
    if not keys:
        return ((),), np.zeros(targets.size, dtype=np.int64)
    columns = []
    vocabularies = []
    stratum_of = np.zeros(targets.size, dtype=np.int64)
    for key in keys:
        codes, vocabulary = graph.assets.column(key)
        column = codes[targets].astype(np.int64)
        columns.append(column)
        vocabularies.append({code: value for value, code in vocabulary.items()})
        # One key at a time, in mixed radix over dense ranks: the strata come out in the lexicographic order of
        # their codes (a missing value, -1, first), and the key never outgrows n × (values of one column).
        # Sorting rows of a 2-D array instead (np.unique with axis=0) took seconds at a million targets.
        radix = int(column.max()) + 2
        _, stratum_of = np.unique(stratum_of * radix + (column + 1), return_inverse=True)
    stratum_of = stratum_of.reshape(-1).astype(np.int64)
    _, first = np.unique(stratum_of, return_index=True)
    strata = tuple(
        tuple(vocabularies[k].get(int(column[t])) for k, column in enumerate(columns)) for t in first.tolist()
    )
    return strata, stratum_of


def _groups(graph: EstateGraph, targets: IntArray) -> tuple[list[_Group], dict[int, list[int]]]:
    """Distinct any-groups with at least one target among their members, and each target's groups.

    Worked out once per member *set* of the graph, not per member: a set that thousands of owners share (the
    workstations of a practice) is visited once, and each of its members gets the same list of groups — less
    any group it owns itself (a where-group never counts its own owner)."""
    nodes = targets + graph.n_services
    starts = graph.member_sets_ptr[nodes]
    ends = graph.member_sets_ptr[nodes + 1]
    canonical: dict[tuple[bytes, int], int] = {}
    groups: list[_Group] = []
    by_group: dict[int, int] = {}
    sorted_set: dict[int, tuple[IntArray, bytes]] = {}

    def canonical_group(g: int) -> int:
        """The planner's group for graph group ``g``: identical members and K are one group (same capacity),
        however they were written (an of-list, a where-group, a where-group less its owner)."""
        found = by_group.get(g)
        if found is None:
            s = int(graph.group_set[g])
            known = sorted_set.get(s)
            if known is None:
                members = np.sort(graph.set_members[graph.set_members_ptr[s] : graph.set_members_ptr[s + 1]])
                known = sorted_set[s] = (members, members.tobytes())
            members, content = known
            if graph.excludes_owner[g]:
                members = members[members != graph.group_owner[g]]
                content = members.tobytes()
            k = int(graph.group_k[g])
            found = canonical.get((content, k))
            if found is None:
                found = canonical[(content, k)] = len(groups)
                groups.append(_Group(int(members.size) - k, [], members, k, content))
            groups[found].owners.append(int(graph.group_owner[g]))
            by_group[g] = found
        return found

    # Per set: the groups every member is in, and those owned by a member (which leave their owner out).
    per_set: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}

    def groups_of(sets: list[int], node: int) -> tuple[list[int], bool]:
        """The groups of a target in ``sets``, and whether the answer depends on the target itself."""
        mine: list[int] = []
        depends = False
        for s in sets:
            split = per_set.get(s)
            if split is None:
                on_set = graph.set_groups[graph.set_groups_ptr[s] : graph.set_groups_ptr[s + 1]].tolist()
                # Many owners often share one group (every GP records service, the same practice PCs): once each.
                split = per_set[s] = (
                    list(dict.fromkeys(canonical_group(g) for g in on_set if not graph.excludes_owner[g])),
                    [(int(graph.group_owner[g]), g) for g in on_set if graph.excludes_owner[g]],
                )
            common, own = split
            mine.extend(common)
            if own:
                depends = True
                mine.extend(canonical_group(g) for owner, g in own if owner != node)
        return (list(dict.fromkeys(mine)) if len(mine) > 1 else mine), depends

    # Targets in the same sets are in the same groups (the workstations of a site, the hosts of a cluster):
    # worked out once per distinct list of sets, unless a group there leaves its own owner out.
    by_sets: dict[bytes, list[int]] = {}
    groups_of_target: dict[int, list[int]] = {}
    member_sets = graph.member_sets
    with_sets = np.flatnonzero(ends > starts)
    for t, start, end in zip(with_sets.tolist(), starts[with_sets].tolist(), ends[with_sets].tolist(), strict=True):
        row = member_sets[start:end]
        key = row.tobytes()
        shared = by_sets.get(key)
        if shared is None:
            mine, depends = groups_of(row.tolist(), int(nodes[t]))
            if not depends:
                by_sets[key] = mine
            shared = mine
        if shared:
            groups_of_target[t] = shared
    return groups, groups_of_target


def _fits(t: int, load: dict[int, int], groups: list[_Group], groups_of_target: dict[int, list[int]]) -> bool:
    return all(groups[g].capacity <= 0 or load.get(g, 0) < groups[g].capacity for g in groups_of_target.get(t, ()))


def _place(t: int, load: dict[int, int], groups_of_target: dict[int, list[int]]) -> None:
    for g in groups_of_target.get(t, ()):
        load[g] = load.get(g, 0) + 1


def _canary_waves(
    stratum_of: IntArray,
    tiers: np.ndarray,
    n_strata: int,
    groups: list[_Group],
    groups_of_target: dict[int, list[int]],
) -> list[list[int]]:
    """One least-critical target per stratum, spread over as few waves as keep every group within n − K.

    Greedy: wave 0 takes, stratum by stratum (those with the fewest candidates first), the first candidate that
    fits beside what it already holds; the strata left over start wave 1 ("canary wave 2"), and so on. One asset
    fits an empty wave (a group it could overfill alone has no slack and is exempt), so every wave places at
    least one stratum.
    """
    n = stratum_of.size
    wide_tiers = tiers.astype(np.int64)
    best = np.full(n_strata, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(best, stratum_of, wide_tiers)
    candidates = np.flatnonzero(wide_tiers == best[stratum_of])
    # Within a stratum, prefer the candidate in the fewest groups: it leaves the most room for other strata.
    touching = np.zeros(n, dtype=np.int64)
    for t, mine in groups_of_target.items():
        touching[t] = len(mine)
    order = candidates[np.lexsort((candidates, touching[candidates], stratum_of[candidates]))]
    bounds = np.searchsorted(stratum_of[order], np.arange(n_strata + 1)).tolist()
    counts = np.diff(np.asarray(bounds, dtype=np.int64))
    pending = np.lexsort((np.arange(n_strata), counts)).tolist()

    waves: list[list[int]] = []
    while pending:
        load: dict[int, int] = {}
        wave: list[int] = []
        later: list[int] = []
        for s in pending:
            chosen = _first_fitting(order, bounds[s], bounds[s + 1], load, groups, groups_of_target)
            if chosen is None:
                later.append(s)
            else:
                _place(chosen, load, groups_of_target)
                wave.append(chosen)
        waves.append(wave)
        pending = later
    return waves


def _first_fitting(
    order: IntArray,
    start: int,
    stop: int,
    load: dict[int, int],
    groups: list[_Group],
    groups_of_target: dict[int, list[int]],
) -> int | None:
    """The first of ``order[start:stop]`` that fits beside ``load``; None when none does."""
    # Loads only grow while a wave fills, so candidates in the very groups of one that did not fit cannot either:
    # a stratum of ten thousand workstations in one full group is tried once, not ten thousand times.
    refused: set[tuple[int, ...]] = set()
    for p in range(start, stop):
        t = int(order[p])
        mine = groups_of_target.get(t)
        if not mine:
            return t
        signature = tuple(mine)
        if signature in refused:
            continue
        if _fits(t, load, groups, groups_of_target):
            return t
        refused.add(signature)
    return None


def _fill(
    queue: list[int],
    size: int,
    groups: list[_Group],
    groups_of_target: dict[int, list[int]],
    exempt: set[int],
) -> tuple[list[int], list[int], Counter[int]]:
    """Take up to ``size`` targets from the queue in order, deferring any that would overfill a group.

    Returns the ring, the queue left, and for each group how many targets it deferred."""
    members: list[int] = []
    deferred: list[int] = []
    blocked: Counter[int] = Counter()
    load: dict[int, int] = {}
    # How many members of each group a ring may hold; an exempt group (no slack, warned about) never fills.
    limit = [len(queue) + 1 if g in exempt else group.capacity for g, group in enumerate(groups)]
    taken = 0
    for position, t in enumerate(queue):
        if taken == size:
            return members, deferred + queue[position:], blocked
        mine = groups_of_target.get(t)
        if mine:
            # Both members of an HA pair never share a ring: if the ring dies, the service must survive.
            full = -1
            for g in mine:
                if load.get(g, 0) >= limit[g]:
                    full = g
                    break
            if full >= 0:
                deferred.append(t)
                blocked[full] += 1
                continue
            for g in mine:
                load[g] = load.get(g, 0) + 1
        members.append(t)
        taken += 1
    return members, deferred, blocked


def _cumulative_end(step: int | str, n: int) -> int:
    if isinstance(step, int):
        return min(step, n)
    return min(n, math.ceil(float(step.rstrip("%")) * n / 100))


def _ring(
    index: int,
    ordered: np.ndarray,
    named: _Targets,
    tiers: np.ndarray,
    bake: int,
    *,
    canary: bool,
    why: str | None,
) -> Ring:
    """Ring ``index`` of the targets ``ordered`` (already sorted by id)."""
    return Ring(
        index=index,
        name=_ring_name(index) if canary else f"ring {index}",
        assets=tuple(map(named.id_of.__getitem__, ordered.tolist())),
        strata=tuple(named.stratum_of[ordered].tolist()),
        tiers=tuple(tiers[ordered].tolist()),
        bake=bake,
        canary=canary,
        why=why,
    )


def _ring_name(canary_wave: int) -> str:
    """``canary`` for the first wave, then ``canary wave 2``, ``canary wave 3``…"""
    return "canary" if canary_wave == 0 else f"canary wave {canary_wave + 1}"


# ----------------------------------------------------------------------------------------- sentences


def _group_phrase(graph: EstateGraph, group: _Group) -> str:
    """``epr needs 1 of 2 (epr-db-1, epr-db-2) up``; a large group names its first members by id and counts."""
    owners = sorted({graph.ids[o] for o in group.owners})
    n = int(group.members.size)
    first = heapq.nsmallest(_SHOWN, (graph.ids[m] for m in group.members.tolist()))
    listed = ", ".join(first) + (", …" if n > _SHOWN else "")
    return f"{names(owners)} needs {group.k} of {n} ({listed}) up"


def _wave_why(
    w: int,
    previous: list[int],
    wave: list[int],
    named: _Targets,
    graph: EstateGraph,
    groups: list[_Group],
    groups_of_target: dict[int, list[int]],
) -> str:
    """Why canary wave ``w`` (0-based) exists: its first asset would overfill a group in the wave before."""
    load: dict[int, int] = {}
    for t in previous:
        _place(t, load, groups_of_target)
    t = wave[0]
    # Every candidate of t's stratum was refused in the previous wave, and loads only grew after: t was too.
    full = next(
        (g for g in groups_of_target.get(t, ()) if 0 < groups[g].capacity <= load.get(g, 0)),
        None,
    )
    head = f"{_ring_name(w)}: {named.id(t)} (stratum {named.stratum(t)})"
    if full is None:  # pragma: no cover - the greedy fill above never leaves a stratum without a reason
        reason = f"{head} does not fit beside {_ring_name(w - 1)}"
    else:
        held = [p for p in previous if full in groups_of_target.get(p, ())]
        reason = f"{head} cannot share a ring with {named.ids(held)}: {_group_phrase(graph, groups[full])}"
    if len(wave) > 1:
        others = len(wave) - 1
        who = "1 more stratum waits" if others == 1 else f"{others} more strata wait"
        reason += f"; {who} here too, each kept out of {_ring_name(w - 1)} by a group it would overfill"
    return reason


def _deferred_why(index: int, deferred: int, blocked: Counter[int], graph: EstateGraph, groups: list[_Group]) -> str:
    """Why ring ``index`` is added: the ring before it deferred ``deferred`` targets to keep groups up."""
    if not blocked:  # pragma: no cover - a ring is only cut short by a group it would overfill
        return f"ring {index} added: {count(deferred, 'asset')} deferred from ring {index - 1}"
    g, _ = blocked.most_common(1)[0]
    group = groups[g]
    owners = sorted({graph.ids[o] for o in group.owners})
    others = len(blocked) - 1
    return (
        f"ring {index} added: {count(deferred, 'asset')} deferred from ring {index - 1} to keep redundancy of "
        f"{names(owners)} (needs {group.k} of {group.members.size})"
        + (f" and of {count(others, 'other group')}" if others else "")
    )


def _tail_why(index: int, done: int, n: int) -> str:
    return (
        f"ring {index} added: the steps of rings end at {done} of {n} targets; "
        f"the other {n - done} go in this ring and any after it"
    )


def _step_text(step: int | str) -> str:
    return f"'{step}'" if isinstance(step, str) else str(step)


def _idle_step_note(j: int, step: int | str, end: int, n: int, done: int, reached_by: str) -> str:
    """A step of ``rings`` that adds no asset: say what it asked for and what already reached it."""
    if isinstance(step, str):
        asked = f"{step} of {n} targets ({end})"
    elif step > n:
        asked = f"{count(step, 'target')} (capped at the {n} there are)"
    else:
        asked = count(step, "target")
    return (
        f"rings[{j}] ({_step_text(step)}) adds no ring on this estate: it asks for {asked} to be done, "
        f"and {done} already are after {reached_by}"
    )


# ------------------------------------------------------------------------------------------ groups


def _plan_groups(graph: EstateGraph, groups: list[_Group], position: np.ndarray) -> tuple[PlanGroup, ...]:
    """Each distinct group by ids: owners merged, every member listed; groups sharing members share the tuple.

    ``position`` gives each graph node's position among the plan's targets (-1: not a target): each group
    also carries its members by number (record.MemberNumbers)."""
    ids = graph.ids
    # The planner's groups are already distinct by members and K; groups with the same members (and another K)
    # share one tuple of ids. Keyed by the members' bytes, whose hash Python keeps, not by the tuple.
    members_of: dict[bytes, tuple[tuple[str, ...], MemberNumbers]] = {}
    found = []
    for group in groups:
        shared = members_of.get(group.members_key)
        if shared is None:
            nodes = group.members
            at = position[nodes]
            outside = tuple(sorted([ids[m] for m in nodes[at < 0].tolist()]))
            numbers = MemberNumbers(tuple(np.sort(at[at >= 0]).tolist()), outside)
            shared = members_of[group.members_key] = (tuple(sorted([ids[m] for m in nodes.tolist()])), numbers)
        members, numbers = shared
        found.append(PlanGroup(tuple(sorted({ids[o] for o in group.owners})), members, group.k, numbers))
    found.sort(key=lambda g: (g.owners, g.k, len(g.members), g.members))
    return tuple(found)


def _no_slack_warning(graph: EstateGraph, group: _Group) -> PlanWarning:
    owners = tuple(sorted({graph.ids[o] for o in group.owners}))
    members = tuple(sorted(graph.ids[m] for m in group.members.tolist()))
    return PlanWarning(
        kind="no-slack",
        owners=owners,
        members=members,
        k=group.k,
        message=(
            f"{_group_phrase(graph, group)}: updating any member causes an outage; add redundancy or schedule downtime"
        ),
    )


__all__ = [
    "NO_SERVICE_TIER",
    "Plan",
    "PlanGroup",
    "PlanWarning",
    "Ring",
    "Stratum",
    "format_stratum",
    "plan_rings",
]
