"""The ``simulated`` driver: the simulation of ``ringfence.core.simulation`` in wall-clock time, its world
kept outside the process so that a process killed mid-rollout carries on in the same world.

Where the world is kept: in the ``world`` file when that option is given; otherwise, for ``ringfence rollout
start`` and the server, in the database, one world per rollout (:meth:`SimulatedDriver.keep_worlds_in` with
:class:`DatabaseWorlds`); built bare (tests, ``load_driver``), in memory only. A
world kept per rollout is read when the driver first hears of the rollout (when it is built for it, or at the
first batch of it) and written whole after every change; a driver then serves that one rollout.

Options (``--driver-option key=value``), all optional:

=========================  ===========================================================================
``world``                  JSON file holding the world (instead of the database); written atomically after
                           every change
``fail``                   comma-separated asset ids the release breaks
``probability``            chance that a listed asset fails once updated (default 1)
``after``                  time from install to failure (default 1m)
``signal``                 crashed | heartbeat_lost | reboot_loop | service_check_failed
``rollback_loses_data``    true: rolling back without a verified restore point loses data
``seed``                   seed of the failure draws (default 0)
``apply``, ``rollback``,   how long each operation takes (defaults: the update format's timing)
``restore_point``
``restore_point_failures`` asset ids whose restore point fails verification
``install_failures``       asset ids whose install fails
``rollback_failures``      asset ids whose rollback fails
``silent``                 asset ids that never report health
=========================  ===========================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import Engine

from ringfence.core.clock import utc_now
from ringfence.core.driver import Batch, DriverOption, DriverOptions, OperationResult
from ringfence.core.durations import LONGEST_DURATION, format_duration
from ringfence.core.errors import DriverError, InputError, Problem
from ringfence.core.gates import FailureSignal
from ringfence.core.simulation import FaultModel, SimulatedWorld, SimulationDriver
from ringfence.core.update import Timing
from ringfence.drivers.registry import DriverContext
from ringfence.files.disk import read_text, write_text_atomic
from ringfence.store.db import session_scope
from ringfence.store.driver_state import get_driver_state, put_driver_state

SIMULATED = "simulated"


class WorldStore(Protocol):
    """Where a simulated driver keeps the world of each rollout between processes."""

    def load(self, rollout_id: str) -> SimulatedWorld:
        """The world kept for ``rollout_id``; an empty one when none was kept."""

    def save(self, rollout_id: str, world: SimulatedWorld) -> None:
        """Keep ``world`` in place of the one before, atomically: a kill mid-save leaves the previous one whole."""


class DatabaseWorlds:
    """The simulated worlds of the rollouts of one database, one document per rollout (``driver_state``)."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utc_now) -> None:
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


_DURATION_EXPECTED = f"expected a duration such as 30s, 5m or 1h, at most {format_duration(LONGEST_DURATION)}"

OPTIONS = DriverOptions(
    "simulated",
    (
        DriverOption("world", "JSON file holding the world (instead of the database)", "path"),
        DriverOption("fail", "asset ids the release breaks", "ids"),
        DriverOption(
            "probability",
            "chance that a listed asset fails once updated",
            "number",
            default="1",
            minimum=0,
            maximum=1,
            expected="expected a number from 0 to 1",
        ),
        DriverOption("after", "time from install to failure", "duration", default="1m", expected=_DURATION_EXPECTED),
        DriverOption(
            "signal",
            "how a broken asset fails",
            "choice",
            default="crashed",
            choices=tuple(s.value for s in FailureSignal),
            expected="expected crashed, heartbeat_lost, reboot_loop or service_check_failed",
        ),
        DriverOption(
            "rollback_loses_data", "rolling back without a verified restore point loses data", "flag", default="false"
        ),
        DriverOption("seed", "seed of the failure draws", "whole", default="0"),
        DriverOption(
            "apply", "how long an install takes (default: the update's timing)", "duration", expected=_DURATION_EXPECTED
        ),
        DriverOption(
            "rollback",
            "how long a rollback takes (default: the update's timing)",
            "duration",
            expected=_DURATION_EXPECTED,
        ),
        DriverOption(
            "restore_point",
            "how long a restore point takes (default: the update's timing)",
            "duration",
            expected=_DURATION_EXPECTED,
        ),
        DriverOption("restore_point_failures", "asset ids whose restore point fails verification", "ids"),
        DriverOption("install_failures", "asset ids whose install fails", "ids"),
        DriverOption("rollback_failures", "asset ids whose rollback fails", "ids"),
        DriverOption("silent", "asset ids that never report health", "ids"),
    ),
)
"""The options of the ``simulated`` driver (the table in the module docstring)."""


class SimulatedDriver(SimulationDriver):
    """The entry point ``simulated``: built from string options, on the wall clock."""

    options = OPTIONS

    def __init__(self, **options: str) -> None:
        read = OPTIONS.read(options)
        fault = FaultModel(
            affected=read.ids("fail"),
            probability=read.number("probability"),
            after=float(read.seconds("after")),
            signal=FailureSignal(read.text("signal") or FailureSignal.crashed),
            rollback_loses_data=read.flag("rollback_loses_data"),
            seed=read.whole("seed"),
        )
        given = {key: read.values[key] for key in ("apply", "rollback", "restore_point")}
        timing = Timing(**{key: f"{value}s" for key, value in given.items() if value is not None})
        world = read.text("world")
        self.world_path = Path(world) if world else None
        self._store: WorldStore | None = None
        self._rollout: str | None = None
        loaded = self._load(self.world_path) if self.world_path else SimulatedWorld()
        super().__init__(
            clock=utc_now,
            timing=timing,
            fault=fault,
            world=loaded,
            restore_point_failures=read.ids("restore_point_failures"),
            install_failures=read.ids("install_failures"),
            rollback_failures=read.ids("rollback_failures"),
            silent=read.ids("silent"),
            on_change=self._keep,
        )

    @classmethod
    def from_context(cls, options: Mapping[str, str], context: DriverContext) -> SimulatedDriver:
        """Built for a rollout: each operation takes the update's own ``timing`` unless ``options`` say
        otherwise, and the world is kept in the database per rollout (in the ``world`` file when given)."""
        given: dict[str, str] = {}
        if context.update is not None:
            timing = context.update.timing
            given = {
                "apply": f"{timing.apply}s",
                "rollback": f"{timing.rollback}s",
                "restore_point": f"{timing.restore_point}s",
            }
        given.update(options)
        driver = cls(**given)
        if context.engine is not None and driver.world_path is None:
            driver.keep_worlds_in(DatabaseWorlds(context.engine), rollout_id=context.rollout_id)
        return driver

    @classmethod
    def for_server(cls, context: DriverContext) -> SimulatedDriver:
        """In the server's loop: the update's own timing (a test or demo update says 0s; a real one minutes),
        and the world kept in the database, so a server killed mid-install carries on with those installs."""
        return cls.from_context({}, context)

    def keep_worlds_in(self, store: WorldStore, *, rollout_id: str | None = None) -> None:
        """Keep the world of the rollout this driver serves in ``store``, read from there now (``rollout_id``
        given) or at the first batch of a rollout (the server's factory knows only the update)."""
        if self.world_path is not None:
            raise DriverError(f"this simulated driver keeps its world in {self.world_path}, not per rollout")
        self._store = store
        if rollout_id is not None:
            self._serve(rollout_id)

    @property
    def rollout_id(self) -> str | None:
        """The rollout whose world this driver keeps per rollout (None: not known yet, or a world file)."""
        return self._rollout

    def _serve(self, rollout_id: str) -> None:
        if self._store is None or self._rollout == rollout_id:
            return
        if self._rollout is not None:
            # Two rollouts in one world kept per rollout would overwrite each other's documents.
            raise DriverError(
                f"this simulated driver keeps the world of rollout {self._rollout}; "
                f"rollout {rollout_id} needs a driver of its own"
            )
        self.replace_world(self._store.load(rollout_id))
        self._rollout = rollout_id

    # The protocol, after learning which rollout's world to carry on from.

    def start(self, batch: Batch) -> None:
        self._serve(batch.rollout_id)
        super().start(batch)

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        self._serve(batch.rollout_id)
        return super().poll(batch)

    def cancel(self, batch: Batch) -> None:
        self._serve(batch.rollout_id)
        super().cancel(batch)

    @staticmethod
    def _load(path: Path) -> SimulatedWorld:
        if not path.exists():
            return SimulatedWorld()
        text = read_text(path)
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError([Problem(f"is not JSON ({exc.msg} at line {exc.lineno})", source=str(path))]) from None
        if not isinstance(document, dict):
            raise InputError([Problem("is not a simulated world (a JSON object)", source=str(path))])
        return SimulatedWorld.from_document(document, str(path))

    def _keep(self, world: SimulatedWorld) -> None:
        if self.world_path is not None:
            # Atomic (temporary file + rename): a process killed mid-write leaves the previous world whole.
            write_text_atomic(self.world_path, json.dumps(world.to_document(), sort_keys=True))
        elif self._store is not None and self._rollout is not None:
            self._store.save(self._rollout, world)


def read_world(path: Path | str) -> SimulatedWorld:
    """The world a file-backed simulated driver left in ``path`` (for tests and inspection)."""
    return SimulatedDriver._load(Path(path))


__all__ = ["OPTIONS", "SIMULATED", "DatabaseWorlds", "SimulatedDriver", "WorldStore", "read_world"]
