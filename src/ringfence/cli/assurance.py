"""``ringfence assess``: the estate and its evidence checked against a resilience policy, like code in CI."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ringfence.cli.analysis import EstateArg, load, working
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out, tier_chip, warn
from ringfence.core.errors import InputError, Problem
from ringfence.core.words import count

ASSURANCE_FILE = "assurance.yaml"
"""The assurance file ``assess`` looks for beside the estate when ``--assurance`` is not given."""
DEFAULT_POLICY = "policy-acute.yaml"


def _as_of(text: str | None) -> date:
    """The day to assess as of: ``--as-of``, else today (UTC)."""
    from ringfence.core.assurance import parse_day
    from ringfence.core.clock import utc_now

    if text is None:
        return utc_now().date()
    try:
        return parse_day(text)
    except ValueError as exc:
        raise InputError([Problem(str(exc), path=("--as-of",))]) from None


@app.command(rich_help_panel="Know your estate")
def assess(
    estate_file: EstateArg,
    assurance_file: Annotated[
        Path | None,
        typer.Option(
            "--assurance",
            help=f"Assurance file (YAML or JSON); default: {ASSURANCE_FILE} beside the estate, when there is one.",
            show_default=False,
        ),
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="Policy file; default: the bundled policy for an acute trust.", show_default=False
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Assess as of this day (YYYY-MM-DD); default: today.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the estate and its evidence against a resilience policy; exit 1 when a policy is breached."""
    from ringfence.core.assurance import assess as assess_estate
    from ringfence.core.assurance import assessment_document, empty_assurance, parse_assurance_text, parse_policy_text
    from ringfence.files.disk import examples_dir, read_text

    day = _as_of(as_of)
    policy_path = policy_file or examples_dir() / DEFAULT_POLICY
    policy = parse_policy_text(read_text(policy_path), str(policy_path))
    estate, graph = load(estate_file, as_json)
    if assurance_file is None and (estate_file.parent / ASSURANCE_FILE).is_file():
        assurance_file = estate_file.parent / ASSURANCE_FILE
    if assurance_file is None:
        warn(f"no {ASSURANCE_FILE} beside {estate_file} and no --assurance: assessing with no evidence at all")
        assurance = empty_assurance()
    else:
        assurance = parse_assurance_text(read_text(assurance_file), estate, str(assurance_file))
    with working("Assessing…", as_json):
        report = assess_estate(estate, graph, assurance, policy, day)
    if as_json:
        emit_json(assessment_document(report).model_dump(mode="json"))
    else:
        _print_report(report)
    if report.is_breached:
        raise typer.Exit(1)


def _print_report(report: object) -> None:
    from ringfence.core.assurance import AssessmentReport, Severity

    assert isinstance(report, AssessmentReport)
    verdict = Text("breached", style="bold red") if report.is_breached else Text("holds", style="bold green")
    out.print(
        Text.assemble(
            f"Estate '{report.estate}' against policy '{report.policy}' as of {report.as_of}: ",
            verdict,
            f" ({count(len(report.breaches), 'breach', 'breaches')}, {count(len(report.warnings), 'warning')}; "
            f"{count(report.checked, 'check')})",
        )
    )
    if not report.findings:
        return
    # Three columns, so that the evidence and what to do keep room to read at 80 columns: the finding's
    # subject over its policy and problem, then the evidence over what to do.
    table = Table(show_header=True, header_style="bold", show_lines=True)
    table.add_column("", no_wrap=True)
    table.add_column("subject / policy")
    table.add_column("evidence / what to do")
    for finding in report.findings:
        mark = Text("✗", style="bold red") if finding.severity is Severity.BREACH else Text("!", style="bold yellow")
        evidence = finding.evidence if finding.day is None else f"{finding.evidence} [{finding.day}]"
        table.add_row(
            Text.assemble(mark, tier_chip(finding.tier)),
            Text.assemble((finding.subject, "bold"), "\n", (f"{finding.policy}: {finding.problem}", "dim")),
            Text.assemble(evidence, "\n", ("→ " + finding.action, "italic")),
        )
    out.print(table)
    if report.is_breached:
        err.print(f"{count(len(report.breaches), 'policy breach', 'policy breaches')}: exit 1", highlight=False)
