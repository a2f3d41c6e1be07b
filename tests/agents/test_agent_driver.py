"""The agent driver and the directive board on a real database (SQLite and PostgreSQL), with the real
controller: directives open as rings open, heartbeats and results feed the gates, a bad canary halts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from ringfence.core.driver import Batch, OperationKind
from ringfence.core.errors import DriverError, InputError, PermissionDeniedError
from ringfence.core.gates import AssetStatus, FailureSignal
from ringfence.core.rollout.controller import Controller
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.drivers.agent import AgentDriver, HeartbeatSummary, health_from_heartbeats
from ringfence.drivers.registry import load_driver
from ringfence.service import rollouts
from ringfence.service.agents import DirectiveBoard, TokenCache
from ringfence.service.heartbeats import (
    Heartbeat,
    HeartbeatStatus,
    ReportedOperation,
    ReportedResult,
    record_heartbeats,
)
from ringfence.service.tokens import Caller, Role, issue_token, revoke_token
from ringfence.store.db import make_engine, session_scope
from ringfence.store.observations import list_observations
from ringfence.store.records import ObservationKind
from ringfence.store.rollouts import get_rollout, list_rollout_assets

from .conftest import asset_ids, create_agent_rollout

T0 = datetime(2024, 11, 23, 12, 0, tzinfo=UTC)
PROXY = Caller(1, "vendor-proxy", Role.OPERATOR)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> datetime:
        self.at += timedelta(seconds=seconds)
        return self.at


# ------------------------------------------------------------------------------------------ pure health


def _health(installed: datetime | None, beats: HeartbeatSummary, now: datetime) -> tuple[str, str | None]:
    found = health_from_heartbeats("ws-1", installed, beats, now, timeout=120)
    return found.status.value, found.signal.value if found.signal else None


def test_health_from_heartbeats() -> None:
    installed = T0
    recent = HeartbeatSummary(last_at=T0 + timedelta(seconds=50))
    assert _health(installed, recent, T0 + timedelta(seconds=60)) == ("healthy", None)
    # Nothing since the install yet, not overdue: unknown (never a pass).
    assert _health(installed, HeartbeatSummary(), T0 + timedelta(seconds=60)) == ("unknown", None)
    # Silent past the timeout after the install: lost.
    assert _health(installed, HeartbeatSummary(), T0 + timedelta(seconds=121)) == ("failed", "heartbeat_lost")
    stale = HeartbeatSummary(last_at=T0 + timedelta(seconds=30))
    lost = health_from_heartbeats("ws-1", installed, stale, T0 + timedelta(seconds=200), timeout=120)
    assert (lost.status, lost.signal, lost.seconds_after_install) == (
        AssetStatus.failed,
        FailureSignal.heartbeat_lost,
        30.0,
    )
    # A heartbeat from before the install says nothing about the update.
    before = HeartbeatSummary(last_at=T0 - timedelta(seconds=5))
    assert _health(installed, before, T0 + timedelta(seconds=60)) == ("unknown", None)
    # A failure reported since the install sticks, even when later heartbeats are ok.
    crashed = HeartbeatSummary(
        last_at=T0 + timedelta(seconds=90),
        first_failure_at=T0 + timedelta(seconds=40),
        first_failure_signal=FailureSignal.crashed,
    )
    found = health_from_heartbeats("ws-1", installed, crashed, T0 + timedelta(seconds=95), timeout=120)
    assert (found.status, found.signal, found.seconds_after_install) == (AssetStatus.failed, FailureSignal.crashed, 40)
    # Not updated (a control): judged by its latest heartbeat; a silent one is unknown, not failed.
    assert _health(None, HeartbeatSummary(), T0) == ("unknown", None)
    assert _health(None, recent, T0 + timedelta(seconds=60)) == ("healthy", None)
    assert _health(None, recent, T0 + timedelta(seconds=500)) == ("unknown", None)
    failing = HeartbeatSummary(last_at=T0, last_failed=True, last_signal=FailureSignal.reboot_loop)
    assert _health(None, failing, T0 + timedelta(seconds=5)) == ("failed", "reboot_loop")


# ------------------------------------------------------------------------------------------ with a database


def _beat(asset: str, at: datetime, *, failed: bool = False, rollout: str | None = None) -> Heartbeat:
    return Heartbeat(
        asset,
        HeartbeatStatus.failed if failed else HeartbeatStatus.ok,
        at=at,
        detail="service 'acme' not running" if failed else None,
        rollout_id=rollout,
    )


def _result(asset: str, at: datetime, rollout: str, operation: str, ok: bool = True) -> Heartbeat:
    return Heartbeat(
        asset,
        HeartbeatStatus.ok,
        at=at,
        rollout_id=rollout,
        result=ReportedResult(ReportedOperation(operation), ok, "exit status 0"),
    )


def _states(engine: Engine, rollout_id: str) -> dict[str, AssetState]:
    with session_scope(engine, readonly=True) as session:
        return {a.asset_id: a.state for a in list_rollout_assets(session, rollout_id)}


def _actions(board: DirectiveBoard, assets: list[str], now: datetime) -> dict[str, str]:
    return {a: board.directive(a, now).action.value for a in assets}


def test_a_bad_canary_halts_the_rollout_and_only_the_canaries_roll_back(db_engine: Engine) -> None:
    clock = Clock(T0)
    rollout_id = create_agent_rollout(db_engine, 4, bake="10m", at=clock())
    driver = AgentDriver(engine=db_engine, heartbeat_timeout="30s", clock=clock)
    controller: Controller = rollouts.controller(db_engine, driver, clock)
    board = DirectiveBoard(db_engine, ttl=0)
    everyone = asset_ids(4)

    controller.step(rollout_id)
    states = _states(db_engine, rollout_id)
    canaries = sorted(a for a, s in states.items() if s is AssetState.APPLYING)
    assert len(canaries) == 3  # one per stratum
    told = _actions(board, everyone, clock())
    assert {a for a, action in told.items() if action == "install"} == set(canaries)
    assert {told[a] for a in everyone if a not in canaries} == {"wait"}
    assert board.directive("lat-03", clock()).reason.startswith("ring 1 opens after ring 0 passes its gate")

    # The canaries install and report; everyone beats; the server canary's service dies after its install.
    bad = next(a for a in canaries if a.startswith("srv-"))
    at = clock.advance(5)
    record_heartbeats(db_engine, PROXY, [_result(a, at, rollout_id, "install") for a in canaries], at)
    at = clock.advance(5)
    beats = [_beat(a, at, failed=a == bad, rollout=rollout_id if a in canaries else None) for a in everyone]
    assert record_heartbeats(db_engine, PROXY, beats, at).heartbeats == len(everyone)

    for _ in range(6):
        report = controller.step(rollout_id)
        if report.phase is RolloutPhase.ROLLING_BACK:
            break
    assert report.phase is RolloutPhase.ROLLING_BACK
    with session_scope(db_engine, readonly=True) as session:
        halt = get_rollout(session, rollout_id).state.halt_reason
    assert halt is not None
    assert "stratum vm/windows-2019/vmware-7/city: 1 of 1 updated failed a service check 5 s after install" in halt

    # Agents are told to roll back only once the controller has started each asset's rollback (rule 7 decides
    # the order), which the step after the halt does.
    assert set(_actions(board, everyone, clock()).values()) == {"wait"}
    report = controller.step(rollout_id)
    told = _actions(board, everyone, clock())
    assert {a for a, action in told.items() if action == "rollback"} == set(canaries)
    assert {told[a] for a in everyone if a not in canaries} == {"wait"}

    at = clock.advance(5)
    record_heartbeats(db_engine, PROXY, [_result(a, at, rollout_id, "rollback") for a in canaries], at)
    for _ in range(4):
        report = controller.step(rollout_id)
    assert report.phase is RolloutPhase.ROLLED_BACK
    states = _states(db_engine, rollout_id)
    assert {states[a] for a in canaries} == {AssetState.ROLLED_BACK}
    assert {states[a] for a in everyone if a not in canaries} == {AssetState.SKIPPED}
    # Agent reports are audited against the rollout, under the reporting token's name.
    log = rollouts.log(db_engine, rollout_id)
    reports = [e for e in log if e.action == "agent.report"]
    assert [sorted(e.detail) for e in reports] == [["install_succeeded"], ["rollback_succeeded"]]
    assert {e.actor for e in reports} == {"vendor-proxy"}


def test_a_canary_that_goes_silent_after_its_install_has_lost_its_heartbeat(db_engine: Engine) -> None:
    clock = Clock(T0)
    rollout_id = create_agent_rollout(db_engine, 3, at=clock())
    driver = AgentDriver(engine=db_engine, heartbeat_timeout="30s", clock=clock)
    controller = rollouts.controller(db_engine, driver, clock)
    controller.step(rollout_id)
    canary = sorted(a for a, s in _states(db_engine, rollout_id).items() if s is AssetState.APPLYING)[0]

    at = clock.advance(2)
    record_heartbeats(db_engine, PROXY, [_beat(canary, at), _result(canary, at, rollout_id, "install")], at)
    clock.advance(20)
    # The heartbeat that brought the result is the last sign of life: 20 s ago, within the timeout.
    assert driver.observe([canary])[canary].status is AssetStatus.healthy
    clock.advance(15)
    lost = driver.observe([canary])[canary]
    assert (lost.status, lost.signal) == (AssetStatus.failed, FailureSignal.heartbeat_lost)
    assert lost.detail is not None
    assert lost.detail == "no heartbeat for 35 s (timeout 30 s)"


def test_poll_reads_results_and_gives_up_on_a_silent_agent(db_engine: Engine) -> None:
    clock = Clock(T0)
    rollout_id = create_agent_rollout(db_engine, 3, at=clock())
    driver = AgentDriver(engine=db_engine, install_timeout="10m", clock=clock)
    rollouts.controller(db_engine, driver, clock).step(rollout_id)
    ring = tuple(sorted(a for a, s in _states(db_engine, rollout_id).items() if s is AssetState.APPLYING))
    batch = Batch(rollout_id, OperationKind.apply, "acme/agent", "2.0", ring)
    driver.start(batch)

    at = clock.advance(60)
    record_heartbeats(db_engine, PROXY, [_result(ring[0], at, rollout_id, "install", ok=False)], at)
    found = {r.asset_id: r for r in driver.poll(batch)}
    assert (found[ring[0]].status, found[ring[0]].detail) == ("failed", "exit status 0")
    assert {found[a].status for a in ring[1:]} == {"running"}

    clock.advance(600)
    found = {r.asset_id: r for r in driver.poll(batch)}
    assert {found[a].status for a in ring[1:]} == {"failed"}
    assert found[ring[1]].detail == "no install result from the agent within 10 min of the batch opening"


def test_agents_cannot_take_restore_points(db_engine: Engine) -> None:
    driver = AgentDriver(engine=db_engine)
    with pytest.raises(DriverError, match="cannot take restore points"):
        driver.start(Batch("r-000001", OperationKind.restore_point, "acme/agent", "2.0", ("ws-1",)))


def test_the_driver_is_an_entry_point_with_checked_options(db_url: str) -> None:
    driver = load_driver("agent", database=db_url, heartbeat_timeout="45s")
    assert isinstance(driver, AgentDriver)
    assert driver.heartbeat_timeout == 45
    with pytest.raises(InputError, match="heartbeat_timeout='soon'"):
        load_driver("agent", database=db_url, heartbeat_timeout="soon")


def test_an_order_to_act_is_given_only_on_a_freshly_read_rollout(db_engine: Engine) -> None:
    rollout_id = create_agent_rollout(db_engine, 3)
    now = datetime.now(UTC)
    rollouts.controller(db_engine, AgentDriver(engine=db_engine), lambda: now).step(rollout_id)
    ticks = [0.0]
    board = DirectiveBoard(db_engine, ttl=1.0, confirm_ttl=0.25, monotonic=lambda: ticks[0])
    assert board.answer_from_snapshot("lat-01", now) is None  # nothing read yet
    assert board.directive("lat-01", now).action.value == "install"
    assert board.directive("lat-02", now).action.value == "wait"
    rollouts.abort(db_engine, rollout_id, actor="alice", at=now, why="vendor withdrew 2.0")
    ticks[0] = 0.2  # within the quarter second the snapshot may still order the install
    found = board.answer_from_snapshot("lat-01", now)
    assert found is not None
    assert found.action.value == "install"
    ticks[0] = 0.3  # too old to order anything, still fresh enough for a wait
    assert board.answer_from_snapshot("lat-01", now) is None
    waiting = board.answer_from_snapshot("lat-02", now)
    assert waiting is not None
    assert waiting.action.value == "wait"
    found = board.directive("lat-01", now)  # reads the versions, sees the abort, reloads
    assert found.action.value == "wait"
    assert "vendor withdrew 2.0" in found.reason
    assert (board.checks, board.reloads) == (2, 2)


def test_heartbeat_batches_are_checked_whole(db_engine: Engine) -> None:
    rollout_id = create_agent_rollout(db_engine, 2)
    now = datetime.now(UTC)
    agent = Caller(7, "agent-lat-01", Role.AGENT, "lat-01")
    mixed = [_beat("lat-01", now), _beat("lat-02", now)]
    with pytest.raises(PermissionDeniedError, match=r"speaks for 'lat-01' only.*'lat-02'"):
        record_heartbeats(db_engine, agent, mixed, now)
    with pytest.raises(PermissionDeniedError):
        record_heartbeats(db_engine, Caller(8, "ward-viewer", Role.VIEWER), mixed, now)
    bad = [
        _beat("lat-01", now, rollout=rollout_id),
        _beat("lat-01", now, rollout="r-999999"),
        Heartbeat("lat-01", HeartbeatStatus.ok, at=now + timedelta(minutes=10)),
        Heartbeat("lat-01", HeartbeatStatus.ok, result=ReportedResult(ReportedOperation.install, True)),
    ]
    with pytest.raises(InputError) as refused:
        record_heartbeats(db_engine, agent, bad, now)
    assert [p.field for p in refused.value.problems] == ["[2].at", "[3].rollout"]
    with pytest.raises(InputError) as unknown:
        record_heartbeats(db_engine, agent, bad[:2], now)
    assert [(p.field, p.message) for p in unknown.value.problems] == [("[1].rollout", "there is no rollout 'r-999999'")]
    with session_scope(db_engine, readonly=True) as session:
        assert list_observations(session, since=now - timedelta(hours=1)) == []
    # The agent's own asset is fine; a heartbeat with no time takes the server's.
    receipt = record_heartbeats(db_engine, agent, [Heartbeat("lat-01", HeartbeatStatus.failed)], now)
    assert (receipt.heartbeats, receipt.results) == (1, 0)
    with session_scope(db_engine, readonly=True) as session:
        stored = list_observations(session, since=now - timedelta(hours=1))
    assert [(o.asset_id, o.kind, o.status, o.at, o.rollout_id) for o in stored] == [
        ("lat-01", ObservationKind.HEARTBEAT, "failed", now, None)
    ]
    assert stored[0].detail == {"signal": "service_check_failed"}


def test_a_remembered_token_stops_working_soon_after_it_is_revoked(db_engine: Engine, db_url: str) -> None:
    ticks = [0.0]
    cache = TokenCache(db_engine, check=2, monotonic=lambda: ticks[0])
    issued = issue_token(db_engine, name="agent-lat-01", role="agent", asset_id="lat-01")
    other = issue_token(db_engine, name="agent-lat-02", role="agent", asset_id="lat-02")
    assert cache.cached(issued.secret) is None  # nothing read yet
    assert cache.authenticate(issued.secret).asset_id == "lat-01"
    assert cache.reads == 1
    ticks[0] = 1.0
    found = cache.cached(other.secret)  # read with the table: no database read of its own
    assert found is not None
    assert found.name == "agent-lat-02"
    # Revoked by another worker (its own engine): this cache learns of it at its next look at the table.
    other_worker = make_engine(db_url)
    revoke_token(other_worker, issued.id)
    other_worker.dispose()
    ticks[0] = 1.5
    assert cache.cached(issued.secret) is not None  # until the next look at the table…
    ticks[0] = 2.5
    assert cache.cached(issued.secret) is None  # …which is due now
    with pytest.raises(PermissionDeniedError):
        cache.authenticate(issued.secret)
    assert cache.reads == 2
    assert cache.cached(other.secret) is not None
    # A token issued since the table was read works at once, and an unknown one never does.
    late = issue_token(db_engine, name="agent-lat-03", role="agent", asset_id="lat-03")
    assert cache.authenticate(late.secret).asset_id == "lat-03"
    with pytest.raises(PermissionDeniedError):
        cache.authenticate("rf_nobody")


def test_what_an_agent_writes_is_stored_as_written(db_engine: Engine) -> None:
    rollout_id = create_agent_rollout(db_engine, 1)
    now = datetime.now(UTC)
    awkward = 'line 1\n\tline 2\r\\ C:\\Program Files\\acme "quoted" — ✓'
    beats = [
        Heartbeat("lat-01", HeartbeatStatus.failed, at=now, detail=awkward, rollout_id=rollout_id),
        Heartbeat(
            "lat-01",
            HeartbeatStatus.ok,
            at=now,
            rollout_id=rollout_id,
            result=ReportedResult(ReportedOperation.install, False, awkward),
        ),
    ]
    record_heartbeats(db_engine, PROXY, beats, now)
    with session_scope(db_engine, readonly=True) as session:
        stored = list_observations(session, since=now - timedelta(seconds=1))
    failed = next(o for o in stored if o.kind is ObservationKind.HEARTBEAT and o.status == "failed")
    assert failed.detail == {"signal": "service_check_failed", "detail": awkward, "rollout": rollout_id}
    assert failed.at == now
    result = next(o for o in stored if o.kind is ObservationKind.INSTALL_RESULT)
    assert (result.status, result.rollout_id, result.detail["detail"]) == ("failed", rollout_id, awkward)
