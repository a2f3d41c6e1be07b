"""``ringfence demo``: the tour a newcomer sees first, on the bundled sample estate.

The first screen is the answer — the worst single points of failure, the suppliers whose loss takes the
most critical care down, what the known incidents would have cost on this estate, and the evidence its
resilience policy wants and does not find — in a few lines
that fit an 80-column terminal. The numbered detail (the tables each command prints) follows.
Every number is computed from the sample: change the estate and the first screen changes with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ringfence.cli.main import app
from ringfence.cli.output import out
from ringfence.core.words import and_list, count

if TYPE_CHECKING:
    from ringfence.core.assurance import AssessmentReport, Finding
    from ringfence.core.drills import DrillReport
    from ringfence.core.estate import Estate
    from ringfence.core.graph import EstateGraph
    from ringfence.core.impact import BlastRadius, SinglePointOfFailure, SupplierConcentration
    from ringfence.core.update import IncidentScenario

HEADLINE_SPOFS = 3
"""Single points of failure named on the first screen; section 2 lists the rest."""
HEADLINE_FINDINGS = 3
"""Breaches of the assurance policy named on the first screen; `ringfence assess` lists them all."""
STRUCTURAL_POLICIES = frozenset({"single-points-of-failure", "max-supplier-share"})
"""Policies whose breaches the first screen already shows as single points of failure and supplier shares."""
SAMPLE_AS_OF = date(2026, 12, 1)
"""The day the sample's assurance file describes: the demo reads the same on any day it is run."""

HEADLINE_SUPPLIER_GROUPS = 2
"""Supplier lines on the first screen: those that take the most top-tier services down, then the runners-up."""


@app.command(rich_help_panel="Start here")
def demo(
    report: Annotated[Path, typer.Option(help="Where to write the drill report (HTML).")] = Path(
        "ringfence-demo-report.html"
    ),
) -> None:
    """Tour the bundled sample estate: its biggest risks and the known incidents replayed, then the detail."""
    from ringfence.cli import analysis
    from ringfence.cli.drills import print_drill, run_scenario, write_report
    from ringfence.cli.incidents import demo_incident
    from ringfence.cli.paths import check_output_file
    from ringfence.core.impact import compute_blast_radius, find_single_points_of_failure, supplier_concentration
    from ringfence.core.update import parse_incident_text
    from ringfence.files.disk import read_with, sample_estate_path

    # A report path that cannot be written is refused before the tour, not after it.
    check_output_file(report, "--report", example="demo.html")
    estate_path = sample_estate_path()
    incident_file = estate_path.parent / "incidents" / "advanced-2022.yaml"
    estate, graph = analysis.load(estate_path, quiet=True)
    # The answer needs the drills and the incident played first; the detail reuses the same results.
    drills = [
        run_scenario(graph, scenario, ("ringfence", "all-at-once", "batches"), quiet=True)
        for scenario in sorted((estate_path.parent / "scenarios").glob("*.yaml"))
    ]
    incident = read_with(incident_file, parse_incident_text)
    assessment = _assess_sample(estate, graph, estate_path)
    print_answer(
        estate,
        graph,
        spofs=find_single_points_of_failure(graph, max_tier=2),
        suppliers=supplier_concentration(graph),
        drills=drills,
        incident=incident,
        incident_radius=compute_blast_radius(graph, incident.fail),
        assessment=assessment,
        report=report,
    )

    out.print(Rule(f"1. Check the sample estate ({estate_path.parent.name})"))
    analysis.check(estate_path, as_json=False, strict=False)
    out.print(Rule("2. Top single points of failure (tier 1 and 2 services)"))
    analysis.spof(estate_path, tier=2, as_json=False, limit=10)
    out.print(Rule("3. Supplier concentration"))
    analysis.concentration(estate_path, as_json=False)
    for index, result in enumerate(drills, start=4):
        out.print(Rule(f"{index}. Drill: {result.scenario.scenario}"))
        print_drill(result)
    if drills:
        write_report(drills, report, estate_name=estate.name)
    out.print(Rule(f"{4 + len(drills)}. Incident: {incident.incident} — what to enact, what to restore first"))
    demo_incident(estate_path, incident_file)


def print_answer(
    estate: Estate,
    graph: EstateGraph,
    *,
    spofs: Sequence[SinglePointOfFailure],
    suppliers: Sequence[SupplierConcentration],
    drills: Sequence[DrillReport],
    incident: IncidentScenario,
    incident_radius: BlastRadius,
    assessment: AssessmentReport,
    report: Path,
) -> None:
    """The first screen: a few lines, each a computed fact, that say where the estate is fragile."""
    top_tier = min((s.tier for s in estate.services), default=1)
    top_total = sum(1 for s in estate.services if s.tier == top_tier)
    out.print(Rule(f"ringfence demo: {estate.name}, the answer first"))
    out.print(
        f"{count(len(estate.assets), 'asset')}, {count(len(estate.services), 'service')} "
        f"({top_total} of them tier {top_tier}) and {count(estate.declared_suppliers, 'supplier')}."
    )
    out.print()
    out.print(Text(f"Worst single points of failure ({len(spofs)} in all, section 2):", style="bold"))
    out.print(_grid([(s.ref, _spof_effect(s, top_tier, top_total)) for s in spofs[:HEADLINE_SPOFS]]))
    out.print(Text(f"Suppliers whose loss takes most tier-{top_tier} care down (section 3):", style="bold"))
    out.print(_grid(_supplier_rows(suppliers, top_tier, top_total)))
    out.print(Text("Known incidents replayed on this estate (sections 4 and on):", style="bold"))
    kinds = {a.id: str(a.kind) for a in estate.assets}
    rows = [(d.scenario.scenario, _drill_sentence(d, kinds)) for d in drills]
    rows.append((incident.incident, _incident_sentence(incident, incident_radius)))
    out.print(_grid(rows))
    # The structural breaches (single points of failure, supplier shares) are the lines above; the evidence's
    # are new here: what the assurance file cannot show, worst first.
    evidence = [f for f in assessment.breaches if f.policy not in STRUCTURAL_POLICIES]
    out.print(
        Text(
            f"Evidence lacking on {assessment.as_of:%-d %b %Y} "
            f"({count(len(assessment.breaches), 'policy breach', 'policy breaches')}: ringfence assess):",
            style="bold",
        )
    )
    out.print(_grid([(f.subject, _finding_phrase(f)) for f in evidence[:HEADLINE_FINDINGS]]))
    out.print(Text(f"The detail follows; the drill report is written to {report}.", style="dim"))


def _assess_sample(estate: Estate, graph: EstateGraph, estate_path: Path) -> AssessmentReport:
    """The sample against the bundled acute-trust policy, as of the day its assurance file was written."""
    from ringfence.cli.assurance import ASSURANCE_FILE
    from ringfence.core.assurance import DEFAULT_POLICY_FILE, assess, parse_assurance_text, parse_policy_text
    from ringfence.files.disk import examples_dir, read_text

    policy_path = examples_dir() / DEFAULT_POLICY_FILE
    policy = parse_policy_text(read_text(policy_path), str(policy_path))
    assurance_path = estate_path.parent / ASSURANCE_FILE
    assurance = parse_assurance_text(read_text(assurance_path), estate, str(assurance_path))
    return assess(estate, graph, assurance, policy, SAMPLE_AS_OF)


def _finding_phrase(finding: Finding) -> str:
    """A breach in a few words: what evidence, what is wrong with it, and the day that matters."""
    what = f"{finding.policy} {finding.problem}".replace("-", " ")
    return f"{what} (since {finding.day:%-d %b %Y})" if finding.day is not None else what


def _grid(rows: Sequence[tuple[str, str]]) -> Table:
    """Two columns without borders: the name, and a sentence that wraps under itself, not under the name."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for name, sentence in rows:
        grid.add_row(Text(f"  {name}", style="bold"), sentence)
    return grid


def _spof_effect(spof: SinglePointOfFailure, top_tier: int, top_total: int) -> str:
    top = sum(1 for s in spof.services if s.tier == top_tier)
    share = f"all {top_total}" if top == top_total else f"{top} of {top_total}"
    if top == 0:
        return f"{count(len(spof.services), 'service')} down, worst tier {spof.worst_tier}"
    return f"{count(len(spof.services), 'service')} down, {share} tier-{top_tier}"


def _supplier_rows(suppliers: Sequence[SupplierConcentration], top_tier: int, top_total: int) -> list[tuple[str, str]]:
    """Suppliers grouped by how many top-tier services their loss takes down, most first, none left out of a group."""
    by_count: dict[int, list[str]] = {}
    for supplier in suppliers:
        taken = sum(1 for s in supplier.services_down if s.tier == top_tier)
        if taken:
            by_count.setdefault(taken, []).append(supplier.id)
    rows = []
    for taken in sorted(by_count, reverse=True)[:HEADLINE_SUPPLIER_GROUPS]:
        ids = sorted(by_count[taken])
        share = f"all {top_total}" if taken == top_total else f"{taken} of {top_total}"
        each = " each" if len(ids) > 1 else ""
        rows.append((and_list(ids), f"{share} tier-{top_tier} services down{each}"))
    return rows or [("none", f"no supplier's loss alone takes a tier-{top_tier} service down")]


def _drill_sentence(drill: DrillReport, kinds: dict[str, str]) -> str:
    """``rings lose 18 endpoints and 4 vms, no service (halted at ring 0); all at once loses 2,032 assets and
    15 services``: what the ringfence strategy cost against what pushing to everyone at once cost."""
    results = {r.strategy: r for r in drill.results}
    ours, everyone = results["ringfence"], results["all-at-once"]
    lost_kinds = Counter(str(kinds[a]) for a in ours.failed)
    lost = and_list(count(n, kind) for kind, n in sorted(lost_kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    halted = "" if ours.halted_at_ring is None else f" (halted at ring {ours.halted_at_ring})"
    return (
        f"rings lose {lost or 'nothing'}, {_services(ours.services_down)}{halted}{_data(ours.data_lost)}; "
        f"all at once loses {count(len(everyone.failed), 'asset')}, {_services(everyone.services_down)}"
        f"{_data(everyone.data_lost)}"
    )


def _services(down: Sequence[object]) -> str:
    return count(len(down), "service") if down else "no service"


def _data(lost: Sequence[str]) -> str:
    return f", data lost on {len(lost):,}" if lost else ""


def _incident_sentence(incident: IncidentScenario, radius: BlastRadius) -> str:
    tiers = Counter(s.tier for s in radius.services_down)
    by_tier = ", ".join(f"T{t} ×{n}" for t, n in sorted(tiers.items()))
    down = count(len(radius.services_down), "service") + (f" ({by_tier})" if by_tier else "")
    return f"{and_list(incident.fail)} lost: {down} and {count(len(radius.assets_down), 'asset')} down"
