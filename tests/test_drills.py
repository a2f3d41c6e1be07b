"""Drills on the bundled scenarios: ringfence contains each incident; all-at-once shows what really happened.

A drill whose fault can break none of the update's targets is refused (file, line, the targets' real values),
in the domain, on the CLI and over the API."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from live_server import make_tokens, running_server
from ringfence.core.documents import drill_document
from ringfence.core.drills import DrillReport, run_drill, run_drill_text
from ringfence.core.errors import InputError
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.selectors import parse_selector, scalar_value
from ringfence.core.update import parse_scenario_text
from ringfence.files.disk import read_estate, read_text, read_with, sample_estate_path

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
    document = drill_document(reports["crowdstrike-2024"]).model_dump(mode="json")
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


# ------------------------------------------------------------------------------ a fault that reaches no target

VSPHERE = next(p for p in SCENARIOS if p.stem == "vsphere-7u3")
RINGFENCE = shutil.which("ringfence", path=os.path.dirname(sys.executable))


def with_fault(path: Path, affects: str) -> str:
    """The bundled scenario's text with another ``fault.affects`` selector, all else (and every line) kept."""
    text = path.read_text(encoding="utf-8")
    original = read_with(path, parse_scenario_text).fault.affects
    assert text.count(f'affects: "{original}"') == 1
    return text.replace(f'affects: "{original}"', f'affects: "{affects}"')


def affects_line(text: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if line.strip().startswith("affects:"))


def reference_values(
    graph: EstateGraph, targets: str, key: str, products: frozenset[str] | set[str] = frozenset()
) -> Counter[str]:
    """What the targets hold for ``key``, asset by asset with the selectors' reference semantics."""
    chosen = [a for a in graph.estate.assets if parse_selector(targets).matches(a)]
    if key == "software":
        found: Counter[str] = Counter()
        for a in chosen:
            found.update([f"{s.product}@{s.version}" for s in a.software if s.product in products] or ["(none)"])
        return found
    return Counter(scalar_value(a, key) or "(none)" for a in chosen)


def test_a_fault_matching_no_asset_is_refused_with_the_targets_values(graph: EstateGraph) -> None:
    text = with_fault(VSPHERE, "attrs.nic_driver=i40en-1.11")  # a typo for i40en-1.10
    with pytest.raises(InputError) as refused:
        run_drill_text(graph, text, "vsphere-typo.yaml")
    (problem,) = refused.value.problems
    assert (problem.source, problem.line, problem.field) == ("vsphere-typo.yaml", affects_line(text), "fault.affects")
    targets = read_with(VSPHERE, parse_scenario_text).update.target_selector
    n_targets = sum(1 for a in graph.estate.assets if parse_selector(targets).matches(a))
    assert n_targets > 0
    assert problem.message.startswith(
        f"'attrs.nic_driver=i40en-1.11' matches none of the {n_targets} targets of update 'esxi-7u3'"
    )
    assert "nor any other asset of estate 'city-general'" in problem.message
    values = reference_values(graph, targets, "attrs.nic_driver")
    assert len(values) > 1
    for value, n in values.items():
        assert f"{value} ({n})" in problem.message
    assert "i40en-1.10" in values  # the value the author meant is there to be seen


def test_a_fault_matching_only_assets_outside_the_targets_says_how_many(graph: EstateGraph) -> None:
    text = with_fault(VSPHERE, "kind=vm,site=city")
    with pytest.raises(InputError) as refused:
        run_drill_text(graph, text, "vsphere-vms.yaml")
    (problem,) = refused.value.problems
    vms = sum(1 for a in graph.estate.assets if parse_selector("kind=vm,site=city").matches(a))
    assert vms > 0
    assert f"'kind=vm,site=city' matches {vms} assets of estate 'city-general', none of them among the" in (
        problem.message
    )
    targets = read_with(VSPHERE, parse_scenario_text).update.target_selector
    for key in ("kind", "site"):
        listed = ", ".join(
            f"{v} ({n})"
            for v, n in sorted(reference_values(graph, targets, key).items(), key=lambda item: (-item[1], item[0]))
        )
        assert f"the targets' {key} values are: {listed}" in problem.message


def test_a_software_fault_lists_the_versions_the_targets_run(graph: EstateGraph) -> None:
    text = with_fault(VSPHERE, "software=vmware/esxi@6.7.0")
    with pytest.raises(InputError) as refused:
        run_drill_text(graph, text, "vsphere-version.yaml")
    message = refused.value.problems[0].message
    targets = read_with(VSPHERE, parse_scenario_text).update.target_selector
    for value, n in reference_values(graph, targets, "software", {"vmware/esxi"}).items():
        assert f"{value} ({n})" in message


def test_the_cli_refuses_it_with_exit_2_naming_file_line_and_selector(tmp_path: Path) -> None:
    assert RINGFENCE is not None
    scenario = tmp_path / "vsphere-typo.yaml"
    text = with_fault(VSPHERE, "attrs.nic_driver=i40en-1.11")
    scenario.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [RINGFENCE, "drill", str(sample_estate_path()), str(scenario)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"{scenario}:{affects_line(text)}: fault.affects: 'attrs.nic_driver=i40en-1.11' matches none" in (
        " ".join(done.stderr.split())
    )
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_the_api_refuses_it_with_422_at_the_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ringfence.db'}"
    with running_server(url, controller=False) as server:
        tokens = make_tokens(url)
        text = with_fault(VSPHERE, "attrs.nic_driver=i40en-1.11")
        with httpx.Client(base_url=server.url, timeout=60) as client:
            operator = tokens.headers(tokens.operator)
            stored = client.post("/v1/estates", json={"content": read_text(sample_estate_path())}, headers=operator)
            assert stored.status_code in (200, 201), stored.text
            estate = stored.json()["version"]["name"]
            refused = client.post("/v1/drills", json={"estate": estate, "scenario": text}, headers=operator)
            assert refused.status_code == 422, refused.text
            (error,) = refused.json()["errors"]
            assert (error["field"], error["line"], error["source"]) == ("fault.affects", affects_line(text), "scenario")
            assert "'attrs.nic_driver=i40en-1.11' matches none of the" in error["message"]
            assert "i40en-1.10 (" in error["message"]
            # The bundled scenario itself still drills.
            fine = client.post("/v1/drills", json={"estate": estate, "bundled": "vsphere-7u3"}, headers=operator)
            assert fine.status_code == 200, fine.text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_refused_exactly_when_no_target_can_fail(graph: EstateGraph, data: st.DataObject) -> None:
    """Adversarial selectors — real values, near-miss values, negations, several terms — against the reference
    semantics: refused if and only if no target matches the fault, and then with the targets' true counts."""
    estate = graph.estate
    keys = ["kind", "site", "attrs.os", "attrs.model", "attrs.nic_driver", "attrs.cluster", "software"]

    def values_of(key: str) -> list[str]:
        if key == "software":
            return sorted(
                {f"{s.product}@{s.version}" for a in estate.assets for s in a.software}
                | {s.product for a in estate.assets for s in a.software}
            )
        return sorted({v for a in estate.assets if (v := scalar_value(a, key)) is not None})

    terms = []
    for _ in range(data.draw(st.integers(1, 2), label="terms")):
        key = data.draw(st.sampled_from(keys), label="key")
        real = values_of(key)
        value = data.draw(
            st.one_of(st.sampled_from(real), st.sampled_from(real).map(lambda v: v + "x"))
            if key != "software"
            else st.one_of(st.sampled_from(real), st.just("acme/nothing@1")),
            label="value",
        )
        negated = data.draw(st.booleans(), label="negated")
        terms.append(f"{key}{'!=' if negated else '='}{value}")
    affects = ",".join(terms)
    product = data.draw(st.sampled_from(["vmware/esxi", "crowdstrike/falcon", "microsoft/windows-server"]))
    text = (
        "apiVersion: ringfence/v1\nscenario: probe\n"
        f"update: {{id: probe, product: {product}, version: '9'}}\n"
        f'fault: {{affects: "{affects}"}}\n'
    )
    fault = parse_selector(affects)
    targets = [a for a in estate.assets if parse_selector(f"software={product}").matches(a)]
    reached = [a for a in targets if fault.matches(a)]
    if reached:
        report = run_drill_text(graph, text, "probe.yaml", strategies=())
        assert report.scenario.fault.affects == affects
        return
    with pytest.raises(InputError) as refused:
        run_drill_text(graph, text, "probe.yaml", strategies=())
    (problem,) = refused.value.problems
    assert (problem.field, problem.line, problem.source) == ("fault.affects", 4, "probe.yaml")
    outside = sum(1 for a in estate.assets if fault.matches(a))
    if outside:
        assert f"matches {outside:,} asset{'s' if outside != 1 else ''} of estate" in problem.message
    else:
        assert f"matches none of the {len(targets):,} targets" in problem.message
    products = {v.partition("@")[0] for t in fault.terms if t.key == "software" for v in t.values}
    for key in dict.fromkeys(t.key for t in fault.terms):
        counts = reference_values(graph, f"software={product}", key, products)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        for value, n in ranked[:8]:
            assert f"{value} ({n})" in problem.message
        if len(ranked) > 8:
            assert f"and {len(ranked) - 8} more value" in problem.message
