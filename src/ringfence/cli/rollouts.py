"""``ringfence rollout ...``: create, approve, start (and run), list, status, pause, resume, abort, rollback, log.

State lives in the database (``RINGFENCE_DATABASE_URL``, default a SQLite file in ``$RINGFENCE_HOME``);
every command migrates it to the newest schema first. ``start`` runs the controller in the foreground
until the rollout waits for a person or is over; kill it at any moment and run it again to carry on.
"""

from __future__ import annotations

from contextlib import closing, nullcontext
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ringfence.cli.database import database, resolve_actor
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out, warn
from ringfence.core.clock import utc_now
from ringfence.core.words import count
from ringfence.drivers.registry import available_health_sources

if TYPE_CHECKING:
    from ringfence.core.rollout.controller import StepReport

rollout_app = typer.Typer(
    name="rollout",
    help="Run an update through its rings: canaries, health gates, rollback. State is kept in the database.",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout", rich_help_panel="Change safely")

IdArg = Annotated[str, typer.Argument(help="Rollout id (r-000001).", show_default=False)]
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


@rollout_app.command("create")
def create(
    estate_file: Annotated[Path, typer.Argument(help="Estate file.", show_default=False)],
    update_file: Annotated[Path, typer.Argument(help="Update file.", show_default=False)],
    driver: Annotated[str, typer.Option("--driver", help="Execution driver (entry point name).")] = "simulated",
    health_source: Annotated[
        str | None,
        typer.Option(
            "--health-source",
            help="What judges the rollout's health: driver (the default, the driver's own reading) or an "
            "installed health source: " + ", ".join(s for s in available_health_sources() if s != "driver") + ".",
            show_default=False,
        ),
    ] = None,
    holds: Annotated[Path | None, typer.Option("--holds", help="Vendor holds file.", show_default=False)] = None,
    override_hold: Annotated[
        str | None, typer.Option("--override-hold", help="Roll out a held release anyway; recorded.")
    ] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="ringfence, all-at-once or batches.")] = "ringfence",
    require_approval: Annotated[
        bool, typer.Option("--require-approval", help="Someone else must approve before it can start.")
    ] = False,
    driver_option: Annotated[
        list[str] | None,
        typer.Option(
            "--driver-option",
            "-o",
            help="Driver option key=value (repeatable), kept with the rollout so that the server or any "
            "`ringfence worker` can drive it (the ansible driver's inventory and playbooks).",
            show_default=False,
        ),
    ] = None,
    health_option: Annotated[
        list[str] | None,
        typer.Option(
            "--health-option",
            help="Option key=value of the --health-source (repeatable), kept with the rollout: prometheus's url, "
            "checks (a checks file, read and checked now), timeout, batch. Not given: the server's environment.",
            show_default=False,
        ),
    ] = None,
    actor: ActorOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the rollout without storing it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Plan an update on an estate and store it as a rollout, ready to start (or to approve)."""
    from ringfence.cli.plans import load_holds
    from ringfence.core.update import Hold
    from ringfence.drivers.registry import available_drivers
    from ringfence.files.disk import read_text
    from ringfence.service import rollouts

    if driver not in available_drivers():
        from ringfence.drivers.registry import load_driver

        load_driver(driver)  # raises the sentence listing the installed drivers
    rollouts.check_health_source(health_source, path=("--health-source",))  # exit 2 naming the known sources
    from ringfence.service.workers import (
        checked_health_options,
        checked_options,
        keep_driver_options,
        keep_health_options,
    )

    # Checked before anything is stored: a bad option is exit 2 with nothing changed. None given is fine: they
    # can still come with `rollout start -o …` (a worker cannot drive the rollout until they do, and says so).
    options = checked_options(driver, rollouts.parse_driver_options(driver_option)) if driver_option else {}
    health_options: dict[str, str] = {}
    if health_option:
        health_options = checked_health_options(
            rollouts.check_health_source(health_source, path=("--health-source",)),
            rollouts.parse_driver_options(health_option, path=("--health-option",)),
        )
    held = tuple(h for h in load_holds(holds) if isinstance(h, Hold))
    with nullcontext(None) if dry_run else database(writes=True) as engine:
        created = rollouts.create_rollout(
            engine,
            estate_text=read_text(estate_file),
            estate_source=str(estate_file),
            update_text=read_text(update_file),
            update_source=str(update_file),
            actor=resolve_actor(actor),
            at=utc_now(),
            holds=held,
            override_hold=override_hold,
            driver=driver,
            strategy=strategy,
            require_approval=require_approval,
            dry_run=dry_run,
            health_source=health_source,
        )
        if options and created.rollout is not None and engine is not None:
            keep_driver_options(engine, created.rollout.id, driver, options, utc_now())
        if health_options and created.rollout is not None and engine is not None:
            keep_health_options(engine, created.rollout.id, driver, health_options, utc_now())
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
    targets = count(created.strategy.targets, "target")
    what = f"{created.update.release}: {targets} in {count(len(rings), 'ring')} ({sizes})"
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

    with database(writes=True) as engine:
        state = rollouts.approve_rollout(engine, rollout_id, actor=resolve_actor(actor), at=utc_now())
    out.print(f"Rollout {rollout_id} approved; it is {state.phase}.")


@rollout_app.command("start")
def start(
    rollout_id: IdArg,
    once: Annotated[bool, typer.Option("--once", help="Do one controller step and stop.")] = False,
    driver_option: Annotated[
        list[str] | None,
        typer.Option(
            "--driver-option",
            "-o",
            help="Driver option key=value (repeatable); for the simulated driver, e.g. apply=30s overrides the "
            "update's timing.",
            show_default=False,
        ),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="Seconds between polls while waiting (at most 3600).")
    ] = 2.0,
    actor: ActorOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the outcome.")] = False,
) -> None:
    """Start a rollout (or carry on with a running one) and drive it until it waits for a person or ends.

    Shows where it is while it drives. Ctrl-C stops driving after the step under way (exit status 130); run
    the command again, or kill it any way you like and run it again, to carry on where it stopped.
    """
    from ringfence.cli.driving import CtrlC, StopDriving, Watch
    from ringfence.core.errors import ConflictError, InputError, Problem
    from ringfence.core.rollout.state import RolloutPhase
    from ringfence.service import rollouts
    from ringfence.service.driver_state import rollout_driver, rollout_health_source
    from ringfence.service.runner import check_driver, claim_for_cli
    from ringfence.service.workers import keep_driver_options, kept_driver_options

    # Written so that NaN is refused too; a poll interval of hours would only hide progress.
    if not 0 <= poll_interval <= 3600:
        raise InputError(
            [Problem(f"{poll_interval} is not a number of seconds from 0 to 3600", path=("--poll-interval",))]
        )
    # The claim first: no worker drives the rollout while this command does (a ConflictError naming the worker
    # that drives it), and it goes with the command however it ends.
    with database(writes=True) as engine, closing(claim_for_cli(engine, rollout_id)):
        who = resolve_actor(actor)
        given = rollouts.parse_driver_options(driver_option or [])
        # Options given now are kept with the rollout (a worker taking it over builds the same driver); none
        # given: those kept with it, if any.
        options = given or kept_driver_options(engine, rollout_id)
        # The simulated driver: the update's own timing unless an option says otherwise, its world kept in the
        # database, so that a start after a kill finds the installs the killed process had begun.
        driver = rollout_driver(engine, rollout_id, options)
        check_driver(engine, rollout_id, driver)  # exit 2 with the driver's sentence, before the rollout moves
        # What judges it: the health source its plan names (the driver's own unless it names another), built
        # before the rollout moves, so a source that cannot be built is exit 2 with nothing changed.
        health = rollout_health_source(engine, rollout_id, driver)
        if given:
            name = rollouts.stored_plan(rollouts.status(engine, rollout_id).rollout).driver
            keep_driver_options(engine, rollout_id, name, given, utc_now())
        rollouts.start(engine, rollout_id, actor=who, at=utc_now())
        controller = rollouts.controller(engine, driver, utc_now, actor="controller", health=health)
        found = rollouts.status(engine, rollout_id).rollout
        try:
            plan = rollouts.stored_plan(found)
        except ConflictError:
            plan = None  # shown by ring number alone; the controller says what is wrong with the plan
        state = found.state
        watch = Watch(
            out,
            rollout_id,
            phase=state.phase,
            ring=state.ring,
            phase_entered_at=state.updated_at,
            plan=plan,
            quiet=quiet,
            clock=utc_now,
        )
        ctrl_c = CtrlC()

        def wait_until(at: datetime | None) -> None:
            delay = poll_interval if at is None else min(poll_interval, max(0.0, (at - utc_now()).total_seconds()))
            ctrl_c.sleep(delay)

        def show(report: StepReport) -> None:
            watch.show(report)
            if not report.is_settled:  # settled: the command ends here anyway, with the outcome
                ctrl_c.checkpoint()

        try:
            with ctrl_c, watch:
                if once:
                    report = controller.step(rollout_id)
                    watch.show(report)
                else:
                    report = controller.run_until_settled(rollout_id, wait_until=wait_until, on_step=show)
        except StopDriving:
            now = rollouts.status(engine, rollout_id).rollout.state.phase
            err.print(
                f"stopped driving {rollout_id}; it is still {now}; "
                f"run `ringfence rollout start {rollout_id}` to carry on",
                markup=False,
            )
            raise typer.Exit(130) from None
    phase = report.phase
    out.print(Text(f"Rollout {rollout_id} is {phase}.", style=_STYLE.get(phase.value, "")))
    if phase in (RolloutPhase.HALTED, RolloutPhase.FAILED, RolloutPhase.ROLLED_BACK):
        raise typer.Exit(1)


@rollout_app.command("status")
def status(rollout_id: IdArg, as_json: JsonOpt = False) -> None:
    """Where a rollout is: its phase and each ring's progress."""
    from ringfence.service import rollouts

    with database(writes=False) as engine:
        found = rollouts.status(engine, rollout_id)
    if as_json:
        emit_json(rollouts.status_document(found).model_dump(mode="json"))
        return
    r = found.rollout
    state = r.state
    head = Text(f"Rollout {r.id} ({r.update_id}, {found.strategy}): ", style="bold")
    head += Text(state.phase.value, style=_STYLE.get(state.phase.value, "cyan"))
    head += Text(f" at ring {state.ring}")
    out.print(head)
    if found.health_source != "driver":  # installs by its driver, judged by another source
        out.print(Text("health judged by: ", style="bold") + Text(found.health_source))
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


@rollout_app.command("list")
def list_rollouts(
    phase: Annotated[
        list[str] | None,
        typer.Option("--phase", help="Only rollouts in this phase (repeatable).", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every rollout: its update, strategy, driver, phase and ring; newest first."""
    from ringfence.core.errors import ConflictError, InputError, Problem
    from ringfence.core.rollout.state import RolloutPhase
    from ringfence.service import rollouts
    from ringfence.store import rollouts as stored_rollouts
    from ringfence.store.db import session_scope

    allowed = [p.value for p in RolloutPhase]
    wanted: list[RolloutPhase] = []
    for given in phase or []:
        if given.strip() not in allowed:
            # Refused before the database is opened (and migrated): bad input changes nothing.
            raise InputError(
                [Problem(f"{given!r} is not a rollout phase; the phases are: {', '.join(allowed)}", path=("--phase",))]
            )
        wanted.append(RolloutPhase(given.strip()))
    with database(writes=False) as engine, session_scope(engine, readonly=True) as session:
        found = stored_rollouts.list_rollouts(session, phases=wanted or None)
    rows = []
    for r in found:
        try:
            plan = rollouts.stored_plan(r)
        except ConflictError:
            plan = None  # listed all the same: `rollout status` says what is wrong with it
        rows.append(
            {
                "id": r.id,
                "update": r.update_id,
                "strategy": plan.strategy if plan else None,
                "driver": plan.driver if plan else None,
                "phase": r.state.phase.value,
                "ring": r.state.ring,
                "ring_name": plan.ring_name(r.state.ring) if plan else f"ring {r.state.ring}",
                "rings": plan.ring_count if plan else None,
                "created_by": r.created_by,
                "created_at": r.created_at.isoformat(),
                "updated_at": r.state.updated_at.isoformat(),
            }
        )
    if as_json:
        emit_json({"rollouts": sorted(rows, key=lambda row: str(row["id"]))})
        return
    if not rows:
        out.print("No rollouts" + (f" in phase {', '.join(p.value for p in wanted)}." if wanted else "."))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # Ids and phases never wrap: they are what a person copies or scans for.
    for column in ("rollout", "update", "strategy", "driver", "phase", "ring", "created by", "created", "updated"):
        table.add_column(column, no_wrap=column in ("rollout", "phase"))
    # Newest first: the one a person is most likely looking for.
    for row, r in sorted(
        zip(rows, found, strict=True), key=lambda pair: (pair[1].created_at, pair[1].id), reverse=True
    ):
        of = f" ({r.state.ring + 1}/{row['rings']})" if row["rings"] else ""
        table.add_row(
            r.id,
            r.update_id,
            str(row["strategy"] or "?"),
            str(row["driver"] or "?"),
            Text(r.state.phase.value, style=_STYLE.get(r.state.phase.value, "cyan")),
            f"{row['ring_name']}{of}",
            r.created_by,
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.state.updated_at:%Y-%m-%d %H:%M}",
        )
    # A terminal's width is the person's screen; a file or a pipe gets whole rows, not rows cut at 80 columns.
    if out.is_terminal:
        out.print(table)
    else:
        whole = out.measure(table, options=out.options.update_width(10_000)).maximum
        Console(file=out.file, width=whole, highlight=False, soft_wrap=False).print(table)


def _move(verb: str, rollout_id: str, actor: str | None, reason: str) -> None:
    from ringfence.service import rollouts

    act = {
        "pause": rollouts.pause,
        "resume": rollouts.resume,
        "abort": rollouts.abort,
        "rollback": rollouts.roll_back,
    }[verb]
    with database(writes=True) as engine:
        state = act(engine, rollout_id, actor=resolve_actor(actor), at=utc_now(), why=reason)
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

    with database(writes=False) as engine:
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
