"""The ring planner: an estate and an update in, ordered rings out.

Every plan, on every estate, holds the rules of the update format:

1. **Partition** — each target is in exactly one ring; nothing else is; no ring is empty.
2. **Coverage** — the canary (ring 0) holds at least one asset of every stratum among the targets.
3. **Least critical canaries** — in each stratum the canary holds an asset of the highest impact tier
   (least critical) found among that stratum's targets.
4. **Redundancy kept** — no ring holds more than ``n − K`` members of any ``any: K`` group of ``n``.
   A group with no slack (``n − K ≤ 0``) cannot be updated without an outage: it is listed under
   ``warnings`` with its owner and members, and is the only kind of group a ring may overfill.
   If covering every stratum in the canary would itself overfill a group, the canary still covers the
   stratum (rules 2–3 first) and that group is listed under ``warnings`` as a coverage conflict.
5. **Criticality last** — after the canary, targets go in order of impact tier, least critical first;
   an asset is only moved later than that order when redundancy (rule 4) demands it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ringfence.errors import InputError, Problem
from ringfence.estate import NO_SERVICE_TIER
from ringfence.graph import EstateGraph, IntArray
from ringfence.impact import impact_tiers
from ringfence.selectors import parse_selector
from ringfence.update import HoldOverride, Update

Stratum = tuple[str | None, ...]


def format_stratum(stratum: Stratum) -> str:
    """``("host", "esxi", None, "city")`` → ``host/esxi/-/city``."""
    return "/".join("-" if v is None else v for v in stratum)


@dataclass(frozen=True)
class Ring:
    index: int
    name: str
    assets: tuple[str, ...]
    """Sorted by id."""
    strata: tuple[int, ...]
    """Stratum number (into :attr:`Plan.strata`) of each asset, aligned with ``assets``."""
    tiers: tuple[int, ...]
    """Impact tier of each asset, aligned with ``assets``."""
    bake: int

    @property
    def size(self) -> int:
        return len(self.assets)

    def tier_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for tier in self.tiers:
            counts[tier] = counts.get(tier, 0) + 1
        return dict(sorted(counts.items()))


@dataclass(frozen=True)
class PlanWarning:
    """A group that this plan cannot update without dropping below K up."""

    kind: str
    """``no-slack`` (n − K ≤ 0) or ``coverage-conflict`` (the canary's coverage overfills it)."""
    owners: tuple[str, ...]
    members: tuple[str, ...]
    k: int
    message: str


@dataclass(frozen=True)
class Plan:
    update: Update
    strata_keys: tuple[str, ...]
    strata: tuple[Stratum, ...]
    rings: tuple[Ring, ...]
    warnings: tuple[PlanWarning, ...]
    hold_override: HoldOverride | None = None
    targets: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", sum(r.size for r in self.rings))

    @property
    def minimum_duration(self) -> int:
        """Seconds from start to done if every gate passes at once: per ring, restore points, apply, bake."""
        timing = self.update.timing
        per_ring = timing.apply + (timing.restore_point if self.update.rollback == "snapshot" else 0)
        return sum(per_ring + ring.bake for ring in self.rings)

    @property
    def worst_case_rollback(self) -> int | None:
        """Seconds to roll back everything, ring by ring, if the last gate fails; None without a rollback path."""
        if self.update.rollback == "none":
            return None
        return self.update.timing.rollback * len(self.rings)

    def ring_of(self) -> dict[str, int]:
        return {asset: ring.index for ring in self.rings for asset in ring.assets}

    def stratum_of(self) -> dict[str, Stratum]:
        return {a: self.strata[s] for ring in self.rings for a, s in zip(ring.assets, ring.strata, strict=True)}


@dataclass
class _Group:
    """One distinct any-group among the targets (identical member sets and K are merged)."""

    capacity: int
    """How many members may be down at once: n − K. Groups with none are exempt (and warned about)."""
    owners: list[int]
    members: IntArray
    k: int


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
    warnings = [_no_slack_warning(graph, g) for g in groups if g.capacity <= 0]

    # Ring 0, the canary: one least-critical asset per stratum, most constrained strata first.
    canary: list[int] = []
    canary_load: dict[int, int] = {}
    conflicts: dict[int, None] = {}
    by_stratum: dict[int, list[int]] = {}
    for t in range(n):
        by_stratum.setdefault(int(stratum_of[t]), []).append(t)
    best_tier = {s: max(int(tiers[t]) for t in members) for s, members in by_stratum.items()}
    candidates = {s: [t for t in members if tiers[t] == best_tier[s]] for s, members in by_stratum.items()}
    for s in sorted(candidates, key=lambda s: (len(candidates[s]), s)):
        # Prefer the candidate that touches the fewest groups: it leaves the most room for other strata.
        ordered = sorted(candidates[s], key=lambda t: (len(groups_of_target.get(t, ())), t))
        chosen = next((t for t in ordered if _fits(t, canary_load, groups, groups_of_target)), None)
        if chosen is None:
            chosen = ordered[0]
            for g in groups_of_target.get(chosen, ()):
                if canary_load.get(g, 0) + 1 > groups[g].capacity > 0:
                    conflicts[g] = None
        _place(chosen, canary_load, groups_of_target)
        canary.append(chosen)
    for g in conflicts:
        warnings.append(_conflict_warning(graph, groups[g]))
    # Only groups with no slack at all may be overfilled after the canary; a coverage conflict is the canary's alone.
    exempt = {g for g, group in enumerate(groups) if group.capacity <= 0}

    # The rest, least critical first (criticality last); ties in estate order, which is stable and cheap.
    in_canary = np.zeros(n, dtype=np.bool_)
    in_canary[canary] = True
    rest = np.flatnonzero(~in_canary)
    queue = rest[np.lexsort((rest, -tiers[rest].astype(np.int64)))].tolist()

    rings_members: list[list[int]] = [canary]
    done = len(canary)
    # The steps, then n: a ring that redundancy kept short leaves its deferred assets for extra rings here.
    for end in [*(_cumulative_end(step, n) for step in update.rings), n]:
        while done < end and queue:
            members, queue = _fill(queue, end - done, groups, groups_of_target, exempt)
            rings_members.append(members)
            done += len(members)

    rings = tuple(
        _ring(i, members, graph, targets, stratum_of, tiers, update.bake) for i, members in enumerate(rings_members)
    )
    return Plan(
        update=update,
        strata_keys=update.strata,
        strata=strata,
        rings=rings,
        warnings=tuple(warnings),
        hold_override=hold_override,
    )


def _strata(graph: EstateGraph, targets: IntArray, keys: Sequence[str]) -> tuple[tuple[Stratum, ...], IntArray]:
    """Distinct strata among the targets, and each target's stratum number (missing values count as a value)."""
    if not keys:
        return ((),), np.zeros(targets.size, dtype=np.int64)
    columns = []
    vocabularies = []
    for key in keys:
        codes, vocabulary = graph.assets.column(key)
        columns.append(codes[targets].astype(np.int64))
        vocabularies.append({code: value for value, code in vocabulary.items()})
    stacked = np.stack(columns, axis=1)
    distinct, stratum_of = np.unique(stacked, axis=0, return_inverse=True)
    strata = tuple(tuple(vocabularies[k].get(int(code)) for k, code in enumerate(row)) for row in distinct.tolist())
    return strata, stratum_of.reshape(-1).astype(np.int64)


def _groups(graph: EstateGraph, targets: IntArray) -> tuple[list[_Group], dict[int, list[int]]]:
    """Distinct any-groups with at least one target among their members, and each target's groups.

    Worked out once per member *set* of the graph, not per member: a set that thousands of owners share (the
    workstations of a practice) is visited once, and each of its members gets the same list of groups — less
    any group it owns itself (a where-group never counts its own owner)."""
    nodes = targets + graph.n_services
    starts = graph.member_sets_ptr[nodes]
    ends = graph.member_sets_ptr[nodes + 1]
    canonical: dict[tuple[bytes, int, int], int] = {}
    groups: list[_Group] = []
    by_group: dict[int, int] = {}
    content_of: dict[int, bytes] = {}

    def canonical_group(g: int) -> int:
        """The planner's group for graph group ``g``: identical members and K are one group (same capacity)."""
        found = by_group.get(g)
        if found is None:
            s = int(graph.group_set[g])
            content = content_of.get(s)
            if content is None:
                members = graph.set_members[graph.set_members_ptr[s] : graph.set_members_ptr[s + 1]]
                content = content_of[s] = np.sort(members).tobytes()
            k = int(graph.group_k[g])
            excluded = int(graph.group_owner[g]) if graph.excludes_owner[g] else -1
            found = canonical.get((content, k, excluded))
            if found is None:
                found = canonical[(content, k, excluded)] = len(groups)
                members = graph.members_of(g)
                groups.append(_Group(int(members.size) - k, [], members, k))
            groups[found].owners.append(int(graph.group_owner[g]))
            by_group[g] = found
        return found

    # Per set: the groups every member is in, and those owned by a member (which leave their owner out).
    per_set: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}
    groups_of_target: dict[int, list[int]] = {}
    for t in np.flatnonzero(ends > starts).tolist():
        node = int(nodes[t])
        mine: list[int] = []
        for s in graph.member_sets[starts[t] : ends[t]].tolist():
            split = per_set.get(s)
            if split is None:
                on_set = graph.set_groups[graph.set_groups_ptr[s] : graph.set_groups_ptr[s + 1]].tolist()
                split = per_set[s] = (
                    [canonical_group(g) for g in on_set if not graph.excludes_owner[g]],
                    [(int(graph.group_owner[g]), g) for g in on_set if graph.excludes_owner[g]],
                )
            common, own = split
            mine.extend(common)
            mine.extend(canonical_group(g) for owner, g in own if owner != node)
        if mine:
            groups_of_target[t] = list(dict.fromkeys(mine))
    return groups, groups_of_target


def _fits(t: int, load: dict[int, int], groups: list[_Group], groups_of_target: dict[int, list[int]]) -> bool:
    return all(groups[g].capacity <= 0 or load.get(g, 0) < groups[g].capacity for g in groups_of_target.get(t, ()))


def _place(t: int, load: dict[int, int], groups_of_target: dict[int, list[int]]) -> None:
    for g in groups_of_target.get(t, ()):
        load[g] = load.get(g, 0) + 1


def _fill(
    queue: list[int],
    size: int,
    groups: list[_Group],
    groups_of_target: dict[int, list[int]],
    exempt: set[int],
) -> tuple[list[int], list[int]]:
    """Take up to ``size`` targets from the queue in order, deferring any that would overfill a group."""
    members: list[int] = []
    deferred: list[int] = []
    load: dict[int, int] = {}
    taken = 0
    for position, t in enumerate(queue):
        if taken == size:
            return members, deferred + queue[position:]
        mine = groups_of_target.get(t)
        # Both members of an HA pair never share a ring: if the ring dies, the service must survive.
        if mine and not all(g in exempt or load.get(g, 0) < groups[g].capacity for g in mine):
            deferred.append(t)
            continue
        if mine:
            _place(t, load, groups_of_target)
        members.append(t)
        taken += 1
    return members, deferred


def _cumulative_end(step: int | str, n: int) -> int:
    if isinstance(step, int):
        return min(step, n)
    return min(n, math.ceil(float(step.rstrip("%")) * n / 100))


def _ring(
    index: int,
    members: list[int],
    graph: EstateGraph,
    targets: IntArray,
    stratum_of: IntArray,
    tiers: np.ndarray,
    bake: int,
) -> Ring:
    ids = graph.ids
    offset = graph.n_services
    rows = sorted((ids[int(targets[t]) + offset], int(stratum_of[t]), int(tiers[t])) for t in members)
    return Ring(
        index=index,
        name="canary" if index == 0 else f"ring {index}",
        assets=tuple(r[0] for r in rows),
        strata=tuple(r[1] for r in rows),
        tiers=tuple(r[2] for r in rows),
        bake=bake,
    )


def _owners_and_members(graph: EstateGraph, group: _Group) -> tuple[tuple[str, ...], tuple[str, ...]]:
    owners = tuple(sorted({graph.ids[o] for o in group.owners}))
    members = tuple(sorted(graph.ids[m] for m in group.members.tolist()))
    return owners, members


def _no_slack_warning(graph: EstateGraph, group: _Group) -> PlanWarning:
    owners, members = _owners_and_members(graph, group)
    shown = ", ".join(owners[:5]) + (f" and {len(owners) - 5} more" if len(owners) > 5 else "")
    return PlanWarning(
        kind="no-slack",
        owners=owners,
        members=members,
        k=group.k,
        message=(
            f"{shown} needs {group.k} of {len(members)} ({', '.join(members[:8])}"
            f"{', …' if len(members) > 8 else ''}) up: updating any member causes an outage; "
            "add redundancy or schedule downtime"
        ),
    )


def _conflict_warning(graph: EstateGraph, group: _Group) -> PlanWarning:
    owners, members = _owners_and_members(graph, group)
    return PlanWarning(
        kind="coverage-conflict",
        owners=owners,
        members=members,
        k=group.k,
        message=(
            f"covering every stratum in the canary puts more than {group.capacity} of "
            f"{', '.join(members[:8])} in ring 0, leaving {', '.join(owners[:3])} short of {group.k} up; "
            "narrow the strata or add redundancy"
        ),
    )


__all__ = ["NO_SERVICE_TIER", "Plan", "PlanWarning", "Ring", "Stratum", "format_stratum", "plan_rings"]
