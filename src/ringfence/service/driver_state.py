"""The simulated driver's worlds kept in the database, and the driver a rollout is driven with.

``ringfence rollout start`` and the server's controller loop build the simulated driver here, so both run a
rollout the same way: each operation takes the update's own ``timing`` (a ``--driver-option`` says otherwise),
and the world — what each asset has installed, which operations run and when they end — is kept per rollout in
``driver_state``, written in a transaction of its own after every change. A process killed mid-install (kill
-9, Ctrl-C, a crash) leaves the world as it was at its last change; the next process reads it back, the
installs begun before the kill end at the time they were given, and their results are recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from ringfence.core.driver import Driver, load_driver
from ringfence.core.errors import DriverError
from ringfence.core.simulation import SimulatedWorld
from ringfence.core.update import Update
from ringfence.drivers.simulated import SimulatedDriver
from ringfence.service import rollouts
from ringfence.store import repo
from ringfence.store.db import session_scope
from ringfence.store.driver_state import get_driver_state, put_driver_state

SIMULATED = "simulated"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DatabaseWorlds:
    """The simulated worlds of the rollouts of one database, one document per rollout (``driver_state``)."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = _utc_now) -> None:
        self.engine = engine
        self.clock = clock

    def load(self, rollout_id: str) -> SimulatedWorld:
        with session_scope(self.engine, readonly=True) as session:
            document = get_driver_state(session, rollout_id, SIMULATED)
        if document is None:
            return SimulatedWorld()
        if not isinstance(document, Mapping):
            raise DriverError(f"the simulated world kept for rollout {rollout_id} is not a JSON object")
        return SimulatedWorld.from_document(document, f"the simulated world kept for rollout {rollout_id}")

    def save(self, rollout_id: str, world: SimulatedWorld) -> None:
        # A short transaction of its own, never inside the controller's: the world and the rollout's rows
        # are written apart, and the controller is built to repeat a step whose results it did not record.
        with session_scope(self.engine) as session:
            put_driver_state(session, rollout_id, SIMULATED, world.to_document(), at=self.clock())


def simulated_driver(
    engine: Engine, update: Update, options: Mapping[str, str] | None = None, *, rollout_id: str | None = None
) -> Driver:
    """The simulated driver for a rollout of ``update``: its timing unless ``options`` say otherwise, its world
    in the database (in the file of ``options["world"]`` when given).

    Without ``rollout_id`` (the server's factory knows only the update) the world is read at the first batch.
    """
    timing = update.timing
    given = {
        "apply": f"{timing.apply}s",
        "rollback": f"{timing.rollback}s",
        "restore_point": f"{timing.restore_point}s",
    }
    given.update(options or {})
    driver = load_driver(SIMULATED, **given)
    if isinstance(driver, SimulatedDriver) and "world" not in given:
        driver.keep_worlds_in(DatabaseWorlds(engine), rollout_id=rollout_id)
    return driver


def rollout_driver(engine: Engine, rollout_id: str, options: Mapping[str, str]) -> Driver:
    """The driver ``rollout_id`` was created for, built with ``options`` (``--driver-option key=value``)."""
    with session_scope(engine, readonly=True) as session:
        rollout = repo.get_rollout(session, rollout_id)
    name = rollouts.stored_plan(rollout).driver
    if name != SIMULATED:
        return load_driver(name, **options)
    return simulated_driver(engine, Update.model_validate(rollout.update_doc), options, rollout_id=rollout_id)


def load_world(engine: Engine, rollout_id: str) -> SimulatedWorld:
    """The simulated world kept for ``rollout_id`` (empty when none was kept), for tests and inspection."""
    return DatabaseWorlds(engine).load(rollout_id)


__all__ = ["SIMULATED", "DatabaseWorlds", "load_world", "rollout_driver", "simulated_driver"]
