"""The ``simulated`` driver: the simulation of ``ringfence.drivers.simulation`` in wall-clock time,
optionally keeping its world in a JSON file so a process killed mid-rollout resumes the same world.

Options (``--driver-option key=value``), all optional:

=========================  ===========================================================================
``world``                  JSON file holding the world; written atomically after every change
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
from datetime import UTC, datetime
from pathlib import Path

from ringfence.drivers.simulation import FaultModel, SimulatedWorld, SimulationDriver
from ringfence.durations import parse_duration
from ringfence.errors import InputError, Problem
from ringfence.files import read_text, write_text_atomic
from ringfence.gates import FailureSignal
from ringfence.update import Timing


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _ids(value: str | None) -> frozenset[str]:
    return frozenset(part.strip() for part in (value or "").split(",") if part.strip())


def _option_error(key: str, value: str, expected: str) -> InputError:
    return InputError(
        [Problem(f"simulated driver option {key}={value!r}: expected {expected}", path=("--driver-option",))]
    )


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
            on_change=self._save if self.world_path else None,
        )

    @staticmethod
    def _seconds(key: str, value: str) -> int:
        try:
            return parse_duration(value)
        except ValueError:
            raise _option_error(key, value, "a duration such as 30s, 5m or 1h") from None

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

    def _save(self, world: SimulatedWorld) -> None:
        # Atomic (temporary file + rename): a process killed mid-write leaves the previous world whole.
        assert self.world_path is not None
        write_text_atomic(self.world_path, json.dumps(world.to_document(), sort_keys=True))


def read_world(path: Path | str) -> SimulatedWorld:
    """The world a file-backed simulated driver left in ``path`` (for tests and inspection)."""
    return SimulatedDriver._load(Path(path))


__all__ = ["SimulatedDriver", "read_world"]
