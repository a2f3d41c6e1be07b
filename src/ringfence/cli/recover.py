"""``ringfence recover``: what is down, which continuity plans to enact, what to restore first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ringfence.cli.analysis import EstateArg, FailOpt, StepTimeOpt, load, step_seconds_of
from ringfence.cli.assurance import MeasuredOpt, measured_times
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, out, tier_chip
from ringfence.core.documents import recovery_document
from ringfence.core.durations import humanize_duration
from ringfence.core.words import count

ESTIMATES_SAID = (
    "A step takes as long as its slowest item: the time measured in its latest restore test (--assurance), "
    "else an estimate"
)


def recovery_markdown(plan: object, estate_name: str) -> str:
    """The restore order as a document for the incident file and the DSPT evidence folder."""
    from ringfence.core.recovery import EVIDENCE_LABEL, RecoveryPlan

    assert isinstance(plan, RecoveryPlan)
    lines = [
        f"# Recovery plan: {estate_name}",
        "",
        f"> {EVIDENCE_LABEL}",
        "",
        f"**Failed:** {', '.join(plan.failed)}",
        "",
        "## Continuity plans to enact, most critical first",
        "",
        "| service | tier | RTO | plan |",
        "| --- | --- | --- | --- |",
    ]
    for c in plan.continuity:
        rto = humanize_duration(c.rto) if c.rto is not None else "—"
        lines.append(f"| {c.name} (`{c.service}`) | {c.tier} | {rto} | {c.plan or '**no plan recorded**'} |")
    if plan.rto_at_risk:
        lines += ["", "## RTOs at risk", ""]
        for r in plan.rto_at_risk:
            lines.append(
                f"- `{r.service}` (tier {r.tier}): RTO {humanize_duration(r.rto)}, restored after about "
                f"{humanize_duration(r.restored_by)} ({r.basis})"
            )
    lines += ["", "## Restore order", ""]
    if plan.parallel:
        lines.append(f"At most {count(plan.parallel, 'item')} a step, by clinical tier, then RTO.")
        lines.append("")
    lines.append(f"{ESTIMATES_SAID} ({humanize_duration(plan.step_seconds)} a step).")
    lines.append("")
    for step in plan.steps:
        took = f"{humanize_duration(step.seconds)}, {step.basis}"
        lines.append(f"{step.step}. {', '.join(f'`{i}`' for i in step.restore)} ({took})")
    for note in plan.notes:
        lines += ["", f"*Note:* {note}"]
    return "\n".join(lines) + "\n"


@app.command(rich_help_panel="Recover")
def recover(
    estate_file: EstateArg,
    fail: FailOpt,
    parallel: Annotated[
        int | None, typer.Option(min=1, help="At most N items restored at once; ordered by tier, then RTO.")
    ] = None,
    step_time: StepTimeOpt = "1h",
    assurance_file: MeasuredOpt = None,
    export: Annotated[
        Path | None, typer.Option(help="Also write the plan as Markdown evidence (DSPT B5.a).", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore order, continuity plans to enact, and RTOs at risk after failures."""
    from ringfence.cli.paths import check_output_file, writing
    from ringfence.core.recovery import EVIDENCE_LABEL, plan_recovery
    from ringfence.files.disk import write_text_atomic

    check_output_file(export, "--export", example="evidence.md")
    step_seconds = step_seconds_of(step_time)
    estate, graph = load(estate_file, as_json)
    measured = measured_times(assurance_file, estate)
    plan = plan_recovery(
        graph, graph.resolve_failures(fail), parallel=parallel, step_seconds=step_seconds, measured=measured
    )
    if export is not None:
        with writing(export, "--export"):
            write_text_atomic(export, recovery_markdown(plan, estate.name))
    if as_json:
        emit_json(recovery_document(plan).model_dump(mode="json"))
        return
    out.print(f"[bold]Recovery after {', '.join(plan.failed)}[/]  [dim]{EVIDENCE_LABEL}[/]")
    if not plan.continuity:
        out.print("No service is down.")
    else:
        table = Table(title="Enact these continuity plans, most critical first", title_justify="left")
        table.add_column("tier")
        table.add_column("service")
        table.add_column("RTO", justify="right", no_wrap=True)  # "2h at risk" reads as one
        table.add_column("continuity plan", overflow="fold")
        at_risk = {r.service: r for r in plan.rto_at_risk}
        for c in plan.continuity:
            rto = Text(humanize_duration(c.rto) if c.rto is not None else "—")
            if c.service in at_risk:
                rto.stylize("bold red")
                rto.append(f" at risk: back after {humanize_duration(at_risk[c.service].restored_by)}")
                rto.append(f" ({at_risk[c.service].basis})", style="dim")
            table.add_row(tier_chip(c.tier), c.name, rto, c.plan or Text("no plan recorded", style="bold red"))
        out.print(table)
    steps = Table(title="Restore in this order", title_justify="left")
    steps.add_column("step", justify="right")
    steps.add_column("items", justify="right")
    steps.add_column("takes", no_wrap=True)
    steps.add_column("restore", overflow="fold")
    for step in plan.steps:
        shown = ", ".join(step.restore[:12]) + (f" … +{len(step.restore) - 12}" if len(step.restore) > 12 else "")
        takes = Text(humanize_duration(step.seconds))
        takes.append(f"\n{step.basis}", style="green" if step.measured_on else "dim")
        steps.add_row(str(step.step), str(len(step.restore)), takes, shown)
    out.print(steps)
    out.print(f"[dim]{ESTIMATES_SAID} ({humanize_duration(plan.step_seconds)} a step, --step-time).[/]")
    for note in plan.notes:
        out.print(f"[yellow]note:[/] {note}")
    if export is not None:
        out.print(f"Evidence written to {export}.")
