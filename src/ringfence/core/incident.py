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
* every down service with an RTO has a clock started at declaration. It is **at risk** when the moment it
  is expected back comes after its deadline (:func:`expected_after`; the comparison of
  :func:`ringfence.core.clinical.is_rto_at_risk`, the rule ``ringfence recover`` uses too), **breached** once
  past its RTO, and **met** or **missed** once restored;
* closing needs every item restored, or a reason written down. The clocks stop at the close: a service
  never restored is **not restored at close**, never "on track" or "at risk" of a deadline nobody is
  working to any more.

How long a restore takes: each item was declared with its **measured** time to restore where the estate's
assurance file held a restore test of it (``takes``, dated ``measured_on``), else it takes ``step_seconds``,
an **estimate**. A step takes its slowest item, as ``ringfence recover`` says (:func:`ringfence.core.recovery.
plan_recovery`, the same rule): a time is measured only when every step up to it is, and every output says
which (``measured 2026-03-04`` or ``estimate``). An incident stored before items had their own time has none:
every item takes ``step_seconds``, as it always did.

Pure and standard library only (no numpy: the store reads incidents without the graph engine); no I/O.
Functions return new values and never change the incident given. Declaring one (the snapshot, taken on the
estate graph) is :mod:`ringfence.core.incident_declaration`; the review, :mod:`ringfence.core.incident_review`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import cast

from ringfence.core.clinical import TIERS, ContinuityAction, is_rto_at_risk, time_basis
from ringfence.core.durations import LONGEST_DURATION, humanize_duration
from ringfence.core.errors import ConflictError, InputError, Problem
from ringfence.core.words import and_list, count, names

DEFAULT_STEP_SECONDS = 3600
"""How long one restore step is assumed to take when estimating time to restore (as ``ringfence recover``)."""


_MICROSECOND = timedelta(microseconds=1)
LONGEST_STEP = LONGEST_DURATION
"""The longest restore step an incident may assume: the longest duration ringfence accepts anywhere."""
END_OF_TIME = datetime.max.replace(tzinfo=UTC)
"""What a deadline or an estimate too far ahead to be written as a date reads as (see :func:`later`)."""


def later(moment: datetime, seconds: int) -> datetime:
    """``moment`` plus ``seconds``, or :data:`END_OF_TIME` when that is past what a date can hold.

    Durations are bounded where they are read (a year at most), so this only matters for a record stored before
    the bounds, or written by hand: one such incident must read as "not due before the end of time", never
    break every page and list that shows it (``timedelta`` and ``datetime`` raise OverflowError instead)."""
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return END_OF_TIME if seconds > 0 else datetime.min.replace(tzinfo=UTC)


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
    NOT_RESTORED_AT_CLOSE = "not_restored_at_close"
    """The incident was closed with this service still down: its clock stopped at the close."""


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
    takes: int | None = None
    """Its measured time to restore in seconds, from the latest restore test at declaration; None: no test, it
    takes the incident's ``step_seconds`` (an estimate)."""
    measured_on: date | None = None
    """The day of the test that measured ``takes``; None with it."""

    @property
    def basis(self) -> str:
        """How its own time to restore is known: ``measured 2026-03-04`` or ``estimate``."""
        return time_basis(self.measured_on if self.takes is not None else None)


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

    def takes(self, item: DownItem) -> int:
        """How long restoring ``item`` takes: its measured time, else one restore step (an estimate)."""
        return item.takes if item.takes is not None else self.step_seconds

    @cached_property
    def declared_restored_by(self) -> Mapping[str, tuple[int, date | None]]:
        """Per item, seconds from the declaration until its step of the declared plan is done, and the oldest test
        behind that time (None: an estimate): what ``ringfence recover`` said at that moment."""
        ends = plan_ends(self, {i.id: i.step for i in self.items})
        return {i.id: (ends[i.step].seconds, ends[i.step].measured_on) for i in self.items}

    @property
    def estimated(self) -> tuple[DownItem, ...]:
        """The items no restore test measured: their time to restore is a guess (one restore step)."""
        return tuple(i for i in self.items if i.takes is None)

    @property
    def restore_times(self) -> str:
        """Which times to restore are measured and which are guesses, in a sentence for every output."""
        guessed, step = self.estimated, humanize_duration(self.step_seconds)
        if not guessed:
            return f"Restore times: all {count(len(self.items), 'item')} measured by a restore test."
        if len(guessed) == len(self.items):
            return f"Restore times: estimates of {step} a step; no restore test measured any of the items."
        return (
            f"Restore times: {len(self.items) - len(guessed)} of {count(len(self.items), 'item')} measured by a "
            f"restore test; estimates of {step} a step for {names(i.id for i in guessed)}."
        )

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


# ------------------------------------------------------------------------------------------ changing


def mark_restored(incident: Incident, items: str | Iterable[str], at: datetime, *, actor: str) -> Incident:
    """Mark ``items`` restored at ``at``: refused, with the reason, while what they need is still down.

    What is restored in this one mark counts for the others in it, so items that need each other are
    restored together.
    """
    _require_open(incident, "mark anything restored")
    require_aware(at, "restored")
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
    text += f"; {count(left, 'item')} still down" if left else "; everything is back"
    return _with_event(incident, IncidentEvent(at, EventKind.RESTORED, require_actor(actor), text, ordered))


def add_note(incident: Incident, text: str, at: datetime, *, actor: str) -> Incident:
    """Add a note to the timeline (what was decided, who was called, what was seen)."""
    _require_open(incident, "take notes")
    require_aware(at, "noted")
    _require_after_declaration(incident, at, "noted")
    if not text.strip():
        raise InputError([Problem("a note needs some text", path=("text",))])
    return _with_event(incident, IncidentEvent(at, EventKind.NOTE, require_actor(actor), text.strip()))


def close_incident(incident: Incident, at: datetime, *, actor: str, reason: str | None = None) -> Incident:
    """Close the incident: every item restored, or a written reason why it closes with some still down."""
    _require_open(incident, "be closed again")
    require_aware(at, "closed")
    _require_after_declaration(incident, at, "closed")
    down = incident.still_down
    reason = (reason or "").strip() or None
    if down and reason is None:
        one = len(down) == 1
        raise ConflictError(
            f"cannot close incident {incident.id}: {count(len(down), 'item')} {'is' if one else 'are'} still down "
            f"({names(i.id for i in down)}); mark {'it' if one else 'them'} restored, or give a reason to close anyway"
        )
    if down:
        text = f"closed with {count(len(down), 'item')} still down: {reason}"
    else:
        text = "closed: everything restored" + (f"; {reason}" if reason else "")
    return _with_event(
        incident, IncidentEvent(at, EventKind.CLOSED, require_actor(actor), text, tuple(i.id for i in down))
    )


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


def require_aware(at: datetime, what: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InputError([Problem(f"the time {what} ({at.isoformat()}) has no timezone; give it in UTC", path=("at",))])


def _require_after_declaration(incident: Incident, at: datetime, what: str) -> None:
    if at < incident.declared_at:
        when, declared = at.isoformat(timespec="seconds"), incident.declared_at.isoformat(timespec="seconds")
        problem = f"incident {incident.id} cannot be {what} at {when}, before it was declared at {declared}"
        raise InputError([Problem(problem, path=("at",))])


def require_actor(actor: str) -> str:
    if not actor.strip():
        raise InputError([Problem("say who is acting (it goes in the incident's timeline)", path=("actor",))])
    return actor.strip()


@dataclass(frozen=True)
class UnreadableIncident:
    """A stored incident that cannot be read back: a record written by hand, or by a version that did not yet
    bound what it stored. A list shows it beside the others, marked with ``reason``, instead of failing whole;
    ``title``, ``status`` and the times are what its row still says."""

    id: str
    title: str
    status: IncidentStatus
    declared_at: datetime
    closed_at: datetime | None
    reason: str


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
        needed = and_list(hard)
        reasons.append(f"it needs {needed}, which {'is' if len(hard) == 1 else 'are'} still down")
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
        outside = 0
        for r in hard[item_id]:
            if part[r] != own:
                outside += 1
                dependents.setdefault(r, []).append(own)
        for g, missing, members in groups.get(item_id, ()):
            # Members of its own part come back with it.
            missing -= sum(1 for m in members if part[m] == own)
            if missing > 0:
                short[(item_id, g)] = missing
                outside += 1
                for m in members:
                    if part[m] != own:
                        counts_for.setdefault(m, []).append((item_id, g))
        waiting[own] = waiting.get(own, 0) + outside
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
class StepEnd:
    """When a step of a restore plan is done, seen from the plan's start."""

    seconds: int
    """Seconds until the step is done: the steps up to it, one after the other, each as long as its slowest item."""
    takes: int
    """How long the step itself takes."""
    measured_on: date | None
    """The oldest test behind ``seconds`` when every item of every step up to it is measured; None: an estimate."""

    @property
    def basis(self) -> str:
        return time_basis(self.measured_on)


def plan_ends(incident: Incident, step_of: Mapping[str, int]) -> dict[int, StepEnd]:
    """When each step of the plan ``step_of`` (item → step) is done, steps taken in order: the rule of
    :func:`ringfence.core.recovery.step_ends` (one guess makes the sum a guess), on the items' stored times."""
    takes: dict[int, int] = {}
    oldest: dict[int, date] = {}
    guessed: set[int] = set()
    for item_id, step in step_of.items():
        item = incident.item_by_id[item_id]
        takes[step] = max(takes.get(step, 0), incident.takes(item))
        if item.takes is None or item.measured_on is None:
            guessed.add(step)
        elif step not in oldest or item.measured_on < oldest[step]:
            oldest[step] = item.measured_on
    ends: dict[int, StepEnd] = {}
    total, since = 0, cast(date | None, date.max)
    for step in sorted(takes):
        total += takes[step]
        # Once a step is a guess, every later end is one too: `since` stays None from there on.
        since = None if since is None or step in guessed else min(since, oldest[step])
        ends[step] = StepEnd(total, takes[step], since)
    return ends


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
    """Seconds left until the deadline (negative once past it), frozen at the close for a service not restored
    at close; None when restored or without an RTO."""
    estimated: int | None = None
    """Estimated seconds until restored (``expected_at`` − ``as_of``); None once restored or closed."""
    restored_at: datetime | None = None
    time_to_restore: int | None = None
    """Seconds from declaration to restored."""
    expected_at: datetime | None = None
    """When it is expected back (:func:`expected_after`); None once restored or closed."""
    measured_on: date | None = None
    """The oldest restore test behind ``estimated`` when every step up to the service's is measured; None: an
    estimate (or no estimate: restored or closed)."""

    @property
    def basis(self) -> str | None:
        """How ``estimated`` is known (``measured 2026-03-04`` or ``estimate``); None when there is no estimate."""
        return None if self.estimated is None else time_basis(self.measured_on)

    @property
    def is_past_rto(self) -> bool:
        """Down past its deadline: restored late, still down past it, or left down past it at the close."""
        if self.status in (ClockStatus.MISSED, ClockStatus.BREACHED):
            return True
        return self.status is ClockStatus.NOT_RESTORED_AT_CLOSE and self.remaining is not None and self.remaining < 0

    @property
    def warning(self) -> str | None:
        """A sentence for an RTO at risk or breached, or a service left down at the close; None otherwise."""
        rto = humanize_duration(self.rto) if self.rto is not None else ""
        if self.status is ClockStatus.BREACHED:
            assert self.remaining is not None
            return f"{self.service} (tier {self.tier}): RTO of {rto} breached {humanize_duration(-self.remaining)} ago"
        if self.status is ClockStatus.AT_RISK:
            assert self.remaining is not None
            assert self.estimated is not None
            # An estimate reads "about"; a measured time says the test it rests on.
            took = humanize_duration(self.estimated)
            needs = f"about {took}" if self.measured_on is None else f"{took} ({self.basis})"
            return (
                f"{self.service} (tier {self.tier}): RTO of {rto} at risk: {humanize_duration(self.remaining)} left, "
                f"{needs} to restore"
            )
        if self.status is ClockStatus.MISSED:
            assert self.time_to_restore is not None
            return (
                f"{self.service} (tier {self.tier}): restored after {humanize_duration(self.time_to_restore)}, "
                f"past its RTO of {rto}"
            )
        if self.status is ClockStatus.NOT_RESTORED_AT_CLOSE:
            return f"{self.service} (tier {self.tier}): not restored at close{self.at_close}"
        return None

    @property
    def at_close(self) -> str:
        """Where a service not restored at close stood against its RTO then: ``, 30 min past its RTO of 4h``."""
        if self.status is not ClockStatus.NOT_RESTORED_AT_CLOSE or self.rto is None or self.remaining is None:
            return ""
        rto = humanize_duration(self.rto)
        if self.remaining < 0:
            return f", {humanize_duration(-self.remaining)} past its RTO of {rto}"
        return f", {humanize_duration(self.remaining)} before its RTO of {rto} ran out"


def expected_after(restored_by: int, in_hand: int, anchor: datetime, as_of: datetime) -> datetime:
    """When an item is expected back, seen at ``as_of``, in a plan made at ``anchor`` (the declaration, or the
    latest restore mark) whose steps up to the item's take ``restored_by`` seconds, the first (in hand since
    ``anchor``) ``in_hand`` of them: :func:`expected_back` with each step as long as its slowest item."""
    planned = later(anchor, restored_by)
    earliest = later(as_of, restored_by - in_hand)
    return max(planned, earliest)


def expected_back(step: int, step_seconds: int, anchor: datetime, as_of: datetime) -> datetime:
    """When an item at ``step`` of the restore plan of what is still down is expected back, seen at ``as_of``.

    The plan was made at ``anchor`` (the declaration, or the latest restore mark): step 1 is in hand since
    then, and each step takes ``step_seconds``, so the item is expected at ``anchor + step × step_seconds``.
    That moment does not move while nothing happens, so neither does a verdict drawn from it: a service
    declared on track stays on track a second later. It moves only once it can no longer be true: the steps
    after the one in hand still need ``(step − 1) × step_seconds`` even if the one in hand ended right now,
    so the estimate is never earlier than ``as_of`` plus that.
    """
    return expected_after(step * step_seconds, step_seconds, anchor, as_of)


def rto_clocks(incident: Incident, now: datetime) -> tuple[RtoClock, ...]:
    """Every down service's clock at ``now`` (the clocks stop when the incident closes), most critical first."""
    require_aware(now, "asked about")
    as_of = min(now, incident.closed_at) if incident.closed_at is not None else now
    as_of = max(as_of, incident.declared_at)
    is_closed = incident.closed_at is not None and as_of >= incident.closed_at
    # Seen from `as_of`, a mark made later has not happened yet.
    seen = incident
    if any(e.at > as_of for e in incident.events):
        seen = replace(incident, events=tuple(e for e in incident.events if e.at <= as_of))
    steps = remaining_steps(seen)
    ends = plan_ends(incident, steps)
    in_hand = ends[min(ends)].takes if ends else incident.step_seconds
    anchor = max((e.at for e in seen.events if e.kind is EventKind.RESTORED), default=incident.declared_at)
    clocks = []
    for service in incident.services:
        assert service.tier is not None
        deadline = later(incident.declared_at, service.rto) if service.rto is not None else None
        restored_at = seen.restored.get(service.id)
        if restored_at is not None:
            took = whole_seconds(restored_at - incident.declared_at)
            if service.rto is None:
                status = ClockStatus.NO_RTO
            else:
                status = ClockStatus.MET if took <= service.rto else ClockStatus.MISSED
            clocks.append(
                RtoClock(
                    service.id, service.name, service.tier, service.rto, status, as_of, deadline, None, None,
                    restored_at, took,
                )
            )  # fmt: skip
            continue
        if is_closed:
            remaining = whole_seconds(deadline - as_of) if deadline is not None else None
            clocks.append(
                RtoClock(
                    service.id, service.name, service.tier, service.rto, ClockStatus.NOT_RESTORED_AT_CLOSE, as_of,
                    deadline, remaining,
                )
            )  # fmt: skip
            continue
        end = ends.get(steps.get(service.id, 1), StepEnd(incident.takes(service), incident.takes(service), None))
        expected_at = expected_after(end.seconds, in_hand, anchor, as_of)
        estimated = whole_seconds(expected_at - as_of)
        if deadline is None:
            clocks.append(
                RtoClock(
                    service.id, service.name, service.tier, None, ClockStatus.NO_RTO, as_of, estimated=estimated,
                    expected_at=expected_at, measured_on=end.measured_on,
                )
            )  # fmt: skip
            continue
        remaining = whole_seconds(deadline - as_of)
        if as_of > deadline:
            status = ClockStatus.BREACHED
        # Time left and time needed both run down from `as_of`, so the answer is the order of the two moments
        # (compared to the microsecond: whole seconds rounded down could tie when they are not equal).
        elif is_rto_at_risk((deadline - as_of) // _MICROSECOND, (expected_at - as_of) // _MICROSECOND):
            status = ClockStatus.AT_RISK
        else:
            status = ClockStatus.ON_TRACK
        clocks.append(
            RtoClock(
                service.id, service.name, service.tier, service.rto, status, as_of, deadline, remaining, estimated,
                expected_at=expected_at, measured_on=end.measured_on,
            )
        )  # fmt: skip
    no_rto = 1 << 62
    return tuple(sorted(clocks, key=lambda c: (c.tier, c.rto if c.rto is not None else no_rto, c.service)))


def timeline(incident: Incident, now: datetime) -> tuple[IncidentEvent, ...]:
    """The events up to ``now``, with each RTO breach (derived from the clock) at the moment it happened."""
    as_of = min(now, incident.closed_at) if incident.closed_at is not None else now
    derived = []
    for service in incident.services:
        if service.rto is None:
            continue
        deadline = later(incident.declared_at, service.rto)
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


def whole_seconds(delta: timedelta) -> int:
    """Whole seconds, rounded down: a clock shows 0 s left only once the deadline has really come."""
    return int(delta.total_seconds() // 1)


__all__ = [
    "DEFAULT_STEP_SECONDS",
    "END_OF_TIME",
    "LONGEST_STEP",
    "STORED_EVENT_KINDS",
    "ClockStatus",
    "DownItem",
    "EventKind",
    "GroupNeed",
    "Incident",
    "IncidentEvent",
    "IncidentStatus",
    "ItemKind",
    "RtoClock",
    "StepEnd",
    "UnreadableIncident",
    "add_note",
    "close_incident",
    "expected_after",
    "expected_back",
    "later",
    "mark_restored",
    "plan_ends",
    "remaining_steps",
    "require_actor",
    "require_aware",
    "rto_clocks",
    "time_basis",
    "timeline",
    "waiting_for",
    "whole_seconds",
]
