"""Restore order, continuity and RTOs at risk (``ringfence.core.recovery``): data-driven cases worked out by hand.

Each file in tests/cases/recovery/ is one estate, one failure and the plan it must get:

    description: why this case exists, with its steps worked out by hand
    estate: {apiVersion: ringfence/v1, ...}    # an estate document; or
    sample: city-general                       # a bundled example estate
    fail: [REF, ...]                           # or
    incident: advanced-2022                    # a bundled incident of that sample (its `fail` list)
    parallel: 2                                # optional
    step_time: 1h                              # optional, default 1h
    expect:
      steps: [[id, ...], ...]                  # step 1, step 2, …: the items of each, sorted
      continuity: [service, ...]               # optional: the order of the continuity plans
      rto_at_risk: [{service, restored_by}]    # optional
      notes: [text, ...]                       # optional: exactly these notes
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringfence.core.durations import parse_duration
from ringfence.core.estate import Estate, parse_estate_document
from ringfence.core.graph import compile_estate
from ringfence.core.incident import ClockStatus, rto_clocks
from ringfence.core.incident_declaration import declare_incident
from ringfence.core.recovery import EVIDENCE_LABEL, RecoveryPlan, is_rto_at_risk, plan_recovery
from ringfence.core.update import parse_incident_text
from ringfence.files.disk import examples_dir, read_estate, read_text
from ringfence.service.incidents import incident_document, incident_summary

CASES = Path(__file__).parent / "cases" / "recovery"
CASE_FILES = sorted(CASES.glob("*.yaml"))


def incident_path(sample: str, incident: str) -> Path:
    return examples_dir() / sample / "incidents" / f"{incident}.yaml"


def load_case(path: Path) -> tuple[Estate, list[str], dict[str, Any], dict[str, Any]]:
    case = yaml.safe_load(path.read_text())
    if "sample" in case:
        estate = read_estate(examples_dir() / case["sample"] / "estate.yaml")
    else:
        estate = parse_estate_document(case["estate"], source=path.name)
    if "incident" in case:
        path = incident_path(case["sample"], case["incident"])
        refs = list(parse_incident_text(read_text(path), str(path)).fail)
    else:
        refs = case["fail"]
    options = {"parallel": case.get("parallel"), "step_seconds": parse_duration(case.get("step_time", "1h"))}
    return estate, refs, options, case["expect"]


def run_case(path: Path) -> tuple[RecoveryPlan, list[str], dict[str, Any]]:
    estate, refs, options, expect = load_case(path)
    graph = compile_estate(estate)
    return plan_recovery(graph, graph.resolve_failures(refs), **options), refs, expect


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case(path: Path) -> None:
    got, refs, expect = run_case(path)
    assert [list(s.restore) for s in got.steps] == expect["steps"]
    assert [s.step for s in got.steps] == list(range(1, len(expect["steps"]) + 1))
    assert got.failed == tuple(sorted(set(refs)))  # the same failure named twice is one failure
    if "continuity" in expect:
        assert [c.service for c in got.continuity] == expect["continuity"]
    if "rto_at_risk" in expect:
        assert [{"service": r.service, "restored_by": r.restored_by} for r in got.rto_at_risk] == expect["rto_at_risk"]
    if "notes" in expect:
        assert list(got.notes) == expect["notes"]


def test_there_are_cases() -> None:
    assert len(CASE_FILES) >= 15
    # Every case names its reason, so a failure says which rule broke.
    for path in CASE_FILES:
        assert yaml.safe_load(path.read_text())["description"].strip(), path.name


# ------------------------------------------------------------------------------------------ the sample


def test_bundled_incident_advanced_2022_loads() -> None:
    path = incident_path("city-general", "advanced-2022")
    incident = parse_incident_text(read_text(path), str(path))
    assert incident.incident == "advanced-2022"
    assert incident.fail == ("supplier:advanced",)
    assert incident.description is not None
    assert "111" in incident.description


def test_advanced_2022_continuity_plans_are_the_sample_estates() -> None:
    got, _, _ = run_case(CASES / "advanced-2022-on-the-sample-estate.yaml")
    nhs111, community = got.continuity
    assert (nhs111.service, nhs111.tier, nhs111.rto) == ("nhs111", 2, 7200)
    assert nhs111.name == "NHS 111 and out-of-hours triage (Adastra)"
    assert nhs111.plan is not None
    assert nhs111.plan.startswith("Paper triage forms and a manual call log")
    assert nhs111.contacts == ("Urgent care duty manager 01632 960020", "Advanced service desk")
    assert (community.service, community.tier, community.rto) == ("community-records", 3, 86400)
    assert community.plan is not None
    assert community.plan.startswith("Paper caseload lists printed weekly")


# ------------------------------------------------------------------------------------------ the API


def small_graph() -> Any:
    return compile_estate(
        parse_estate_document(
            {
                "apiVersion": "ringfence/v1",
                "estate": "small",
                "services": [{"id": "web", "tier": 1, "rto": "1h", "requires": ["app"]}],
                "assets": [{"id": "app", "kind": "vm"}],
            }
        )
    )


def test_no_failures_means_nothing_to_restore() -> None:
    got = plan_recovery(small_graph(), [])
    assert (got.failed, got.steps, got.continuity, got.rto_at_risk, got.notes) == ((), (), (), (), ())


@pytest.mark.parametrize("parallel", [0, -1])
def test_parallel_below_one_is_refused(parallel: int) -> None:
    graph = small_graph()
    with pytest.raises(ValueError, match="parallel"):
        plan_recovery(graph, graph.resolve_failures(["app"]), parallel=parallel)


def test_plan_records_its_options_and_maps_items_to_steps() -> None:
    graph = small_graph()
    got = plan_recovery(graph, graph.resolve_failures(["app"]), parallel=3, step_seconds=600)
    assert (got.parallel, got.step_seconds) == (3, 600)
    assert got.step_of() == {"app": 1, "web": 2}


def test_evidence_label_names_the_dspt_assertion() -> None:
    assert "DSPT B5.a" in EVIDENCE_LABEL
    assert "restore order" in EVIDENCE_LABEL


# ------------------------------------------------------------------------------------------ RTO at risk

T0 = datetime(2022, 8, 4, 7, 0, tzinfo=UTC)
CHAIN = {
    "apiVersion": "ringfence/v1",
    "estate": "chain",
    "services": [{"id": "epr", "tier": 1, "rto": "2h", "requires": ["app"]}],
    "assets": [{"id": "db", "kind": "vm"}, {"id": "app", "kind": "vm", "requires": ["db"]}],
}
"""db ← app ← epr: failing db puts epr at step 3; at 40 min a step that is exactly its RTO of 2h."""


@pytest.mark.parametrize(
    ("remaining", "estimated", "at_risk"),
    [(3600, 3600, False), (3599, 3600, True), (3601, 3600, False), (0, 1, True), (0, 0, False), (-5, 1, True)],
)
def test_at_risk_only_with_less_time_left_than_needed(remaining: int, estimated: int, at_risk: bool) -> None:
    assert is_rto_at_risk(remaining, estimated) is at_risk


@pytest.mark.parametrize(("step_seconds", "at_risk"), [(2400, False), (2401, True), (2399, False)])
def test_recover_declare_and_list_agree_at_the_boundary(step_seconds: int, at_risk: bool) -> None:
    """`ringfence recover`, `incident declare` (the incident's document at declaration) and `incident list`
    (the summary) answer "at risk" by one rule: with exactly enough time (3 steps × 40 min = the 2h RTO), no."""
    graph = compile_estate(parse_estate_document(CHAIN, source="chain.yaml"))
    failures = graph.resolve_failures(["asset:db"])
    plan = plan_recovery(graph, failures, step_seconds=step_seconds)
    assert plan.step_of()["epr"] == 3
    assert [r.service for r in plan.rto_at_risk] == (["epr"] if at_risk else [])

    incident = declare_incident(
        graph, failures, incident_id="inc-000001", at=T0, actor="olga", step_seconds=step_seconds
    )
    (clock,) = rto_clocks(incident, T0)
    assert (clock.remaining, clock.estimated) == (7200, 3 * step_seconds)
    assert clock.status is (ClockStatus.AT_RISK if at_risk else ClockStatus.ON_TRACK)
    declared = incident_document(incident, T0)
    assert [c.status for c in declared.clocks] == [clock.status.value]
    assert incident_summary(incident, T0).at_risk == (["epr"] if at_risk else [])
    # A second later, with nothing marked, the answer is the same: the estimate is anchored at the declaration,
    # not recomputed from the clock while the deadline stays put.
    later = T0 + timedelta(seconds=1)
    expected_later = ["epr"] if at_risk else []
    assert incident_summary(incident, later).at_risk == expected_later
    assert [c.service for c in incident_document(incident, later).clocks if c.status == "at_risk"] == expected_later
