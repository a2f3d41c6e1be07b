"""The simulated driver's worlds kept in the database, and the driver (and health source) a rollout is driven with.

``ringfence rollout start`` and the server's controller loop build the simulated driver here, so both run a
rollout the same way: each operation takes the update's own ``timing`` (a ``--driver-option`` says otherwise),
and the world — what each asset has installed, which operations run and when they end — is kept per rollout in
``driver_state``, written in a transaction of its own after every change. A process killed mid-install (kill
-9, Ctrl-C, a crash) leaves the world as it was at its last change; the next process reads it back, the
installs begun before the kill end at the time they were given, and their results are recorded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sqlalchemy.engine import Engine

from ringfence.core.driver import Driver, HealthSource
from ringfence.core.simulation import SimulatedWorld
from ringfence.core.update import Update
from ringfence.drivers.registry import DriverContext, build_driver, build_health_source, load_driver
from ringfence.drivers.simulated import SIMULATED, DatabaseWorlds
from ringfence.service import rollouts
from ringfence.store.db import session_scope
from ringfence.store.rollouts import get_rollout
from ringfence.store.workers import get_health_options


def simulated_driver(
    engine: Engine, update: Update, options: Mapping[str, str] | None = None, *, rollout_id: str | None = None
) -> Driver:
    """The simulated driver for a rollout of ``update``: its timing unless ``options`` say otherwise, its world
    in the database (in the file of ``options["world"]`` when given).

    Without ``rollout_id`` (the server's factory knows only the update) the world is read at the first batch.
    """
    return build_driver(SIMULATED, options, DriverContext(engine=engine, update=update, rollout_id=rollout_id))


def rollout_driver(engine: Engine, rollout_id: str, options: Mapping[str, str]) -> Driver:
    """The driver ``rollout_id`` was created for, built with ``options`` (``--driver-option key=value``)."""
    with session_scope(engine, readonly=True) as session:
        rollout = get_rollout(session, rollout_id)
    name = rollouts.stored_plan(rollout).driver
    if name != SIMULATED:
        return load_driver(name, **options)
    return simulated_driver(engine, Update.model_validate(rollout.update_doc), options, rollout_id=rollout_id)


def rollout_health_source(engine: Engine, rollout_id: str, driver: Driver) -> HealthSource:
    """What judges ``rollout_id`` when ``driver`` drives it: the health source its stored plan names (the
    driver's own reading unless it names another), built as the server's loop builds it, on ``engine``."""
    with session_scope(engine, readonly=True) as session:
        rollout = get_rollout(session, rollout_id)
        options = get_health_options(session, rollout_id)  # --health-option at create; none: the environment
    context = DriverContext(
        engine=engine,
        update=Update.model_validate(rollout.update_doc),
        rollout_id=rollout_id,
        environ=dict(os.environ),  # the agent timeouts, as the server reads them
    )
    return build_health_source(rollouts.stored_plan(rollout).health_source, driver, options, context=context)


def load_world(engine: Engine, rollout_id: str) -> SimulatedWorld:
    """The simulated world kept for ``rollout_id`` (empty when none was kept), for tests and inspection."""
    return DatabaseWorlds(engine).load(rollout_id)


__all__ = [
    "SIMULATED",
    "DatabaseWorlds",
    "load_world",
    "rollout_driver",
    "rollout_health_source",
    "simulated_driver",
]
