"""``ringfence plan``: the rings an update would go through, without touching anything."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ringfence.cli.analysis import EstateArg, load, working
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out, tier_chip, warn
from ringfence.core.documents import calendar_document, plan_document
from ringfence.core.durations import humanize_duration
from ringfence.core.words import count

if TYPE_CHECKING:
    from ringfence.core.plan import Plan
    from ringfence.core.windows import RingSlot

HoldsOpt = Annotated[
    Path | None,
    typer.Option(
        "--holds",
        help="Vendor holds file (withdrawn releases); default: the bundled list.",
        show_default=False,
    ),
]
OverrideOpt = Annotated[
    str | None,
    typer.Option(
        "--override-hold",
        help="Plan a held release anyway; this justification is recorded.",
        show_default=False,
    ),
]


StartOpt = Annotated[
    str | None,
    typer.Option(
        "--start",
        help="When the calendar starts (ISO 8601, e.g. 2026-12-07T09:00; London time without an offset); default: now.",
        show_default=False,
    ),
]


@contextmanager
def located_in(path: Path, text: str) -> Iterator[None]:
    """Problems the planner finds with an update's fields are reported against the update file's lines."""
    from ringfence.core.errors import InputError
    from ringfence.core.estate import locate_problems

    try:
        yield
    except InputError as exc:
        problems = [replace(p, source=p.source or str(path)) for p in exc.problems]
        raise InputError(locate_problems(problems, text)) from None


def load_holds(path: Path | None) -> tuple[object, ...]:
    from ringfence.core.update import parse_holds_text
    from ringfence.files.disk import examples_dir, read_with

    source = path or examples_dir() / "holds.yaml"
    if path is None and not source.exists():
        return ()
    return read_with(source, parse_holds_text)


@app.command(rich_help_panel="Change safely")
def plan(
    estate_file: EstateArg,
    update_file: Annotated[Path, typer.Argument(help="Update file (YAML or JSON).", show_default=False)],
    as_json: JsonOpt = False,
    holds: HoldsOpt = None,
    override_hold: OverrideOpt = None,
    start: StartOpt = None,
) -> None:
    """Plan the rings of an update: canaries first, redundancy kept, criticality last; with change windows, when
    each ring can start and the earliest completion."""
    from ringfence.core.planner import format_stratum, plan_rings
    from ringfence.core.update import Hold, check_holds, parse_update_text
    from ringfence.core.windows import plan_calendar
    from ringfence.files.disk import read_text

    update_text = read_text(update_file)
    update = parse_update_text(update_text, str(update_file))
    held = tuple(h for h in load_holds(holds) if isinstance(h, Hold))
    override = check_holds(update, held, override_hold)
    _, graph = load(estate_file, as_json)
    starts_at = _start_time(start)
    with working("Planning rings…", as_json), located_in(update_file, update_text):
        result = plan_rings(graph, update, hold_override=override)
        slots = plan_calendar(graph, result, starts_at)
    if as_json:
        names = [ring.name for ring in result.rings]
        calendar = calendar_document(names, slots, starts_at) if slots is not None else None
        # One document with the API's POST /v1/plans: ``calendar`` is null without windows or freezes.
        emit_json(plan_document(result, calendar).model_dump(mode="json"))
        return
    if override:
        warn(f"{override.release} is on hold ({override.reason}); planned anyway because: {override.justification}")
    table = Table(
        title=f"Plan for {update.release} ({update.id}): {count(result.targets, 'target')} in "
        f"{count(len(result.rings), 'ring')}",
        title_justify="left",
    )
    # The ring's name never folds ("canary wave 2" on one line); the examples column gives way first.
    table.add_column("ring", no_wrap=True)
    table.add_column("assets", justify="right")
    table.add_column("strata", justify="right")
    table.add_column("impact tiers", no_wrap=True)
    table.add_column("bake", justify="right")
    table.add_column("for example", overflow="fold", ratio=1)
    # Two examples fit beside the rest at 80 columns; a wider terminal shows four.
    examples = 4 if out.width >= 100 else 2
    for ring in result.rings:
        tiers = Text(" ").join([tier_chip(t) + Text(f"×{n}") for t, n in ring.tier_counts().items()])
        table.add_row(
            # A ring the planner added on its own account is marked; its reason is printed under the table.
            ring.name + (" *" if ring.why else ""),
            str(ring.size),
            str(len(set(ring.strata))),
            tiers,
            humanize_duration(ring.bake),
            ", ".join(ring.assets[:examples]) + (" …" if ring.size > examples else ""),
        )
    out.print(table)
    if result.canary_rings > 1:
        out.print(
            f"Canary phase: {result.canary_rings} waves, one least-critical asset of each stratum; "
            "a stratum whose canary would overfill a redundancy group waits for a later wave."
        )
    added = [ring for ring in result.rings if ring.why]
    if added:
        out.print("* added by the planner:")
        for ring in added:
            out.print(Padding(Text(str(ring.why)), (0, 0, 0, 2), expand=False))
    for note in result.notes:
        out.print(Text("Note: ") + Text(note))
    out.print(
        f"Strata by {', '.join(result.strata_keys)}: {len(result.strata)} "
        f"(e.g. {', '.join(format_stratum(s) for s in result.strata[:3])})."
    )
    rollback = (
        "no rollback path (rollback: none)"
        if result.worst_case_rollback is None
        else f"worst-case rollback {humanize_duration(result.worst_case_rollback)}"
    )
    out.print(f"Minimum duration {humanize_duration(result.minimum_duration)}; {rollback}.")
    if slots is not None:
        _print_calendar(result, slots, starts_at)
    for w in result.warnings:
        err.print(Text("warning: ", style="yellow") + Text(w.message))


# ------------------------------------------------------------------------------------------ the calendar


def _start_time(text: str | None) -> datetime:
    from ringfence.core.clock import utc_now
    from ringfence.core.errors import InputError, Problem
    from ringfence.core.windows import ZONE

    if text is None:
        return utc_now()
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            [Problem(f"'{text}' is not a time; write ISO 8601, e.g. 2026-12-07T09:00", path=("--start",))]
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=ZoneInfo(ZONE))


def _print_calendar(result: Plan, slots: tuple[RingSlot, ...], start: datetime) -> None:
    from ringfence.core.windows import ZONE, format_local

    table = Table(title=f"Calendar from {format_local(start)} ({ZONE})", title_justify="left")
    table.add_column("ring", no_wrap=True)
    table.add_column("can start", no_wrap=True)
    table.add_column("waits", justify="right")
    table.add_column("done at the earliest", no_wrap=True)
    for ring, slot in zip(result.rings, slots, strict=True):
        table.add_row(
            ring.name,
            format_local(slot.starts_at) if slot.starts_at else "no opening within a year",
            humanize_duration(slot.waits.total_seconds()) if slot.waits else "-",
            format_local(slot.done_at) if slot.done_at else "-",
        )
    out.print(table)
    last = slots[-1].done_at if slots else start
    if last is None:
        err.print(
            Text("warning: ", style="yellow")
            + Text("a ring's change windows never all coincide within a year: the rollout would pause there")
        )
    else:
        out.print(f"Earliest completion {format_local(last)}, if every gate passes at once.")
