"""Durations are bounded: at most a year (365d), wherever one is written — estate, update, scenario, driver option.

A longer value is a typo (an extra digit, days for minutes) that would otherwise overflow the dates and
clocks computed from it; it is refused with a sentence naming the value and the bound, located by file,
line and field like every other bad input.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.core.durations import LONGEST_DURATION, parse_duration
from ringfence.core.errors import InputError
from ringfence.core.estate import parse_estate_text
from ringfence.core.update import parse_scenario_text, parse_update_text
from ringfence.drivers.simulated import SimulatedDriver

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
YEAR = 365 * 86400
BOUND = "is longer than the longest duration ringfence accepts, 365d"


def test_the_bound_is_a_year() -> None:
    assert LONGEST_DURATION == YEAR


@settings(max_examples=300, deadline=None)
@given(
    amount=st.one_of(
        st.integers(0, 10**12),
        # Right at the edges of the bound, in each unit.
        st.sampled_from([364, 365, 366, 8759, 8760, 8761, 525_599, 525_600, 525_601, YEAR - 1, YEAR, YEAR + 1]),
        st.integers(10**12, 10**40),
    ),
    unit=st.sampled_from(sorted(UNITS)),
    zeros=st.integers(0, 3),
)
def test_a_duration_is_read_up_to_a_year_and_refused_beyond(amount: int, unit: str, zeros: int) -> None:
    text = "0" * zeros + f"{amount}{unit}"
    seconds = amount * UNITS[unit]
    if seconds <= YEAR:
        assert parse_duration(text) == seconds
        return
    with pytest.raises(ValueError, match=BOUND) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert message.startswith("'")
    assert len(message) < 120, "an absurd value is shortened, not echoed in full"


def test_thousands_of_digits_are_refused_as_too_long_not_as_a_python_error() -> None:
    with pytest.raises(ValueError, match=BOUND):
        parse_duration("9" * 5000 + "s")


def test_estate_durations_are_bounded_with_file_line_and_field() -> None:
    text = (
        "apiVersion: ringfence/v1\n"
        "estate: e\n"
        "services:\n"
        "  - id: epr\n"
        "    tier: 1\n"
        "    rto: 999999999d\n"
        "    rpo: 365d\n"
        "assets: []\n"
    )
    with pytest.raises(InputError) as caught:
        parse_estate_text(text, "estate.yaml")
    assert [str(p) for p in caught.value.problems] == [
        f"estate.yaml:6: services[0].rto: service 'epr': '999999999d' {BOUND}"
    ]


def test_json_estates_take_the_same_bound() -> None:
    document = {"apiVersion": "ringfence/v1", "estate": "e", "services": [{"id": "epr", "tier": 1, "rpo": "366d"}]}
    with pytest.raises(InputError) as caught:
        parse_estate_text(json.dumps(document), "estate.json")
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.path == ("services", 0, "rpo")
    assert f"'366d' {BOUND}" in problem.message


@pytest.mark.parametrize(
    ("field", "line", "path"),
    [
        ("  bake: 400d", 6, ("update", "bake")),
        ("  timing: {apply: 10m, rollback: 9000h, restore_point: 5m}", 6, ("update", "timing", "rollback")),
    ],
)
def test_update_durations_are_bounded(field: str, line: int, path: tuple[str, ...]) -> None:
    text = "apiVersion: ringfence/v1\nupdate:\n  id: u\n  product: acme/agent\n  version: '2'\n" + field + "\n"
    with pytest.raises(InputError) as caught:
        parse_update_text(text, "u.yaml")
    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.path) == ("u.yaml", line, path)
    assert BOUND in problem.message


def test_a_scenario_fault_after_is_bounded() -> None:
    text = (
        "apiVersion: ringfence/v1\n"
        "scenario: s\n"
        "update: {id: u, product: acme/agent, version: '2'}\n"
        "fault:\n"
        "  affects: kind=vm\n"
        "  after: 99999999m\n"
    )
    with pytest.raises(InputError) as caught:
        parse_scenario_text(text, "s.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.path) == (6, ("fault", "after"))
    assert f"'99999999m' {BOUND}" in problem.message


@pytest.mark.parametrize("option", ["after", "apply", "rollback", "restore_point"])
def test_simulated_driver_options_take_the_same_bound(option: str) -> None:
    with pytest.raises(InputError) as caught:
        SimulatedDriver(**{option: "366d"})
    message = str(caught.value)
    assert f"{option}='366d'" in message
    assert "at most 365d" in message
    SimulatedDriver(**{option: "365d"})  # the bound itself is accepted
