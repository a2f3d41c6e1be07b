"""The ``simulated`` driver: the simulation of ``ringfence.core.simulation`` in wall-clock time, its world
kept outside the process so that a process killed mid-rollout carries on in the same world.

Where the world is kept: in the ``world`` file when that option is given; otherwise, for ``ringfence rollout
start`` and the server, in the database, one world per rollout (:meth:`SimulatedDriver.keep_worlds_in` with
``ringfence.service.driver_state.DatabaseWorlds``); built bare (tests, ``load_driver``), in memory only. A
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
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ringfence.core.driver import Batch, OperationResult
from ringfence.core.durations import LONGEST_DURATION, format_duration, parse_duration
from ringfence.core.errors import DriverError, InputError, Problem
from ringfence.core.gates import FailureSignal
from ringfence.core.simulation import FaultModel, SimulatedWorld, SimulationDriver
from ringfence.core.update import Timing
from ringfence.files.disk import read_text, write_text_atomic


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _ids(value: str | None) -> frozenset[str]:
    return frozenset(part.strip() for part in (value or "").split(",") if part.strip())


def _option_error(key: str, value: str, expected: str) -> InputError:
    return InputError(
        [Problem(f"simulated driver option {key}={value!r}: expected {expected}", path=("--driver-option",))]
    )


class WorldStore(Protocol):
    """Where a simulated driver keeps the world of each rollout between processes."""

    def load(self, rollout_id: str) -> SimulatedWorld:
        """The world kept for ``rollout_id``; an empty one when none was kept."""

    def save(self, rollout_id: str, world: SimulatedWorld) -> None:
        """Keep ``world`` in place of the one before, atomically: a kill mid-save leaves the previous one whole."""


class SimulatedDriver(SimulationDriver):
    """The entry point ``simulated``: built from string options, on the wall clock."""

    def __init__(
        self,
        *,
        world: str | None = None,
        fail: str | None = None,
        probability: str = "1",
        after: str = "1m",
        signal: str = "crashed",
        rollback_loses_data: str = "false",
        seed: str = "0",
        apply: str | None = None,
        rollback: str | None = None,
        restore_point: str | None = None,
        restore_point_failures: str | None = None,
        install_failures: str | None = None,
        rollback_failures: str | None = None,
        silent: str | None = None,
    ) -> None:
        try:
            chance = float(probability)
        except ValueError:
            raise _option_error("probability", probability, "a number from 0 to 1") from None
        if not 0 <= chance <= 1:
            raise _option_error("probability", probability, "a number from 0 to 1")
        if not seed.lstrip("-").isdigit():
            raise _option_error("seed", seed, "a whole number")
        if rollback_loses_data.lower() not in ("true", "false"):
            raise _option_error("rollback_loses_data", rollback_loses_data, "true or false")
        try:
            fault_signal = FailureSignal(signal)
        except ValueError:
            raise _option_error(
                "signal", signal, "crashed, heartbeat_lost, reboot_loop or service_check_failed"
            ) from None
        fault = FaultModel(
            affected=_ids(fail),
            probability=chance,
            after=float(self._seconds("after", after)),
            signal=fault_signal,
            rollback_loses_data=rollback_loses_data.lower() == "true",
            seed=int(seed),
        )
        given = {"apply": apply, "rollback": rollback, "restore_point": restore_point}
        # Checked here so that a bad value is named as a driver option, not as an update field.
        timing = Timing(**{key: f"{self._seconds(key, value)}s" for key, value in given.items() if value})
        self.world_path = Path(world) if world else None
        self._store: WorldStore | None = None
        self._rollout: str | None = None
        loaded = self._load(self.world_path) if self.world_path else SimulatedWorld()
        super().__init__(
            clock=_wall_clock,
            timing=timing,
            fault=fault,
            world=loaded,
            restore_point_failures=_ids(restore_point_failures),
            install_failures=_ids(install_failures),
            rollback_failures=_ids(rollback_failures),
            silent=_ids(silent),
            on_change=self._keep,
        )

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
    def _seconds(key: str, value: str) -> int:
        try:
            return parse_duration(value)
        except ValueError:
            raise _option_error(
                key, value, f"a duration such as 30s, 5m or 1h, at most {format_duration(LONGEST_DURATION)}"
            ) from None

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


__all__ = ["SimulatedDriver", "WorldStore", "read_world"]
