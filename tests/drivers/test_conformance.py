"""The conformance suite every registered driver passes (issue 13, item 5): the driver protocol's promises,
checked the same way for each driver found in the registry.

Each driver runs on real things, as its own tests run it: the ``simulated`` driver on a world file, the
``agent`` driver on a real database where the agents' reports arrive through the heartbeat use case (what
``POST /v1/heartbeats`` calls), the ``ansible`` driver with real ansible-runner runs on local hosts
(``drivers/ansible_fixtures``), the ``vsphere`` driver on a simulated vCenter (govmomi's vcsim,
``vsphere/conftest``). What each harness adds is only what the outside world does: an agent
reporting its result, nothing for the others.

The suite is parametrized over :func:`ringfence.drivers.registry.available_drivers`, so a driver registered
without a harness here fails (``test_every_registered_driver_has_a_harness``) rather than going unchecked.

The promises:

- ``start`` then ``poll`` reaches a final result for each started asset; assets never started are left out;
- ``start`` is idempotent: an operation an asset already had is not started again, its result stays;
- after a crash, a new driver instance (what a restarted process builds) polls what an earlier one started;
- ``cancel`` leaves finished results as they were;
- restore point then rollback, for a driver that declares it can; one that cannot says so in a sentence,
  both before anything starts (:func:`~ringfence.core.driver.refusal_for`) and when asked anyway;
- ``observe`` reports only asked assets, each reading naming its own asset; a healthy updated asset is healthy;
- the options are declared (name, help, default), and a bad one is refused with a sentence naming it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.conftest import asset_ids, create_agent_rollout
from drivers.ansible_fixtures import HEALTH, ROLLBACK, SNAPSHOT, UPDATE, build_fleet
from ringfence.core.driver import (
    Batch,
    Driver,
    DriverOptions,
    HealthSource,
    OperationKind,
    OperationResult,
    refusal_for,
)
from ringfence.core.errors import DriverError, InputError
from ringfence.core.gates import AssetHealth, AssetStatus
from ringfence.core.update import Update
from ringfence.drivers.registry import (
    DriverContext,
    available_drivers,
    available_health_sources,
    build_driver,
    build_health_source,
    driver_class,
    options_of,
)
from ringfence.files.importers.ansible import asset_id_for_host
from ringfence.service.heartbeats import (
    Heartbeat,
    HeartbeatStatus,
    ReportedOperation,
    ReportedResult,
    record_heartbeats,
)
from ringfence.service.tokens import Caller, Role
from ringfence.store.db import make_engine, upgrade
from vsphere.conftest import vcsim_binary  # noqa: F401  (the fixture the vsphere harness asks for)

PROXY = Caller(1, "vendor-proxy", Role.OPERATOR)
"""An operator's token: a proxy reporting for the agents (as in ``tests/agents``)."""

FINAL_WITHIN = 180.0
"""Seconds a batch of two assets may take to reach final results (real ansible runs take a few)."""


@dataclass
class Harness:
    """One driver under the suite: how to build it again (as a restarted process would) and what the
    outside world does while its operations run."""

    name: str
    rollout: str
    assets: tuple[str, ...]
    build: Callable[[], Driver]
    takes_restore_points: bool
    report: Callable[[Batch], None] = lambda _batch: None
    """What the assets do once asked (an agent reports its result); nothing for drivers that push."""
    report_health: Callable[[tuple[str, ...]], None] = lambda _assets: None
    product: str = "acme/agent"
    version: str = "2.0"
    close: Callable[[], None] = lambda: None
    options: dict[str, str] = field(default_factory=dict)
    """Options it is built with (a bad one is checked against these)."""
    leaves_unstarted_out: bool = True
    """Whether ``poll`` leaves out assets it was never asked to start. The agent driver cannot tell an asset
    never started from one whose row moved on, so it answers for every asset it is asked about (running,
    then failed at ``install_timeout``): the controller only polls assets it started."""

    def batch(self, kind: OperationKind, *assets: str) -> Batch:
        return Batch(self.rollout, kind, self.product, self.version, assets or self.assets)

    def finish(self, driver: Driver, batch: Batch) -> dict[str, OperationResult]:
        """Poll until every asset of ``batch`` has a final result (the assets reporting as they would)."""
        self.report(batch)
        deadline = time.monotonic() + FINAL_WITHIN
        while True:
            results = {r.asset_id: r for r in driver.poll(batch)}
            if set(results) == set(batch.assets) and all(r.is_final for r in results.values()):
                return results
            if time.monotonic() > deadline:
                pytest.fail(f"the {self.name} driver gave no final results within {FINAL_WITHIN}s: {results}")
            time.sleep(0.1)


def update(rollback: str) -> Update:
    return Update.model_validate(
        {"id": "u", "product": "acme/agent", "version": "2.0", "rings": [1, "100%"], "rollback": rollback}
    )


# ------------------------------------------------------------------------------------------ harnesses


def _simulated(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    world = tmp_path / "world.json"
    options = {"world": str(world), "apply": "0s", "rollback": "0s", "restore_point": "0s"}
    return Harness(
        name="simulated",
        rollout="r-000001",
        assets=("app-1", "app-2"),
        build=lambda: build_driver("simulated", options),
        takes_restore_points=True,
        options=options,
    )


def _agent(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    # A real SQLite database, migrated as the server's is (the agent tests run it on PostgreSQL too).
    engine = make_engine(f"sqlite:///{tmp_path / 'ringfence.db'}")
    upgrade(engine)
    rollout = create_agent_rollout(engine, 1)
    assets = tuple(asset_ids(1)[:2])
    words = {OperationKind.apply: ReportedOperation.install, OperationKind.rollback: ReportedOperation.rollback}

    def report(batch: Batch) -> None:
        # The agents did what they were told and say so, as `ringfence agent` does through POST /v1/heartbeats.
        if batch.kind not in words:
            return
        now = datetime.now(UTC)
        result = ReportedResult(words[batch.kind], True, "exit status 0")
        beats = [
            Heartbeat(a, HeartbeatStatus.ok, at=now, rollout_id=batch.rollout_id, result=result) for a in batch.assets
        ]
        record_heartbeats(engine, PROXY, beats, now)

    def report_health(assets: tuple[str, ...]) -> None:
        now = datetime.now(UTC)
        record_heartbeats(engine, PROXY, [Heartbeat(a, HeartbeatStatus.ok, at=now) for a in assets], now)

    return Harness(
        name="agent",
        rollout=rollout,
        assets=assets,
        build=lambda: build_driver("agent", {}, DriverContext(engine=engine)),
        takes_restore_points=False,
        report=report,
        report_health=report_health,
        close=engine.dispose,
        leaves_unstarted_out=False,
    )


def _ansible(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    fleet = build_fleet(tmp_path / "fleet", 3)
    # Hosts 0 and 2: models the release does not break (no broken_model is given anyway).
    hosts = (fleet.hosts[0], fleet.hosts[2])
    options = {
        "inventory": str(fleet.inventory),
        "update_playbook": str(UPDATE),
        "snapshot_playbook": str(SNAPSHOT),
        "rollback_playbook": str(ROLLBACK),
        "health_playbook": str(HEALTH),
        "artifacts_dir": str(tmp_path / "artifacts"),
        "extravars": json.dumps({}),
    }
    return Harness(
        name="ansible",
        rollout="r-000007",
        assets=tuple(asset_id_for_host(h) for h in hosts),
        build=lambda: build_driver("ansible", options),
        takes_restore_points=True,
        options=options,
        product="acme/ward-agent",
        version="7.16.0",
    )


def _vsphere(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    # A simulated vCenter of its own (govmomi's vcsim, tests/vsphere): one HA cluster of three hosts tolerating one
    # failure; the assets are a host (maintenance mode around the command) and a VM (snapshots as restore points).
    from vsphere.conftest import Simulator, require_pyvmomi, start_vcsim

    require_pyvmomi()
    shape = ("-cluster", "1", "-host", "3", "-vm", "1", "-ds", "1", "-ha", "1")
    process, url = start_vcsim(request.getfixturevalue("vcsim_binary"), *shape)
    simulator = Simulator(process, url)
    record = tmp_path / "record"
    line = f"echo {{operation}} {{name}} {{version}} >> {record}"
    options = simulator.options(update_command=line, rollback_command=line, state_dir=str(tmp_path / "vsphere"))
    return Harness(
        name="vsphere",
        rollout="r-000009",
        assets=("dc0_c0_h0", "dc0_c0_rp0_vm0"),
        build=lambda: build_driver("vsphere", options),
        takes_restore_points=True,
        options=options,
        product="vmware/esxi",
        version="7.0.3",
        close=simulator.stop,
    )


HARNESSES: dict[str, Callable[[pytest.FixtureRequest, Path], Harness]] = {
    "simulated": _simulated,
    "agent": _agent,
    "ansible": _ansible,
    "vsphere": _vsphere,
}


@pytest.fixture(params=available_drivers())
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    name = str(request.param)
    make = HARNESSES.get(name)
    if make is None:
        pytest.fail(f"driver '{name}' is registered but has no harness in tests/drivers/test_conformance.py")
    made = make(request, tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_every_registered_driver_has_a_harness() -> None:
    missing = sorted(set(available_drivers()) - set(HARNESSES))
    assert not missing, f"registered drivers the conformance suite does not run: {missing}"


# ------------------------------------------------------------------------------------------ the promises


def test_start_then_poll_reaches_final_results_and_leaves_unstarted_assets_out(harness: Harness) -> None:
    driver = harness.build()
    first, second = harness.assets
    if harness.leaves_unstarted_out:
        assert list(driver.poll(harness.batch(OperationKind.apply))) == []  # nothing started yet
    driver.start(harness.batch(OperationKind.apply, first))
    results = harness.finish(driver, harness.batch(OperationKind.apply, first))
    assert results[first].status == "succeeded", results
    polled = {r.asset_id: r for r in driver.poll(harness.batch(OperationKind.apply))}
    assert polled[first].status == "succeeded"
    if harness.leaves_unstarted_out:
        assert second not in polled  # asked about both, it reports only the one it started
    else:
        assert polled[second].status == "running"  # waited on (within its bound), never made up


def test_start_is_idempotent(harness: Harness) -> None:
    driver = harness.build()
    batch = harness.batch(OperationKind.apply)
    driver.start(batch)
    driver.start(batch)  # a controller killed between "decided" and "recorded" repeats its step
    before = harness.finish(driver, batch)
    driver.start(batch)  # already had it in this rollout: not started again, its result stays
    after = {r.asset_id: r for r in driver.poll(batch)}
    assert {a: r.status for a, r in after.items()} == {a: r.status for a, r in before.items()}
    assert all(r.status == "succeeded" for r in after.values()), after


def test_a_new_driver_polls_what_an_earlier_one_started(harness: Harness) -> None:
    batch = harness.batch(OperationKind.apply)
    earlier = harness.build()
    earlier.start(batch)
    del earlier  # the process that started the batch is gone
    later = harness.build()
    results = harness.finish(later, batch)
    assert all(r.status == "succeeded" for r in results.values()), results
    later.start(batch)  # and starting it again from the new process starts nothing new
    assert {r.asset_id: r.status for r in later.poll(batch)} == dict.fromkeys(harness.assets, "succeeded")


def test_cancel_leaves_finished_results(harness: Harness) -> None:
    driver = harness.build()
    batch = harness.batch(OperationKind.apply)
    driver.cancel(batch)  # nothing started: nothing to stop, nothing recorded
    if harness.leaves_unstarted_out:
        assert list(driver.poll(batch)) == []
    driver.start(batch)
    finished = harness.finish(driver, batch)
    driver.cancel(batch)
    assert {r.asset_id: r for r in driver.poll(batch)} == finished


def test_restore_point_then_rollback_or_a_refusal_in_a_sentence(harness: Harness) -> None:
    driver = harness.build()
    refusal = refusal_for(driver, update("snapshot"))
    if not harness.takes_restore_points:
        assert isinstance(refusal, str), "a driver without restore points must say so"
        assert refusal.strip()
        assert refusal_for(driver_class(harness.name), update("snapshot")) == refusal  # before it is even built
        with pytest.raises(DriverError) as raised:
            driver.start(harness.batch(OperationKind.restore_point))
        assert refusal in str(raised.value)
        # Reinstalling needs no restore point: an apply and a rollback it does.
        assert refusal_for(driver, update("reinstall")) is None
        driver.start(harness.batch(OperationKind.apply))
        harness.finish(driver, harness.batch(OperationKind.apply))
        driver.start(harness.batch(OperationKind.rollback))
        rolled = harness.finish(driver, harness.batch(OperationKind.rollback))
        assert all(r.status == "succeeded" for r in rolled.values()), rolled
        return
    assert refusal is None
    points = harness.batch(OperationKind.restore_point)
    driver.start(points)
    taken = harness.finish(driver, points)
    assert all(r.status == "succeeded" and r.ref for r in taken.values()), taken
    driver.start(harness.batch(OperationKind.apply))
    harness.finish(driver, harness.batch(OperationKind.apply))
    driver.start(harness.batch(OperationKind.rollback))
    rolled = harness.finish(driver, harness.batch(OperationKind.rollback))
    assert all(r.status == "succeeded" for r in rolled.values()), rolled


def test_observe_reports_only_asked_assets_and_an_updated_well_asset_is_healthy(harness: Harness) -> None:
    driver = harness.build()
    assert dict(driver.observe([])) == {}
    batch = harness.batch(OperationKind.apply)
    driver.start(batch)
    harness.finish(driver, batch)
    harness.report_health(harness.assets)
    first = harness.assets[0]
    asked = driver.observe([first])
    assert set(asked) <= {first}
    readings = driver.observe(list(harness.assets))
    assert set(readings) <= set(harness.assets)
    for asset_id, reading in readings.items():
        assert isinstance(reading, AssetHealth)
        assert reading.asset_id == asset_id
    assert {a: readings[a].status for a in readings} == dict.fromkeys(harness.assets, AssetStatus.healthy), readings
    assert driver.next_event_at() is None or isinstance(driver.next_event_at(), datetime)


def test_the_driver_is_its_own_health_source_by_default(harness: Harness) -> None:
    driver = harness.build()
    assert isinstance(driver, HealthSource)
    assert build_health_source("driver", driver) is driver


def test_options_are_declared_and_a_bad_one_is_refused_naming_it(harness: Harness) -> None:
    declared = options_of(harness.name)
    assert isinstance(declared, DriverOptions), f"the {harness.name} driver declares no options"
    for option in declared:
        assert option.help.strip(), f"{harness.name} option {option.name} has no help text"
        assert option.describe().startswith(f"{option.name}=")
    with pytest.raises(InputError) as raised:
        build_driver(harness.name, {"no_such_option": "1"})
    assert "no_such_option" in str(raised.value)
    durations = [o for o in declared if o.kind == "duration"]
    if durations:
        bad = durations[0].name
        with pytest.raises(InputError) as raised:
            build_driver(harness.name, {**harness.options, bad: "soon"})
        assert f"{harness.name} driver option {bad}='soon'" in str(raised.value)


# ------------------------------------------------------------------------------------------ health sources


def test_every_health_source_loads_and_observes() -> None:
    names = available_health_sources()
    assert names[0] == "driver"
    for name in names[1:]:
        from ringfence.core.driver import HEALTH_SOURCE_GROUP
        from ringfence.drivers.registry import _load

        cls = _load(HEALTH_SOURCE_GROUP, name, "health source", names, ("--health-source",))
        assert callable(getattr(cls, "observe", None)), f"health source {name} cannot observe"
    with pytest.raises(InputError, match="there is no health source 'oracle'; the installed health sources are"):
        build_health_source("oracle", build_driver("simulated"))
