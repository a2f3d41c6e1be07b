"""The simulated driver with its world kept in the database, as ``rollout start`` and the server build it.

Real SQLite and PostgreSQL; "a process dying" is a driver dropped and a new one built over the same database,
which is all a new process has. (Real kills of real processes: tests/cli/test_rollout_resume.py and
tests/service/test_server_resume.py.)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from ringfence.core.driver import Batch, OperationKind
from ringfence.core.errors import DriverError, InputError
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.update import parse_update_text
from ringfence.drivers.registry import DriverContext, server_driver
from ringfence.drivers.simulated import SimulatedDriver
from ringfence.service import rollouts
from ringfence.service.driver_state import DatabaseWorlds, load_world, rollout_driver, simulated_driver

ESTATE = """
apiVersion: ringfence/v1
estate: small
services:
  - {id: web, name: Web, tier: 3, requires: [app-1]}
assets:
  - {id: app-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
"""
UPDATE = """
apiVersion: ringfence/v1
update:
  id: agent-2
  product: acme/agent
  version: "2"
  rings: [1, "100%"]
  bake: 0s
  rollback: reinstall
  timing: {apply: 1h, rollback: 2h, restore_point: 3h}
"""


def create(engine: Engine, update: str = UPDATE) -> str:
    created = rollouts.create_rollout(
        engine,
        estate_text=ESTATE,
        estate_source="estate.yaml",
        update_text=update,
        update_source="update.yaml",
        actor="ana",
        at=datetime.now(UTC),
    )
    assert created.rollout is not None
    return created.rollout.id


def apply(rollout: str, *assets: str) -> Batch:
    return Batch(rollout, OperationKind.apply, "acme/agent", "2", assets)


@pytest.mark.parametrize("build", ["cli", "server"])
def test_the_update_times_the_operations_and_a_new_driver_finds_them(db_engine: Engine, build: str) -> None:
    rollout = create(db_engine)
    update = parse_update_text(UPDATE)

    def new_driver() -> SimulatedDriver:
        if build == "cli":
            found = rollout_driver(db_engine, rollout, {})
        else:
            found = server_driver("simulated", DriverContext(engine=db_engine, update=update))
        assert isinstance(found, SimulatedDriver)
        return found

    first = new_driver()
    before = time.time()
    first.start(apply(rollout, "app-1"))
    op = load_world(db_engine, rollout).operations[f"{rollout}|apply|app-1"]
    assert op.ends - op.started == 3600  # the update's 1h, not the driver's default
    assert before <= op.started <= time.time()

    second = new_driver()  # what a restarted process builds
    assert [r.status for r in second.poll(apply(rollout, "app-1"))] == ["running"]
    second.start(apply(rollout, "app-1"))  # the killed process's decision, taken again
    kept = load_world(db_engine, rollout)
    assert kept.assets["app-1"].installs == 1
    assert kept.assets["app-1"].apply_requests == 2
    assert kept.operations[f"{rollout}|apply|app-1"].started == op.started
    assert second.next_event_at() == datetime.fromtimestamp(op.ends, UTC)


def test_options_override_the_update_and_a_world_file_keeps_the_world_instead(
    db_engine: Engine, tmp_path: Path
) -> None:
    rollout = create(db_engine)
    driver = rollout_driver(db_engine, rollout, {"apply": "0s"})
    driver.start(apply(rollout, "app-1"))
    assert [r.status for r in driver.poll(apply(rollout, "app-1"))] == ["succeeded"]
    assert load_world(db_engine, rollout).assets["app-1"].version == "2"

    other = create(db_engine)
    world = tmp_path / "world.json"
    in_file = rollout_driver(db_engine, other, {"world": str(world), "apply": "0s"})
    in_file.start(apply(other, "app-2"))
    assert world.exists()
    assert load_world(db_engine, other).operations == {}  # the file holds it, not the database
    with pytest.raises(InputError, match="does not take these options"):
        rollout_driver(db_engine, rollout, {"teleport": "yes"})


def test_a_driver_keeping_a_world_per_rollout_serves_one_rollout(db_engine: Engine) -> None:
    first, second = create(db_engine), create(db_engine)
    driver = simulated_driver(db_engine, parse_update_text(UPDATE), {"apply": "0s"})
    assert isinstance(driver, SimulatedDriver)
    assert driver.rollout_id is None  # the server's factory knows only the update: it learns at the first batch
    driver.start(apply(first, "app-1"))
    assert driver.rollout_id == first
    # Two rollouts in one driver would write their worlds over each other's: refused with a sentence.
    with pytest.raises(DriverError, match=f"rollout {second} needs a driver of its own"):
        driver.start(apply(second, "app-1"))
    assert load_world(db_engine, second).operations == {}


def test_a_world_file_and_a_world_per_rollout_do_not_mix(tmp_path: Path, db_engine: Engine) -> None:
    driver = SimulatedDriver(world=str(tmp_path / "world.json"))
    with pytest.raises(DriverError, match=r"world\.json"):
        driver.keep_worlds_in(DatabaseWorlds(db_engine))


def test_a_crash_found_while_health_is_read_for_the_gate_is_kept_without_blocking_the_controller(
    db_engine: Engine,
) -> None:
    """The controller reads health for a decision outside its write transaction: the simulated world, kept in
    the same database, saves the crash its reading settles. (Read inside it, the save waited on the
    controller's own transaction: "database is locked" after the busy timeout on SQLite, for ever on
    PostgreSQL — a rollout that could never pass its first gate.)"""
    update = UPDATE.replace("bake: 0s", "bake: 2s").replace(
        "timing: {apply: 1h, rollback: 2h, restore_point: 3h}", "timing: {apply: 0s}"
    )
    rollout = create(db_engine, update)
    rollouts.start(db_engine, rollout, actor="ana", at=datetime.now(UTC))
    driver = rollout_driver(db_engine, rollout, {"fail": "app-1,app-2", "after": "1s"})
    controller = rollouts.controller(db_engine, driver, lambda: datetime.now(UTC))
    for _ in range(20):
        report = controller.step(rollout)
        if report.phase is RolloutPhase.BAKING:
            break
    assert report.phase is RolloutPhase.BAKING  # the canary installed, no crash yet: the gate is next
    # The canary crashes a second after its install and the bake ends a second later; nothing reads the world
    # meanwhile, so the gate's reading is the one that settles the crash and saves it.
    time.sleep(2.2)
    verdicts = [controller.step(rollout).verdict for _ in range(3)]
    kept = load_world(db_engine, rollout)
    assert [a for a, asset in kept.assets.items() if asset.is_down] == [
        a for a, asset in kept.assets.items() if asset.installs
    ]
    assert [v.outcome.value for v in verdicts if v is not None] == ["failed"]
