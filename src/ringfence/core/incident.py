"""Incidents: what is down, what to restore first, the clock against each RTO, and the record of it all.

An incident is declared from failures on an estate. At that moment ringfence takes a **snapshot**: every
down item (service or asset) with its restore step (:func:`ringfence.core.recovery.plan_recovery`), what it
waits for among the other down items (hard requirements that are down, and ``any: K`` groups short of K
members up), and the continuity plans of the down services. The incident lives on that snapshot, not on
the estate file: a later edit of the estate changes nothing in an incident already declared.

From then on an incident only gains events — restored marks, notes, its closing — and everything else is
derived from the snapshot, the events and the time asked about:

* an item may be marked restored only once what it waits for is back: a hard requirement restored, a
  group with K members up. Items restored in one mark count for each other, so things that need each
  other (a cycle) are restored together. A group that can never be met (fewer members than K in the
  whole estate) does not hold anything up: nothing could ever satisfy it;
* every down service with an RTO has a clock started at declaration. It is **at risk** while the time
  left is less than the estimated time to restore (its step in a restore plan of what is still down,
  times the time a step takes; :func:`ringfence.core.recovery.is_rto_at_risk`, the rule ``ringfence recover``
  uses too), **breached** once past its RTO, and **met** or **missed** once restored;
* closing needs every item restored, or a reason written down.

Pure: standard library, numpy and the core only; no I/O. Functions return new values and never change
the incident they are given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property

import numpy as np

from ringfence.core.durations import humanize_duration
from ringfence.core.errors import ConflictError, InputError, Problem
from ringfence.core.graph import EstateGraph, Failure
from ringfence.core.impact import TIERS
from ringfence.core.recovery import ContinuityAction, is_rto_at_risk, plan_recovery

DEFAULT_STEP_SECONDS = 3600
"""How long one restore step is assumed to take when estimating time to restore (as ``ringfence recover``)."""


class ItemKind(StrEnum):
    SERVICE = "service"
    ASSET = "asset"


class IncidentStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class EventKind(StrEnum):
    DECLARED = "declared"
    RESTORED = "restored"
    NOTE = "note"
    CLOSED = "closed"
    BREACHED = "breached"
    """Never stored: derived from the clock when a timeline is read (see :func:`timeline`)."""


STORED_EVENT_KINDS = (EventKind.DECLARED, EventKind.RESTORED, EventKind.NOTE, EventKind.CLOSED)


class ClockStatus(StrEnum):
    """Where a service stands against its RTO."""

    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    """Still down, not yet past the RTO, but the time left is less than the estimated time to restore."""
    BREACHED = "breached"
    """Still down and past the RTO."""
    MET = "met"
    """Restored within the RTO."""
    MISSED = "missed"
    """Restored, after the RTO."""
    NO_RTO = "no_rto"
    """The estate gives this service no RTO: there is no clock to keep."""


@dataclass(frozen=True)
class GroupNeed:
    """An ``any: K`` group of a down item that was short of K members up at declaration."""

    k: int
    up: int
    """Members up when the incident was declared."""
    members: tuple[str, ...]
    """Members down when the incident was declared (restoring them is what can meet the group)."""
    text: str
    """The group as the estate says it: ``any 1 of [sql-epr-1, sql-epr-2]``."""

    @property
    def is_meetable(self) -> bool:
        return self.up + len(self.members) >= self.k


@dataclass(frozen=True)
class DownItem:
    """One thing down in the incident, and what it waits for among the other down items."""

    id: str
    kind: ItemKind
    name: str
    step: int
    """Its restore step when the incident was declared (1 = first)."""
    tier: int | None = None
    """A service's clinical tier; None for an asset."""
    rto: int | None = None
    """A service's RTO in seconds, if the estate gives one."""
    needs: tuple[str, ...] = ()
    """Hard requirements that were down at declaration."""
    groups: tuple[GroupNeed, ...] = ()


@dataclass(frozen=True)
class IncidentEvent:
    """A line of an incident's timeline."""

    at: datetime
    kind: EventKind
    actor: str
    text: str
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class Incident:
    """An incident: its snapshot (``items``, ``continuity``) and what has happened since (``events``).

    Invariants: ``items`` are in restore order (step, then id); ``events`` start with the declaration and
    hold at most one close, the last one; every id in a restored event is an item, restored once.
    """

    id: str
    title: str
    estate: str
    failed: tuple[str, ...]
    declared_at: datetime
    declared_by: str
    items: tuple[DownItem, ...]
    continuity: tuple[ContinuityAction, ...]
    events: tuple[IncidentEvent, ...]
    step_seconds: int = DEFAULT_STEP_SECONDS
    rollout_id: str | None = None
    estate_version_id: int | None = None

    @cached_property
    def item_by_id(self) -> Mapping[str, DownItem]:
        return {item.id: item for item in self.items}

    @cached_property
    def restored(self) -> Mapping[str, datetime]:
        """When each restored item was marked restored."""
        return {item: e.at for e in self.events if e.kind is EventKind.RESTORED for item in e.items}

    @cached_property
    def closing(self) -> IncidentEvent | None:
        return next((e for e in self.events if e.kind is EventKind.CLOSED), None)

    @property
    def status(self) -> IncidentStatus:
        return IncidentStatus.CLOSED if self.closing is not None else IncidentStatus.OPEN

    @property
    def closed_at(self) -> datetime | None:
        return self.closing.at if self.closing is not None else None

    @property
    def services(self) -> tuple[DownItem, ...]:
        return tuple(i for i in self.items if i.kind is ItemKind.SERVICE)

    @property
    def still_down(self) -> tuple[DownItem, ...]:
        return tuple(i for i in self.items if i.id not in self.restored)

    @property
    def steps(self) -> tuple[tuple[int, tuple[DownItem, ...]], ...]:
        """The restore order as declared: (step, items of that step)."""
        by_step: dict[int, list[DownItem]] = {}
        for item in self.items:
            by_step.setdefault(item.step, []).append(item)
        return tuple((step, tuple(items)) for step, items in sorted(by_step.items()))

    @property
    def by_tier(self) -> dict[int, int]:
        counts = dict.fromkeys(TIERS, 0)
        for service in self.services:
            if service.tier is not None:
                counts[service.tier] += 1
        return counts

    @property
    def worst_tier(self) -> int | None:
        return min((s.tier for s in self.services if s.tier is not None), default=None)


# ------------------------------------------------------------------------------------------ declaring


def declare_incident(
    graph: EstateGraph,
    failures: Sequence[Failure],
    *,
    incident_id: str,
    at: datetime,
    actor: str,
    title: str | None = None,
    step_seconds: int = DEFAULT_STEP_SECONDS,
    rollout_id: str | None = None,
    estate_version_id: int | None = None,
    note: str | None = None,
) -> Incident:
    """Declare an incident: snapshot what ``failures`` take down, in restore order, with its continuity plans.

    ``note`` is added to the declaration's text (e.g. the halt reason of the rollout that caused it).
    """
    _require_aware(at, "declared")
    if not failures:
        raise InputError([Problem("say what failed (e.g. supplier:advanced) to declare an incident", path=("fail",))])
    if step_seconds < 1:
        raise InputError([Problem(f"a restore step takes at least 1 s, not {step_seconds}", path=("step_seconds",))])
    plan = plan_recovery(graph, failures, step_seconds=step_seconds)
    refs = plan.failed
    down = graph.down_after(failures).mask
    if not down.any():
        raise InputError(
            [
                Problem(
                    f"{', '.join(refs)} takes nothing down in estate '{graph.estate.name}': there is no incident "
                    "to declare",
                    path=("fail",),
                )
            ]
        )
    step_of = plan.step_of()
    items = _down_items(graph, down, step_of)
    title = (title or "").strip() or f"Loss of {', '.join(refs)}"
    services = sum(1 for i in items if i.kind is ItemKind.SERVICE)
    text = (
        f"declared: {', '.join(refs)} failed; {services} service{'s' if services != 1 else ''} and "
        f"{len(items) - services} asset{'s' if len(items) - services != 1 else ''} down, "
        f"{len(plan.steps)} restore step{'s' if len(plan.steps) != 1 else ''}"
    )
    if rollout_id is not None:
        text += f"; caused by rollout {rollout_id}"
    if note:
        text += f" ({note})"
    return Incident(
        id=incident_id,
        title=title,
        estate=graph.estate.name,
        failed=refs,
        declared_at=at,
        declared_by=_actor(actor),
        items=items,
        continuity=plan.continuity,
        events=(IncidentEvent(at, EventKind.DECLARED, _actor(actor), text, ()),),
        step_seconds=step_seconds,
        rollout_id=rollout_id,
        estate_version_id=estate_version_id,
    )


def _down_items(graph: EstateGraph, down: np.ndarray, step_of: Mapping[str, int]) -> tuple[DownItem, ...]:
    estate = graph.estate
    # The short groups of each down owner: only these can hold an item up.
    groups_of: dict[int, list[GroupNeed]] = {}
    for g in np.flatnonzero(down[graph.group_owner]).tolist():
        members = graph.members_of(g)
        down_members = members[down[members]]
        up = int(members.size - down_members.size)
        k = int(graph.group_k[g])
        if up >= k:
            continue
        names = tuple(sorted(graph.ids[m] for m in down_members.tolist()))
        groups_of.setdefault(int(graph.group_owner[g]), []).append(
            GroupNeed(k, up, names, graph.group_spec[g].describe())
        )
    items = []
    for node in np.flatnonzero(down).tolist():
        node_id = graph.ids[node]
        needs = tuple(sorted(graph.ids[r] for r in graph.hard_requirements_of(node) if down[r]))
        groups = tuple(groups_of.get(node, ()))
        if graph.is_service(node):
            service = estate.services[node]
            items.append(
                DownItem(
                    node_id, ItemKind.SERVICE, service.label, step_of[node_id], service.tier, service.rto, needs, groups
                )
            )
        else:
            asset = estate.assets[node - graph.n_services]
            items.append(
                DownItem(node_id, ItemKind.ASSET, asset.name or asset.id, step_of[node_id], None, None, needs, groups)
            )
    return tuple(sorted(items, key=lambda i: (i.step, i.id)))


# ------------------------------------------------------------------------------------------ changing


def mark_restored(incident: Incident, items: str | Iterable[str], at: datetime, *, actor: str) -> Incident:
    """Mark ``items`` restored at ``at``: refused, with the reason, while what they need is still down.

    What is restored in this one mark counts for the others in it, so items that need each other are
    restored together.
    """
    _require_open(incident, "mark anything restored")
    _require_aware(at, "restored")
    _require_after_declaration(incident, at, "restored")
    wanted = [items] if isinstance(items, str) else list(items)
    if not wanted:
        raise InputError([Problem("name at least one item to mark restored", path=("items",))])
    problems = []
    for i, item_id in enumerate(wanted):
        if item_id not in incident.item_by_id:
            problems.append(
                Problem(f"'{item_id}' is not down in incident {incident.id}; nothing to restore", path=("items", i))
            )
    if problems:
        raise InputError(problems)
    batch = set(wanted)
    for item_id in dict.fromkeys(wanted):
        if item_id in incident.restored:
            when = incident.restored[item_id].isoformat(timespec="seconds")
            raise ConflictError(f"{item_id} was already marked restored in incident {incident.id} at {when}")
        waiting = waiting_for(incident, item_id, also_restored=batch)
        if waiting:
            raise ConflictError(f"cannot mark {item_id} restored: {'; '.join(waiting)}")
    ordered = tuple(dict.fromkeys(wanted))
    text = f"restored: {', '.join(ordered)}"
    left = len(incident.items) - len(incident.restored) - len(ordered)
    text += f"; {left} item{'s' if left != 1 else ''} still down" if left else "; everything is back"
    return _with_event(incident, IncidentEvent(at, EventKind.RESTORED, _actor(actor), text, ordered))


def add_note(incident: Incident, text: str, at: datetime, *, actor: str) -> Incident:
    """Add a note to the timeline (what was decided, who was called, what was seen)."""
    _require_open(incident, "take notes")
    _require_aware(at, "noted")
    _require_after_declaration(incident, at, "noted")
    if not text.strip():
        raise InputError([Problem("a note needs some text", path=("text",))])
    return _with_event(incident, IncidentEvent(at, EventKind.NOTE, _actor(actor), text.strip()))


def close_incident(incident: Incident, at: datetime, *, actor: str, reason: str | None = None) -> Incident:
    """Close the incident: every item restored, or a written reason why it closes with some still down."""
    _require_open(incident, "be closed again")
    _require_aware(at, "closed")
    _require_after_declaration(incident, at, "closed")
    down = incident.still_down
    reason = (reason or "").strip() or None
    if down and reason is None:
        shown = ", ".join(i.id for i in down[:5]) + (f" and {len(down) - 5} more" if len(down) > 5 else "")
        raise ConflictError(
            f"cannot close incident {incident.id}: {len(down)} item{'s are' if len(down) != 1 else ' is'} still "
            f"down ({shown}); mark {'them' if len(down) != 1 else 'it'} restored, or give a reason to close anyway"
        )
    if down:
        text = f"closed with {len(down)} item{'s' if len(down) != 1 else ''} still down: {reason}"
    else:
        text = "closed: everything restored" + (f"; {reason}" if reason else "")
    return _with_event(incident, IncidentEvent(at, EventKind.CLOSED, _actor(actor), text, tuple(i.id for i in down)))


def _with_event(incident: Incident, event: IncidentEvent) -> Incident:
    # A new Incident (cached views are not carried over: they depend on the events).
    return replace(incident, events=(*incident.events, event))


def _require_open(incident: Incident, what: str) -> None:
    if incident.status is IncidentStatus.CLOSED:
        assert incident.closed_at is not None
        raise ConflictError(
            f"incident {incident.id} was closed at {incident.closed_at.isoformat(timespec='seconds')}; "
            f"a closed incident cannot {what}"
        )


def _require_aware(at: datetime, what: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InputError([Problem(f"the time {what} ({at.isoformat()}) has no timezone; give it in UTC", path=("at",))])


def _require_after_declaration(incident: Incident, at: datetime, what: str) -> None:
    if at < incident.declared_at:
        raise InputError(
            [
                Problem(
                    f"incident {incident.id} cannot be {what} at {at.isoformat(timespec='seconds')}, before it was "
                    f"declared at {incident.declared_at.isoformat(timespec='seconds')}",
                    path=("at",),
                )
            ]
        )


def _actor(actor: str) -> str:
    if not actor.strip():
        raise InputError([Problem("say who is acting (it goes in the incident's timeline)", path=("actor",))])
    return actor.strip()


# ------------------------------------------------------------------------------------------ reading


def waiting_for(incident: Incident, item_id: str, *, also_restored: Iterable[str] = ()) -> tuple[str, ...]:
    """Why ``item_id`` cannot be restored yet, one clause per requirement still down; empty when it can be.

    ``also_restored`` counts as restored (the other items of one mark).
    """
    item = incident.item_by_id[item_id]
    restored, extra = incident.restored, set(also_restored)

    def is_back(other: str) -> bool:
        return other in restored or other in extra

    reasons = []
    hard = [r for r in item.needs if not is_back(r)]
    if hard:
        names = _and(hard)
        reasons.append(f"it needs {names}, which {'is' if len(hard) == 1 else 'are'} still down")
    for group in item.groups:
        if not group.is_meetable:
            continue
        up = group.up + sum(1 for m in group.members if is_back(m))
        if up < group.k:
            reasons.append(f"it needs {group.text} up, and {up} {'is' if up == 1 else 'are'}")
    return tuple(reasons)


def remaining_steps(incident: Incident) -> dict[str, int]:
    """The restore step of each item still down, in a restore plan made now from what is still down.

    The same rule as :func:`ringfence.core.recovery.plan_recovery` — an item's step is the earliest at which what
    it waits for is back — so at declaration it gives the declared steps. Items that need each other (a
    cycle) come back together, as soon as what they need outside the cycle is back. In the declared plan
    such items share a step, and every other requirement of an item has an earlier step: so the cycles
    are the strongly connected parts of the waits between items of one declared step.
    """
    items = incident.item_by_id
    pending = {i.id for i in incident.still_down}
    restored = incident.restored
    # What each pending item waits for: pending hard requirements, and groups still short of K members up.
    hard: dict[str, list[str]] = {}
    groups: dict[str, list[tuple[int, int, list[str]]]] = {}  # item → (group index, members missing, pending members)
    for item_id in pending:
        item = items[item_id]
        hard[item_id] = [r for r in item.needs if r in pending]
        for g, group in enumerate(item.groups):
            missing = group.k - group.up - sum(1 for m in group.members if m in restored)
            if group.is_meetable and missing > 0:
                groups.setdefault(item_id, []).append((g, missing, [m for m in group.members if m in pending]))
    same_step: dict[str, list[str]] = {}
    for item_id in pending:
        step = items[item_id].step
        waits = hard[item_id] + [m for _, _, members in groups.get(item_id, ()) for m in members]
        same_step[item_id] = sorted({w for w in waits if items[w].step == step})
    part = _strong_components(sorted(pending), same_step)

    # Counters per part: what it still waits for outside itself.
    waiting: dict[int, int] = {}
    dependents: dict[str, list[int]] = {}
    short: dict[tuple[str, int], int] = {}
    counts_for: dict[str, list[tuple[str, int]]] = {}
    for item_id in pending:
        own = part[item_id]
        count = 0
        for r in hard[item_id]:
            if part[r] != own:
                count += 1
                dependents.setdefault(r, []).append(own)
        for g, missing, members in groups.get(item_id, ()):
            # Members of its own part come back with it.
            missing -= sum(1 for m in members if part[m] == own)
            if missing > 0:
                short[(item_id, g)] = missing
                count += 1
                for m in members:
                    if part[m] != own:
                        counts_for.setdefault(m, []).append((item_id, g))
        waiting[own] = waiting.get(own, 0) + count
    members_of: dict[int, list[str]] = {}
    for item_id in sorted(pending):
        members_of.setdefault(part[item_id], []).append(item_id)

    step_of: dict[str, int] = {}
    ready = sorted(p for p in members_of if waiting[p] == 0)
    step = 0
    while members_of:
        if not ready:
            # Nothing can be met (out-of-order marks left a wait no plan foresaw): release the earliest declared.
            first = min(items[i].step for m in members_of.values() for i in m)
            ready = sorted(p for p, m in members_of.items() if any(items[i].step == first for i in m))
        step += 1
        released: set[int] = set()
        for p in ready:
            for item_id in members_of.pop(p):
                step_of[item_id] = step
                for dependent in dependents.get(item_id, ()):
                    waiting[dependent] -= 1
                    released.add(dependent)
                for key in counts_for.get(item_id, ()):
                    short[key] -= 1
                    if short[key] == 0:
                        waiting[part[key[0]]] -= 1
                        released.add(part[key[0]])
        ready = sorted(p for p in released if p in members_of and waiting[p] == 0)
    return step_of


def _strong_components(nodes: Sequence[str], edges: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Tarjan's strongly connected components, without recursion: node → component number."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    found = 0
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(edges.get(root, ())))]
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(edges.get(successor, ()))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component[member] = found
                        if member == node:
                            break
                    found += 1
    return component


@dataclass(frozen=True)
class RtoClock:
    """One down service against its RTO, at ``as_of``."""

    service: str
    name: str
    tier: int
    rto: int | None
    status: ClockStatus
    as_of: datetime
    deadline: datetime | None = None
    remaining: int | None = None
    """Seconds left until the deadline (negative once past it); None when restored or without an RTO."""
    estimated: int | None = None
    """Estimated seconds until restored; None once restored."""
    restored_at: datetime | None = None
    time_to_restore: int | None = None
    """Seconds from declaration to restored."""

    @property
    def warning(self) -> str | None:
        """A sentence for an RTO at risk or breached; None otherwise."""
        rto = humanize_duration(self.rto) if self.rto is not None else ""
        if self.status is ClockStatus.BREACHED:
            assert self.remaining is not None
            return f"{self.service} (tier {self.tier}): RTO of {rto} breached {humanize_duration(-self.remaining)} ago"
        if self.status is ClockStatus.AT_RISK:
            assert self.remaining is not None
            assert self.estimated is not None
            return (
                f"{self.service} (tier {self.tier}): RTO of {rto} at risk: {humanize_duration(self.remaining)} left, "
                f"about {humanize_duration(self.estimated)} to restore"
            )
        if self.status is ClockStatus.MISSED:
            assert self.time_to_restore is not None
            return (
                f"{self.service} (tier {self.tier}): restored after {humanize_duration(self.time_to_restore)}, "
                f"past its RTO of {rto}"
            )
        return None


def rto_clocks(incident: Incident, now: datetime) -> tuple[RtoClock, ...]:
    """Every down service's clock at ``now`` (the clocks stop when the incident closes), most critical first."""
    _require_aware(now, "asked about")
    as_of = min(now, incident.closed_at) if incident.closed_at is not None else now
    as_of = max(as_of, incident.declared_at)
    steps = remaining_steps(incident)
    clocks = []
    for service in incident.services:
        assert service.tier is not None
        restored_at = incident.restored.get(service.id)
        # A restore marked after `as_of` has not happened yet, seen from `as_of`.
        if restored_at is not None and restored_at > as_of:
            restored_at = None
        if restored_at is not None:
            took = _seconds(restored_at - incident.declared_at)
            if service.rto is None:
                status = ClockStatus.NO_RTO
            else:
                status = ClockStatus.MET if took <= service.rto else ClockStatus.MISSED
            deadline = incident.declared_at + timedelta(seconds=service.rto) if service.rto is not None else None
            clocks.append(
                RtoClock(
                    service.id, service.name, service.tier, service.rto, status, as_of, deadline, None, None,
                    restored_at, took,
                )
            )  # fmt: skip
            continue
        estimated = steps.get(service.id, 1) * incident.step_seconds
        if service.rto is None:
            clocks.append(
                RtoClock(service.id, service.name, service.tier, None, ClockStatus.NO_RTO, as_of, estimated=estimated)
            )
            continue
        deadline = incident.declared_at + timedelta(seconds=service.rto)
        remaining = _seconds(deadline - as_of)
        if as_of > deadline:
            status = ClockStatus.BREACHED
        elif is_rto_at_risk(remaining, estimated):
            status = ClockStatus.AT_RISK
        else:
            status = ClockStatus.ON_TRACK
        clocks.append(
            RtoClock(service.id, service.name, service.tier, service.rto, status, as_of, deadline, remaining, estimated)
        )
    no_rto = 1 << 62
    return tuple(sorted(clocks, key=lambda c: (c.tier, c.rto if c.rto is not None else no_rto, c.service)))


def timeline(incident: Incident, now: datetime) -> tuple[IncidentEvent, ...]:
    """The events up to ``now``, with each RTO breach (derived from the clock) at the moment it happened."""
    as_of = min(now, incident.closed_at) if incident.closed_at is not None else now
    derived = []
    for service in incident.services:
        if service.rto is None:
            continue
        deadline = incident.declared_at + timedelta(seconds=service.rto)
        restored_at = incident.restored.get(service.id)
        if deadline < as_of and (restored_at is None or restored_at > deadline):
            derived.append(
                IncidentEvent(
                    deadline,
                    EventKind.BREACHED,
                    "ringfence",
                    f"RTO breached: {service.name} ({service.id}, tier {service.tier}) not restored within "
                    f"{humanize_duration(service.rto)}",
                    (service.id,),
                )
            )
    # Stored events keep their order among equal times; a breach comes after what happened at its moment.
    ordered = [(e.at, 0, n, e) for n, e in enumerate(incident.events) if e.at <= as_of] + [
        (e.at, 1, n, e) for n, e in enumerate(derived)
    ]
    return tuple(e for _, _, _, e in sorted(ordered, key=lambda t: (t[0], t[1], t[2])))


# ------------------------------------------------------------------------------------------ review


@dataclass(frozen=True)
class RolloutCause:
    """The rollout an incident came from, as the review tells it."""

    rollout_id: str
    update: str | None = None
    release: str | None = None
    halt_reason: str | None = None


@dataclass(frozen=True)
class TierImpact:
    tier: int
    services: tuple[DownItem, ...]
    met: int
    """Restored within their RTO."""
    breached: int
    """Past their RTO, restored late or not at all."""


@dataclass(frozen=True)
class IncidentReview:
    """The post-incident review: timeline, impact by tier, time to restore against RTO, the cause."""

    incident: Incident
    as_of: datetime
    duration: int
    """Seconds from declaration to closing (or to ``as_of`` while open)."""
    timeline: tuple[IncidentEvent, ...]
    impact: tuple[TierImpact, ...]
    clocks: tuple[RtoClock, ...]
    cause: RolloutCause | None
    still_down: tuple[DownItem, ...]

    @property
    def is_draft(self) -> bool:
        """A review of an incident still open is a draft: its numbers change until the incident closes."""
        return self.incident.status is IncidentStatus.OPEN

    @property
    def summary(self) -> str:
        """The review in one sentence with its numbers."""
        services = self.incident.services
        tiers = ", ".join(f"{len(t.services)} of tier {t.tier}" for t in self.impact if t.services)
        with_rto = [c for c in self.clocks if c.rto is not None]
        met = sum(1 for c in with_rto if c.status is ClockStatus.MET)
        late = [c.service for c in with_rto if c.status in (ClockStatus.MISSED, ClockStatus.BREACHED)]
        sentence = (
            f"{', '.join(self.incident.failed)} took down {len(services)} service{'s' if len(services) != 1 else ''}"
            + (f" ({tiers})" if tiers else "")
            + f" and {len(self.incident.items) - len(services)} assets for {humanize_duration(self.duration)}; "
            f"{met} of {len(with_rto)} services with an RTO were restored within it"
        )
        if late:
            sentence += f"; RTO breached: {', '.join(late)}"
        if self.still_down:
            sentence += f"; {len(self.still_down)} item{'s' if len(self.still_down) != 1 else ''} still down"
        return sentence


def review_incident(incident: Incident, now: datetime, *, cause: RolloutCause | None = None) -> IncidentReview:
    """The post-incident review as of ``now`` (or as of the closing, once closed)."""
    clocks = rto_clocks(incident, now)
    as_of = clocks[0].as_of if clocks else (min(now, incident.closed_at) if incident.closed_at else now)
    by_service = {c.service: c for c in clocks}
    impact = []
    for tier in TIERS:
        services = tuple(sorted((s for s in incident.services if s.tier == tier), key=lambda s: s.id))
        states = [by_service[s.id].status for s in services]
        impact.append(
            TierImpact(
                tier,
                services,
                sum(1 for s in states if s is ClockStatus.MET),
                sum(1 for s in states if s in (ClockStatus.MISSED, ClockStatus.BREACHED)),
            )
        )
    if cause is None and incident.rollout_id is not None:
        cause = RolloutCause(incident.rollout_id)
    return IncidentReview(
        incident=incident,
        as_of=as_of,
        duration=_seconds(as_of - incident.declared_at),
        timeline=timeline(incident, as_of),
        impact=tuple(impact),
        clocks=clocks,
        cause=cause,
        still_down=tuple(i for i in incident.still_down if i.id not in _restored_by(incident, as_of)),
    )


def _restored_by(incident: Incident, as_of: datetime) -> set[str]:
    return {item for item, at in incident.restored.items() if at <= as_of}


def _seconds(delta: timedelta) -> int:
    # Whole seconds, rounded down: a clock shows 0 s left only once the deadline has really come.
    return int(delta.total_seconds() // 1)


def _and(names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


__all__ = [
    "DEFAULT_STEP_SECONDS",
    "STORED_EVENT_KINDS",
    "ClockStatus",
    "DownItem",
    "EventKind",
    "GroupNeed",
    "Incident",
    "IncidentEvent",
    "IncidentReview",
    "IncidentStatus",
    "ItemKind",
    "RolloutCause",
    "RtoClock",
    "TierImpact",
    "add_note",
    "close_incident",
    "declare_incident",
    "mark_restored",
    "remaining_steps",
    "review_incident",
    "rto_clocks",
    "timeline",
    "waiting_for",
]
