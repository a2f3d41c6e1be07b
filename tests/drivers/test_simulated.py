"""The simulated driver: deterministic faults, idempotent operations, restore points, a world in a file."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from ringfence.core.driver import Batch, OperationKind
from ringfence.core.errors import InputError
from ringfence.core.gates import AssetStatus, FailureSignal
from ringfence.core.simulation import DRILL_EPOCH, FaultModel, SimulatedClock, SimulationDriver
from ringfence.core.update import Timing
from ringfence.drivers.registry import available_drivers, load_driver
from ringfence.drivers.simulated import SimulatedDriver, read_world

TIMING = Timing(apply="10m", rollback="15m", restore_point="5m")


def batch(kind: OperationKind, *assets: str, rollout: str = "r-1") -> Batch:
    return Batch(rollout, kind, "acme/agent", "2.0", assets)


def driver(fault: FaultModel | None = None, **kwargs: object) -> tuple[SimulationDriver, SimulatedClock]:
    clock = SimulatedClock()
    made = SimulationDriver(clock=clock, timing=TIMING, fault=fault or FaultModel(frozenset()), **kwargs)  # type: ignore[arg-type]
    return made, clock


def test_a_fault_draw_depends_on_seed_and_id_only() -> None:
    ids = [f"ws-{i:04d}" for i in range(2000)]
    model = FaultModel(frozenset(ids), probability=0.05, seed=7)
    again = FaultModel(frozenset(reversed(ids)), probability=0.05, seed=7)
    other_seed = FaultModel(frozenset(ids), probability=0.05, seed=8)
    failing = [a for a in ids if model.fails(a)]
    assert failing == [a for a in ids if again.fails(a)]
    assert failing != [a for a in ids if other_seed.fails(a)]
    assert 60 <= len(failing) <= 140  # about 5% of 2000
    assert not FaultModel(frozenset(ids), probability=1.0).fails("not-affected")


def test_apply_takes_its_time_and_starting_twice_installs_once() -> None:
    sim, clock = driver()
    sim.start(batch(OperationKind.apply, "a", "b"))
    sim.start(batch(OperationKind.apply, "a"))  # a controller repeating its step after a crash
    assert [r.status for r in sim.poll(batch(OperationKind.apply, "a", "b", "never-started"))] == ["running", "running"]
    assert sim.next_event_at() == DRILL_EPOCH + timedelta(seconds=600)
    clock.advance(600)
    results = sim.poll(batch(OperationKind.apply, "a", "b"))
    assert [(r.asset_id, r.status) for r in results] == [("a", "succeeded"), ("b", "succeeded")]
    assert sim.world.assets["a"].installs == 1
    assert sim.world.assets["a"].apply_requests == 2
    assert sim.world.assets["a"].version == "2.0"
    assert sim.next_event_at() is None


def test_an_affected_asset_fails_after_its_install_and_reports_the_signal() -> None:
    fault = FaultModel(frozenset({"a"}), after=1200, signal=FailureSignal.heartbeat_lost)
    sim, clock = driver(fault)
    sim.start(batch(OperationKind.apply, "a", "b"))
    clock.advance(600)
    assert {h.status for h in sim.observe(["a", "b"]).values()} == {AssetStatus.healthy}
    assert sim.next_event_at() == DRILL_EPOCH + timedelta(seconds=1800)
    clock.advance(1200)
    health = sim.observe(["a", "b"])
    assert health["a"].status is AssetStatus.failed
    assert health["a"].signal is FailureSignal.heartbeat_lost
    assert health["a"].seconds_after_install == 1200
    assert health["b"].status is AssetStatus.healthy
    assert sim.world.failed() == ("a",)
    assert sim.world.down() == ("a",)


def test_rollback_before_the_failure_prevents_it() -> None:
    sim, clock = driver(FaultModel(frozenset({"a"}), after=3600))
    sim.start(batch(OperationKind.apply, "a"))
    clock.advance(600)
    sim.poll(batch(OperationKind.apply, "a"))
    sim.start(batch(OperationKind.rollback, "a"))
    clock.advance(900)
    assert sim.poll(batch(OperationKind.rollback, "a"))[0].status == "succeeded"
    clock.advance(7200)
    assert sim.observe(["a"])["a"].status is AssetStatus.healthy
    assert sim.world.failed() == ()
    assert sim.world.assets["a"].version is None


def test_rolling_back_without_a_restore_point_loses_data_and_with_one_does_not() -> None:
    fault = FaultModel(frozenset({"a", "b"}), after=60, rollback_loses_data=True)
    sim, clock = driver(fault)
    sim.start(batch(OperationKind.restore_point, "a"))
    clock.advance(300)
    taken = sim.poll(batch(OperationKind.restore_point, "a"))[0]
    assert (taken.status, taken.ref) == ("succeeded", "rp-r-1-a")
    sim.start(batch(OperationKind.apply, "a", "b"))
    clock.advance(700)
    sim.observe(["a", "b"])  # the world moves when the driver is asked
    assert sim.world.down() == ("a", "b")
    sim.start(batch(OperationKind.rollback, "a", "b"))
    clock.advance(900)
    results = {r.asset_id: r for r in sim.poll(batch(OperationKind.rollback, "a", "b"))}
    assert "restore point" in results["a"].detail
    assert "data was lost" in results["b"].detail
    assert sim.world.data_lost() == ("b",)
    assert sim.world.down() == ()


def test_a_restore_point_that_fails_verification_is_reported() -> None:
    sim, clock = driver(restore_point_failures={"a"})
    sim.start(batch(OperationKind.restore_point, "a", "b"))
    clock.advance(300)
    results = {r.asset_id: r for r in sim.poll(batch(OperationKind.restore_point, "a", "b"))}
    assert results["a"].status == "failed"
    assert "verification" in results["a"].detail
    assert results["b"].status == "succeeded"


def test_cancel_stops_what_has_not_finished_and_silent_assets_do_not_report() -> None:
    sim, clock = driver(silent={"quiet"})
    sim.start(batch(OperationKind.apply, "a"))
    sim.cancel(batch(OperationKind.apply, "a"))
    clock.advance(600)
    assert sim.poll(batch(OperationKind.apply, "a"))[0].status == "failed"
    assert sim.observe(["quiet", "a"]).keys() == {"a"}


def test_the_world_file_survives_the_process(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    first = SimulatedDriver(world=str(world), apply="0s", fail="a", after="1h")
    first.start(batch(OperationKind.apply, "a", "b"))
    assert json.loads(world.read_text())["assets"]["a"]["installs"] == 1
    # A new process (after a SIGKILL) reads the same world and starts nothing twice.
    second = SimulatedDriver(world=str(world), apply="0s", fail="a", after="1h")
    second.start(batch(OperationKind.apply, "a", "b"))
    assert [r.status for r in second.poll(batch(OperationKind.apply, "a", "b"))] == ["succeeded", "succeeded"]
    stored = read_world(world)
    assert stored.assets["a"].installs == 1
    assert stored.assets["a"].apply_requests == 2
    assert stored.assets["a"].fail_at is not None
    assert second.next_event_at() is not None  # the pending failure came back from the file


def test_the_driver_is_found_by_entry_point_and_unknown_names_are_listed() -> None:
    assert "simulated" in available_drivers()
    made = load_driver("simulated", apply="5s")
    assert made.name == "simulated"
    with pytest.raises(InputError, match=r"no driver 'nope'.*simulated"):
        load_driver("nope")
    with pytest.raises(InputError, match="does not take these options"):
        load_driver("simulated", colour="blue")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("probability", "2", "from 0 to 1"), ("after", "soon", "duration"), ("signal", "melted", "crashed")],
)
def test_bad_options_are_refused_with_a_sentence(option: str, value: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        SimulatedDriver(**{option: value})


def test_a_broken_world_file_is_named(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    world.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"world\.json"):
        SimulatedDriver(world=str(world))
