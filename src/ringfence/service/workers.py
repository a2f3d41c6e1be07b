"""Workers: who drives which rollout, whether anyone can, and the driver options any of them builds it with.

Every controller loop (``ringfence serve``'s, each ``ringfence worker``) records a heartbeat in the database
(:mod:`ringfence.store.workers`): the drivers it can run and the rollouts it drives. From those rows a page or
an API answer can say, of a running rollout that nobody drives, that it is *waiting for a worker that can run
driver X* rather than show nothing happening (:func:`waiting_for_worker`).

A rollout's ``--driver-option`` values (``rollout create`` or ``rollout start``) are kept with it
(:func:`keep_driver_options`), checked against what the driver declares and with paths made absolute, so that
a worker started anywhere (another directory, another machine with the same paths) builds the same driver.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from ringfence.core.driver import DRIVERS_OWN_HEALTH, DriverOptions
from ringfence.core.errors import InputError, Problem
from ringfence.core.rollout.state import RolloutPhase
from ringfence.drivers.registry import options_of
from ringfence.store.db import session_scope
from ringfence.store.records import Rollout
from ringfence.store.workers import (
    WorkerBeat,
    get_driver_options,
    get_health_options,
    live_workers,
    put_driver_options,
    put_health_options,
)

WAITING_PHASES = frozenset(
    {
        RolloutPhase.TAKING_RESTORE_POINTS,
        RolloutPhase.APPLYING,
        RolloutPhase.BAKING,
        RolloutPhase.JUDGING,
        RolloutPhase.ROLLING_BACK,
    }
)
"""Phases in which a rollout makes no progress unless a worker drives it."""


def worker_id(role: str) -> str:
    """A new worker's id: its host, its process and a random tail (a pid is reused after a restart)."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def new_beat(role: str, drivers: tuple[str, ...], interval: float, at: datetime) -> WorkerBeat:
    """The first heartbeat of a worker starting now in this process."""
    return WorkerBeat(
        id=worker_id(role),
        host=socket.gethostname(),
        pid=os.getpid(),
        role=role,
        drivers=drivers,
        driving=(),
        interval=interval,
        started_at=at,
        seen_at=at,
    )


def worker_status(engine: Engine, rollout: Rollout, now: datetime) -> tuple[str | None, str | None]:
    """Who drives ``rollout`` (the live worker's id), and why nothing does: a sentence when it needs driving and
    no live worker runs its driver (None when it is not running, or some worker can and is about to take it)."""
    with session_scope(engine, readonly=True) as session:
        alive = live_workers(session, now)
    driver = driver_name(rollout)
    by = next((w.id for w in alive if rollout.id in w.driving), None)
    if by is not None or rollout.state.phase not in WAITING_PHASES or any(driver in w.drivers for w in alive):
        return by, None
    return None, (
        f"waiting for a worker that can run driver '{driver}': no live ringfence serve or worker runs it; "
        f"start one with `ringfence worker --driver {driver}`"
    )


def driven_by(engine: Engine, rollout_id: str, now: datetime) -> str | None:
    """The id of the live worker driving ``rollout_id``, if any."""
    with session_scope(engine, readonly=True) as session:
        alive = live_workers(session, now)
    return next((w.id for w in alive if rollout_id in w.driving), None)


def driver_name(rollout: Rollout) -> str:
    """The driver ``rollout`` was created for (``simulated`` when its plan names none)."""
    plan = rollout.plan
    name = plan.get("driver") if isinstance(plan, dict) else None
    return str(name or "simulated")


def checked_options(driver: str, options: Mapping[str, str]) -> dict[str, str]:
    """``options`` checked against what ``driver`` declares (an InputError naming the option), with every path
    made absolute from this process's directory, so that a worker elsewhere reads the same files."""
    declared = options_of(driver)
    if declared is None:
        return dict(options)
    declared.read(options)  # names an unknown option, a missing required one, or a bad value
    return _absolute_paths(declared, options)


def _absolute_paths(declared: DriverOptions | None, options: Mapping[str, str]) -> dict[str, str]:
    """``options`` with each value of a ``path`` option made absolute from this process's directory: a worker on
    another machine, or started elsewhere, reads the same files."""
    kinds = {o.name: o.kind for o in declared} if declared is not None else {}
    return {
        key: str(Path(value).expanduser().resolve()) if kinds.get(key) == "path" and value.strip() else value
        for key, value in options.items()
    }


def keep_driver_options(engine: Engine, rollout_id: str, driver: str, options: Mapping[str, str], at: datetime) -> None:
    """Keep ``options`` (checked: :func:`checked_options`) as what ``rollout_id``'s driver is built with."""
    kept = checked_options(driver, options)
    with session_scope(engine) as session:
        put_driver_options(session, rollout_id, driver, kept, at=at)


def checked_health_options(source: str, options: Mapping[str, str]) -> dict[str, str]:
    """``options`` for health source ``source`` (``--health-option``), checked by building the source as a worker
    would (the environment filling in what is not given; a checks file read and validated), with every path
    made absolute: an InputError naming the option, before anything is stored."""
    from ringfence.drivers.registry import DriverContext, health_source_class

    if source == DRIVERS_OWN_HEALTH:
        raise InputError(
            [
                Problem(
                    "the rollout is judged by its driver's own reading, which takes --driver-option; "
                    "--health-option is for a --health-source such as prometheus",
                    path=("--health-option",),
                )
            ]
        )
    cls = health_source_class(source)
    declared = getattr(cls, "options", None)
    absolute = _absolute_paths(declared if isinstance(declared, DriverOptions) else None, options)
    from_context = getattr(cls, "from_context", None)
    if not callable(from_context):
        raise InputError([Problem(f"health source '{source}' takes no options of its own", path=("--health-option",))])
    from_context(absolute, DriverContext(environ=dict(os.environ)))
    return absolute


def keep_health_options(engine: Engine, rollout_id: str, driver: str, options: Mapping[str, str], at: datetime) -> None:
    """Keep ``options`` (checked: :func:`checked_health_options`) as what ``rollout_id``'s health source is built
    with, so that the server, any worker and ``rollout start`` judge it alike."""
    with session_scope(engine) as session:
        put_health_options(session, rollout_id, driver, options, at=at)


def kept_health_options(engine: Engine, rollout_id: str) -> dict[str, str]:
    """The health-source options kept with ``rollout_id`` (empty when none were given)."""
    with session_scope(engine, readonly=True) as session:
        return get_health_options(session, rollout_id)


def kept_driver_options(engine: Engine, rollout_id: str) -> dict[str, str]:
    """The driver options kept with ``rollout_id`` (empty when none were given)."""
    with session_scope(engine, readonly=True) as session:
        return get_driver_options(session, rollout_id)


__all__ = [
    "WAITING_PHASES",
    "checked_health_options",
    "checked_options",
    "driven_by",
    "driver_name",
    "keep_driver_options",
    "keep_health_options",
    "kept_driver_options",
    "kept_health_options",
    "new_beat",
    "worker_id",
    "worker_status",
]
