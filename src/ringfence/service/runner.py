"""The rollout controller loop that runs inside the server.

Every ``interval`` seconds (sooner when a driver or a bake says something is due, or when :meth:`wake` is
called after a person started or resumed a rollout) the loop steps each active rollout whose driver can
run in this process, until the rollout makes no more progress, waits for a person, or ends. A step is
:meth:`ringfence.core.rollout.controller.Controller.step`: crash-safe, with the rollout's lock held in each of
its transactions.

Drivers come from the one registry (``ringfence.drivers.registry``): a rollout's driver runs here when its
class can be built for the server (``for_server``, given the database, the update and the process's
environment in a :class:`~ringfence.drivers.registry.DriverContext`): ``simulated`` (the update's own timing,
its world kept in the database per rollout) and ``agent``. A ``ringfence worker`` (``ringfence.cli.worker``)
runs the same loop without the HTTP server, given the drivers it runs (``runs``; by default every installed
driver that can work here, ``ansible`` included), each built from the options kept with the rollout
(``ringfence.service.workers``). A rollout on a driver no loop runs waits for a worker, and says so. A loop may
be given its own factories instead (tests).

Heartbeats: a loop given a ``role`` (``serve`` or ``worker``) records every second, from a thread of its own,
which drivers it runs and which rollouts it drives (``ringfence.store.workers``), at once when it claims one,
and forgets its row when it stops cleanly. A thread of its own: a long turn (a big rollout's fifty steps) or a
write lock held elsewhere (SQLite) never makes a live loop look dead, and a heartbeat that cannot be written
never holds up a turn. That is how a page says a rollout is waiting for a worker, or which worker drives it.

Health is read through the rollout's health source (``registry.build_health_source``): the driver's own
unless the stored plan names another (``health_source``).

Several workers on one PostgreSQL database: a worker drives a rollout only while it holds that rollout's
*claim*, a session-level advisory lock on a connection of its own (``ringfence.store.locks``), taken without
waiting and kept until the rollout ends or the worker stops. So exactly one worker drives a rollout, and the
driver it built (with any state it keeps in memory) stays with the rollout. Before each step the loop asks
whether it still holds the claim (its session alive); a loop whose claim connection was lost drops the
rollout's driver at once, and claims it again, with a fresh driver reading the state kept in the database, only
if no other worker took it over meanwhile. A worker killed (kill -9) loses its claims with its session, and
another worker's next turn takes the rollout over (bench/failover.py measures how soon). The claim uses its own lock
namespace, so it never waits on, or blocks, the per-transaction rollout lock the controller's steps take. On
SQLite there is one worker (``ringfence serve`` refuses more) and every write transaction already runs alone.

The loop outlives anything one rollout does (it is the only thing that drives the server's rollouts, so
its death would stop them all without a word):

- before it drives a rollout it builds the rollout's driver and asks whether the driver can do what the
  rollout still needs (:func:`ringfence.core.driver.refusal_for`); a refusal is an error of that rollout;
- an error of one rollout (building its driver, a refusal, a step, settling) is caught for that rollout
  alone, logged once (not at every turn while it repeats) and counted in :class:`LoopStats`. A refusal
  or bad input (DriverError, InputError) will not go away by trying again, so the loop gives up at once;
  any other error is tried again on the next turns, and the loop gives up at the
  :data:`GIVE_UP_AFTER`-th failure in a row. Giving up goes through the state machine: a running rollout
  is halted, a rollout rolling back is closed as failed (abort and rollback always reach a terminal
  phase), each with the reason "the controller could not drive this rollout: <sentence>"; a paused or
  halted rollout stays where it is, for a person. Its driver and claim are dropped, and it is not tried
  again until its state changes (a person resumes it, rolls it back…);
- the database out of reach is nobody's rollout: the turn ends there. Every turn that fails as a whole
  (listing the rollouts included) is caught, counted, logged once while the same error repeats, and
  tried again after the interval. ``LoopStats.last_turn_at`` is when the last turn completed, which
  :meth:`ControllerLoop.health` (``GET /v1/health``) judges.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ringfence.core.clock import utc_now
from ringfence.core.driver import Driver, OperationKind, operations_for, refusal_for, require_able
from ringfence.core.errors import ConflictError, DriverError, InputError, Problem, RingfenceError
from ringfence.core.rollout.controller import RELEASES_RESTORE_POINTS, Controller, StepReport, change_phase
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.update import Update
from ringfence.drivers.registry import (
    DriverContext,
    available_drivers,
    build_health_source,
    declared_class,
    runs_in_server,
    server_driver,
    worker_driver,
)
from ringfence.service.rollout_view import stored_plan
from ringfence.service.rollouts import SqlRolloutRepository
from ringfence.service.workers import driven_by, driver_name, new_beat
from ringfence.store.db import session_scope
from ringfence.store.locks import LOCK_NAMESPACE_ROLLOUT_CLAIM, RolloutClaims
from ringfence.store.records import Rollout
from ringfence.store.rollouts import get_rollout, list_rollouts
from ringfence.store.workers import WorkerBeat, delete_worker, get_rollout_options, put_worker

log = logging.getLogger("ringfence.controller")

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

GIVE_UP_AFTER = 3
"""Turns in a row a rollout may fail (with an error that is not a refusal) before the loop gives up on it."""

BEAT_EVERY = 1.0
"""Seconds between two heartbeats of one loop."""

HEALTHY_WITHIN = 30.0
"""Seconds: the loop is healthy while its last turn ended within max(3 × its interval, this)."""

_RUNNING = frozenset(p for p in RolloutPhase if p.is_running)
_NOT_STOPPED = _RUNNING | {RolloutPhase.PENDING, RolloutPhase.AWAITING_APPROVAL, RolloutPhase.PAUSED}
"""Phases from which a rollout may still need every operation its update calls for."""

DriverFactory = Callable[[Engine, Update], Driver]
"""Builds the driver of one rollout, given the database and the update it rolls out (a test's own drivers)."""


@dataclass
class _Driven:
    """A rollout this worker drives: its controller (with its driver) and the version it last settled at."""

    controller: Controller
    settled_version: int | None = None
    wake_at: datetime | None = None
    """When its driver or bake has something due, as the controller said after its last step."""


@dataclass
class _Trouble:
    """A rollout the loop could not drive: failures in a row, the sentence last logged, and when it gave up."""

    failures: int = 0
    logged: str | None = None
    gave_up_at: int | None = None
    """The rollout's state version when the loop gave up on it: not tried again until that changes."""
    give_up_logged: str | None = None
    """Why giving up on it could not be recorded, as last logged."""


@dataclass
class LoopStats:
    """What the loop has done since it started (for tests, logs, the dashboard and ``/v1/health``)."""

    turns: int = 0
    steps: int = 0
    errors: int = 0
    last_error: str | None = None
    settled: dict[str, str] = field(default_factory=dict)
    """Rollout id → the phase it settled in last."""
    started_at: datetime | None = None
    last_turn_at: datetime | None = None
    """The loop's clock when its last turn completed (a turn that failed as a whole does not count)."""
    failed_turns: int = 0
    """Turns in a row that failed as a whole (the database out of reach…); 0 once one completes."""
    gave_up: dict[str, str] = field(default_factory=dict)
    """Rollout id → why the loop left it where it is (paused or halted), until its state changes."""


@dataclass(frozen=True)
class LoopHealth:
    """Whether the loop is driving rollouts, for ``GET /v1/health``: ``problem`` is None when it is."""

    problem: str | None
    running: bool
    last_turn_at: datetime | None
    errors: int
    last_error: str | None

    def document(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "last_turn_at": self.last_turn_at.isoformat() if self.last_turn_at else None,
            "errors": self.errors,
            "last_error": self.last_error,
        }


class ControllerLoop:
    """Drives the active rollouts of one database from a background thread (one loop per server worker)."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float = 2.0,
        clock: Callable[[], datetime] = utc_now,
        actor: str = "controller",
        drivers: Mapping[str, DriverFactory] | None = None,
        give_up_after: int = GIVE_UP_AFTER,
        runs: Collection[str] | None = None,
        role: str | None = None,
    ) -> None:
        # Written so that NaN is refused too: a loop that never wakes is a loop that never drives.
        if not 0 < interval <= 3600:
            raise InputError(
                [Problem(f"the controller interval is a number of seconds above 0 and at most 3600, not {interval}")]
            )
        if give_up_after < 1:
            raise InputError([Problem(f"give_up_after is a number of turns of at least 1, not {give_up_after}")])
        self.engine = engine
        self.interval = interval
        self.clock = clock
        self.actor = actor
        self.give_up_after = give_up_after
        self._drivers = drivers
        self._runs = frozenset(runs) if runs is not None else None
        self.role = role
        self._beat: WorkerBeat | None = None
        self._beat_now = threading.Event()
        self._beat_thread: threading.Thread | None = None
        self._beat_logged: str | None = None
        self.stats = LoopStats()
        self._driven: dict[str, _Driven] = {}
        self._troubles: dict[str, _Trouble] = {}
        self._turn_error_logged: str | None = None
        self._skipped: set[str] = set()
        self._left_behind_released = False
        self._claims = RolloutClaims(engine)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the loop's thread (once)."""
        if self._thread is not None:
            return
        self.stats.started_at = self.clock()
        self._thread = threading.Thread(target=self._run, name="ringfence-controller", daemon=True)
        self._thread.start()
        if self.role is not None:
            self._beat_thread = threading.Thread(target=self._beat_run, name="ringfence-heartbeat", daemon=True)
            self._beat_thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the step under way, release every claim and end the thread."""
        self._stopping.set()
        self._wake.set()
        stuck = False
        if self._thread is not None:
            self._thread.join(timeout)
            stuck = self._thread.is_alive()
            if stuck:
                log.warning("the controller loop did not stop within %.0f s", timeout)
            self._thread = None
        self._beat_now.set()
        if self._beat_thread is not None:
            self._beat_thread.join(timeout)
            self._beat_thread = None
        if not stuck:
            # The thread released them as it ended; a loop turned by hand (tools, tests) holds them until now.
            self._claims.close()
        self._forget_beat()

    @property
    def runs(self) -> tuple[str, ...]:
        """The drivers this loop runs, sorted: what its heartbeat says it can drive."""
        if self._drivers is not None:
            return tuple(sorted(self._drivers))
        if self._runs is not None:
            return tuple(sorted(self._runs))
        return tuple(n for n in available_drivers() if runs_in_server(n))

    @property
    def worker_id(self) -> str | None:
        """The id of this loop's heartbeat row (None before its first heartbeat, or without a role)."""
        return self._beat.id if self._beat is not None else None

    def wake(self) -> None:
        """Look at the rollouts now rather than at the next interval (a person just moved one)."""
        self._wake.set()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def health(self) -> LoopHealth:
        """Whether the loop is driving rollouts: its thread is alive and its last turn ended recently enough.

        Recently enough: within max(3 × the interval, :data:`HEALTHY_WITHIN`) of now (of the start, before
        the first turn has ended). Otherwise ``problem`` says why, in a sentence.
        """
        stats = self.stats
        running = self.is_running
        limit = max(3 * self.interval, HEALTHY_WITHIN)
        problem: str | None = None
        if not running:
            problem = "the controller loop has stopped" if stats.started_at else "the controller loop has not started"
        else:
            since = stats.last_turn_at or stats.started_at
            age = (self.clock() - since).total_seconds() if since is not None else 0.0
            if age > limit:
                problem = f"no controller turn for {age:.0f} s (one is expected at least every {limit:.0f} s)"
                if stats.failed_turns and stats.last_error:
                    problem += f"; {stats.failed_turns} failed in a row, the last with {stats.last_error}"
        return LoopHealth(problem, running, stats.last_turn_at, stats.errors, stats.last_error)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                # Cleared before the turn: a wake() during it makes the next turn come at once.
                self._wake.clear()
                wait = self.interval
                try:
                    self.turn()
                    wait = self._wait_seconds()
                except Exception as exc:  # the loop outlives anything; the next turn tries again
                    self._turn_failed(exc)
                self._wake.wait(wait)
        finally:
            try:
                self._claims.close()
            except Exception as exc:
                log.warning("releasing rollout claims failed: %s", exc)

    # --------------------------------------------------------------------------------- one turn

    def turn(self) -> int:
        """Step every active rollout this worker may drive until each waits; returns the steps taken.

        An error of one rollout is that rollout's (see the module docstring); the database out of reach
        ends the turn with its error, for the caller (:meth:`_run`) to count and try again.
        """
        self.stats.turns += 1
        steps = 0
        if not self._left_behind_released:
            steps += self._release_left_behind()
            self._left_behind_released = True
        with session_scope(self.engine, readonly=True) as session:
            active = list_rollouts(session, phases=DRIVEN_PHASES)
        for rollout in active:
            if self._stopping.is_set():
                break
            steps += self._drive(rollout)
        ids = {r.id for r in active}
        for gone in set(self._driven) - ids:
            self._forget(gone)  # ended: its driver and claim go
        for gone in set(self._troubles) - ids:
            del self._troubles[gone]
            self.stats.gave_up.pop(gone, None)
        self._skipped &= ids
        self.stats.steps += steps
        self.stats.last_turn_at = self.clock()
        if self.stats.failed_turns:
            log.info("controller loop: turns complete again after %d that failed", self.stats.failed_turns)
        self.stats.failed_turns = 0
        self._turn_error_logged = None
        return steps

    def _release_left_behind(self) -> int:
        """Once, at the loop's first turn: step once each rollout that is over with restore points its driver may
        still hold (completed or rolled back, ``rollback: snapshot``, a driver that releases them), so that the
        controller releases them if nobody has (its step does it once and records it).

        Why: the step that ends a rollout releases them, but a process killed between the end and the release
        leaves snapshots behind, and the loop otherwise steps only rollouts still under way."""
        with session_scope(self.engine, readonly=True) as session:
            ended = list_rollouts(session, phases=RELEASES_RESTORE_POINTS)
        steps = 0
        for rollout in ended:
            if self._stopping.is_set():
                break
            document = rollout.update_doc
            if not isinstance(document, dict) or document.get("rollback") != "snapshot":
                continue
            try:
                if self._drivers is None:  # the registry's class says whether its drivers hold restore points
                    cls = declared_class(driver_name(rollout))
                    if cls is None or not callable(getattr(cls, "release_restore_points", None)):
                        continue
                driven = self._take(rollout)
                if driven is None:
                    continue  # not a driver of this loop's, or another loop has it
                try:
                    driven.controller.step(rollout.id)
                    steps += 1
                finally:
                    self._forget(rollout.id)
            except Exception as exc:
                if _database_unreachable(exc):
                    raise  # the turn ends; the next one tries again from the start
                self._note_error(exc, f"releasing the restore points of rollout {rollout.id}")
        return steps

    def _drive(self, rollout: Rollout) -> int:
        trouble = self._troubles.get(rollout.id)
        if trouble is not None and trouble.gave_up_at == rollout.state.version:
            return 0  # left for a person until they move it (its version changes then)
        driven = self._driven.get(rollout.id)
        if driven is not None and driven.settled_version == rollout.state.version:
            return 0  # waiting for a person; nothing changed since
        steps = 0
        try:
            if driven is None:
                driven = self._take(rollout)
                if driven is None:
                    return 0
            for _ in range(MAX_STEPS_PER_TURN):
                if not self._claims.holds(rollout.id):
                    # The claim went with its connection: another worker may drive it now. Its driver goes;
                    # the next turn claims it afresh if nobody else did.
                    log.warning("controller loop: lost the claim on rollout %s; no longer driving it", rollout.id)
                    self._driven.pop(rollout.id, None)
                    return steps
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
            if rollout.id in self._driven:
                # Asked here, where an error is this rollout's, not while the loop waits.
                driven.wake_at = driven.controller.wake_at()
        except Exception as exc:
            if _database_unreachable(exc):
                raise  # nobody's rollout: the turn ends, and is tried again after the interval
            self._cannot_drive(rollout, exc)
            return steps
        if trouble is not None:
            del self._troubles[rollout.id]
            self.stats.gave_up.pop(rollout.id, None)
            log.info("controller loop: rollout %s is driven again", rollout.id)
        return steps

    def _take(self, rollout: Rollout) -> _Driven | None:
        """Claim ``rollout`` and build its driver; None when this worker does not drive it.

        Raises what building the driver raised, or a DriverError when the driver refuses what the rollout
        still needs; :meth:`_cannot_drive` then releases the claim.
        """
        name = driver_name(rollout)
        factory = self._drivers.get(name) if self._drivers is not None else None
        if self._drivers is not None:
            runnable = factory is not None
        elif self._runs is not None:
            runnable = name in self._runs
        else:
            runnable = runs_in_server(name)
        if not runnable:
            if rollout.id not in self._skipped:
                self._skipped.add(rollout.id)
                log.info(
                    "rollout %s uses driver %r, which this process does not run; a `ringfence worker` that runs it "
                    "will drive it",
                    rollout.id,
                    name,
                )
            return None
        if not self._claims.claim(rollout.id):
            return None  # another worker drives it
        update = Update.model_validate(rollout.update_doc)
        # Not the rollout's id: a simulated driver built for the server reads its world at the first batch.
        context = DriverContext(engine=self.engine, update=update, environ=dict(os.environ))
        with session_scope(self.engine, readonly=True) as session:
            options, health_options = get_rollout_options(session, rollout.id)  # one read: both kept in one row
        driver: Driver | None
        if factory is not None:
            driver = factory(self.engine, update)
        elif self._runs is not None:
            driver = worker_driver(name, context, options)
        else:
            driver = server_driver(name, context)
        if driver is None:
            raise DriverError(f"driver {name!r} cannot be built in the server")
        refusal = refusal_for(driver, update, operations=_operations_ahead(rollout.state.phase, update))
        if refusal is not None:
            raise DriverError(refusal)
        health = build_health_source(stored_plan(rollout).health_source, driver, health_options, context=context)
        controller = Controller(SqlRolloutRepository(self.engine), driver, self.clock, actor=self.actor, health=health)
        driven = _Driven(controller)
        self._driven[rollout.id] = driven
        self._beat_now.set()  # say at once that this loop drives it
        return driven

    def _settle(self, rollout_id: str, report: StepReport, driven: _Driven) -> None:
        with session_scope(self.engine, readonly=True) as session:
            driven.settled_version = get_rollout(session, rollout_id).state.version
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
            if driven.settled_version is not None or driven.wake_at is None:
                continue
            wait = min(wait, max(0.0, (driven.wake_at - now).total_seconds()))
        return max(wait, 0.01)

    # --------------------------------------------------------------------------------- heartbeats

    def _beat_run(self) -> None:
        """The heartbeat thread: a beat every :data:`BEAT_EVERY` s, and at once when the loop claims a rollout."""
        while not self._stopping.is_set():
            self._beat_now.clear()
            try:
                self.heartbeat()
                self._beat_logged = None
            except Exception as exc:  # the next beat tries again; the loop's turns go on meanwhile
                sentence = _sentence(exc)
                if sentence != self._beat_logged:
                    self._beat_logged = sentence
                    log.warning("controller loop: recording its heartbeat failed, trying again: %s", sentence)
            self._beat_now.wait(BEAT_EVERY)

    def heartbeat(self) -> None:
        """Record what this loop runs and drives, now (its thread does it every second; see the module docstring)."""
        if self.role is None:
            return
        at = self.clock()
        while True:
            try:
                driving = tuple(sorted(self._driven))
                break
            except RuntimeError:  # the loop's thread changed it meanwhile: read it again
                continue
        first = self._beat or new_beat(self.role, self.runs, self.interval, at)
        beat = WorkerBeat(
            first.id, first.host, first.pid, first.role, first.drivers, driving, first.interval, first.started_at, at
        )
        with session_scope(self.engine) as session:
            put_worker(session, beat)
        self._beat = beat

    def _forget_beat(self) -> None:
        """A clean stop: this loop's row goes, so no page believes it still runs."""
        if self._beat is None:
            return
        try:
            with session_scope(self.engine) as session:
                delete_worker(session, self._beat.id)
        except Exception as exc:  # it ages out anyway
            log.warning("controller loop: forgetting this worker's heartbeat failed: %s", exc)
        self._beat = None

    # --------------------------------------------------------------------------------- errors

    def _cannot_drive(self, rollout: Rollout, exc: Exception) -> None:
        """One rollout failed: count it, log it once, and give up on it when trying again is pointless."""
        sentence = _sentence(exc)
        self.stats.errors += 1
        self.stats.last_error = f"rollout {rollout.id}: {sentence}"
        trouble = self._troubles.setdefault(rollout.id, _Trouble())
        trouble.failures += 1
        if trouble.logged != sentence:
            trouble.logged = sentence
            # Ringfence's own errors are sentences that say it all; anything else needs its traceback.
            log.warning(
                "controller loop, rollout %s: %s", rollout.id, sentence, exc_info=not isinstance(exc, RingfenceError)
            )
        driven = self._driven.get(rollout.id)
        if driven is not None:
            driven.settled_version = None  # whatever it settled at, try it again next turn
        refused = isinstance(exc, DriverError | InputError)
        if driven is None or refused or trouble.failures >= self.give_up_after:
            # Kept between tries otherwise: a driver may hold in memory what it has in flight.
            self._forget(rollout.id)
        if refused or trouble.failures >= self.give_up_after:
            self._give_up(rollout.id, sentence, trouble)

    def _give_up(self, rollout_id: str, sentence: str, trouble: _Trouble) -> None:
        """Stop driving the rollout, through the state machine's one door (see the module docstring)."""
        reason = f"the controller could not drive this rollout: {sentence}"
        repository = SqlRolloutRepository(self.engine)
        try:
            with session_scope(self.engine, readonly=True) as session:
                state = get_rollout(session, rollout_id).state
            if state.phase in _RUNNING:
                to, allowed = RolloutPhase.HALTED, _RUNNING
            elif state.phase is RolloutPhase.ROLLING_BACK:
                # A rollback that cannot be driven still ends: failed, for a person to finish by hand.
                to, allowed = RolloutPhase.FAILED, frozenset({RolloutPhase.ROLLING_BACK})
            else:
                # Paused or halted: a person decides; nothing is tried again until they move it.
                trouble.gave_up_at = state.version
                self.stats.gave_up[rollout_id] = reason
                log.info("controller loop: rollout %s is %s and left there: %s", rollout_id, state.phase, reason)
                return
            change_phase(
                repository, rollout_id, to, reason, actor=self.actor, at=self.clock(), allowed_from=allowed, verb=to
            )
            log.warning("controller loop: rollout %s is now %s: %s", rollout_id, to, reason)
        except Exception as exc:
            # Not even that could be recorded (the database out of reach, or a person moved it meanwhile):
            # the next turn tries again.
            why = _sentence(exc)
            self.stats.errors += 1
            self.stats.last_error = f"giving up on rollout {rollout_id}: {why}"
            if trouble.give_up_logged != why:
                trouble.give_up_logged = why
                log.warning("controller loop: giving up on rollout %s failed: %s", rollout_id, why)
            return
        # Moved on through the door: the next turn looks at it once more in its new phase (a halted rollout
        # still records what was in flight), with a fresh count.
        trouble.failures = 0

    def _turn_failed(self, exc: Exception) -> None:
        """A whole turn failed: counted, logged once while the same error repeats; the next turn tries again."""
        sentence = _sentence(exc)
        self.stats.errors += 1
        self.stats.failed_turns += 1
        self.stats.last_error = f"a turn: {sentence}"
        if sentence != self._turn_error_logged:
            self._turn_error_logged = sentence
            log.warning(
                "controller loop: a turn failed, trying again every %.1f s: %s",
                self.interval,
                sentence,
                exc_info=not isinstance(exc, RingfenceError) and not _database_unreachable(exc),
            )

    def _note_error(self, exc: Exception, where: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{where}: {exc}"
        # Ringfence's own errors are sentences that say it all; anything else needs its traceback.
        log.warning("controller loop, %s: %s", where, exc, exc_info=not isinstance(exc, RingfenceError))


def check_driver(engine: Engine, rollout_id: str, driver: Driver | None = None) -> None:
    """Refuse, with :class:`~ringfence.core.errors.InputError` and nothing changed, to start or drive a rollout its
    driver cannot carry through from where it is: ``driver`` as built with its options, or (None) the
    rollout's own driver by what its class declares.

    Called by ``POST /v1/rollouts/{id}/start`` and ``ringfence rollout start`` before the rollout moves.
    """
    with session_scope(engine, readonly=True) as session:
        rollout = get_rollout(session, rollout_id)
    update = Update.model_validate(rollout.update_doc)
    operations = _operations_ahead(rollout.state.phase, update)
    asked = driver if driver is not None else declared_class(driver_name(rollout))
    if asked is not None:  # a driver that is not installed is named when it is built
        require_able(asked, update, operations=operations, source=f"rollout {rollout_id}")


def claim_for_cli(engine: Engine, rollout_id: str) -> RolloutClaims:
    """The claim on ``rollout_id`` for ``ringfence rollout start``, which drives it in the foreground: so that no
    worker drives it meanwhile. A ConflictError naming the worker that drives it when one does. Close the claims
    returned when done (the process ending does it too)."""
    claims = RolloutClaims(engine)
    if claims.claim(rollout_id):
        return claims
    claims.close()
    who = driven_by(engine, rollout_id, utc_now()) or "another process"
    raise ConflictError(
        f"rollout {rollout_id} is being driven by {who}; watch it with `ringfence rollout status {rollout_id}` "
        "(it carries on without this command)"
    )


def _operations_ahead(phase: RolloutPhase, update: Update) -> tuple[OperationKind, ...]:
    """What a rollout in ``phase`` may still ask its driver for (a halted or finished one: nothing new)."""
    if phase is RolloutPhase.ROLLING_BACK:
        return (OperationKind.rollback,)
    if phase in _NOT_STOPPED:
        return operations_for(update)
    return ()


def _database_unreachable(exc: BaseException) -> bool:
    """The database could not be reached or did not answer (a lost connection, a full pool, a locked file)."""
    return isinstance(
        exc,
        OperationalError | InterfaceError | DisconnectionError | PoolTimeoutError,
    )


def _sentence(exc: BaseException) -> str:
    """An error on one line: ringfence's own are sentences; anything else is named by its type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, RingfenceError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "DRIVEN_PHASES",
    "GIVE_UP_AFTER",
    "HEALTHY_WITHIN",
    "LOCK_NAMESPACE_ROLLOUT_CLAIM",
    "ControllerLoop",
    "DriverFactory",
    "LoopHealth",
    "LoopStats",
    "check_driver",
    "claim_for_cli",
]
