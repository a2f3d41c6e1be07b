"""``ringfence drill``: replay a faulty release against the estate, once per strategy, side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from ringfence.cli.analysis import EstateArg, load, working
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out, tier_chip
from ringfence.core.durations import humanize_duration
from ringfence.core.words import count

if TYPE_CHECKING:
    from ringfence.core.drills import DrillReport
    from ringfence.core.graph import EstateGraph

StrategyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--strategy",
        "-s",
        help="Strategies to compare (ringfence, all-at-once, batches); default: all three.",
        show_default=False,
    ),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option("--report", help="Also write a self-contained HTML report here.", show_default=False),
]


@app.command(rich_help_panel="Change safely")
def drill(
    estate_file: EstateArg,
    scenario_file: Annotated[Path, typer.Argument(help="Drill scenario file (YAML or JSON).", show_default=False)],
    as_json: JsonOpt = False,
    report: ReportOpt = None,
    strategy: StrategyOpt = None,
) -> None:
    """Replay a faulty release in simulated time with each strategy and compare what it would have cost."""
    from ringfence.cli.paths import check_output_file
    from ringfence.core.rollout.strategy import STRATEGIES

    check_output_file(report, "--report", example="drill.html")
    strategies = tuple(strategy) if strategy else STRATEGIES
    estate, graph = load(estate_file, as_json)
    result = run_scenario(graph, scenario_file, strategies, quiet=as_json)
    if report is not None:
        write_report([result], report, estate_name=estate.name, quiet=as_json)
    if as_json:
        from ringfence.core.documents import drill_document

        emit_json(drill_document(result).model_dump(mode="json"))
        return
    print_drill(result)


def run_scenario(graph: EstateGraph, scenario_file: Path, strategies: Sequence[str], *, quiet: bool) -> DrillReport:
    """Play the scenario file; a problem with it (a fault that reaches no target too) names its file and line."""
    from ringfence.core.drills import run_drill_text
    from ringfence.files.disk import read_text

    text = read_text(scenario_file)
    with working(f"Drilling {scenario_file.name}…", quiet):
        return run_drill_text(graph, text, str(scenario_file), strategies)


def write_report(reports: Sequence[DrillReport], path: Path, *, estate_name: str, quiet: bool = False) -> None:
    """Write the self-contained HTML report (``ringfence.files.report``), one drill or several."""
    from ringfence.cli.paths import writing
    from ringfence.files.report import write_drill_report

    with writing(path, "--report"):
        write_drill_report(list(reports), path, estate_name=estate_name)
    if not quiet:
        err.print(f"Report written to {path}")


def print_drill(result: DrillReport) -> None:
    scenario = result.scenario
    title = (
        f"Drill {scenario.scenario}: {scenario.update.release} on {count(result.targets, 'target')}, "
        f"{result.affected} of them affected by the fault"
    )
    # Rules under the header only, no vertical lines: eight columns fit in 80. On a narrow screen the columns
    # that wrap get the width of their longest word: Rich, left to share the width out, would cut words
    # ("servi…", "comple…") while leaving room elsewhere.
    narrow = out.width < 100
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )
    table.add_column("strategy", no_wrap=True, min_width=11)
    table.add_column("exposed", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("services down", width=13 if narrow else None)
    table.add_column("stopped at", justify="right", width=7 if narrow else None)
    table.add_column("detected after", justify="right", width=8 if narrow else None)
    table.add_column("data lost", justify="right", width=4 if narrow else None)
    table.add_column("ended", width=9 if narrow else None)
    for r in result.results:
        tiers: dict[int, int] = {}
        for s in r.services_down:
            tiers[s.tier] = tiers.get(s.tier, 0) + 1
        down = Text(" ").join([tier_chip(t) + Text(f"×{n}") for t, n in sorted(tiers.items())]) or Text("none")
        table.add_row(
            Text(r.strategy, style="bold" if r.strategy == "ringfence" else ""),
            str(len(r.exposed)),
            Text(str(len(r.failed)), style="red" if r.failed else ""),
            down,
            "-" if r.halted_at_ring is None else f"ring {r.halted_at_ring}",
            "-" if r.detected_after is None else humanize_duration(r.detected_after),
            Text(str(len(r.data_lost)), style="bold red" if r.data_lost else ""),
            r.outcome.replace("_", " "),
        )
    out.print(table)
    if scenario.description:
        out.print(Text(scenario.description.strip(), style="dim"))
    for r in result.results:
        if r.halt_reason:
            out.print(Text(f"{r.strategy}: ", style="bold") + Text(_short(r.halt_reason)))


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def demo_drills(estate: Path, scenarios: Sequence[Path], report: Path) -> None:
    """``ringfence demo``'s drill part: every bundled scenario, the comparison, and one report."""
    from rich.rule import Rule

    loaded, graph = load(estate, False)
    results = []
    for index, scenario_file in enumerate(scenarios, start=4):
        result = run_scenario(graph, scenario_file, ("ringfence", "all-at-once", "batches"), quiet=False)
        out.print(Rule(f"{index}. Drill: {result.scenario.scenario}"))
        print_drill(result)
        results.append(result)
    if results:
        write_report(results, report, estate_name=loaded.name)
