"""``ringfence worker``: drive rollouts from the database, without the HTTP server, on any installed driver.

A worker runs the server's controller loop (:class:`ringfence.service.runner.ControllerLoop`) in the
foreground: it claims each running rollout whose driver it runs (a PostgreSQL advisory lock, so exactly one
process drives a rollout), builds the driver from the options kept with the rollout (``rollout create
--driver-option``), and drives it until it waits for a person or ends. Run as many as you like, on the server's
machine or others, on one PostgreSQL database: kill one (even with kill -9) and another takes its rollouts over
at its next turn. Each records a heartbeat, so the dashboard and API say which worker drives a rollout, or that
a rollout waits for a worker that can run its driver. SIGTERM or Ctrl-C stops it after the step under way.
docs/operations.md says how to deploy them.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable, Collection
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from ringfence.cli.database import cli_actor
from ringfence.cli.main import app
from ringfence.cli.output import err

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

MAX_INTERVAL = 3600.0


@app.command(rich_help_panel="Run the service")
def worker(
    driver: Annotated[
        list[str] | None,
        typer.Option(
            "--driver",
            "-d",
            help="A driver this worker runs (repeatable, or comma-separated); default: every installed driver that "
            "can work here.",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between two looks at the rollouts (above 0, at most 3600).")
    ] = 2.0,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            envvar="RINGFENCE_DATABASE_URL",
            help="Database URL (PostgreSQL for several workers); default: SQLite in the per-user home.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Drive running rollouts from the database on any driver (ansible included), until stopped."""
    from ringfence.cli.home import database_label
    from ringfence.core.errors import InputError, Problem
    from ringfence.drivers.registry import available_drivers, worker_runnable
    from ringfence.service.runner import ControllerLoop
    from ringfence.service.schema import upgrade_audited
    from ringfence.store.db import database_url, make_engine, normalise_url

    # Written so that NaN and infinity are refused too: a worker that never wakes drives nothing.
    if not (math.isfinite(interval) and 0 < interval <= MAX_INTERVAL):
        raise InputError(
            [Problem(f"{interval} is not a number of seconds above 0 and at most 3600", path=("--interval",))]
        )
    runs = _drivers_asked(driver or [], available_drivers(), worker_runnable)
    url = database or database_url()
    engine = make_engine(url)
    try:
        upgrade_audited(engine, cli_actor(None))
        if normalise_url(url).get_backend_name() == "sqlite":
            _refuse_second_sqlite_worker(engine, runs)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        loop = ControllerLoop(engine, interval=interval, runs=runs, role="worker", actor="controller")
        stop = threading.Event()

        def stop_soon(signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, stop_soon)
        signal.signal(signal.SIGINT, stop_soon)
        loop.start()
        err.print(
            f"ringfence worker running drivers {', '.join(runs)} on {database_label(url)} "
            f"(every {interval:g} s); SIGTERM or Ctrl-C stops it",
            markup=False,
            highlight=False,
        )
        stop.wait()
        err.print("ringfence worker: stopping after the step under way", markup=False, highlight=False)
        loop.stop()
    finally:
        engine.dispose()


def _drivers_asked(
    given: list[str], installed: tuple[str, ...], runnable_of: Callable[[Collection[str] | None], tuple[str, ...]]
) -> tuple[str, ...]:
    """The drivers ``--driver`` names (repeatable or comma-separated), each installed and able to work here;
    every runnable one when none is named. An InputError names each that is not."""
    from ringfence.core.errors import InputError, Problem

    names = [n.strip() for g in given for n in g.split(",") if n.strip()]
    runnable = runnable_of(set(names) if given else None)
    if not given:
        if not runnable:
            raise InputError([Problem("no installed driver can work in this process", path=("--driver",))])
        return runnable
    problems = []
    for name in dict.fromkeys(names):
        if name not in installed:
            problems.append(
                Problem(
                    f"there is no driver '{name}'; the installed drivers are: {', '.join(installed)}", ("--driver",)
                )
            )
        elif name not in runnable:
            problems.append(
                Problem(
                    f"driver '{name}' cannot work here (is its extra installed? pip install 'ringfence[{name}]')",
                    ("--driver",),
                )
            )
    if problems or not names:
        raise InputError(problems or [Problem("names no driver", path=("--driver",))])
    return tuple(sorted(dict.fromkeys(names)))


def _refuse_second_sqlite_worker(engine: Engine, runs: tuple[str, ...]) -> None:
    """SQLite has no claims: two processes running one driver would both drive its rollouts. Refused."""
    from ringfence.core.clock import utc_now
    from ringfence.core.errors import InputError, Problem
    from ringfence.store.db import session_scope
    from ringfence.store.workers import live_workers

    with session_scope(engine, readonly=True) as session:
        alive = live_workers(session, utc_now())
    clash = sorted({(w.id, d) for w in alive for d in w.drivers if d in runs})
    if clash:
        who, what = clash[0]
        raise InputError(
            [
                Problem(
                    f"{who} already runs driver '{what}' on this SQLite database, which cannot share a rollout "
                    "between processes; use PostgreSQL for several workers, or give this one other --driver values",
                    path=("--driver",),
                )
            ]
        )


__all__ = ["worker"]
