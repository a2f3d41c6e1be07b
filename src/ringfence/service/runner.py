"""The rollout controller loop that runs inside the server.

Every ``interval`` seconds (sooner when a driver or a bake says something is due, or when :meth:`wake` is
called after a person started or resumed a rollout) the loop steps each active rollout whose driver can
run in this process, until the rollout makes no more progress, waits for a person, or ends. A step is
:meth:`ringfence.rollout.controller.Controller.step`: crash-safe, with the rollout's lock held in each of
its transactions.

Drivers that run in-process are built by factories registered here by name: ``simulated`` (built from the
update's own timing, its world kept in memory for the life of the process) and whatever other parts of
ringfence register (``register_in_process_driver("agent", ...)``). Rollouts on any other driver are left to
``ringfence rollout start``.

Several workers on one PostgreSQL database: a worker drives a rollout only while it holds that rollout's
*claim*, a session-level advisory lock on a connection of its own, taken without waiting and kept until the
rollout ends or the worker stops. So exactly one worker drives a rollout, and the driver it built (with any
state it keeps in memory) stays with the rollout. The claim uses its own lock namespace, so it never waits
on, or blocks, the per-transaction rollout lock the controller's steps take. On SQLite there is one worker
(``ringfence serve`` refuses more) and every write transaction already runs alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ringfence.drivers.base import Driver
from ringfence.errors import RingfenceError
from ringfence.rollout.controller import Controller, StepReport
from ringfence.rollout.state import RolloutPhase
from ringfence.service.rollouts import SqlRolloutRepository
from ringfence.store import repo
from ringfence.store.db import lock_key, session_scope
from ringfence.store.records import Rollout
from ringfence.update import Update

log = logging.getLogger("ringfence.controller")

LOCK_NAMESPACE_ROLLOUT_CLAIM = 0x52460101
"""Advisory-lock namespace of a worker's claim on a rollout (apart from ``ringfence.store.db``'s namespaces)."""

DRIVEN_PHASES = frozenset(
    {
        RolloutPhase.TAKING_RESTORE_POINTS,
        RolloutPhase.APPLYING,
        RolloutPhase.BAKING,
        RolloutPhase.JUDGING,
        RolloutPhase.ROLLING_BACK,
        # Paused and halted rollouts may still have operations in flight whose results must be recorded.
        RolloutPhase.PAUSED,
        RolloutPhase.HALTED,
    }
)
"""Phases in which the loop looks at a rollout. Pending and awaiting approval wait for a person."""

MAX_STEPS_PER_TURN = 50
"""Steps one rollout may take in a row before the others get their turn."""

DriverFactory = Callable[[Engine, Update], Driver]
"""Builds the driver of one rollout, given the database and the update it rolls out."""


def _simulated(_engine: Engine, update: Update) -> Driver:
    from ringfence.drivers.simulated import SimulatedDriver

    timing = update.timing
    # The update's own timing (a test or demo update says 0s; a real one minutes).
    return SimulatedDriver(
        apply=f"{timing.apply}s", rollback=f"{timing.rollback}s", restore_point=f"{timing.restore_point}s"
    )


_IN_PROCESS: dict[str, DriverFactory] = {"simulated": _simulated}


def register_in_process_driver(name: str, factory: DriverFactory) -> None:
    """Let the server's loop drive rollouts of driver ``name`` with drivers built by ``factory``."""
    _IN_PROCESS[name] = factory


def in_process_drivers() -> dict[str, DriverFactory]:
    """The drivers the loop can build, by name (a copy)."""
    return dict(_IN_PROCESS)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Claims:
    """A worker's claims on rollouts (see the module docstring). On SQLite every claim is granted.

    PostgreSQL's advisory locks are shared by the whole database, schemas included, so a claim's key is
    made of the schema and the rollout id: two ringfence installations in two schemas of one database
    never hold up each other's rollouts.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_shared = engine.dialect.name == "postgresql"
        self._connection: Connection | None = None
        self._schema = ""
        self._held: set[str] = set()

    def _conn(self) -> Connection:
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            # Session-level locks live as long as this connection: a lost connection loses every claim.
            self._held.clear()
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._schema = str(self._connection.execute(sa.text("SELECT current_schema()")).scalar_one())
        return self._connection

    def _lock(self, function: str, rollout_id: str) -> bool:
        connection = self._conn()
        found = connection.execute(
            sa.text(f"SELECT {function}(:namespace, :key)"),
            {"namespace": LOCK_NAMESPACE_ROLLOUT_CLAIM, "key": claim_key(self._schema, rollout_id)},
        )
        return bool(found.scalar_one())

    def claim(self, rollout_id: str) -> bool:
        if not self.is_shared or rollout_id in self._held:
            return True
        if self._lock("pg_try_advisory_lock", rollout_id):
            self._held.add(rollout_id)
            return True
        return False

    def release(self, rollout_id: str) -> None:
        if rollout_id not in self._held:
            return
        self._held.discard(rollout_id)
        if self._connection is not None and not self._connection.closed:
            self._lock("pg_advisory_unlock", rollout_id)

    def close(self) -> None:
        self._held.clear()
        if self._connection is not None:
            self._connection.close()  # ending the session releases every advisory lock it held
            self._connection = None


def claim_key(schema: str, rollout_id: str) -> int:
    """The advisory-lock key of a claim on ``rollout_id`` by a worker whose tables are in ``schema``."""
    return lock_key(f"{schema}/{rollout_id}")


@dataclass
class _Driven:
    """A rollout this worker drives: its controller (with its driver) and the version it last settled at."""

    controller: Controller
    settled_version: int | None = None


@dataclass
class LoopStats:
    """What the loop has done since it started (for tests, logs and the dashboard)."""

    turns: int = 0
    steps: int = 0
    errors: int = 0
    last_error: str | None = None
    settled: dict[str, str] = field(default_factory=dict)
    """Rollout id → the phase it settled in last."""


class ControllerLoop:
    """Drives the active rollouts of one database from a background thread (one loop per server worker)."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float = 2.0,
        clock: Callable[[], datetime] = _utc_now,
        actor: str = "controller",
        drivers: dict[str, DriverFactory] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the controller interval is a positive number of seconds, not {interval}")
        self.engine = engine
        self.interval = interval
        self.clock = clock
        self.actor = actor
        self._drivers = drivers
        self.stats = LoopStats()
        self._driven: dict[str, _Driven] = {}
        self._skipped: set[str] = set()
        self._claims = _Claims(engine)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the loop's thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="ringfence-controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the step under way, release every claim and end the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the controller loop did not stop within %.0f s", timeout)
            self._thread = None

    def wake(self) -> None:
        """Look at the rollouts now rather than at the next interval (a person just moved one)."""
        self._wake.set()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                # Cleared before the turn: a wake() during it makes the next turn come at once.
                self._wake.clear()
                try:
                    self.turn()
                except Exception as exc:  # the loop outlives any one failure; the next turn tries again
                    self._note_error(exc, "listing rollouts")
                self._wake.wait(self._wait_seconds())
        finally:
            try:
                self._claims.close()
            except Exception as exc:
                log.warning("releasing rollout claims failed: %s", exc)

    # --------------------------------------------------------------------------------- one turn

    def turn(self) -> int:
        """Step every active rollout this worker may drive until each waits; returns the steps taken."""
        self.stats.turns += 1
        with session_scope(self.engine, readonly=True) as session:
            active = repo.list_rollouts(session, phases=DRIVEN_PHASES)
        steps = 0
        for rollout in active:
            if self._stopping.is_set():
                break
            steps += self._drive(rollout)
        ids = {r.id for r in active}
        for gone in set(self._driven) - ids:
            self._forget(gone)  # ended: its driver and claim go
        self._skipped &= ids
        self.stats.steps += steps
        return steps

    def _drive(self, rollout: Rollout) -> int:
        driven = self._driven.get(rollout.id)
        if driven is not None and driven.settled_version == rollout.state.version:
            return 0  # waiting for a person; nothing changed since
        if driven is None:
            driven = self._take(rollout)
            if driven is None:
                return 0
        steps = 0
        try:
            for _ in range(MAX_STEPS_PER_TURN):
                report = driven.controller.step(rollout.id)
                steps += 1
                if report.phase.is_terminal:
                    self.stats.settled[rollout.id] = report.phase.value
                    self._forget(rollout.id)  # over: its driver and claim go now, not at the next turn
                    break
                if report.is_settled:
                    self._settle(rollout.id, report, driven)
                    break
                if not report.made_progress:
                    break
        except Exception as exc:
            self._note_error(exc, f"rollout {rollout.id}")
        return steps

    def _take(self, rollout: Rollout) -> _Driven | None:
        name = _driver_of(rollout)
        factories = self._drivers if self._drivers is not None else _IN_PROCESS
        factory = factories.get(name)
        if factory is None:
            if rollout.id not in self._skipped:
                self._skipped.add(rollout.id)
                log.info(
                    "rollout %s uses driver %r, which this server cannot run; drive it from the CLI", rollout.id, name
                )
            return None
        if not self._claims.claim(rollout.id):
            return None  # another worker drives it
        try:
            driver = factory(self.engine, Update.model_validate(rollout.update_doc))
        except Exception as exc:
            self._claims.release(rollout.id)
            self._note_error(exc, f"building driver {name!r} for rollout {rollout.id}")
            return None
        controller = Controller(SqlRolloutRepository(self.engine), driver, self.clock, actor=self.actor)
        driven = _Driven(controller)
        self._driven[rollout.id] = driven
        return driven

    def _settle(self, rollout_id: str, report: StepReport, driven: _Driven) -> None:
        with session_scope(self.engine, readonly=True) as session:
            driven.settled_version = repo.get_rollout(session, rollout_id).state.version
        self.stats.settled[rollout_id] = report.phase.value

    def _forget(self, rollout_id: str) -> None:
        self._driven.pop(rollout_id, None)
        try:
            self._claims.release(rollout_id)
        except Exception as exc:
            self._note_error(exc, f"releasing the claim on rollout {rollout_id}")

    def _wait_seconds(self) -> float:
        """Until the next interval, or sooner when a driver or a bake has something due."""
        wait = self.interval
        now = self.clock()
        for driven in self._driven.values():
            if driven.settled_version is not None:
                continue
            due = driven.controller.wake_at()
            if due is not None:
                wait = min(wait, max(0.0, (due - now).total_seconds()))
        return max(wait, 0.01)

    def _note_error(self, exc: Exception, where: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{where}: {exc}"
        # Ringfence's own errors are sentences that say it all; anything else needs its traceback.
        log.warning("controller loop, %s: %s", where, exc, exc_info=not isinstance(exc, RingfenceError))


def _driver_of(rollout: Rollout) -> str:
    plan: Any = rollout.plan
    name = plan.get("driver") if isinstance(plan, dict) else None
    return str(name or "simulated")


__all__ = [
    "DRIVEN_PHASES",
    "LOCK_NAMESPACE_ROLLOUT_CLAIM",
    "ControllerLoop",
    "DriverFactory",
    "LoopStats",
    "claim_key",
    "in_process_drivers",
    "register_in_process_driver",
]
