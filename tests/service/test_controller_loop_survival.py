"""The server's controller loop outlives anything one rollout does, and never spams the log.

A real loop over a real database (SQLite and PostgreSQL), real simulated drivers for the rollouts that
work, and small drivers of our own for the ones that do not: one whose factory raises, one with a bug in
``observe``, one whose ``next_event_at`` overflows (an absurd timing), one that declares it cannot roll
back, and the real agent driver on a rollout that rolls back by snapshot (stored before such rollouts were
refused at create). Halts and closes go through the state machine and land in the audit log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ringfence.core.driver import Driver, OperationKind
from ringfence.core.errors import DriverError, InputError
from ringfence.core.gates import AssetHealth
from ringfence.core.update import Update
from ringfence.drivers.agent import NO_RESTORE_POINTS, AgentDriver
from ringfence.drivers.simulated import SimulatedDriver
from ringfence.service import rollouts
from ringfence.service.runner import GIVE_UP_AFTER, ControllerLoop, DriverFactory, check_driver
from ringfence.store.db import session_scope
from ringfence.store.rollouts import get_rollout
from ringfence.store.tables import RolloutRow

ESTATE = """\
apiVersion: ringfence/v1
estate: small
assets:
  - {id: app-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-3, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
"""


def update_text(rollback: str) -> str:
    return (
        "apiVersion: ringfence/v1\n"
        f'update: {{id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 0s, '
        f"rollback: {rollback}, timing: {{apply: 0s, restore_point: 0s, rollback: 0s}}}}\n"
    )


def create(engine: Engine, driver: str, *, rollback: str = "reinstall", start: bool = True) -> str:
    created = rollouts.create_rollout(
        engine,
        estate_text=ESTATE,
        estate_source="small.yaml",
        update_text=update_text(rollback),
        update_source="update.yaml",
        actor="alice",
        at=datetime.now(UTC),
        driver=driver,
    )
    assert created.rollout is not None
    if start:
        rollouts.start(engine, created.rollout.id, actor="alice", at=datetime.now(UTC))
    return created.rollout.id


def phase(engine: Engine, rollout_id: str) -> tuple[str, str | None]:
    with session_scope(engine, readonly=True) as session:
        state = get_rollout(session, rollout_id).state
    return state.phase.value, state.halt_reason


def transitions(engine: Engine, rollout_id: str) -> list[tuple[str, str]]:
    """(to, reason) of each transition in the rollout's audit log."""
    return [
        (str(e.detail["to"]), str(e.detail["reason"]))
        for e in rollouts.log(engine, rollout_id)
        if e.action == "rollout.transition"
    ]


def wait_until(what: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.02)


def simulated(_engine: Engine, _update: Update) -> Driver:
    return SimulatedDriver(apply="0s", rollback="0s", restore_point="0s")


class Buggy(SimulatedDriver):
    """A driver with a bug: reading health always raises (not a DriverError: nothing it means to say)."""

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        raise ZeroDivisionError("division by zero in the health index")


class Absurd(SimulatedDriver):
    """A driver whose next event is further than a date can go (an update with an absurd timing)."""

    def next_event_at(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(days=10**9)  # raises OverflowError


class NoRollback(SimulatedDriver):
    """A driver that declares it cannot roll back."""

    def refuses(self, kind: OperationKind, update: Update) -> str | None:
        return "this test driver cannot roll back" if kind is OperationKind.rollback else None


def warnings_saying(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage())


@pytest.fixture
def loops() -> Iterator[list[ControllerLoop]]:
    """Loops turned by the test; stopped afterwards, which releases their claims (a connection on PostgreSQL)."""
    made: list[ControllerLoop] = []
    yield made
    for loop in made:
        loop.stop()


@pytest.fixture
def log_of_loop(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="ringfence.controller")
    return caplog


# ------------------------------------------------------------------------------------------ one rollout's errors


def test_a_rollout_whose_driver_cannot_be_built_is_halted_once_and_the_others_complete(
    db_engine: Engine, log_of_loop: pytest.LogCaptureFixture
) -> None:
    built: list[str] = []

    def sealed(_engine: Engine, _update: Update) -> Driver:
        built.append("sealed")
        raise DriverError("the vault holding this driver's credentials is sealed")

    good = create(db_engine, "simulated")
    bad = create(db_engine, "sealed")
    loop = ControllerLoop(db_engine, interval=0.02, drivers={"simulated": simulated, "sealed": sealed})
    loop.start()
    try:
        wait_until(lambda: phase(db_engine, good)[0] == "completed" and bad in loop.stats.gave_up)
        calls = len(built)
        turns = loop.stats.turns
        wait_until(lambda: loop.stats.turns >= turns + 20)
        assert loop.is_running
    finally:
        loop.stop()
    reason = "the controller could not drive this rollout: the vault holding this driver's credentials is sealed"
    assert phase(db_engine, bad) == ("halted", reason)
    assert transitions(db_engine, bad)[-1] == ("halted", reason)
    # Left halted for a person: not built again every turn, and said once in the log.
    assert len(built) == calls == 2  # to drive it, then once more to record what the halt left in flight
    assert warnings_saying(log_of_loop, "the vault holding this driver's credentials is sealed") == 2  # error, halt
    assert loop.stats.errors == 2
    assert loop.health().problem is not None  # stopped now


def test_an_unexpected_error_is_tried_again_then_halts_and_is_logged_once(
    db_engine: Engine, loops: list[ControllerLoop], log_of_loop: pytest.LogCaptureFixture
) -> None:
    good = create(db_engine, "simulated")
    bad = create(db_engine, "buggy")
    factories: dict[str, DriverFactory] = {"simulated": simulated, "buggy": lambda _e, _u: Buggy()}
    loop = ControllerLoop(db_engine, interval=0.02, drivers=factories)
    loops.append(loop)
    sentence = "ZeroDivisionError: division by zero in the health index"
    for _ in range(GIVE_UP_AFTER - 1):
        loop.turn()
        assert phase(db_engine, bad) == ("applying", None)  # perhaps passing: tried again next turn
    loop.turn()
    assert phase(db_engine, bad) == ("halted", f"the controller could not drive this rollout: {sentence}")
    for _ in range(20):
        loop.turn()
    assert phase(db_engine, good)[0] == "completed"
    assert phase(db_engine, bad)[0] == "halted"  # left for a person, after trying it halted too
    assert bad in loop.stats.gave_up
    assert warnings_saying(log_of_loop, sentence) == 2  # the error once (traceback included), the halt once
    assert loop.stats.errors == 2 * GIVE_UP_AFTER  # running, then halted: counted each time, logged once


def test_an_absurd_timing_does_not_kill_the_loop(db_engine: Engine, log_of_loop: pytest.LogCaptureFixture) -> None:
    bad = create(db_engine, "absurd")
    loop = ControllerLoop(db_engine, interval=0.02, drivers={"simulated": simulated, "absurd": lambda _e, _u: Absurd()})
    loop.start()
    try:
        wait_until(lambda: phase(db_engine, bad)[0] == "halted")
        good = create(db_engine, "simulated")  # started after: the loop still drives new rollouts
        loop.wake()
        wait_until(lambda: phase(db_engine, good)[0] == "completed")
        assert loop.is_running
        assert loop.health().problem is None
    finally:
        loop.stop()
    halted = phase(db_engine, bad)[1]
    assert halted is not None
    assert halted.startswith("the controller could not drive this rollout: OverflowError: ")


def test_a_rollback_the_driver_cannot_do_ends_failed(
    db_engine: Engine, loops: list[ControllerLoop], log_of_loop: pytest.LogCaptureFixture
) -> None:
    rollout = create(db_engine, "norollback")
    rollouts.abort(db_engine, rollout, actor="alice", at=datetime.now(UTC), why="vendor advisory")
    rollouts.roll_back(db_engine, rollout, actor="alice", at=datetime.now(UTC))
    loop = ControllerLoop(db_engine, interval=0.02, drivers={"norollback": lambda _e, _u: NoRollback()})
    loops.append(loop)
    loop.turn()
    reason = "the controller could not drive this rollout: this test driver cannot roll back"
    assert phase(db_engine, rollout)[0] == "failed"
    assert transitions(db_engine, rollout)[-1] == ("failed", reason)
    loop.turn()  # over: not looked at again
    assert loop.stats.errors == 1


def test_a_running_rollout_whose_driver_refuses_its_update_is_halted_at_once(
    db_engine: Engine, loops: list[ControllerLoop]
) -> None:
    rollout = create(db_engine, "norollback")
    loop = ControllerLoop(db_engine, interval=0.02, drivers={"norollback": lambda _e, _u: NoRollback()})
    loops.append(loop)
    loop.turn()
    assert phase(db_engine, rollout) == (
        "halted",
        "the controller could not drive this rollout: this test driver cannot roll back",
    )
    assert [to for to, _ in transitions(db_engine, rollout)] == ["applying", "halted"]


def test_the_agent_snapshot_rollout_of_issue_10_halts_and_rolls_back_to_an_end(
    db_engine: Engine, loops: list[ControllerLoop], log_of_loop: pytest.LogCaptureFixture
) -> None:
    # Created when agents rolled back by reinstall, then its update said snapshot (as rollouts stored before
    # create refused that did): started, it waits for restore points agents never take.
    rollout = create(db_engine, "agent", start=False)
    with session_scope(db_engine) as session:
        row = session.get(RolloutRow, rollout)
        assert row is not None
        row.update_doc = {**row.update_doc, "rollback": "snapshot"}
    with pytest.raises(InputError) as raised:
        check_driver(db_engine, rollout)  # what POST /start and `rollout start` ask first
    assert str(raised.value) == (
        f"rollout {rollout}: update.rollback: {NO_RESTORE_POINTS} (the update says rollback: snapshot)"
    )
    rollouts.start(db_engine, rollout, actor="alice", at=datetime.now(UTC))  # as it was before the check
    assert phase(db_engine, rollout)[0] == "taking_restore_points"

    loop = ControllerLoop(db_engine, interval=0.02, drivers={"agent": lambda e, _u: AgentDriver(engine=e)})
    loops.append(loop)
    for _ in range(5):
        loop.turn()
    reason = f"the controller could not drive this rollout: {NO_RESTORE_POINTS}"
    assert phase(db_engine, rollout) == ("halted", reason)
    rollouts.roll_back(db_engine, rollout, actor="alice", at=datetime.now(UTC))
    for _ in range(5):
        loop.turn()
    assert phase(db_engine, rollout)[0] == "rolled_back"  # nothing was installed: nothing to roll back
    assert [to for to, _ in transitions(db_engine, rollout)] == [
        "taking_restore_points",
        "halted",
        "rolling_back",
        "rolled_back",
    ]
    assert warnings_saying(log_of_loop, NO_RESTORE_POINTS) == 2  # the refusal, the halt


# ------------------------------------------------------------------------------------------ the loop as a whole


class Clock:
    """The loop's clock, which the test moves on (the database outage lasts 95 s without waiting 95 s)."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def rename_rollouts(engine: Engine, to: str, back: str) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(f"ALTER TABLE {back} RENAME TO {to}"))


def test_a_database_outage_fails_turns_not_the_loop(db_engine: Engine, log_of_loop: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    loop = ControllerLoop(db_engine, interval=0.02, clock=clock, drivers={"simulated": simulated})
    loop.start()
    try:
        wait_until(lambda: loop.stats.last_turn_at is not None)
        assert loop.health().problem is None
        rename_rollouts(db_engine, "rollouts_away", "rollouts")  # the rollouts cannot be listed any more
        try:
            wait_until(lambda: loop.stats.failed_turns >= 10)
            assert loop.is_running
            clock.advance(95)
            health = loop.health()
            assert health.problem is not None
            assert health.problem.startswith("no controller turn for 95 s (one is expected at least every 30 s); ")
            assert "failed in a row, the last with a turn: " in health.problem
            assert health.running
        finally:
            rename_rollouts(db_engine, "rollouts", "rollouts_away")
        # Back: turns complete again, and a rollout started now is driven.
        rollout = create(db_engine, "simulated")
        wait_until(lambda: phase(db_engine, rollout)[0] == "completed")
        assert loop.stats.failed_turns == 0
        assert loop.health().problem is None
    finally:
        loop.stop()
    assert sum(1 for r in log_of_loop.records if "a turn failed" in r.getMessage()) == 1
    assert loop.health().problem == "the controller loop has stopped"


def test_an_interval_that_is_not_a_number_of_seconds_is_refused(db_engine: Engine, loops: list[ControllerLoop]) -> None:
    for interval in (0.0, -1.0, float("nan"), float("inf"), 86400.0):
        with pytest.raises(InputError, match="the controller interval is a number of seconds above 0"):
            ControllerLoop(db_engine, interval=interval)
    loops.append(ControllerLoop(db_engine))
    assert loops[0].health().problem == "the controller loop has not started"


# ------------------------------------------------------------------------------ restore points left behind


class Keeping(SimulatedDriver):
    """A driver whose restore points cost something while kept (vSphere snapshots): it lets go when asked."""

    asked: ClassVar[list[str]] = []

    def release_restore_points(self, rollout_id: str) -> tuple[str, ...]:
        Keeping.asked.append(rollout_id)
        return (f"the restore points of {rollout_id} removed",)


def released(engine: Engine, rollout_id: str) -> list[str]:
    return [e.action for e in rollouts.log(engine, rollout_id) if e.action == rollouts.RESTORE_POINTS_RELEASED]


def test_a_loop_that_starts_releases_the_restore_points_a_killed_process_left_behind(
    db_engine: Engine, loops: list[ControllerLoop]
) -> None:
    # Completed by a process that died before the release: its driver here never releases anything.
    left = create(db_engine, "keeping", rollback="snapshot")
    plain = create(db_engine, "keeping", rollback="reinstall")  # no restore points: nothing to release
    first = ControllerLoop(db_engine, interval=0.02, drivers={"keeping": simulated})
    loops.append(first)
    while first.turn():
        pass
    assert phase(db_engine, left)[0] == phase(db_engine, plain)[0] == "completed"
    assert released(db_engine, left) == []
    first.stop()
    # The next loop to start steps it once: the controller releases them and records it, once.
    Keeping.asked = []
    second = ControllerLoop(db_engine, interval=0.02, drivers={"keeping": lambda _e, _u: Keeping()})
    loops.append(second)
    second.turn()
    second.turn()
    assert Keeping.asked == [left]
    assert released(db_engine, left) == [rollouts.RESTORE_POINTS_RELEASED]
    assert released(db_engine, plain) == []
    third = ControllerLoop(db_engine, interval=0.02, drivers={"keeping": lambda _e, _u: Keeping()})
    loops.append(third)
    third.turn()
    assert Keeping.asked == [left]  # recorded: never asked again
    assert phase(db_engine, left)[0] == "completed"
