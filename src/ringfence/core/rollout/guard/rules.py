"""Rules 1–7 checked against the compiled plan and the state now (see the package docstring)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from copy import copy
from dataclasses import replace
from itertools import chain

import numpy as np

from ringfence.core.errors import InputError
from ringfence.core.rollout.guard.compiled import (
    GuardGroup,
    GuardPlan,
    GuardState,
    _CompiledPlan,
    _current_rings,
    _TargetStates,
)
from ringfence.core.rollout.guard.violations import (
    _DENSE_PAIRS,
    _NO_RING,
    _NO_TIER,
    _UNAVAILABLE_WORDS,
    SHOWN_PER_RULE,
    BoolArray,
    IntArray,
    Violation,
    _canary_span,
    _distinct,
    _Findings,
    _gather,
    _has_have,
    _is_are,
    _pick,
    _plan_rings,
    _stratum,
    _tier,
    _verb,
)
from ringfence.core.rollout.state import AssetState
from ringfence.core.words import and_list, count, names


def check_opening(plan: GuardPlan, state: GuardState, starting: Collection[str]) -> tuple[Violation, ...]:
    """Every rule the opening of ``state.ring`` with ``starting`` would break, in rule order; none: go ahead.

    See the module docstring for what each rule checks. A plan or state that breaks the partition is
    reported, not raised: a plan that names a target twice, an assignment that loses a target or puts one
    in a ring the plan does not have, a ring that does not exist are violations like any other.
    """
    compiled = plan._compiled
    if compiled.planned_over is None:
        _check_plan_as_made(plan, compiled)
    findings = _Findings()
    findings.extend(compiled.problems)
    ring_now, fingerprint, slots = _current_rings(compiled, state.assignment, findings)
    states = _TargetStates(compiled, state, slots)
    # A target skipped before its install will not be updated in this rollout (its state is final), so it
    # takes nothing down: a replacement canary of its group may join its ring (rule 4). Only a ring changed by
    # such a move can be affected; an assignment as planned is checked as planned, without reading states.
    left_out = None if np.array_equal(ring_now, compiled.planned) else states.final_without_install()
    if left_out is not None:
        fingerprint += hashlib.blake2b(np.packbits(left_out).tobytes(), digest_size=16).digest()
    cached = compiled.checked.get(fingerprint)
    if cached is None:
        assignment_findings = _Findings()
        _check_assignment(plan, compiled, ring_now, left_out, assignment_findings)
        cached = assignment_findings.violations()
        compiled.remember(fingerprint, cached)
    findings.extend(cached)
    _check_ring_opening(compiled, state, ring_now, findings)
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
        shown += f"; and {count(len(violations) - limit, 'more violation')}"
    rings = sorted({v.ring for v in violations if v.ring is not None})
    tail = f" — ring {rings[0]} not opened" if len(rings) == 1 else " — nothing opened"
    return f"safety guard: {shown}{tail}"


def _check_ring_opening(compiled: _CompiledPlan, state: GuardState, ring_now: IntArray, findings: _Findings) -> None:
    if not 0 <= state.ring < compiled.n_rings:
        findings.add(1, f"ring {state.ring} does not exist: {_plan_rings(compiled.n_rings)}", ())
    elif not (ring_now == state.ring).any():
        findings.add(1, f"ring {state.ring} holds no asset: an empty ring is never opened", ())


# ------------------------------------------------------------------------------------------ rules 2–5


def _check_assignment(
    plan: GuardPlan, compiled: _CompiledPlan, ring_now: IntArray, left_out: BoolArray | None, findings: _Findings
) -> None:
    in_canary = (ring_now >= 0) & (ring_now < compiled.canary_rings)
    canaries = np.flatnonzero(in_canary)
    _check_coverage(compiled, canaries, findings)
    _check_least_critical(compiled, ring_now, canaries, findings)
    counts = _ring_loads(compiled, ring_now)
    if left_out is not None:
        # Rule 4 on the assignment now counts what a ring can take down: not the targets skipped before their
        # install. (As planned, the assignment now is the plan as made, checked once.)
        counted = np.where(left_out, _NO_RING, ring_now)
        reported = compiled.planned_over or frozenset()
        _check_redundancy(plan, compiled, counted, _ring_loads(compiled, counted), reported, findings)
    # Rule 5 keeps every target where it stands: a skipped member still shows that its group was full there.
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
            f"stratum {_stratum(compiled.strata[s])} has none of its {count(of_stratum.size, 'target')} "
            f"({names(members)}) in the canary phase ({span})",
            members,
        )
    if uncovered.size > SHOWN_PER_RULE:
        rest = [_stratum(compiled.strata[s]) for s in uncovered[SHOWN_PER_RULE:].tolist()]
        findings.add(2, f"{count(len(rest), 'more stratum')} {_has_have(len(rest))} no canary ({names(rest)})", ())


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
            f"but its least critical targets are tier {top} ({names(least)})",
            (*_pick(compiled.ids, there), *least),
        )
    if short.size > SHOWN_PER_RULE:
        rest = [_stratum(compiled.strata[s]) for s in short[SHOWN_PER_RULE:].tolist()]
        findings.add(
            3,
            f"{count(len(rest), 'more stratum')} {_verb(len(rest), 'opens', 'open')} with a canary more critical "
            f"than needed ({names(rest)})",
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


def _check_plan_as_made(plan: GuardPlan, compiled: _CompiledPlan) -> None:
    """Rule 4 on the plan as made, every target where it was planned: a property of the plan, worked out once
    and kept among the plan's problems."""
    found = _Findings()
    loads = _ring_loads(compiled, compiled.planned)
    compiled.planned_over = _check_redundancy(plan, compiled, compiled.planned, loads, frozenset(), found)
    compiled.problems = (*compiled.problems, *found.violations())


def _check_redundancy(
    plan: GuardPlan,
    compiled: _CompiledPlan,
    ring_now: IntArray,
    counts: _PairCounts,
    reported: frozenset[int],
    findings: _Findings,
) -> frozenset[int]:
    """Rule 4 over ``ring_now``; the (group, ring) keys overfilled, less those already ``reported``."""
    keys, loads = counts.items()
    groups = keys // max(compiled.n_rings, 1)
    over = np.flatnonzero(loads > compiled.capacity[groups])
    if reported:
        over = over[~np.isin(keys[over], np.fromiter(reported, np.int64, len(reported)))]
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
            f"{_needs(group, compiled, g)}; ring {ring} holds {len(here)} of them ({names(here)}), "
            f"more than the {compiled.capacity[g]} that may be down at once",
            tuple(here),
        )
    if over.size > SHOWN_PER_RULE:
        more = int(over.size) - SHOWN_PER_RULE
        findings.add(4, f"{count(more, 'more group')} {_verb(more, 'overfills', 'overfill')} a ring the same way", ())
    return frozenset(keys[over].tolist())


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
            f"{count(len(rest), 'more target')} {_verb(len(rest), 'waits', 'wait')} behind more critical ones "
            f"({names(rest)})",
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
            f"starting {names(strangers)}, which {_is_are(len(strangers))} not "
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
            f"starting {names(_pick(ids, after))} after the canary phase ({_canary_span(first)}) while "
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
        widening = [ids[i] for i in members]
        label = "no stratum" if s < 0 else f"stratum {_stratum(compiled.strata[s])}"
        findings.add(
            6,
            f"{label} would widen to {names(widening)} but no canary of it has been updated and judged healthy"
            f"{_canary_states(compiled, state, ring_now, states, s)}",
            tuple(widening),
        )
    if len(by_stratum) > SHOWN_PER_RULE:
        findings.add(6, f"{count(len(by_stratum) - SHOWN_PER_RULE, 'more stratum')} would widen unjudged", ())


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
    judged = f"{count(max(min(state.judged_rings, first), 0), 'ring')} of the canary judged"
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
        findings.add(7, f"{count(over.size - SHOWN_PER_RULE, 'more group')} would drop below K up the same way", ())


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
    parts = [f"{names(down)} {_is_are(len(down))} down"] if down else []
    for asset_state, assets in why.items():
        if assets:
            singular, plural = _UNAVAILABLE_WORDS[asset_state]
            parts.append(f"{names(assets)} {singular if len(assets) == 1 else plural}")
    unavailable = len(down) + sum(len(a) for a in why.values())
    left = int(compiled.capacity[g]) + group.k - unavailable - len(starting)
    if starting:
        parts.append(f"starting {names(starting)} would leave {left} up")
    else:
        parts.append(f"{left} would be up")
    sentence = f"{_needs(group, compiled, g)}; {and_list(parts)}"
    return sentence, (*starting, *down, *chain.from_iterable(why.values()))


def _needs(group: GuardGroup, compiled: _CompiledPlan, g: int) -> str:
    """``epr needs 1 of 2 (epr-db-1, epr-db-2) up``."""
    owners = names(group.owners, 3) if group.owners else "a group"
    members = list(dict.fromkeys(group.members))
    return (
        f"{owners} {'need' if len(group.owners) > 1 else 'needs'} {group.k} of {len(members)} ({names(members, 8)}) up"
    )
