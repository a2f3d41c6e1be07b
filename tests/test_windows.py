"""Change windows and freezes (ringfence.core.windows): parsing, the wall clock in London across both daylight
saving changes, freezes, and the next opening held against a brute-force oracle that steps minute by minute."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.core.errors import InputError
from ringfence.core.update import parse_update_text
from ringfence.core.windows import (
    Calendar,
    Freeze,
    IncidentFreeze,
    WeeklyWindow,
    WindowRule,
    calendar_of,
    format_local,
    parse_window,
    ring_opening,
)

LONDON = ZoneInfo("Europe/London")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def cal(*windows: str, never: tuple[str, ...] = (), freezes: tuple[Freeze, ...] = ()) -> Calendar:
    return Calendar(
        allow=(tuple(parse_window(w) for w in windows),) if windows else (),
        never=tuple(parse_window(w) for w in never),
        freezes=freezes,
    )


# ------------------------------------------------------------------------------------------ the oracle


def oracle_open(
    allow: list[list[tuple[frozenset[int], int, int]]],
    never: list[tuple[frozenset[int], int, int]],
    freezes: list[tuple[date, date]],
    at: datetime,
) -> bool:
    """Written apart from the module: read London's wall clock, and check each window by its own words."""
    local = at.astimezone(LONDON)
    if any(a <= local.date() <= b for a, b in freezes):
        return False
    day, minute = local.weekday(), local.hour * 60 + local.minute
    yesterday = (day - 1) % 7

    def inside(days: frozenset[int], start: int, end: int) -> bool:
        if start < end:
            return day in days and start <= minute < end
        return (day in days and minute >= start) or (yesterday in days and minute < end)

    if any(inside(*w) for w in never):
        return False
    return all(any(inside(*w) for w in rule) for rule in allow)


DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def window_text(days: frozenset[int], start: int, end: int) -> str:
    names = ",".join(DAY_NAMES[d] for d in sorted(days))
    end_text = "24:00" if end == 1440 else f"{end // 60:02d}:{end % 60:02d}"
    return f"{names} {start // 60:02d}:{start % 60:02d}-{end_text}"


minutes = st.integers(0, 47).map(lambda q: q * 30)  # half hours: DST changes and midnight land on them
windows = st.tuples(st.frozensets(st.integers(0, 6), min_size=1), minutes, st.integers(1, 48).map(lambda q: q * 30))
windows = windows.filter(lambda w: w[1] != w[2])  # a window needs a length
# Instants around both changes of 2026 (29 March, 25 October) and an ordinary stretch.
instants = st.sampled_from([utc(2026, 3, 25), utc(2026, 10, 21), utc(2026, 6, 10), utc(2026, 12, 18)]).flatmap(
    lambda base: st.integers(0, 8 * 24 * 60).map(lambda m: base + timedelta(minutes=m))
)


@st.composite
def calendars(draw: st.DrawFn) -> tuple[Calendar, list, list, list]:
    allow = draw(st.lists(st.lists(windows, min_size=1, max_size=3), max_size=2))
    never = draw(st.lists(windows, max_size=2))
    freezes = draw(
        st.lists(
            st.tuples(st.integers(0, 20), st.integers(0, 3)).map(
                lambda p: (date(2026, 12, 15) + timedelta(days=p[0]), date(2026, 12, 15) + timedelta(days=p[0] + p[1]))
            ),
            max_size=1,
        )
    )
    calendar = Calendar(
        allow=tuple(tuple(parse_window(window_text(*w)) for w in rule) for rule in allow),
        never=tuple(parse_window(window_text(*w)) for w in never),
        freezes=tuple(Freeze.model_validate({"name": "f", "from": a, "to": b}) for a, b in freezes),
    )
    return calendar, allow, never, freezes


@settings(max_examples=150, deadline=None)
@given(calendars(), instants)
def test_is_open_agrees_with_the_wall_clock_oracle(drawn: tuple[Calendar, list, list, list], at: datetime) -> None:
    calendar, allow, never, freezes = drawn
    assert calendar.is_open(at) == oracle_open(allow, never, freezes, at)


@settings(max_examples=60, deadline=None)
@given(calendars(), instants)
def test_next_opening_is_open_and_nothing_earlier_is(drawn: tuple[Calendar, list, list, list], at: datetime) -> None:
    calendar, allow, never, freezes = drawn
    horizon = 9  # days: every weekly window recurs within it, a short freeze included
    opening = calendar.next_opening(at, horizon_days=horizon)
    # Brute force: every minute from `at` (the first partial minute counts as `at` itself).
    step = at
    found = None
    while step < at + timedelta(days=horizon):
        if oracle_open(allow, never, freezes, step):
            found = step
            break
        step = (step + timedelta(minutes=1)).replace(second=0, microsecond=0)
    assert opening == found


@settings(max_examples=60, deadline=None)
@given(calendars(), instants)
def test_open_intervals_are_exactly_the_open_minutes(drawn: tuple[Calendar, list, list, list], at: datetime) -> None:
    calendar, allow, never, freezes = drawn
    start = at.replace(second=0, microsecond=0)
    end = start + timedelta(days=2)
    intervals = calendar.open_intervals(start, end)
    inside = {m for a, b in intervals for m in range(a // 60, b // 60)}
    for m in range(int(start.timestamp()) // 60, int(end.timestamp()) // 60):
        assert (m in inside) == oracle_open(allow, never, freezes, datetime.fromtimestamp(m * 60, UTC))


# ------------------------------------------------------------------------------------------ daylight saving


def test_march_the_hour_that_never_happens_shortens_a_sunday_night_window() -> None:
    # 29 March 2026: London's clocks go from 00:59:59 GMT to 02:00 BST (01:00 UTC).
    window = cal("Sun 01:00-05:00")
    assert not window.is_open(utc(2026, 3, 29, 0, 59))  # 00:59 GMT
    assert window.is_open(utc(2026, 3, 29, 1, 0))  # 02:00 BST: the clock reads inside
    assert window.is_open(utc(2026, 3, 29, 3, 59))  # 04:59 BST
    assert not window.is_open(utc(2026, 3, 29, 4, 0))  # 05:00 BST
    assert window.open_intervals(utc(2026, 3, 28), utc(2026, 3, 30)) == [
        (int(utc(2026, 3, 29, 1).timestamp()), int(utc(2026, 3, 29, 4).timestamp()))
    ]
    # A window inside the missing hour does not open that night at all: the next is a week later.
    gap = cal("Sun 01:15-01:45")
    assert gap.next_opening(utc(2026, 3, 28)) == utc(2026, 4, 5, 0, 15)  # 01:15 BST


def test_october_the_hour_that_happens_twice_lengthens_it() -> None:
    # 25 October 2026: 01:59:59 BST (00:59:59 UTC) is followed by 01:00 GMT (01:00 UTC).
    window = cal("Sun 01:00-05:00")
    assert window.open_intervals(utc(2026, 10, 24), utc(2026, 10, 26)) == [
        (int(utc(2026, 10, 25, 0).timestamp()), int(utc(2026, 10, 25, 5).timestamp()))
    ]
    assert window.next_opening(utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 0)  # 01:00 BST
    # A window ending inside the repeated hour opens again when the clock reads inside it the second time.
    ends_early = cal("Sat 22:00-01:30")
    assert ends_early.is_open(utc(2026, 10, 25, 0, 15))  # 01:15 BST
    assert not ends_early.is_open(utc(2026, 10, 25, 0, 45))  # 01:45 BST
    assert ends_early.is_open(utc(2026, 10, 25, 1, 15))  # 01:15 GMT: the clock reads inside again


def test_a_window_crossing_midnight_belongs_to_the_day_it_opens() -> None:
    evenings = cal("weekdays 19:00-07:00")
    friday_night = datetime(2026, 12, 4, 23, 0, tzinfo=LONDON)  # a Friday
    assert evenings.is_open(friday_night)
    assert evenings.is_open(datetime(2026, 12, 5, 6, 59, tzinfo=LONDON))  # Saturday morning: Friday's window
    assert not evenings.is_open(datetime(2026, 12, 5, 20, 0, tzinfo=LONDON))  # Saturday evening
    assert not evenings.is_open(datetime(2026, 12, 7, 6, 0, tzinfo=LONDON))  # Monday morning: Sunday has none
    assert evenings.next_opening(datetime(2026, 12, 5, 8, 0, tzinfo=LONDON)) == datetime(
        2026, 12, 7, 19, 0, tzinfo=LONDON
    )


def test_never_during_the_day_and_a_freeze() -> None:
    christmas = Freeze.model_validate({"name": "Christmas", "from": "2026-12-19", "to": "2027-01-03"})
    pathology = cal(never=("daily 08:00-18:00",), freezes=(christmas,))
    assert not pathology.is_open(datetime(2026, 12, 14, 12, 0, tzinfo=LONDON))
    assert pathology.is_open(datetime(2026, 12, 14, 18, 0, tzinfo=LONDON))
    assert not pathology.is_open(datetime(2027, 1, 3, 23, 59, tzinfo=LONDON))  # the last day is frozen too
    assert pathology.next_opening(datetime(2026, 12, 19, 9, 0, tzinfo=LONDON)) == datetime(
        2027, 1, 4, 0, 0, tzinfo=LONDON
    )


def test_windows_that_never_coincide_have_no_opening() -> None:
    calendar = Calendar(allow=((parse_window("Sun 01:00-05:00"),), (parse_window("Mon 01:00-05:00"),)))
    assert calendar.next_opening(utc(2026, 12, 6), horizon_days=30) is None


# ------------------------------------------------------------------------------------------ rings


RULES = (
    WindowRule.model_validate({"name": "tier 1 Sunday night", "tier": 1, "allow": ["Sun 01:00-05:00"]}),
    WindowRule.model_validate({"service": "pathology", "never": ["daily 08:00-18:00"]}),
)


def test_a_ring_waits_and_says_until_when_in_london_time() -> None:
    monday = datetime(2026, 12, 7, 10, 0, tzinfo=LONDON)
    opening = ring_opening(2, RULES, [0, 1], (), (), monday)
    assert not opening.is_open
    assert opening.opens_at == datetime(2026, 12, 13, 1, 0, tzinfo=LONDON)
    sentence = opening.sentence(monday)
    assert "ring 2 waits for its change window until Sun 13 Dec 2026 01:00 GMT" in sentence
    assert "tier 1 Sunday night (Sun 01:00-05:00)" in sentence
    assert "service pathology (never daily 08:00-18:00)" in sentence
    assert ring_opening(2, RULES, [1], (), (), datetime(2026, 12, 7, 19, 0, tzinfo=LONDON)).is_open


def test_an_incident_freeze_holds_every_ring_with_no_time_to_wake() -> None:
    freeze = IncidentFreeze("INC-3", "EPR down")
    opening = ring_opening(0, (), [], (), (freeze,), utc(2026, 12, 6, 2))
    assert not opening.is_open
    assert opening.opens_at is None
    assert "incident INC-3 (EPR down) is open and declared a change freeze" in opening.sentence(utc(2026, 12, 6))


def test_format_local_names_the_zone_of_the_season() -> None:
    assert format_local(utc(2026, 7, 1, 12)) == "Wed 1 Jul 2026 13:00 BST"
    assert format_local(utc(2026, 12, 1, 12)) == "Tue 1 Dec 2026 12:00 GMT"


def test_calendar_of_takes_only_the_named_rules() -> None:
    assert calendar_of(RULES, [1]).allow == ()
    assert calendar_of(RULES, [0]).allow == ((WeeklyWindow(frozenset({6}), 60, 300, "Sun 01:00-05:00"),),)


# ------------------------------------------------------------------------------------------ the file


@pytest.mark.parametrize(
    ("window", "field", "words"),
    [
        ('"Sun 01:00-25:00"', "update.windows[0].allow[0]", "'25:00' is not a time of day"),
        ('"Sun 01:60-05:00"', "update.windows[0].allow[0]", "'01:60' is not a time of day"),
        ('"Funday 01:00-05:00"', "update.windows[0].allow[0]", "is not a day"),
        ('"Sun 01:00 to 05:00"', "update.windows[0].allow[0]", "is not a window"),
        ('"Sun 05:00-05:00"', "update.windows[0].allow[0]", "a window needs a length"),
    ],
)
def test_absurd_windows_are_refused_at_file_line_and_field(window: str, field: str, words: str) -> None:
    text = f"""apiVersion: ringfence/v1
update:
  id: esxi-7u3
  product: vmware/esxi
  version: 7.0.3
  windows:
    - tier: 1
      allow: [{window}]
"""
    with pytest.raises(InputError) as caught:
        parse_update_text(text, "u.yaml")
    assert str(caught.value).startswith(f"u.yaml:8: {field}: ")
    assert words in str(caught.value)


def test_an_empty_window_list_a_rule_with_nothing_and_a_backwards_freeze_are_refused() -> None:
    text = """apiVersion: ringfence/v1
update:
  id: esxi-7u3
  product: vmware/esxi
  version: 7.0.3
  windows:
    - service: pathology
      allow: []
    - site: city
    - tier: 1
      site: city
      allow: ["daily 01:00-02:00"]
  freezes:
    - name: Christmas
      from: 2026-12-19
      to: 2026-01-03
"""
    with pytest.raises(InputError) as caught:
        parse_update_text(text, "u.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("u.yaml:8: update.windows[0].allow: an empty list of windows")
    assert lines[1].startswith("u.yaml:9: update.windows[1]: a window rule says when")
    assert lines[2].startswith("u.yaml:10: update.windows[2]: a window rule has one scope")
    assert lines[3] == "u.yaml:16: update.freezes[0].to: the freeze ends (2026-01-03) before it starts (2026-12-19)"


def test_day_ranges_and_words() -> None:
    assert parse_window("Fri-Mon 22:00-02:00").days == frozenset({4, 5, 6, 0})
    assert parse_window("weekends 00:00-24:00").days == frozenset({5, 6})
    assert parse_window("Saturday,sun 10:00–12:00").days == frozenset({5, 6})  # an en dash, as people type it
    whole_day = cal("Sat 00:00-24:00")
    assert whole_day.is_open(datetime(2026, 12, 5, 23, 59, tzinfo=LONDON))
    assert not whole_day.is_open(datetime(2026, 12, 6, 0, 0, tzinfo=LONDON))
