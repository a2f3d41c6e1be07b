"""``ringfence incident ...``: declare, list, show, restore, note, close, review — and the incident demo.

State lives in the database, as for rollouts (``RINGFENCE_DATABASE_URL``, default a SQLite file in
``$RINGFENCE_HOME``); every command migrates it first. A refused move (marking an item restored while what
it needs is down, closing with items down and no reason) exits 1 with the reason on stderr.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ringfence.cli.analysis import FailOpt, StepTimeOpt, step_seconds_of
from ringfence.cli.database import database, resolve_actor
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, out, tier_chip
from ringfence.core.clock import utc_now
from ringfence.core.durations import humanize_duration
from ringfence.core.words import count

if TYPE_CHECKING:
    from ringfence.core.incident import Incident

incident_app = typer.Typer(
    name="incident",
    help="Incidents: what is down, which plans to enact, what to restore first, and the clock against each RTO.",
    no_args_is_help=True,
)
app.add_typer(incident_app, name="incident", rich_help_panel="Recover")

IdArg = Annotated[str, typer.Argument(help="Incident id (inc-000001).", show_default=False)]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Who is acting (recorded in the timeline and audit log); default: $USER.")
]

_STATUS_STYLE = {
    "on_track": "green",
    "at_risk": "bold yellow",
    "breached": "bold white on red",
    "met": "green",
    "missed": "bold red",
    "no_rto": "dim",
    "not_restored_at_close": "bold red",
}
_SHOWN_PER_STEP = 12


@incident_app.command("declare")
def declare(
    estate_file: Annotated[Path, typer.Option("--estate", help="Estate file (YAML or JSON).", show_default=False)],
    fail: FailOpt,
    title: Annotated[str | None, typer.Option("--title", help="A title people will recognise.")] = None,
    step_time: StepTimeOpt = "1h",
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Declare an incident: what failed, what that takes down, the plans to enact and the order to restore."""
    from ringfence.files.disk import read_text
    from ringfence.service import incidents

    step_seconds = step_seconds_of(step_time)
    text = read_text(estate_file)
    now = utc_now()
    with database(writes=True) as engine:
        incident = incidents.declare(
            engine,
            fail=fail,
            actor=resolve_actor(actor),
            at=now,
            title=title,
            estate_text=text,
            estate_source=str(estate_file),
            step_seconds=step_seconds,
        )
    if as_json:
        emit_json(incidents.incident_document(incident, now).model_dump(mode="json"))
        return
    print_incident(incident, now, timeline=0)


@incident_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option("--status", help="open or closed; default: both.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Incidents, oldest first, with how far recovery has got and which RTOs are breached or at risk."""
    from ringfence.service import incidents

    now = utc_now()
    with database(writes=False) as engine:
        found = incidents.list_incidents(engine, status=status)
    summaries = [incidents.incident_summary(i, now) for i in found]
    if as_json:
        emit_json(incidents.IncidentListOut(incidents=summaries).model_dump(mode="json"))
        return
    if not summaries:
        out.print("No incidents.")
        return
    # No vertical rules: at 80 columns the date and the counts stay on one line; the clocks and title wrap.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for column in ("id", "status", "declared", "worst", "restored", "RTO", "title"):
        table.add_column(
            column,
            justify="right" if column == "restored" else "left",
            no_wrap=column not in ("RTO", "title"),
        )
    for s in summaries:
        clocks = Text()
        if s.unreadable is not None:  # a record that cannot be read is listed, saying why, never hidden
            clocks.append(f"unreadable: {s.unreadable}", style="bold red")
        if s.breached:
            clocks.append(f"breached: {', '.join(s.breached)}", style="bold red")
        if s.at_risk:
            clocks.append(("; " if s.breached else "") + f"at risk: {', '.join(s.at_risk)}", style="yellow")
        table.add_row(
            s.id,
            Text(s.status, style="bold" if s.status == "open" else "dim"),
            f"{s.declared_at:%Y-%m-%d %H:%M}",
            tier_chip(s.worst_tier) if s.worst_tier is not None else Text("—"),
            f"{s.items_restored}/{s.items_down}",
            clocks,
            s.title,
        )
    out.print(table)


@incident_app.command("show")
def show(
    incident_id: IdArg,
    as_json: JsonOpt = False,
    events: Annotated[int, typer.Option("--events", min=0, help="How many recent timeline events to show.")] = 10,
) -> None:
    """An incident: impact, continuity plans, restore order, and the RTO countdowns with breach warnings."""
    from ringfence.service import incidents

    now = utc_now()
    with database(writes=False) as engine:
        incident = incidents.get(engine, incident_id)
    if as_json:
        emit_json(incidents.incident_document(incident, now).model_dump(mode="json"))
        return
    print_incident(incident, now, timeline=events)


@incident_app.command("restore")
def restore(
    incident_id: IdArg,
    items: Annotated[list[str], typer.Argument(help="Items back up; several at once are restored together.")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark items restored. Refused (exit 1), with the reason, while what they need is still down."""
    from ringfence.service import incidents

    now = utc_now()
    with database(writes=True) as engine:
        incident = incidents.restore(engine, incident_id, items, actor=resolve_actor(actor), at=now)
    if as_json:
        emit_json(incidents.incident_document(incident, now).model_dump(mode="json"))
        return
    out.print(Text(incident.events[-1].text.capitalize() + "."))
    _print_next(incident)


@incident_app.command("note")
def note(
    incident_id: IdArg,
    text: Annotated[str, typer.Argument(help="What was decided, who was called, what was seen.")],
    actor: ActorOpt = None,
) -> None:
    """Add a note to the incident's timeline."""
    from ringfence.service import incidents

    with database(writes=True) as engine:
        incident = incidents.note(engine, incident_id, text, actor=resolve_actor(actor), at=utc_now())
    out.print(f"Noted in {incident.id} ({count(len(incident.events), 'event')}).")


@incident_app.command("close")
def close(
    incident_id: IdArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why it closes (needed while items are still down).")
    ] = None,
    actor: ActorOpt = None,
) -> None:
    """Close an incident: everything restored, or a reason. Then write its review (`incident review`)."""
    from ringfence.service import incidents

    with database(writes=True) as engine:
        incident = incidents.close(engine, incident_id, actor=resolve_actor(actor), at=utc_now(), reason=reason)
    out.print(f"Incident {incident.id} {incident.events[-1].text}.")
    out.print(f"Write its review with: ringfence incident review {incident.id} --out review.html")


@incident_app.command("freeze")
def freeze(
    incident_id: IdArg,
    lift: Annotated[bool, typer.Option("--lift", help="Lift the freeze (closing the incident lifts it too).")] = False,
    actor: ActorOpt = None,
) -> None:
    """Declare an organisation-wide change freeze while the incident is open: no rollout opens a ring."""
    from ringfence.service import incidents

    with database(writes=True) as engine:
        incident = incidents.freeze_changes(engine, incident_id, actor=resolve_actor(actor), at=utc_now(), on=not lift)
    out.print(f"Incident {incident.id} {incident.events[-1].text}.")


@incident_app.command("review")
def review(
    incident_id: IdArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the review here: .html or .md; default: Markdown on stdout.", show_default=False
        ),
    ] = None,
) -> None:
    """The post-incident review: timeline, impact by tier, time to restore against RTO, the rollout behind it."""
    from ringfence.cli.paths import check_output_file, writing
    from ringfence.core.errors import InputError, Problem
    from ringfence.files.disk import write_text_atomic
    from ringfence.files.incident_review import render_review_html, render_review_markdown
    from ringfence.service import incidents

    check_output_file(output, "--out", example="review.html")
    suffix = output.suffix.lower() if output is not None else ".md"
    if suffix not in (".html", ".htm", ".md", ".markdown"):
        raise InputError([Problem(f"'{output}' is neither .html nor .md; say which by its suffix", path=("--out",))])
    with database(writes=False) as engine:
        found = incidents.review(engine, incident_id, utc_now())
    text = render_review_html(found) if suffix in (".html", ".htm") else render_review_markdown(found)
    if output is None:
        out.file.write(text)
        return
    with writing(output, "--out"):
        write_text_atomic(output, text)
    out.print(
        f"Review of {incident_id} written to {output}{' (a draft: the incident is open)' if found.is_draft else ''}."
    )


# ------------------------------------------------------------------------------------------ showing


def print_incident(incident: Incident, now: datetime, *, timeline: int = 10) -> None:
    """Impact, continuity plans with their RTO clocks, restore order — and the latest of the timeline."""
    from ringfence.core.incident import rto_clocks
    from ringfence.core.incident import timeline as incident_timeline

    clocks = {c.service: c for c in rto_clocks(incident, now)}
    status = incident.status.value
    head = Text(f"Incident {incident.id} ", style="bold")
    head.append(status.upper(), style="bold red" if status == "open" else "green")
    head.append(f" · {incident.estate} · declared {incident.declared_at:%Y-%m-%d %H:%M %Z} by {incident.declared_by}")
    out.print(head)
    out.print(Text(incident.title, style="bold"))
    cause = f" · caused by rollout {incident.rollout_id}" if incident.rollout_id else ""
    services = incident.services
    tiers = ", ".join(f"T{t} ×{n}" for t, n in incident.by_tier.items() if n)
    out.print(
        f"Failed: {', '.join(incident.failed)}{cause}\n"
        f"Down: {count(len(services), 'service')}"
        + (f" ({tiers})" if tiers else "")
        + f", {count(len(incident.items) - len(services), 'asset')} · "
        f"{len(incident.restored)} of {len(incident.items)} items restored",
        highlight=False,
    )

    if incident.continuity:
        table = Table(title="Enact these continuity plans, most critical first", title_justify="left", expand=True)
        table.add_column("tier", no_wrap=True)
        # The service column is as wide as its longest id (within reason), so an id is never cut in two
        # ("community-reco/rds") at 80 columns; the plan takes the rest and wraps.
        longest = max(len(a.service) for a in incident.continuity)
        table.add_column("service", width=max(16, min(longest, 28)), overflow="fold")
        table.add_column("RTO clock", no_wrap=True)
        table.add_column("continuity plan, and whom to call", ratio=1, overflow="fold")
        for action in incident.continuity:
            clock = clocks.get(action.service)
            plan = Text(action.plan or "no plan recorded", style="" if action.plan else "bold red")
            if action.contacts:
                plan.append("\nCall: " + "; ".join(action.contacts), style="cyan")
            table.add_row(
                tier_chip(action.tier),
                Text(action.name) + Text(f"\n{action.service}", style="dim"),
                _clock_text(clock) if clock is not None else Text("—"),
                plan,
            )
        out.print(table)
    else:
        out.print("No service is down.")

    steps = Table(title="Restore in this order (✓ restored)", title_justify="left", expand=True)
    steps.add_column("step", justify="right", no_wrap=True)
    steps.add_column("restore", ratio=1, overflow="fold")
    for step, items in incident.steps:
        line = Text()
        for n, item in enumerate(items[:_SHOWN_PER_STEP]):
            if n:
                line.append(", ")
            if item.id in incident.restored:
                line.append(f"✓ {item.id}", style="green")
            else:
                line.append(item.id, style="bold" if item.tier is not None else "")
        if len(items) > _SHOWN_PER_STEP:
            line.append(f" … +{len(items) - _SHOWN_PER_STEP}", style="dim")
        steps.add_row(str(step), line)
    out.print(steps)

    out.print(Text(incident.restore_times, style="dim"))
    for clock in clocks.values():
        if clock.warning is not None:
            out.print(Text("⚠ " + clock.warning, style=_STATUS_STYLE[clock.status.value]))
    if timeline:
        events = incident_timeline(incident, now)[-timeline:]
        rows = [
            Text(f"{e.at:%Y-%m-%d %H:%M} ", style="dim")
            + Text(f"{e.kind.value:<9} ", style="bold red" if e.kind.value == "breached" else "bold")
            + Text(f"{e.actor}: ", style="dim")
            + Text(e.text)
            for e in events
        ]
        out.print(Group(Text("Timeline", style="bold italic"), *rows))


def _clock_text(clock: object) -> Text:
    from ringfence.core.incident import ClockStatus, RtoClock

    assert isinstance(clock, RtoClock)
    rto = humanize_duration(clock.rto) if clock.rto is not None else "none"
    text = Text(f"RTO {rto}\n")
    label = clock.status.value.replace("_", " ")
    if clock.status in (ClockStatus.MET, ClockStatus.MISSED):
        text.append(
            f"{label}: back after {humanize_duration(clock.time_to_restore or 0)}",
            style=_STATUS_STYLE[clock.status.value],
        )
    elif clock.status is ClockStatus.BREACHED:
        text.append(f"BREACHED {humanize_duration(-(clock.remaining or 0))} ago", style=_STATUS_STYLE["breached"])
    elif clock.status is ClockStatus.NO_RTO:
        text.append(f"~{humanize_duration(clock.estimated or 0)} to restore", style="dim")
        text.append(f"\n{clock.basis}", style="dim")
    elif clock.status is ClockStatus.NOT_RESTORED_AT_CLOSE:
        # Frozen at the close: where it stood then, not a countdown.
        text.append("not restored at close", style=_STATUS_STYLE[clock.status.value])
        if clock.remaining is not None:
            past = clock.remaining < 0
            text.append(f"\n{humanize_duration(abs(clock.remaining))} {'past its RTO' if past else 'left then'}")
    else:
        text.append(f"{humanize_duration(clock.remaining or 0)} left", style=_STATUS_STYLE[clock.status.value])
        text.append(f"\n~{humanize_duration(clock.estimated or 0)} to restore")
        if clock.status is ClockStatus.AT_RISK:
            text.append(" AT RISK", style=_STATUS_STYLE["at_risk"])
        # Measured (a restore test of every step up to it) or a guess of a step's length: said on every clock.
        text.append(f"\n{clock.basis}", style="dim" if clock.measured_on is None else "green")
    return text


def _print_next(incident: Incident) -> None:
    """What can be restored now: the items still down that wait for nothing."""
    from ringfence.core.incident import waiting_for

    ready = [i.id for i in incident.still_down if not waiting_for(incident, i.id)]
    if ready:
        shown = ", ".join(ready[:_SHOWN_PER_STEP]) + (
            f" … +{len(ready) - _SHOWN_PER_STEP}" if len(ready) > _SHOWN_PER_STEP else ""
        )
        out.print(f"Ready to restore now: {shown}")
    elif incident.still_down:
        out.print("Nothing else can be restored until what it needs is back.")
    else:
        out.print(f"Everything is back. Close it with: ringfence incident close {incident.id}")


# ------------------------------------------------------------------------------------------ the demo


def demo_incident(estate: Path, incident_file: Path) -> None:
    """Replay a bundled incident (``advanced-2022``) on one screen: impact, plans to enact, restore order.

    Nothing is stored: the incident is declared in memory, now, as a person would on the day.
    """
    from rich.rule import Rule

    from ringfence.cli.analysis import load
    from ringfence.core.incident_declaration import declare_incident
    from ringfence.core.update import parse_incident_text
    from ringfence.files.disk import read_with

    scenario = read_with(incident_file, parse_incident_text)
    _, graph = load(estate, quiet=True)
    now = utc_now()
    incident = declare_incident(
        graph,
        graph.resolve_failures(scenario.fail),
        incident_id=scenario.incident,
        at=now,
        actor="demo",
        title=" ".join((scenario.description or f"Incident {scenario.incident}").split()),
    )
    out.print(Rule(f"Incident replay: {scenario.incident}"))
    print_incident(incident, now, timeline=0)
