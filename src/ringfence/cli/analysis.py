"""Risk commands: ``check``, ``impact``, ``spof``, ``concentration``."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, hold_until_exit, out, tier_chip, tier_label, warn
from ringfence.core.documents import check_document, concentration_document, impact_document, spof_document
from ringfence.core.estate import TIER_NAMES, Estate
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.words import count
from ringfence.files.disk import read_estate

EstateArg = Annotated[Path, typer.Argument(help="Estate file (YAML or JSON).", show_default=False)]
FailOpt = Annotated[
    list[str],
    typer.Option(
        "--fail",
        "-f",
        help="What fails: asset:ID, service:ID, supplier:ID, software:P[@V], site:NAME, where:SELECTOR or a bare ID.",
        show_default=False,
    ),
]


StepTimeOpt = Annotated[str, typer.Option(help="How long one restore step takes, for RTO estimates.")]


def step_seconds_of(step_time: str) -> int:
    """``--step-time`` in seconds; a bad duration is an input error that names the option."""
    from ringfence.core.durations import parse_duration
    from ringfence.core.errors import InputError, Problem

    try:
        return parse_duration(step_time)
    except ValueError as exc:
        raise InputError([Problem(str(exc), path=("--step-time",))]) from None


@contextmanager
def working(message: str, quiet: bool) -> Iterator[None]:
    """A spinner on stderr for people at a terminal; silence for scripts."""
    if quiet or not err.is_terminal:
        yield
        return
    with err.status(message):
        yield


def load(path: Path, quiet: bool) -> tuple[Estate, EstateGraph]:
    with working(f"Loading {path}…", quiet):
        estate = read_estate(path)
        graph = compile_estate(estate)
    hold_until_exit(estate, graph)
    return estate, graph


@app.command(rich_help_panel="Know your estate")
def check(
    estate_file: EstateArg,
    as_json: JsonOpt = False,
    strict: Annotated[bool, typer.Option(help="Treat warnings as a failed check (exit 1).")] = False,
) -> None:
    """Validate an estate file and summarise it."""
    from ringfence.core.estate import locate_problems, parse_estate_text
    from ringfence.files.disk import read_text

    text = read_text(estate_file)
    with working(f"Checking {estate_file}…", as_json):
        estate = parse_estate_text(text, str(estate_file))
        graph = compile_estate(estate)
    # Warnings come without lines (most commands never show them); `check` shows every one, so it finds their lines,
    # the estate's and the graph's (a where-group that matches too little) in one pass over the text.
    warnings = locate_problems([*estate.warnings, *graph.warnings], text)
    ok = not (strict and warnings)
    if as_json:
        emit_json(check_document(estate, warnings, ok=ok).model_dump(mode="json"))
    else:
        for w in warnings:
            warn(str(w))
        table = Table(title=f"Estate '{estate.name}' is valid", title_justify="left", show_header=True)
        table.add_column("tier")
        table.add_column("services", justify="right")
        for tier in sorted(TIER_NAMES):
            in_tier = sum(1 for s in estate.services if s.tier == tier)
            table.add_row(tier_label(tier), str(in_tier))
        out.print(table)
        kinds: dict[str, int] = {}
        for asset in estate.assets:
            kinds[asset.kind] = kinds.get(asset.kind, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        out.print(
            f"{count(len(estate.assets), 'asset')} ({summary}); {count(len(estate.services), 'service')}; "
            f"{count(estate.declared_suppliers, 'supplier')}; sites: {', '.join(estate.sites) or 'none'}"
        )
    if not ok:
        raise typer.Exit(1)


@app.command(rich_help_panel="Know your estate")
def impact(estate_file: EstateArg, fail: FailOpt, as_json: JsonOpt = False) -> None:
    """Blast radius: what goes down when something fails."""
    from ringfence.core.impact import compute_blast_radius

    _, graph = load(estate_file, as_json)
    radius = compute_blast_radius(graph, fail)
    if as_json:
        # Serialised by pydantic straight to JSON text (the same text as emit_json's): a supplier's failure names
        # most of a large estate, and building the plain lists first doubled the cost of the output.
        sys.stdout.write(impact_document(radius).model_dump_json() + "\n")
        sys.stdout.flush()
        return
    before = radius.already_down
    out.print(f"[bold]If {', '.join(radius.failed)} {'fail' if len(radius.failed) > 1 else 'fails'}:[/]")
    if not radius.services_down:
        out.print("No service goes down.")
    elif not radius.services_taken_down:
        out.print("No service that was up goes down.")
    for tier in sorted({s.tier for s in radius.services_down}):
        names = [s.id for s in radius.services_down if s.tier == tier]
        line = Text.assemble(tier_chip(tier), " ", tier_label(tier), f"  {len(names)} down: ")
        _append_ids(line, names, before)
        out.print(line)
    assets_before = sum(1 for a in radius.assets_down if a in before)
    out.print(
        f"{count(len(radius.assets_down), 'asset')} down"
        + (f", {assets_before} of them already down before the failure." if assets_before else ".")
    )
    if radius.assets_down and len(radius.assets_down) <= 30:
        assets = Text(style="dim")
        _append_ids(assets, radius.assets_down, before)
        out.print(assets)
    if before:
        out.print(
            Text(
                "(already down): down before anything failed; `ringfence check` says why.",
                style="dim",
            )
        )


def _append_ids(line: Text, ids: Sequence[str], already_down: AbstractSet[str]) -> None:
    """``a, b (already down), c``: the ids, each down before the failure marked as such."""
    for n, node_id in enumerate(ids):
        line.append(", " if n else "")
        line.append(node_id)
        if node_id in already_down:
            line.append(" (already down)", style="yellow")


@app.command(rich_help_panel="Know your estate")
def spof(
    estate_file: EstateArg,
    tier: Annotated[
        int | None, typer.Option(min=1, max=4, help="Keep only services of this tier or more critical (1–4).")
    ] = None,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show people (JSON has all).")] = 25,
) -> None:
    """Single points of failure: assets, suppliers, products and sites whose loss alone takes a service down."""
    from ringfence.core.impact import advice_for, find_single_points_of_failure

    _, graph = load(estate_file, as_json)
    if as_json or not err.is_terminal:
        spofs = find_single_points_of_failure(graph, max_tier=tier)
    else:
        from rich.progress import Progress

        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("Scanning candidates", total=None)
            spofs = find_single_points_of_failure(
                graph,
                max_tier=tier,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    if as_json:
        emit_json(spof_document(spofs).model_dump(mode="json"))
        return
    if not spofs:
        out.print("No single point of failure found.")
        return
    title = count(len(spofs), "single point of failure", "single points of failure")
    table = Table(title=title, title_justify="left")
    table.add_column("worst")
    table.add_column("fails alone")
    table.add_column("takes down")
    table.add_column("what to do", overflow="fold")
    for s in spofs[:limit]:
        names = ", ".join(x.id for x in s.services[:6]) + (f" +{len(s.services) - 6}" if len(s.services) > 6 else "")
        table.add_row(tier_chip(s.worst_tier), s.ref, names, advice_for(graph, s))
    out.print(table)
    if len(spofs) > limit:
        out.print(f"… and {len(spofs) - limit} more (--limit, or --json for all).")


@app.command(rich_help_panel="Know your estate")
def concentration(estate_file: EstateArg, as_json: JsonOpt = False) -> None:
    """Supplier concentration: what each supplier's failure takes down, as a share of each tier."""
    from ringfence.core.impact import supplier_concentration

    _, graph = load(estate_file, as_json)
    rows = supplier_concentration(graph)
    if as_json:
        emit_json(concentration_document(rows).model_dump(mode="json"))
        return
    tiers = sorted({t for r in rows for t in r.share_by_tier})
    table = Table(title="Supplier concentration: services lost if the supplier fails", title_justify="left")
    table.add_column("supplier")
    # Short tier headings: at 80 columns the four full labels left too little room for the services' ids.
    for t in tiers:
        table.add_column(f"tier {t}", justify="right")
    table.add_column("services down", overflow="fold")
    ranked = sorted(rows, key=lambda r: (*(-r.share_by_tier.get(t, 0.0) for t in tiers), r.id))
    for r in ranked:
        shares = [_share_cell(r.share_by_tier.get(t, 0.0)) for t in tiers]
        names = ", ".join(s.id for s in r.services_down[:8]) + (
            f" +{len(r.services_down) - 8}" if len(r.services_down) > 8 else ""
        )
        table.add_row(r.id, *shares, names or Text("none", style="dim"))
    table.caption = "Share of each tier's services lost (T1 is tier 1): " + "; ".join(
        tier_label(t).plain for t in tiers
    )
    table.caption_justify = "left"
    out.print(table)


def _share_cell(share: float) -> Text:
    style = "bold red" if share >= 0.5 else "yellow" if share > 0 else "dim"
    return Text(f"{share:.0%}", style=style)
