"""The controller with the in-memory repository and the simulated driver, on a small hand-written estate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ringfence.core.driver import Batch
from ringfence.core.errors import ConflictError
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.rollout.controller import (
    Controller,
    StepReport,
    abort_rollout,
    pause_rollout,
    resume_rollout,
    roll_back_rollout,
    start_rollout,
)
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.simulation import FaultModel, SimulatedClock, SimulationDriver
from ringfence.core.update import Update

ESTATE = """
apiVersion: ringfence/v1
estate: small
services:
  - {id: web, name: Web, tier: 1, requires: [{any: 1, of: [app-1, app-2]}]}
  - {id: desk, name: Desk, tier: 3, requires: [{any: 2, where: "kind=endpoint"}]}
assets:
  - {id: app-1, kind: vm, attrs: {os: windows-2019}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: app-2, kind: vm, attrs: {os: windows-2019}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: app-3, kind: vm, attrs: {os: windows-2019}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-1, kind: endpoint, attrs: {os: windows-11}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-2, kind: endpoint, attrs: {os: windows-11}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-3, kind: endpoint, attrs: {os: windows-11}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-4, kind: endpoint, attrs: {os: windows-11}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-5, kind: endpoint, attrs: {os: windows-11}, software: [{product: acme/agent, version: "1.0"}]}
"""
TARGETS = ("app-1", "app-2", "app-3", "ws-1", "ws-2", "ws-3", "ws-4", "ws-5")
ID = "r-1"


@pytest.fixture(scope="module")
def graph() -> EstateGraph:
    return compile_estate(parse_estate_text(ESTATE, "small.yaml"))


def make_update(rollback: str = "snapshot", **fields: object) -> Update:
    return Update.model_validate(
        {
            "id": "agent-2",
            "product": "acme/agent",
            "version": "2.0",
            "bake": "1h",
            "rings": [1, "50%", "100%"],
            "rollback": rollback,
            **fields,
        }
    )


class Rig:
    """A rollout ready to start: repository, simulated clock and driver, controller."""

    def __init__(self, graph: EstateGraph, update: Update, driver_kwargs: dict[str, object] | None = None) -> None:
        self.clock = SimulatedClock()
        kwargs = dict(driver_kwargs or {})
        self.driver = SimulationDriver(clock=self.clock, timing=update.timing, **kwargs)  # type: ignore[arg-type]
        self.repo = MemoryRolloutRepository()
        self.strategy = plan_strategy("ringfence", graph, update)
        self.repo.add(ID, update, self.strategy, at=self.clock())
        self.controller = Controller(self.repo, self.driver, self.clock)

    def start(self) -> None:
        start_rollout(self.repo, ID, actor="alice", at=self.clock())

    def run(self) -> StepReport:
        return self.controller.run_until_settled(ID, wait_until=self._wait)

    def _wait(self, at: object) -> None:
        assert at is not None, "the controller waited with nothing to wait for"
        self.clock.advance_to(at)  # type: ignore[arg-type]

    def states(self) -> dict[str, AssetState]:
        return {a.asset_id: a.state for a in self.repo.assets(ID)}

    def path(self) -> list[RolloutPhase]:
        return [t.to_phase for t in self.repo.transitions(ID)]


def test_a_good_release_completes_with_every_asset_installed_once_after_its_restore_point(graph: EstateGraph) -> None:
    rig = Rig(graph, make_update())
    rig.start()
    report = rig.run()
    assert report.phase is RolloutPhase.COMPLETED
    assert set(rig.states().values()) == {AssetState.APPLIED}
    world = rig.driver.world
    assert world.exposed() == TARGETS
    assert all(world.assets[a].installs == 1 for a in TARGETS)
    # No asset was touched before its restore point was taken and verified.
    for a in TARGETS:
        rp = world.operations[f"{ID}|restore_point|{a}"]
        apply = world.operations[f"{ID}|apply|{a}"]
        assert rp.status == "succeeded"
        assert apply.started >= rp.ends
    assert rig.path()[:3] == [RolloutPhase.TAKING_RESTORE_POINTS, RolloutPhase.APPLYING, RolloutPhase.BAKING]
    assert rig.path().count(RolloutPhase.JUDGING) == len(rig.strategy.rings)
    assert rig.path()[-1] is RolloutPhase.COMPLETED


def test_a_crashing_canary_halts_and_everything_updated_is_rolled_back(graph: EstateGraph) -> None:
    fault = FaultModel(frozenset(TARGETS), after=120)
    rig = Rig(graph, make_update(rollback="reinstall"), {"fault": fault})
    rig.start()
    report = rig.run()
    assert report.phase is RolloutPhase.ROLLED_BACK
    canary = set(rig.strategy.rings[0])
    states = rig.states()
    assert {a for a, s in states.items() if s is AssetState.ROLLED_BACK} == canary
    assert {s for a, s in states.items() if a not in canary} == {AssetState.SKIPPED}
    world = rig.driver.world
    assert set(world.exposed()) == canary
    assert world.down() == ()
    halt = next(t for t in rig.repo.transitions(ID) if t.to_phase is RolloutPhase.HALTED)
    assert halt.ring == 0
    assert "crashed 2 min after install" in halt.reason
    # Detected as soon as the crash was seen, not after the one-hour bake.
    assert (halt.at - rig.repo.transitions(ID)[0].at).total_seconds() == 600 + 120


def test_an_asset_whose_restore_point_fails_is_skipped_and_never_updated(graph: EstateGraph) -> None:
    rig = Rig(graph, make_update(), {"restore_point_failures": {"ws-3"}})
    rig.start()
    assert rig.run().phase is RolloutPhase.COMPLETED
    assert rig.states()["ws-3"] is AssetState.RESTORE_POINT_FAILED
    assert rig.driver.world.assets["ws-3"].installs == 0
    applying = [t for t in rig.repo.transitions(ID) if t.to_phase is RolloutPhase.APPLYING]
    assert any("ws-3" in t.reason and "will not be updated" in t.reason for t in applying)


def test_silent_canaries_pause_for_a_person_who_can_abort_and_roll_back(graph: EstateGraph) -> None:
    rig = Rig(graph, make_update(), {"silent": set(TARGETS)})
    rig.start()
    report = rig.run()
    assert report.phase is RolloutPhase.PAUSED
    assert "missing telemetry is never a pass" in rig.repo.transitions(ID)[-1].reason
    # Resuming judges again: still no telemetry, so it pauses again rather than pass.
    resume_rollout(rig.repo, ID, actor="bob", at=rig.clock())
    assert rig.run().phase is RolloutPhase.PAUSED
    abort_rollout(rig.repo, ID, actor="bob", at=rig.clock(), why="no telemetry from the canaries")
    assert rig.run().phase is RolloutPhase.HALTED  # halted by a person: nothing rolls back by itself
    roll_back_rollout(rig.repo, ID, actor="bob", at=rig.clock())
    assert rig.run().phase is RolloutPhase.ROLLED_BACK
    assert rig.driver.world.assets[rig.strategy.rings[0][0]].rollbacks == 1
    reasons = [t.reason for t in rig.repo.transitions(ID)]
    assert "aborted by bob: no telemetry from the canaries" in reasons
    assert "rollback requested by bob" in reasons


def test_people_are_refused_moves_the_phase_does_not_allow(graph: EstateGraph) -> None:
    rig = Rig(graph, make_update(rollback="none"), {"fault": FaultModel(frozenset(TARGETS))})
    with pytest.raises(ConflictError, match="only a paused rollout can be resumed"):
        resume_rollout(rig.repo, ID, actor="bob", at=rig.clock())
    rig.start()
    pause_rollout(rig.repo, ID, actor="bob", at=rig.clock())
    with pytest.raises(ConflictError, match="can only be paused when"):
        pause_rollout(rig.repo, ID, actor="bob", at=rig.clock())
    resume_rollout(rig.repo, ID, actor="bob", at=rig.clock())
    assert rig.run().phase is RolloutPhase.HALTED
    with pytest.raises(ConflictError, match="rollback: none"):
        roll_back_rollout(rig.repo, ID, actor="bob", at=rig.clock())


def test_a_failed_rollback_fails_the_rollout_naming_the_asset(graph: EstateGraph) -> None:
    fault = FaultModel(frozenset(TARGETS), after=60)
    update = make_update(rollback="reinstall")
    canary = plan_strategy("ringfence", graph, update).rings[0]
    rig = Rig(graph, update, {"fault": fault, "rollback_failures": {canary[0]}})
    rig.start()
    assert rig.run().phase is RolloutPhase.FAILED
    assert canary[0] in rig.repo.transitions(ID)[-1].reason


class CrashOnce:
    """A driver that dies (as a killed process would) the first time it is asked to start an install."""

    def __init__(self, inner: SimulationDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.crashed = False

    def start(self, batch: Batch) -> None:
        self.inner.start(batch)
        if batch.kind == "apply" and not self.crashed:
            self.crashed = True
            raise SystemExit("killed after the driver started the install, before it was recorded")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_step_killed_after_acting_is_repeated_without_installing_twice(graph: EstateGraph) -> None:
    rig = Rig(graph, make_update(rollback="reinstall"))
    crashing = CrashOnce(rig.driver)
    rig.controller = Controller(rig.repo, crashing, rig.clock)  # type: ignore[arg-type]
    rig.start()
    with pytest.raises(SystemExit):
        rig.run()
    assert rig.repo.decisions(ID) == 1  # persisted, not marked done
    report = rig.controller.step(ID)
    assert report.reused_decision
    assert rig.run().phase is RolloutPhase.COMPLETED
    assert all(rig.driver.world.assets[a].installs == 1 for a in TARGETS)
    assert rig.driver.world.assets[rig.strategy.rings[0][0]].apply_requests == 2


def steps(rig: Rig) -> Iterator[StepReport]:
    yield from rig.controller.steps(ID, wait_until=rig._wait)


def test_every_step_is_settled_only_when_a_person_must_act(graph: EstateGraph) -> None:
    rig = Rig(graph, make_update(rollback="reinstall"))
    rig.start()
    reports = list(steps(rig))
    assert [r.is_settled for r in reports[:-1]] == [False] * (len(reports) - 1)
    assert reports[-1].phase is RolloutPhase.COMPLETED
