"""``ringfence assess``: the estate and its evidence checked against a resilience policy, like code in CI."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from ringfence.cli.analysis import EstateArg, load, working
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out, tier_chip, warn
from ringfence.core.errors import InputError, Problem
from ringfence.core.words import count

if TYPE_CHECKING:
    from ringfence.core.assurance import AssessmentReport, Assurance
    from ringfence.core.estate import Estate
    from ringfence.core.graph import EstateGraph
    from ringfence.core.recovery import MeasuredRestore

ASSURANCE_FILE = "assurance.yaml"
"""The assurance file ``assess`` looks for beside the estate when ``--assurance`` is not given."""


MeasuredOpt = Annotated[
    Path | None,
    typer.Option(
        "--assurance",
        help="Assurance file: restore times measured in its restore tests replace the estimate where there is one.",
        show_default=False,
    ),
]


def read_assurance(path: Path, estate: Estate) -> Assurance:
    """The assurance file at ``path``, validated against ``estate`` (errors name file, line and field)."""
    from ringfence.core.assurance import parse_assurance_text
    from ringfence.files.disk import read_text

    return parse_assurance_text(read_text(path), estate, str(path))


def measured_times(path: Path | None, estate: Estate) -> dict[str, MeasuredRestore]:
    """``--assurance`` as the recovery planner takes it: each subject's latest restore test as of today."""
    from ringfence.core.assurance import measured_restores
    from ringfence.core.clock import utc_now

    return {} if path is None else measured_restores(read_assurance(path, estate), utc_now().date())


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
    evidence_pack: Annotated[
        Path | None,
        typer.Option(
            "--evidence-pack",
            help="Also write the DSPT evidence pack, by CAF objective: OUT.html or OUT.pdf.",
            show_default=False,
        ),
    ] = None,
    register: Annotated[
        Path | None,
        typer.Option(
            "--register", help="Also write the register of ICT third-party arrangements: OUT.csv.", show_default=False
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the estate and its evidence against a resilience policy; exit 1 when a policy is breached."""
    from ringfence.cli.paths import check_output_file
    from ringfence.core.assurance import DEFAULT_POLICY_FILE, assessment_document, empty_assurance, parse_policy_text
    from ringfence.core.assurance import assess as assess_estate
    from ringfence.files.disk import examples_dir, read_text

    day = _as_of(as_of)
    pack_format = _pack_format(evidence_pack)
    check_output_file(evidence_pack, "--evidence-pack", example=f"evidence-pack.{pack_format}")
    check_output_file(register, "--register", example="register.csv")
    policy_path = policy_file or examples_dir() / DEFAULT_POLICY_FILE
    policy = parse_policy_text(read_text(policy_path), str(policy_path))
    estate, graph = load(estate_file, as_json)
    if assurance_file is None and (estate_file.parent / ASSURANCE_FILE).is_file():
        assurance_file = estate_file.parent / ASSURANCE_FILE
    if assurance_file is None:
        warn(f"no {ASSURANCE_FILE} beside {estate_file} and no --assurance: assessing with no evidence at all")
        assurance = empty_assurance()
    else:
        assurance = read_assurance(assurance_file, estate)
    with working("Assessing…", as_json):
        report = assess_estate(estate, graph, assurance, policy, day)
    written = _write_exports(graph, assurance, report, evidence_pack, pack_format, register)
    if as_json:
        emit_json(assessment_document(report).model_dump(mode="json"))
    else:
        _print_report(report)
        for path in written:
            out.print(f"Written: {path}", soft_wrap=True, highlight=False)  # a path is copied whole, never wrapped
    if report.is_breached:
        raise typer.Exit(1)


def _pack_format(path: Path | None) -> str:
    """``html`` or ``pdf``, from the name of ``--evidence-pack``; any other name is refused before any work."""
    if path is None or path.suffix.lower() in (".html", ".htm"):
        return "html"
    if path.suffix.lower() == ".pdf":
        return "pdf"
    raise InputError(
        [Problem(f"cannot tell what to write to {path}: name an .html or a .pdf file", path=("--evidence-pack",))]
    )


def _write_exports(
    graph: EstateGraph,
    assurance: Assurance,
    report: AssessmentReport,
    evidence_pack: Path | None,
    pack_format: str,
    register: Path | None,
) -> list[Path]:
    """Render the evidence pack and the register, then write them (each whole or not at all)."""
    from ringfence.cli.paths import writing
    from ringfence.core.clock import utc_now
    from ringfence.files.disk import write_bytes_atomic, write_text_atomic

    written = []
    if evidence_pack is not None:
        from ringfence.files.evidence_pack import evidence_pack as build_pack
        from ringfence.files.evidence_pack import render_evidence_html, render_evidence_pdf

        pack = build_pack(graph, assurance, report)
        with writing(evidence_pack, "--evidence-pack"):
            if pack_format == "pdf":
                write_bytes_atomic(evidence_pack, render_evidence_pdf(pack, generated_at=utc_now()))
            else:
                write_text_atomic(evidence_pack, render_evidence_html(pack, generated_at=utc_now()))
        written.append(evidence_pack)
    if register is not None:
        from ringfence.files.register import arrangements, render_register_csv

        text = render_register_csv(arrangements(graph, assurance, report.as_of))
        with writing(register, "--register"):
            write_text_atomic(register, text)
        written.append(register)
    return written


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
