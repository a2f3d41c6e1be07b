"""Change windows and freezes: when a ring may open (format and examples in docs/windows.md).

An update file may say when its rings may open::

    windows:
      - name: tier 1 Sunday night
        tier: 1
        allow: ["Sun 01:00-05:00"]
      - name: GP practices
        selector: attrs.role=gp-workstation
        allow: ["weekdays 19:00-07:00"]
      - name: pathology
        service: pathology
        never: ["daily 08:00-18:00"]
    freezes:
      - {name: Christmas, from: 2026-12-19, to: 2027-01-03}

A **rule** applies to the targets its scope names (``service``: every asset the service stands on, through
services and any-groups; ``tier``: the targets of that impact tier; ``site``; ``selector``; none: every target).
An asset is *open* at an instant when, for each rule that applies to it, the instant is inside one of the
rule's ``allow`` windows (when it has any) and inside none of its ``never`` windows, and no freeze holds. A
ring is open when every asset in it is: that is, inside the windows of every rule that applies to any of its
assets (an asset's windows are all of its rules', so the ring's are the union of its assets' rules).

**Time is read off the wall clock in Europe/London.** An instant is inside ``Sun 01:00-05:00`` when the clock in
London reads a Sunday time from 01:00 to 04:59. In the March night the clock jumps from 00:59 to 02:00, so that
window is three hours long; in the October night 01:00–01:59 happens twice, and the window is five hours long.
A window whose end is not after its start crosses midnight: ``weekdays 19:00-07:00`` opens on a weekday evening
and closes at 07:00 the next morning (Friday's closes on Saturday). Freezes are whole days, both ends included,
in London.

An incident may declare a freeze (``ringfence incident freeze``): while it is open, no ring opens anywhere.

Pure: the calendar is computed from a ``now`` handed in; nothing here reads a clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Self
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ringfence.core.durations import humanize_duration
from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import ID_PATTERN, LONGEST_ID
from ringfence.core.graph import EstateGraph, IntArray, gather
from ringfence.core.impact import impact_tiers
from ringfence.core.selectors import parse_selector

if TYPE_CHECKING:
    from ringfence.core.plan import Plan
    from ringfence.core.update import Update

ZONE = "Europe/London"
"""The zone every window and freeze is read in: the trusts' wall clock, daylight saving included."""

HORIZON_DAYS = 400
"""How far ahead the next opening is looked for: past a year, so a yearly freeze cannot hide one."""

_DAY = 86400
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_OF: Mapping[str, int] = {
    **{name: i for i, name in enumerate(_DAY_NAMES)},
    **{
        name: i for i, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
    },
    "tues": 1,
    "thur": 3,
    "thurs": 3,
}
_DAY_WORDS: Mapping[str, frozenset[int]] = {
    "daily": frozenset(range(7)),
    "every day": frozenset(range(7)),
    "weekdays": frozenset(range(5)),
    "weekends": frozenset({5, 6}),
}
_WINDOW = re.compile(r"^\s*(?P<days>.+?)\s+(?P<start>\d{1,2}:\d{2})\s*[-–—]\s*(?P<end>\d{1,2}:\d{2})\s*$")
_WINDOW_EXAMPLE = "write e.g. 'Sun 01:00-05:00', 'weekdays 19:00-07:00' or 'daily 08:00-18:00'"


# ------------------------------------------------------------------------------------------ one window


@dataclass(frozen=True)
class WeeklyWindow:
    """A stretch of the week on the wall clock: it opens at ``start`` (minute of the day) on each of ``days``
    (0 Monday … 6 Sunday) and closes at ``end``, on the same day when ``end > start``, else the next day."""

    days: frozenset[int]
    start: int
    end: int
    text: str

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def holds(self, weekday: int, minute: int) -> bool:
        """Whether the wall clock reading ``weekday``, ``minute`` is inside this window."""
        if not self.crosses_midnight:
            return weekday in self.days and self.start <= minute < self.end
        return (weekday in self.days and minute >= self.start) or ((weekday - 1) % 7 in self.days and minute < self.end)

    def pieces(self, weekday: int) -> list[tuple[int, int]]:
        """The minutes ``[a, b)`` of a day of ``weekday`` inside this window."""
        found: list[tuple[int, int]] = []
        if self.crosses_midnight:
            if (weekday - 1) % 7 in self.days and self.end > 0:
                found.append((0, self.end))
            if weekday in self.days:
                found.append((self.start, 1440))
        elif weekday in self.days:
            found.append((self.start, self.end))
        return found


def _minute(text: str, *, is_end: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if is_end and hours == 24 and minutes == 0:
        return 1440
    if hours > 23 or minutes > 59:
        raise ValueError(f"'{text}' is not a time of day; write HH:MM from 00:00 to 23:59 (24:00 as an end)")
    return hours * 60 + minutes


def _day_number(word: str) -> int:
    found = _DAY_OF.get(word.strip().lower())
    if found is None:
        raise ValueError(
            f"'{word.strip()}' is not a day; use Mon … Sun, a range (Mon-Fri), or daily, weekdays, weekends"
        )
    return found


def _days(text: str) -> frozenset[int]:
    """``Sun``, ``Mon-Fri``, ``Sat,Sun``, ``weekdays``: the weekdays (0 Monday … 6 Sunday) a window opens on."""
    days: set[int] = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if part in _DAY_WORDS:
            days |= _DAY_WORDS[part]
        elif "-" in part:
            first, _, last = part.partition("-")
            a, b = _day_number(first), _day_number(last)
            days.update((a + i) % 7 for i in range((b - a) % 7 + 1))  # Fri-Mon wraps over the weekend
        else:
            days.add(_day_number(part))
    return frozenset(days)


@lru_cache(maxsize=1024)
def parse_window(text: str) -> WeeklyWindow:
    """``"weekdays 19:00-07:00"`` → a :class:`WeeklyWindow`; raises ``ValueError`` with a sentence."""
    match = _WINDOW.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"'{text}' is not a window; {_WINDOW_EXAMPLE}")
    days = _days(match["days"])
    start = _minute(match["start"], is_end=False)
    end = _minute(match["end"], is_end=True)
    if start == end:
        raise ValueError(f"'{text}' opens and closes at the same time; a window needs a length")
    return WeeklyWindow(days, start, end, text.strip())


def _check_window(text: str) -> str:
    parse_window(text)
    return text


WindowText = Annotated[str, AfterValidator(_check_window)]


# ------------------------------------------------------------------------------------------ the file format


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True, populate_by_name=True)


class WindowRule(_Model):
    """When the targets in one scope may be changed: inside one of ``allow`` (if any), never inside ``never``."""

    name: str | None = None
    service: Annotated[str, Field(pattern=ID_PATTERN, max_length=LONGEST_ID)] | None = None
    tier: Annotated[int, Field(ge=1, le=5)] | None = None
    site: Annotated[str, Field(pattern=r"^[^,|=!]+$")] | None = None
    selector: str | None = None
    allow: tuple[WindowText, ...] | None = None
    never: tuple[WindowText, ...] = ()

    @field_validator("allow")
    @classmethod
    def _some_allowed(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty list of windows would never let a ring open; leave allow out, or list windows")
        return value

    @model_validator(mode="after")
    def _one_scope_and_some_window(self) -> Self:
        scopes = [k for k in ("service", "tier", "site", "selector") if getattr(self, k) is not None]
        if len(scopes) > 1:
            raise ValueError(
                f"a window rule has one scope (service, tier, site or selector), not {' and '.join(scopes)}"
            )
        if self.allow is None and not self.never:
            raise ValueError("a window rule says when: give allow (windows to change in) or never (windows not to)")
        if self.selector is not None:
            parse_selector(self.selector)
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        for key in ("service", "tier", "site", "selector"):
            value = getattr(self, key)
            if value is not None:
                return f"{key} {value}"
        return "every target"

    def describe(self) -> str:
        """``tier 1 Sunday night (Sun 01:00-05:00)``: what a waiting rollout names."""
        parts = []
        if self.allow:
            parts.append(" or ".join(self.allow))
        if self.never:
            parts.append("never " + " or ".join(self.never))
        return f"{self.label} ({'; '.join(parts)})"


class Freeze(_Model):
    """Whole days, both included, in London, on which no ring opens."""

    name: str
    start: date = Field(alias="from")
    end: date = Field(alias="to")

    @field_validator("end")
    @classmethod
    def _ends_after_it_starts(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if isinstance(start, date) and value < start:
            raise ValueError(f"the freeze ends ({value.isoformat()}) before it starts ({start.isoformat()})")
        return value

    def describe(self) -> str:
        return f"the {self.name} freeze ({_day(self.start)} to {_day(self.end)})"


@dataclass(frozen=True)
class IncidentFreeze:
    """An open incident that declared a change freeze: nothing opens anywhere until it is closed."""

    incident_id: str
    title: str

    def describe(self) -> str:
        return f"incident {self.incident_id} ({self.title}) is open and declared a change freeze"


# ------------------------------------------------------------------------------------------ the calendar


@dataclass(frozen=True)
class Calendar:
    """The windows and freezes one ring is held to, in :data:`ZONE`.

    ``allow`` holds one tuple of windows per rule that has any (the instant must be inside one window of each);
    ``never`` every window no ring of these rules may open in; ``freezes`` the freezes."""

    allow: tuple[tuple[WeeklyWindow, ...], ...] = ()
    never: tuple[WeeklyWindow, ...] = ()
    freezes: tuple[Freeze, ...] = ()
    zone: str = ZONE

    @property
    def is_always_open(self) -> bool:
        return not (self.allow or self.never or self.freezes)

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` (timezone-aware) is inside every window and no freeze: the reference semantics."""
        local = at.astimezone(_zone(self.zone))
        if any(f.start <= local.date() <= f.end for f in self.freezes):
            return False
        weekday, minute = local.weekday(), local.hour * 60 + local.minute
        if any(w.holds(weekday, minute) for w in self.never):
            return False
        return all(any(w.holds(weekday, minute) for w in rule) for rule in self.allow)

    def open_intervals(self, start: datetime, end: datetime) -> list[tuple[int, int]]:
        """The open stretches in ``[start, end)`` as UTC epoch seconds ``[a, b)``, in order, merged.

        Worked per stretch of constant UTC offset: within one, the wall clock is UTC shifted, so each day's open
        minutes (the same for every day of a weekday, freezes aside) map straight to UTC. At a change of offset
        the stretch ends: the jump in March and the repeat in October fall out of the mapping."""
        patterns = self._patterns()
        out: list[tuple[int, int]] = []
        for seg_a, seg_b, offset in _offset_segments(self.zone, _epoch(start), _epoch(end)):
            local_a, local_b = seg_a + offset, seg_b + offset
            for day in range(local_a // _DAY, (local_b - 1) // _DAY + 1):
                if self.freezes and self._frozen(day):
                    continue
                base = day * _DAY
                for a_min, b_min in patterns[(day + 3) % 7]:  # 1 January 1970 was a Thursday (weekday 3)
                    a = max(base + a_min * 60, local_a)
                    b = min(base + b_min * 60, local_b)
                    if a < b:
                        a, b = a - offset, b - offset
                        if out and out[-1][1] >= a:
                            out[-1] = (out[-1][0], max(out[-1][1], b))
                        else:
                            out.append((a, b))
        return out

    def next_opening(self, now: datetime, horizon_days: int = HORIZON_DAYS) -> datetime | None:
        """The earliest instant at or after ``now`` inside every window and no freeze; None within the horizon."""
        if self.is_always_open:
            return now
        at = now
        limit = now + timedelta(days=horizon_days)
        while at < limit:
            chunk = min(at + timedelta(days=8), limit)
            for a, b in self.open_intervals(at, chunk):
                if b > _epoch(now):
                    # Opening instants are whole minutes (windows are): ``now`` inside one is the opening itself.
                    return now if a <= _epoch(now) else datetime.fromtimestamp(a, UTC)
            at = chunk
        return None

    def _frozen(self, local_day: int) -> bool:
        day = date(1970, 1, 1) + timedelta(days=local_day)
        return any(f.start <= day <= f.end for f in self.freezes)

    def _patterns(self) -> tuple[list[tuple[int, int]], ...]:
        return _day_patterns(self.allow, self.never)


@lru_cache(maxsize=256)
def _day_patterns(
    allow: tuple[tuple[WeeklyWindow, ...], ...], never: tuple[WeeklyWindow, ...]
) -> tuple[list[tuple[int, int]], ...]:
    """Per weekday, the open minutes ``[a, b)`` of a day: each rule's windows united, the rules intersected,
    the never-windows taken out."""
    days: list[list[tuple[int, int]]] = []
    for weekday in range(7):
        open_now = [(0, 1440)]
        for rule in allow:
            open_now = _intersect(open_now, _union(p for w in rule for p in w.pieces(weekday)))
        for w in never:
            for piece in w.pieces(weekday):
                open_now = _subtract(open_now, piece)
        days.append(open_now)
    return tuple(days)


def _union(pieces: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(pieces):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _intersect(xs: Sequence[tuple[int, int]], ys: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if a < b:
            out.append((a, b))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def _subtract(xs: Sequence[tuple[int, int]], hole: tuple[int, int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in xs:
        if b <= hole[0] or a >= hole[1]:
            out.append((a, b))
            continue
        if a < hole[0]:
            out.append((a, hole[0]))
        if b > hole[1]:
            out.append((hole[1], b))
    return out


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _epoch(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError(f"a time with a timezone is needed, not {at.isoformat()}")
    return int(at.timestamp() // 1)


def _offset_at(zone: ZoneInfo, epoch: int) -> int:
    offset = datetime.fromtimestamp(epoch, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@lru_cache(maxsize=4096)
def _offset_segments_cached(zone_name: str, day_a: int, day_b: int) -> tuple[tuple[int, int, int], ...]:
    """Stretches of constant offset covering UTC days ``[day_a, day_b)``: ``(a, b, offset)``. Offsets are read at
    each UTC midnight; where two differ the change is found by halving to the second (zones change at most once
    a day)."""
    zone = _zone(zone_name)
    out: list[tuple[int, int, int]] = []
    a = day_a * _DAY
    offset = _offset_at(zone, a)
    for day in range(day_a + 1, day_b + 1):
        t = day * _DAY
        nxt = _offset_at(zone, t)
        if nxt != offset:
            lo, hi = t - _DAY, t  # offset at lo is `offset`, at hi `nxt`
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset_at(zone, mid) == offset:
                    lo = mid
                else:
                    hi = mid
            out.append((a, hi, offset))
            a, offset = hi, nxt
    out.append((a, day_b * _DAY, offset))
    return tuple(out)


def _offset_segments(zone_name: str, start: int, end: int) -> list[tuple[int, int, int]]:
    segments = _offset_segments_cached(zone_name, start // _DAY, -(-end // _DAY))
    return [(max(a, start), min(b, end), o) for a, b, o in segments if min(b, end) > max(a, start)]


# ------------------------------------------------------------------------------------------ rules → rings


def calendar_of(
    rules: Sequence[WindowRule], indexes: Iterable[int], freezes: Sequence[Freeze] = (), zone: str = ZONE
) -> Calendar:
    """The calendar of the rules ``indexes`` (into ``rules``) with ``freezes``."""
    chosen = [rules[i] for i in sorted(set(indexes))]
    return Calendar(
        allow=tuple(tuple(parse_window(t) for t in r.allow) for r in chosen if r.allow),
        never=tuple(parse_window(t) for r in chosen for t in r.never),
        freezes=tuple(freezes),
        zone=zone,
    )


def why_closed(
    rules: Sequence[WindowRule], indexes: Iterable[int], freezes: Sequence[Freeze], at: datetime, zone: str = ZONE
) -> str:
    """What keeps a ring closed at ``at``: the freezes and rules that hold it, named."""
    local = at.astimezone(_zone(zone))
    held = [f.describe() for f in freezes if f.start <= local.date() <= f.end]
    weekday, minute = local.weekday(), local.hour * 60 + local.minute
    for i in sorted(set(indexes)):
        rule = rules[i]
        windows = [parse_window(t) for t in rule.allow or ()]
        outside = bool(windows) and not any(w.holds(weekday, minute) for w in windows)
        inside_never = any(parse_window(t).holds(weekday, minute) for t in rule.never)
        if outside or inside_never:
            held.append(rule.describe())
    return ", ".join(held) if held else "its windows"


def format_local(at: datetime, zone: str = ZONE) -> str:
    """``Sun 7 Dec 2026 01:00 GMT``: a time as the people of the trust read it."""
    local = at.astimezone(_zone(zone))
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} {local.tzname()}"


def _day(d: date) -> str:
    return f"{d:%a} {d.day} {d:%b %Y}"


@dataclass(frozen=True)
class RingOpening:
    """Whether ring ``ring`` may open at ``at``, and if not, until when it waits and why."""

    ring: int
    is_open: bool
    opens_at: datetime | None
    """``at`` itself when open; the next opening when closed; None when no opening is in sight."""
    reason: str = ""

    def sentence(self, at: datetime) -> str:
        """``ring 2 waits for its change window: opens Sun 7 Dec 2026 01:00 GMT (outside tier 1 …)``."""
        if self.is_open:
            return f"ring {self.ring} is inside its change windows"
        if self.opens_at is None:
            return f"ring {self.ring} waits: {self.reason}"
        return (
            f"ring {self.ring} waits for its change window until {format_local(self.opens_at)} "
            f"(in {_humanize(self.opens_at - at)}; now {self.reason})"
        )


def _humanize(delta: timedelta) -> str:
    return humanize_duration(delta.total_seconds())


def ring_opening(
    ring: int,
    rules: Sequence[WindowRule],
    indexes: Iterable[int],
    freezes: Sequence[Freeze],
    incident_freezes: Sequence[IncidentFreeze],
    at: datetime,
    zone: str = ZONE,
) -> RingOpening:
    """Whether ring ``ring``, held to ``rules[indexes]`` and the freezes, may open at ``at`` (see the module)."""
    if incident_freezes:
        held = "; ".join(f.describe() for f in incident_freezes)
        return RingOpening(ring, False, None, f"{held}; no ring opens until it is closed")
    chosen = sorted(set(indexes))
    calendar = calendar_of(rules, chosen, freezes, zone)
    if calendar.is_open(at):
        return RingOpening(ring, True, at)
    opens = calendar.next_opening(at)
    closed = why_closed(rules, chosen, freezes, at, zone)
    if opens is None:
        return RingOpening(
            ring,
            False,
            None,
            f"the change windows of its assets never all coincide in the next {HORIZON_DAYS} days ({closed})",
        )
    return RingOpening(ring, False, opens, f"closed by {closed}")


def rules_by_ring(
    graph: EstateGraph,
    rules: Sequence[WindowRule],
    rings: Sequence[Sequence[str]],
    tiers: Sequence[Sequence[int]] | None = None,
) -> tuple[tuple[int, ...], ...]:
    """For each ring, the indexes of the rules that apply to at least one of its assets.

    ``tiers`` gives each ring's impact tiers, aligned with its assets (the plan's ``Ring.tiers``); computed here
    when a rule names a tier and none are given. A rule naming a service the estate does not hold is refused at its
    field. Ids become positions through ``map`` in C, not a generator: at a million targets that is most of the
    cost."""
    if not rules:
        return tuple(() for _ in rings)
    offset = graph.n_services
    lookup = graph.index.__getitem__
    positions = [np.fromiter(map(lookup, ring), dtype=np.int64, count=len(ring)) - offset for ring in rings]
    ring_of = np.full(graph.n_assets, -1, dtype=np.int64)
    for r, pos in enumerate(positions):
        ring_of[pos] = r
    n_rings = len(rings)
    touched: list[set[int]] = [set() for _ in rings]
    tier_of: IntArray | None = None
    problems: list[Problem] = []
    for i, rule in enumerate(rules):
        if rule.tier is not None:
            if tier_of is None:
                tier_of = _tiers_by_position(graph, positions, tiers)
            hit_rings = np.unique(ring_of[(tier_of == rule.tier) & (ring_of >= 0)])
        else:
            matched = _rule_assets(graph, rule, i, problems)
            if matched is None:
                hit_rings = np.arange(n_rings)
            else:
                found = ring_of[matched]
                hit_rings = np.unique(found[found >= 0])
        for r in hit_rings.tolist():
            touched[r].add(i)
    if problems:
        raise InputError(problems)
    return tuple(tuple(sorted(t)) for t in touched)


def _tiers_by_position(
    graph: EstateGraph, positions: Sequence[IntArray], tiers: Sequence[Sequence[int]] | None
) -> IntArray:
    tier_of = np.zeros(graph.n_assets, dtype=np.int64)
    if tiers is not None:
        for pos, ring_tiers in zip(positions, tiers, strict=True):
            tier_of[pos] = np.asarray(ring_tiers, dtype=np.int64)
    elif positions:
        every = np.concatenate(positions)
        tier_of[every] = impact_tiers(graph, every)
    return tier_of


def _rule_assets(graph: EstateGraph, rule: WindowRule, i: int, problems: list[Problem]) -> IntArray | None:
    """The asset positions ``rule`` applies to; None for a rule with no scope (every target)."""
    if rule.selector is not None:
        return np.asarray(graph.assets.match(parse_selector(rule.selector)), dtype=np.int64)
    if rule.site is not None:
        return np.asarray(graph.assets.match(parse_selector(f"site={rule.site.strip()}")), dtype=np.int64)
    if rule.service is not None:
        node = graph.index.get(rule.service)
        if node is None or node >= graph.n_services:
            problems.append(
                Problem(
                    f"estate '{graph.estate.name}' has no service '{rule.service}'",
                    path=("update", "windows", i, "service"),
                )
            )
            return np.zeros(0, dtype=np.int64)
        return _stands_on(graph, node)
    return None


def _stands_on(graph: EstateGraph, service: int) -> IntArray:
    """The assets a service stands on: its requirements, followed down through services and assets, any-group
    members included (each member could carry it)."""
    required, dependent = graph.requirement_edges
    order = np.argsort(dependent, kind="stable")
    ptr = np.zeros(graph.n + 1, dtype=np.int64)
    np.cumsum(np.bincount(dependent, minlength=graph.n), out=ptr[1:])
    forward = required[order]
    owner_order = np.argsort(graph.group_owner, kind="stable")
    group_ptr = np.zeros(graph.n + 1, dtype=np.int64)
    np.cumsum(np.bincount(graph.group_owner, minlength=graph.n), out=group_ptr[1:])
    seen = np.zeros(graph.n, dtype=np.bool_)
    seen[service] = True
    frontier = np.asarray([service], dtype=np.int64)
    while frontier.size:
        reached = [gather(ptr, forward, frontier)]
        for g in gather(group_ptr, owner_order, frontier).tolist():
            reached.append(graph.members_of(g))
        nxt = np.unique(np.concatenate(reached)) if reached else np.zeros(0, dtype=np.int64)
        nxt = nxt[~seen[nxt]]
        seen[nxt] = True
        frontier = nxt
    nodes = np.flatnonzero(seen[graph.n_services :])
    return nodes.astype(np.int64)


@dataclass(frozen=True)
class RingSlot:
    """When a ring can start at the earliest, and when it is done (installed and baked) if all goes well."""

    ring: int
    ready_at: datetime
    """When the ring before it is done (the plan's start for ring 0)."""
    starts_at: datetime | None
    """The first opening of its windows from ``ready_at``; None: none within the horizon."""
    done_at: datetime | None

    @property
    def waits(self) -> timedelta:
        return (self.starts_at - self.ready_at) if self.starts_at is not None else timedelta(0)


def ring_calendar(
    rules: Sequence[WindowRule],
    freezes: Sequence[Freeze],
    ring_windows: Sequence[Sequence[int]],
    bakes: Sequence[int],
    *,
    install: int,
    restore_point: int,
    start: datetime,
    zone: str = ZONE,
) -> tuple[RingSlot, ...]:
    """The plan's calendar: each ring starts at the first opening of its windows once the ring before it is done
    (as the controller opens it), takes its restore points (``restore_point`` seconds, 0 without snapshots), starts
    its installs at the first opening from then (an install, too, starts only inside the windows), and is done
    ``install`` + its bake later. A ring with no opening in sight leaves it and every later ring unscheduled."""
    slots: list[RingSlot] = []
    ready: datetime | None = start
    for r, bake in enumerate(bakes):
        if ready is None:
            slots.append(RingSlot(r, start, None, None))
            continue
        calendar = calendar_of(rules, ring_windows[r] if r < len(ring_windows) else (), freezes, zone)
        opens = calendar.next_opening(ready)
        installs = None
        if opens is not None:
            installs = calendar.next_opening(opens + timedelta(seconds=restore_point)) if restore_point else opens
        done = installs + timedelta(seconds=install + bake) if installs is not None else None
        slots.append(RingSlot(r, ready, opens, done))
        ready = done
    return tuple(slots)


def plan_calendar(graph: EstateGraph, plan: Plan, start: datetime) -> tuple[RingSlot, ...] | None:
    """The calendar of ``plan`` from ``start`` (:func:`ring_calendar`), when its update has change windows or
    freezes; None when it has neither (every ring can start at once). ``ringfence plan`` and ``POST /v1/plans``."""
    update = plan.update
    if not (update.windows or update.freezes):
        return None
    rings = plan.rings
    ring_windows = rules_by_ring(graph, update.windows, [r.assets for r in rings], [r.tiers for r in rings])
    return update_calendar(update, ring_windows, [ring.bake for ring in rings], start)


def update_calendar(
    update: Update, ring_windows: Sequence[Sequence[int]], bakes: Sequence[int], start: datetime
) -> tuple[RingSlot, ...]:
    """:func:`ring_calendar` of rings held to ``update``'s windows and freezes, timed by its ``timing`` (restore
    points only with ``rollback: snapshot``): the plan's calendar and a running rollout's rings still ahead."""
    return ring_calendar(
        update.windows,
        update.freezes,
        ring_windows,
        bakes,
        install=update.timing.apply,
        restore_point=update.timing.restore_point if update.rollback == "snapshot" else 0,
        start=start,
    )


def ring_rules_now(
    ring_windows: Sequence[Sequence[int]], planned_rings: Sequence[Sequence[str]], ring: int, assets: Iterable[str]
) -> tuple[int, ...]:
    """The rules ring ``ring`` is held to at run time: those of its planned ring, and those of the planned ring
    of any asset moved into it since (a replacement canary brings its own windows along)."""
    if ring >= len(ring_windows):
        return ()
    found = set(ring_windows[ring])
    planned = set(planned_rings[ring]) if ring < len(planned_rings) else set()
    moved = [a for a in assets if a not in planned]
    for asset in moved:
        home = next((r for r, members in enumerate(planned_rings) if asset in members), None)
        if home is not None and home < len(ring_windows):
            found.update(ring_windows[home])
    return tuple(sorted(found))


__all__ = [
    "HORIZON_DAYS",
    "ZONE",
    "Calendar",
    "Freeze",
    "IncidentFreeze",
    "RingOpening",
    "RingSlot",
    "WeeklyWindow",
    "WindowRule",
    "calendar_of",
    "format_local",
    "parse_window",
    "plan_calendar",
    "ring_calendar",
    "ring_opening",
    "ring_rules_now",
    "rules_by_ring",
    "update_calendar",
    "why_closed",
]
