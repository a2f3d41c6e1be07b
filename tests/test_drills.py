"""Drills on the bundled scenarios: ringfence contains each incident; all-at-once shows what really happened."""

from __future__ import annotations

from collections import Counter

import pytest

from ringfence.drills import DrillReport, drill_document, run_drill
from ringfence.files import read_estate, read_with, sample_estate_path
from ringfence.graph import EstateGraph, compile_estate
from ringfence.rollout.strategy import plan_strategy
from ringfence.update import parse_scenario_text

SCENARIOS = sorted((sample_estate_path().parent / "scenarios").glob("*.yaml"))


@pytest.fixture(scope="module")
def graph() -> EstateGraph:
    return compile_estate(read_estate(sample_estate_path()))


@pytest.fixture(scope="module")
def reports(graph: EstateGraph) -> dict[str, DrillReport]:
    return {path.stem: run_drill(graph, read_with(path, parse_scenario_text)) for path in SCENARIOS}


def test_the_three_incidents_are_bundled() -> None:
    assert {p.stem for p in SCENARIOS} >= {"crowdstrike-2024", "vsphere-7u3", "sandwell-2021"}


@pytest.mark.parametrize("scenario", [p.stem for p in SCENARIOS])
def test_ringfence_contains_the_incident(scenario: str, graph: EstateGraph, reports: dict[str, DrillReport]) -> None:
    report = reports[scenario]
    ringfence = next(r for r in report.results if r.strategy == "ringfence")
    strata = plan_strategy("ringfence", graph, report.scenario.update).strata
    per_stratum = Counter(strata[a] for a in ringfence.failed)
    assert ringfence.failed, "the drill's fault must break something, or it proves nothing"
    assert max(per_stratum.values()) <= 1, per_stratum
    assert [s for s in ringfence.services_down if s.tier <= 2] == []
    assert ringfence.data_lost == ()
    assert ringfence.halted_at_ring is not None
    assert ringfence.halt_reason is not None


@pytest.mark.parametrize("scenario", [p.stem for p in SCENARIOS])
def test_all_at_once_exposes_every_target(scenario: str, reports: dict[str, DrillReport]) -> None:
    report = reports[scenario]
    everything = next(r for r in report.results if r.strategy == "all-at-once")
    assert len(everything.exposed) == report.targets
    assert everything.halted_at_ring is None
    ringfence = next(r for r in report.results if r.strategy == "ringfence")
    assert len(everything.failed) > len(ringfence.failed)


def test_the_real_outcomes_show(reports: dict[str, DrillReport]) -> None:
    crowdstrike = {r.strategy: r for r in reports["crowdstrike-2024"].results}
    assert {s.tier for s in crowdstrike["all-at-once"].services_down} >= {1, 2}
    vsphere = {r.strategy: r for r in reports["vsphere-7u3"].results}
    assert {"epr", "eprescribing"} <= {s.id for s in vsphere["all-at-once"].services_down}
    sandwell = {r.strategy: r for r in reports["sandwell-2021"].results}
    assert sandwell["all-at-once"].data_lost == sandwell["all-at-once"].failed != ()
    assert sandwell["batches"].data_lost != ()


def test_a_drill_is_deterministic(graph: EstateGraph, reports: dict[str, DrillReport]) -> None:
    path = next(p for p in SCENARIOS if p.stem == "vsphere-7u3")
    again = run_drill(graph, read_with(path, parse_scenario_text))
    assert drill_document(again) == drill_document(reports["vsphere-7u3"])


def test_the_json_document_holds_the_contract_keys(reports: dict[str, DrillReport]) -> None:
    document = drill_document(reports["crowdstrike-2024"])
    assert document["scenario"] == "crowdstrike-2024"
    assert document["targets"] == reports["crowdstrike-2024"].targets
    assert [r["strategy"] for r in document["results"]] == ["ringfence", "all-at-once", "batches"]
    for result in document["results"]:
        assert {
            "strategy",
            "exposed",
            "failed",
            "services_down",
            "halted_at_ring",
            "detected_after",
            "data_lost",
        } <= set(result)
        assert result["exposed"] == len(result["exposed_assets"])
        assert result["services_down"] == sorted(result["services_down"], key=lambda s: s["id"])


def test_batches_go_in_inventory_order_one_then_ten_percent(graph: EstateGraph) -> None:
    path = next(p for p in SCENARIOS if p.stem == "crowdstrike-2024")
    update = read_with(path, parse_scenario_text).update
    batches = plan_strategy("batches", graph, update)
    order = [a.id for a in graph.estate.assets if a.id in {x for ring in batches.rings for x in ring}]
    assert [x for ring in batches.rings for x in ring] == order
    assert len(batches.rings[0]) == 1
    assert len(batches.rings[1]) == -(-len(order) // 10)


def test_timeline_moves_forward(reports: dict[str, DrillReport]) -> None:
    for report in reports.values():
        for result in report.results:
            times = [p.at for p in result.timeline]
            assert times == sorted(times)
            assert result.timeline[-1].failed == len(result.failed)
