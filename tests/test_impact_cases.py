"""Data-driven impact cases: an estate in, hand-worked answers out (tests/cases/impact/*.yaml).

Each case holds an estate (as the text of an estate file, so it goes through the real loader), a list of
failures with the services and assets expected down (or the InputError expected), the impact tier of
every asset, the single points of failure in order (optionally per ``--tier``), and the services down
when each supplier fails. Both the engine and the brute-force oracle must give the written answers, so a
wrong answer in a case file is caught too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import oracle
from ringfence.core.errors import InputError
from ringfence.core.estate import Estate, parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.impact import (
    compute_blast_radius,
    find_single_points_of_failure,
    impact_tiers,
    supplier_concentration,
)

CASES_DIR = Path(__file__).parent / "cases" / "impact"
CASE_PATHS = sorted(CASES_DIR.glob("*.yaml"))
CASE_KEYS = {"description", "estate", "failures", "impact_tiers", "spofs", "spofs_by_max_tier", "concentration"}
REQUIRED_KEYS = CASE_KEYS - {"spofs_by_max_tier"}


@dataclass(frozen=True)
class Case:
    name: str
    estate: Estate
    graph: EstateGraph
    expected: dict[str, Any]


def load_case(path: Path) -> Case:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: a case is a mapping"
    unknown = set(data) - CASE_KEYS
    assert not unknown, f"{path.name}: unknown keys {sorted(unknown)}"
    missing = REQUIRED_KEYS - set(data)
    assert not missing, f"{path.name}: missing keys {sorted(missing)}"
    estate = parse_estate_text(data["estate"], source=path.name)
    return Case(path.stem, estate, compile_estate(estate), data)


def cases_with(key: str) -> list[Any]:
    return [pytest.param(path, id=path.stem) for path in CASE_PATHS if key in yaml.safe_load(path.read_text())]


def spof_rows(spofs: list[Any]) -> list[tuple[str, list[str], int]]:
    return [(s["ref"], list(s["services"]), s["worst_tier"]) for s in spofs]


def test_the_cases_are_there() -> None:
    assert len(CASE_PATHS) >= 9


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CASE_PATHS])
def test_failures_take_down_what_the_case_says(path: Path) -> None:
    case = load_case(path)
    for check in case.expected["failures"]:
        refs = list(check["fail"])
        if "error" in check:
            with pytest.raises(InputError, match=re.escape(check["error"])):
                compute_blast_radius(case.graph, refs)
            with pytest.raises(InputError):
                oracle.down_after(case.estate, refs)
            continue
        got = compute_blast_radius(case.graph, refs)
        assert [s.id for s in got.services_down] == check["services_down"], refs
        assert list(got.assets_down) == check["assets_down"], refs
        down = oracle.down_after(case.estate, refs)
        assert oracle.services_in(case.estate, down) == check["services_down"], f"oracle: {refs}"
        assert oracle.assets_in(case.estate, down) == check["assets_down"], f"oracle: {refs}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CASE_PATHS])
def test_impact_tiers_are_what_the_case_says(path: Path) -> None:
    case = load_case(path)
    expected = case.expected["impact_tiers"]
    assert sorted(expected) == sorted(a.id for a in case.estate.assets), "a case gives every asset's tier"
    tiers = impact_tiers(case.graph).tolist()
    assert {a.id: t for a, t in zip(case.estate.assets, tiers, strict=True)} == expected
    assert {a.id: oracle.impact_tier(case.estate, a.id) for a in case.estate.assets} == expected


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CASE_PATHS])
def test_single_points_of_failure_are_what_the_case_says(path: Path) -> None:
    case = load_case(path)
    expected = spof_rows(case.expected["spofs"])
    got = [(s.ref, [x.id for x in s.services], s.worst_tier) for s in find_single_points_of_failure(case.graph)]
    assert got == expected
    assert [(s.ref, list(s.services), s.worst_tier) for s in oracle.single_points_of_failure(case.estate)] == expected


@pytest.mark.parametrize("path", cases_with("spofs_by_max_tier"))
def test_single_points_of_failure_by_max_tier_are_what_the_case_says(path: Path) -> None:
    case = load_case(path)
    for max_tier, spofs in case.expected["spofs_by_max_tier"].items():
        expected = spof_rows(spofs)
        got = [
            (s.ref, [x.id for x in s.services], s.worst_tier)
            for s in find_single_points_of_failure(case.graph, max_tier=max_tier)
        ]
        assert got == expected, f"max_tier={max_tier}"
        from_oracle = oracle.single_points_of_failure(case.estate, max_tier)
        assert [(s.ref, list(s.services), s.worst_tier) for s in from_oracle] == expected, f"oracle {max_tier}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CASE_PATHS])
def test_supplier_concentration_is_what_the_case_says(path: Path) -> None:
    case = load_case(path)
    expected = case.expected["concentration"]
    got = {c.id: [s.id for s in c.services_down] for c in supplier_concentration(case.graph)}
    assert list(got) == sorted(expected), "every supplier, sorted by id"
    assert got == expected
    assert oracle.supplier_concentration(case.estate) == expected
