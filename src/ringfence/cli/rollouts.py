"""``ringfence rollout ...``: create, approve, start (and run), status, pause, resume, abort, rollback, log.

State lives in the database (``RINGFENCE_DATABASE_URL``, default a SQLite file in ``$RINGFENCE_HOME``);
every command migrates it to the newest schema first. ``start`` runs the controller in the foreground
until the rollout waits for a person or is over; kill it at any moment and run it again to carry on.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ringfence.cli.main import app
from ringfence.cli.output import emit_json, err, out, warn

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ringfence.rollout.controller import StepReport

rollout_app = typer.Typer(
    name="rollout",
    help="Run an update through its rings: canaries, health gates, rollback. State is kept in the database.",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout", rich_help_panel="Change safely")

IdArg = Annotated[str, typer.Argument(help="Rollout id (r-000001).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Who is acting (recorded in the audit log); default: $USER.")
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")]

_STYLE = {
    "completed": "bold green",
    "rolled_back": "yellow",
    "halted": "bold red",
    "failed": "bold red",
    "paused": "yellow",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _actor(actor: str | None) -> str:
    if actor and actor.strip():
        return actor.strip()
    try:
        return os.environ.get("RINGFENCE_ACTOR") or getpass.getuser()
    except OSError:
        return "cli"


@contextmanager
def _database() -> Iterator[Engine]:
    """The database, migrated to the newest schema; its connections are closed when the command ends."""
    from ringfence.store.db import make_engine, upgrade

    engine = make_engine()
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()


@rollout_app.command("create")
def create(
    estate_file: Annotated[Path, typer.Argument(help="Estate file.", show_default=False)],
    update_file: Annotated[Path, typer.Argument(help="Update file.", show_default=False)],
    driver: Annotated[str, typer.Option("--driver", help="Execution driver (entry point name).")] = "simulated",
    holds: Annotated[Path | None, typer.Option("--holds", help="Vendor holds file.", show_default=False)] = None,
    override_hold: Annotated[
        str | None, typer.Option("--override-hold", help="Roll out a held release anyway; recorded.")
    ] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="ringfence, all-at-once or batches.")] = "ringfence",
    require_approval: Annotated[
        bool, typer.Option("--require-approval", help="Someone else must approve before it can start.")
    ] = False,
    actor: ActorOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the rollout without storing it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Plan an update on an estate and store it as a rollout, ready to start (or to approve)."""
    from ringfence.cli.plans import load_holds
    from ringfence.drivers.base import available_drivers
    from ringfence.files import read_text
    from ringfence.service import rollouts
    from ringfence.update import Hold

    if driver not in available_drivers():
        from ringfence.drivers.base import load_driver

        load_driver(driver)  # raises the sentence listing the installed drivers
    held = tuple(h for h in load_holds(holds) if isinstance(h, Hold))
    with nullcontext(None) if dry_run else _database() as engine:
        created = rollouts.create_rollout(
            engine,
            estate_text=read_text(estate_file),
            estate_source=str(estate_file),
            update_text=read_text(update_file),
            update_source=str(update_file),
            actor=_actor(actor),
            at=_now(),
            holds=held,
            override_hold=override_hold,
            driver=driver,
            strategy=strategy,
            require_approval=require_approval,
            dry_run=dry_run,
        )
    rings = created.strategy.rings
    if as_json:
        rollout = created.rollout
        emit_json(
            {
                "id": rollout.id if rollout else None,
                "dry_run": dry_run,
                "update": created.update.id,
                "phase": rollout.state.phase.value if rollout else None,
                "strategy": created.strategy.strategy,
                "targets": created.strategy.targets,
                "rings": [{"index": i, "assets": list(r)} for i, r in enumerate(rings)],
            }
        )
        return
    if created.hold_override:
        o = created.hold_override
        warn(f"{o.release} is on hold ({o.reason}); going ahead because: {o.justification}")
    sizes = ", ".join(str(len(r)) for r in rings)
    what = f"{created.update.release}: {created.strategy.targets} targets in {len(rings)} rings ({sizes})"
    if created.rollout is None:
        out.print(f"Dry run, nothing stored. Rollout of {what}.")
        return
    r = created.rollout
    out.print(f"Created rollout [bold]{r.id}[/] ({r.state.phase}) of {what}.")
    if r.needs_approval:
        out.print(f"It needs approval by someone other than {r.created_by}: ringfence rollout approve {r.id}")
    else:
        out.print(f"Start it with: ringfence rollout start {r.id}")


@rollout_app.command("approve")
def approve(rollout_id: IdArg, actor: ActorOpt = None) -> None:
    """Approve a rollout awaiting approval (not by the person who created it)."""
    from ringfence.service import rollouts

    with _database() as engine:
        state = rollouts.approve_rollout(engine, rollout_id, actor=_actor(actor), at=_now())
    out.print(f"Rollout {rollout_id} approved; it is {state.phase}.")


@rollout_app.command("start")
def start(
    rollout_id: IdArg,
    once: Annotated[bool, typer.Option("--once", help="Do one controller step and stop.")] = False,
    driver_option: Annotated[
        list[str] | None,
        typer.Option("--driver-option", "-o", help="Driver option key=value (repeatable).", show_default=False),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="Seconds between polls while waiting.", min=0.0)
    ] = 2.0,
    actor: ActorOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the outcome.")] = False,
) -> None:
    """Start a rollout (or carry on with a running one) and drive it until it waits for a person or ends."""
    from ringfence.drivers.base import load_driver
    from ringfence.rollout.state import RolloutPhase
    from ringfence.service import rollouts

    with _database() as engine:
        who = _actor(actor)
        options = rollouts.parse_driver_options(driver_option or [])
        driver = load_driver(rollouts.driver_name(engine, rollout_id), **options)
        rollouts.start(engine, rollout_id, actor=who, at=_now())
        controller = rollouts.controller(engine, driver, _now, actor="controller")

        def show(report: StepReport) -> None:
            if quiet:
                return
            for t in report.transitions:
                out.print(Text(f"{t.at:%H:%M:%S} ring {t.ring} → {t.to_phase}: ", style="bold") + Text(t.reason))

        def wait_until(at: datetime | None) -> None:
            delay = poll_interval if at is None else min(poll_interval, max(0.0, (at - _now()).total_seconds()))
            time.sleep(delay)

        if once:
            report = controller.step(rollout_id)
            show(report)
        else:
            report = controller.run_until_settled(rollout_id, wait_until=wait_until, on_step=show)
    phase = report.phase
    out.print(Text(f"Rollout {rollout_id} is {phase}.", style=_STYLE.get(phase.value, "")))
    if phase in (RolloutPhase.HALTED, RolloutPhase.FAILED, RolloutPhase.ROLLED_BACK):
        raise typer.Exit(1)


@rollout_app.command("status")
def status(rollout_id: IdArg, as_json: JsonOpt = False) -> None:
    """Where a rollout is: its phase and each ring's progress."""
    from ringfence.service import rollouts

    with _database() as engine:
        found = rollouts.status(engine, rollout_id)
    if as_json:
        emit_json(rollouts.status_document(found))
        return
    r = found.rollout
    state = r.state
    head = Text(f"Rollout {r.id} ({r.update_id}, {found.strategy}): ", style="bold")
    head += Text(state.phase.value, style=_STYLE.get(state.phase.value, "cyan"))
    head += Text(f" at ring {state.ring}")
    out.print(head)
    if state.halt_reason:
        out.print(Text("halted: ", style="red") + Text(state.halt_reason))
    table = Table(title_justify="left")
    table.add_column("ring")
    table.add_column("assets", justify="right")
    table.add_column("progress", width=24)
    table.add_column("done", justify="right")
    table.add_column("states")
    finished = {"applied", "rolled_back", "rollback_failed", "skipped", "restore_point_failed", "failed"}
    for ring in found.rings:
        done = sum(n for s, n in ring.states.items() if s in finished)
        bar = ProgressBar(total=max(ring.assets, 1), completed=done, width=22)
        states = ", ".join(f"{s} {n}" for s, n in sorted(ring.states.items()))
        marker = "▶ " if ring.index == state.ring and not state.phase.is_terminal else "  "
        table.add_row(
            f"{marker}{'canary' if ring.index == 0 else ring.index}", str(ring.assets), bar, f"{done}", states
        )
    out.print(table)


def _move(verb: str, rollout_id: str, actor: str | None, reason: str) -> None:
    from ringfence.service import rollouts

    act = {
        "pause": rollouts.pause,
        "resume": rollouts.resume,
        "abort": rollouts.abort,
        "rollback": rollouts.roll_back,
    }[verb]
    with _database() as engine:
        state = act(engine, rollout_id, actor=_actor(actor), at=_now(), why=reason)
    out.print(f"Rollout {rollout_id} is {state.phase}.")
    if verb in ("resume", "rollback"):
        err.print(f"Run `ringfence rollout start {rollout_id}` to drive it.")


@rollout_app.command("pause")
def pause(rollout_id: IdArg, actor: ActorOpt = None, reason: ReasonOpt = "") -> None:
    """Pause a running rollout where it is."""
    _move("pause", rollout_id, actor, reason)


@rollout_app.command("resume")
def resume(rollout_id: IdArg, actor: ActorOpt = None, reason: ReasonOpt = "") -> None:
    """Resume a paused rollout where it paused."""
    _move("resume", rollout_id, actor, reason)


@rollout_app.command("abort")
def abort(rollout_id: IdArg, actor: ActorOpt = None, reason: ReasonOpt = "") -> None:
    """Halt a rollout now; nothing more is updated (roll it back with `rollout rollback`)."""
    _move("abort", rollout_id, actor, reason)


@rollout_app.command("rollback")
def rollback(rollout_id: IdArg, actor: ActorOpt = None, reason: ReasonOpt = "") -> None:
    """Roll back every asset a halted rollout updated."""
    _move("rollback", rollout_id, actor, reason)


@rollout_app.command("log")
def log(rollout_id: IdArg, as_json: JsonOpt = False) -> None:
    """The rollout's audit log: every transition, who made it and why."""
    from ringfence.service import rollouts

    with _database() as engine:
        entries = rollouts.log(engine, rollout_id)
    if as_json:
        emit_json({"rollout": rollout_id, "entries": rollouts.log_document(entries)})
        return
    for e in entries:
        detail = e.detail
        if e.action == "rollout.transition":
            line = f"{detail.get('from')} → {detail.get('to')} (ring {detail.get('ring')}): {detail.get('reason')}"
        else:
            line = ", ".join(f"{k}={v}" for k, v in detail.items())
        out.print(Text(f"{e.seq:>5} {e.at:%Y-%m-%d %H:%M:%S} {e.actor:<12} {e.action:<20} ", style="dim") + Text(line))
