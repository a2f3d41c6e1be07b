"""Once a rollout is over, the controller asks the driver to let go of its restore points (issue 16: "no snapshot
left behind"): after it completes or rolls back, never after it failed; once; again after a process died between
the end and the release; and a driver that cannot is a sentence in the record, never a crash.

The real controller, the in-memory repository and the simulated driver in simulated time; the driver here is the
simulated one with the optional ``release_restore_points`` hook (core.driver), letting go of the restore points
its world holds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ringfence.core.errors import DriverError
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.rollout.controller import Controller, abort_rollout, change_phase, start_rollout
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.simulation import SimulatedClock, SimulationDriver
from ringfence.core.update import Update

ESTATE = """
apiVersion: ringfence/v1
estate: small
assets:
  - {id: vm-1, kind: vm, site: city, software: [{product: acme/agent, version: "1.0"}]}
  - {id: vm-2, kind: vm, site: city, software: [{product: acme/agent, version: "1.0"}]}
  - {id: vm-3, kind: vm, site: city, software: [{product: acme/agent, version: "1.0"}]}
  - {id: vm-4, kind: vm, site: city, software: [{product: acme/agent, version: "1.0"}]}
"""
ID = "r-1"
START = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


class ProcessDied(BaseException):
    """The process ends here (a kill between the rollout's end and the release): nothing catches it."""


class KeepingDriver(SimulationDriver):
    """The simulated driver, whose restore points cost something while kept: it lets go of them when asked."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.asked = 0
        self.trouble: BaseException | None = None

    def held(self) -> set[str]:
        return {a for a, asset in self.world.assets.items() if asset.restore_point is not None}

    def release_restore_points(self, rollout_id: str) -> tuple[str, ...]:
        self.asked += 1
        if self.trouble is not None:
            raise self.trouble
        said = []
        for asset_id, asset in sorted(self.world.assets.items()):
            if asset.restore_point is not None:
                said.append(f"restore point {asset.restore_point} of {asset_id} removed")
                asset.restore_point = None
        return tuple(said)


def setup(
    rollback: str = "snapshot", **failures: object
) -> tuple[MemoryRolloutRepository, KeepingDriver, Controller, SimulatedClock]:
    graph = compile_estate(parse_estate_text(ESTATE, "small.yaml"))
    update = Update.model_validate(
        {
            "id": "agent-2",
            "product": "acme/agent",
            "version": "2.0",
            "bake": "10m",
            "rings": [1, "100%"],
            "rollback": rollback,
        }
    )
    clock = SimulatedClock(START)
    driver = KeepingDriver(clock=clock, timing=update.timing, **failures)
    repo = MemoryRolloutRepository()
    repo.add(ID, update, plan_strategy("ringfence", graph, update), at=clock())
    start_rollout(repo, ID, actor="alice", at=clock())
    return repo, driver, Controller(repo, driver, clock), clock


def run(controller: Controller, clock: SimulatedClock) -> RolloutPhase:
    def wait_until(at: datetime | None) -> None:
        assert at is not None
        clock.advance_to(at)

    return controller.run_until_settled(ID, wait_until=wait_until, max_steps=500).phase


def test_a_completed_rollout_lets_go_of_every_restore_point_once() -> None:
    repo, driver, controller, clock = setup()
    seen: list[set[str]] = []
    controller.run_until_settled(
        ID,
        wait_until=lambda at: clock.advance_to(at) if at else None,
        max_steps=500,
        on_step=lambda _report: seen.append(driver.held()),
    )
    assert repo.state(ID).phase is RolloutPhase.COMPLETED
    assert max(map(len, seen)) == 4  # every target had its restore point while the rollout ran
    assert driver.held() == set()
    released = repo.released(ID)
    assert released is not None
    assert sorted(s.split(" of ")[1] for s in released) == [
        "vm-1 removed",
        "vm-2 removed",
        "vm-3 removed",
        "vm-4 removed",
    ]
    # Asked once: a later step (the loop looking again, `rollout start` run twice) does not ask again.
    controller.step(ID)
    controller.step(ID)
    assert driver.asked == 1


def test_a_rolled_back_rollout_lets_go_of_them_too() -> None:
    repo, driver, controller, clock = setup(install_failures=("vm-1", "vm-2", "vm-3", "vm-4"))
    assert run(controller, clock) is RolloutPhase.ROLLED_BACK
    assert driver.asked == 1
    assert repo.released(ID) is not None
    assert driver.held() == set()


def test_a_failed_rollout_keeps_its_restore_points_for_a_person() -> None:
    repo, driver, controller, clock = setup()
    while not driver.held():
        controller.step(ID)
        clock.advance_to(controller.wake_at() or clock())
    abort_rollout(repo, ID, actor="alice", at=clock())
    change_phase(repo, ID, RolloutPhase.FAILED, "closed by alice", actor="alice", at=clock())
    controller.step(ID)
    assert driver.asked == 0
    assert repo.released(ID) is None
    assert driver.held()


def test_a_rollout_without_restore_points_asks_nothing() -> None:
    _repo, driver, controller, clock = setup(rollback="reinstall")
    assert run(controller, clock) is RolloutPhase.COMPLETED
    assert driver.asked == 0


def test_a_process_that_died_before_the_release_leaves_it_to_the_next_step() -> None:
    repo, driver, controller, clock = setup()
    driver.trouble = ProcessDied()
    with pytest.raises(ProcessDied):
        run(controller, clock)
    assert repo.state(ID).phase is RolloutPhase.COMPLETED  # the end was recorded, the release was not
    assert repo.released(ID) is None
    assert driver.held()
    # A new process (a new controller) steps the finished rollout: it lets go of them and records it.
    driver.trouble = None
    report = Controller(repo, driver, clock).step(ID)
    assert report.phase is RolloutPhase.COMPLETED
    assert len(report.released) == 4
    assert repo.released(ID) == report.released
    assert driver.held() == set()


@pytest.mark.parametrize(
    "trouble",
    [DriverError("vCenter at https://vc.example: connection refused"), OSError("vCenter at https://vc.example")],
)
def test_a_driver_that_cannot_let_go_is_a_sentence_not_a_crash_nor_a_retry(trouble: Exception) -> None:
    repo, driver, controller, clock = setup()
    driver.trouble = trouble
    assert run(controller, clock) is RolloutPhase.COMPLETED
    assert repo.released(ID) == (f"the simulated driver could not let go of the restore points: {trouble}",)
    controller.step(ID)
    assert driver.asked == 1
