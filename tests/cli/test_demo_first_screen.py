"""``ringfence demo`` leads with the answer: its first screen carries facts computed from the sample estate.

The demo runs for real (a separate process, no terminal, so 80 columns); each fact on the first screen is
cross-checked against the library function that computes it, so a change to the sample or to the analysis
that the first screen does not follow fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ringfence.core.drills import run_drill_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.impact import compute_blast_radius, find_single_points_of_failure, supplier_concentration
from ringfence.core.update import parse_incident_text
from ringfence.core.words import count
from ringfence.files.disk import read_estate, sample_estate_path

from .conftest import run_cli

FIRST_SCREEN = 25
"""Lines a terminal shows without scrolling: the answer must be over by then."""


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    report = tmp_path_factory.mktemp("demo") / "report.html"
    done = run_cli("demo", "--report", report)
    assert done.returncode == 0, done.stderr
    assert report.is_file()
    return done.stdout.splitlines()


@pytest.fixture(scope="module")
def graph() -> EstateGraph:
    return compile_estate(read_estate(sample_estate_path()))


def _first_screen(lines: list[str]) -> str:
    """The lines before the detail's first section, as one space-separated sentence (wrapping undone)."""
    end = next(i for i, line in enumerate(lines) if "1. Check the sample estate" in line)
    assert end <= FIRST_SCREEN, f"the answer takes {end} lines before the detail starts"
    return re.sub(r"\s+", " ", " ".join(lines[:end]))


def test_first_screen_fits_80_columns_and_comes_before_the_tables(demo_output: list[str]) -> None:
    answer = _first_screen(demo_output)
    assert "the answer first" in demo_output[0]
    assert all(len(line) <= 80 for line in demo_output[:FIRST_SCREEN])
    # The tier-count table of `check` is detail: it must not open the demo any more.
    assert "T1 life-critical" not in answer


def test_first_screen_names_the_worst_single_points_of_failure(demo_output: list[str], graph: EstateGraph) -> None:
    answer = _first_screen(demo_output)
    spofs = find_single_points_of_failure(graph, max_tier=2)
    assert f"Worst single points of failure ({len(spofs)} in all" in answer
    positions = []
    for spof in spofs[:3]:
        fact = f"{spof.ref} {count(len(spof.services), 'service')} down"
        assert fact in answer
        positions.append(answer.index(fact))
    assert positions == sorted(positions), "the worst comes first"
    assert spofs[3].ref + " " not in answer


def test_first_screen_names_the_suppliers_that_take_most_tier_1_care_down(
    demo_output: list[str], graph: EstateGraph
) -> None:
    answer = _first_screen(demo_output)
    tier_1 = {s.id: sum(1 for d in s.services_down if d.tier == 1) for s in supplier_concentration(graph)}
    most = max(tier_1.values())
    worst = sorted(s for s, n in tier_1.items() if n == most)
    total = int((graph.service_tier == 1).sum())
    line = next(line for line in demo_output if worst[0] in line and "tier-1 services down" in line)
    for supplier in worst:
        assert supplier in line
    assert (f"all {total}" if most == total else f"{most} of {total}") in line
    assert min(tier_1, key=lambda s: (tier_1[s], s)) not in answer.split("Known incidents")[0].split("Suppliers")[1]


def test_first_screen_replays_each_incident_with_its_computed_cost(demo_output: list[str], graph: EstateGraph) -> None:
    answer = _first_screen(demo_output)
    folder = sample_estate_path().parent
    for scenario in sorted((folder / "scenarios").glob("*.yaml")):
        drill = run_drill_text(graph, scenario.read_text(), str(scenario))
        results = {r.strategy: r for r in drill.results}
        everyone = results["all-at-once"]
        services = count(len(everyone.services_down), "service") if everyone.services_down else "no service"
        fact = f"all at once loses {count(len(everyone.failed), 'asset')}, {services}"
        start = answer.index(drill.scenario.scenario)
        assert fact in answer[start:], f"{drill.scenario.scenario}: expected {fact!r}"
        assert f"halted at ring {results['ringfence'].halted_at_ring}" in answer[start:]
    incident = parse_incident_text((folder / "incidents" / "advanced-2022.yaml").read_text(), "advanced-2022")
    radius = compute_blast_radius(graph, incident.fail)
    assert f"{incident.fail[0]} lost: {count(len(radius.services_down), 'service')}" in answer


def test_crowdstrike_headline_counts(demo_output: list[str], graph: EstateGraph) -> None:
    """The issue's own example: CrowdStrike 2024 on this estate costs a few canaries, not every Windows machine."""
    answer = _first_screen(demo_output)
    scenario = Path(sample_estate_path().parent / "scenarios" / "crowdstrike-2024.yaml")
    drill = run_drill_text(graph, scenario.read_text(), str(scenario))
    ours = next(r for r in drill.results if r.strategy == "ringfence")
    assert not ours.services_down
    kinds = {a.id: str(a.kind) for a in graph.estate.assets}
    endpoints = sum(1 for a in ours.failed if kinds[a] == "endpoint")
    assert re.search(rf"crowdstrike-2024 rings lose {endpoints:,} endpoints and \d+ vms, no service", answer)


def test_first_screen_names_the_evidence_the_policy_finds_lacking(demo_output: list[str], graph: EstateGraph) -> None:
    """The assurance headline: the worst breaches of the bundled policy that are about evidence (the structural
    ones are the lines above it), as `assess` finds them on the sample's day."""
    from ringfence.cli.demo import HEADLINE_FINDINGS, SAMPLE_AS_OF, STRUCTURAL_POLICIES
    from ringfence.core.assurance import assess, parse_assurance_text, parse_policy_text
    from ringfence.files.disk import examples_dir

    answer = _first_screen(demo_output)
    folder = sample_estate_path().parent
    assurance = parse_assurance_text((folder / "assurance.yaml").read_text(), graph.estate, "assurance.yaml")
    policy = parse_policy_text((examples_dir() / "policy-acute.yaml").read_text(), "policy-acute.yaml")
    report = assess(graph.estate, graph, assurance, policy, SAMPLE_AS_OF)
    assert f"({count(len(report.breaches), 'policy breach', 'policy breaches')}: ringfence assess)" in answer
    shown = [f for f in report.breaches if f.policy not in STRUCTURAL_POLICIES][:HEADLINE_FINDINGS]
    assert len(shown) == HEADLINE_FINDINGS
    start = answer.index("Evidence lacking")
    for finding in shown:
        assert finding.subject in answer[start:]
        assert finding.problem.replace("-", " ") in answer[start:]
