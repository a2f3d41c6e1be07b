"""Health read through a health source apart from the driver that installs ("Ansible installs, Prometheus
judges"): the controller judges by the rollout's source, by default the driver's own, and an unreadable
source pauses a running rollout naming the source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import sqlalchemy as sa

from ringfence.core.driver import HealthSource
from ringfence.core.errors import DriverError, InputError
from ringfence.core.estate import parse_estate_text
from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal
from ringfence.core.graph import compile_estate
from ringfence.core.rollout.controller import Controller, StepReport, start_rollout
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.simulation import SimulatedClock, SimulationDriver
from ringfence.core.update import Update
from ringfence.drivers.agent import AgentHeartbeats
from ringfence.drivers.registry import (
    DriverContext,
    available_health_sources,
    build_driver,
    build_health_source,
)

ESTATE = """
apiVersion: ringfence/v1
estate: small
services:
  - {id: desk, name: Desk, tier: 4, requires: [{any: 1, where: "kind=endpoint"}]}
assets:
  - {id: ws-1, kind: endpoint, attrs: {os: windows-11}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-2, kind: endpoint, attrs: {os: windows-11}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-3, kind: endpoint, attrs: {os: windows-11}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-4, kind: endpoint, attrs: {os: windows-11}, software: [{product: acme/agent, version: "1.0"}]}
"""
ID = "r-1"
UPDATE = Update.model_validate(
    {"id": "agent-2", "product": "acme/agent", "version": "2.0", "bake": "10m", "rings": [1, "100%"],
     "rollback": "reinstall"}
)  # fmt: skip


class Monitoring:
    """A monitoring system we own: the assets the simulated world has updated crashed, the others are well (or,
    ``blind``, it cannot be read at all)."""

    name = "monitoring"

    def __init__(self, *, blind: bool = False) -> None:
        self.blind = blind
        self.asked: list[str] = []
        self.driver: SimulationDriver | None = None

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        self.asked.extend(asset_ids)
        if self.blind:
            raise DriverError("monitoring.example is not answering")
        updated = set(self.driver.world.exposed()) if self.driver is not None else set()
        return {
            a: (
                AssetHealth(a, AssetStatus.failed, FailureSignal.crashed, 60.0, "alert: acme down")
                if a in updated
                else AssetHealth(a, AssetStatus.healthy)
            )
            for a in asset_ids
        }


def run(health: HealthSource | None) -> tuple[StepReport, MemoryRolloutRepository, SimulationDriver]:
    clock = SimulatedClock()
    driver = SimulationDriver(clock=clock, timing=UPDATE.timing)  # installs well: no fault at all
    if isinstance(health, Monitoring):
        health.driver = driver
    repository = MemoryRolloutRepository()
    strategy = plan_strategy("ringfence", compile_estate(parse_estate_text(ESTATE, "e")), UPDATE)
    repository.add(ID, UPDATE, strategy, at=clock())
    start_rollout(repository, ID, actor="alice", at=clock())
    controller = Controller(repository, driver, clock, health=health)
    report = controller.run_until_settled(ID, wait_until=lambda at: clock.advance_to(at))  # type: ignore[arg-type]
    return report, repository, driver


def test_by_default_the_driver_judges() -> None:
    report, _repository, _driver = run(None)
    assert report.phase is RolloutPhase.COMPLETED


def test_another_source_judges_what_the_driver_installed() -> None:
    monitoring = Monitoring()
    report, repository, driver = run(monitoring)
    # The simulated world says every asset is well; the monitoring says the canary crashed: it is believed.
    assert report.phase is not RolloutPhase.COMPLETED
    halt = next(t for t in repository.transitions(ID) if t.to_phase is RolloutPhase.HALTED)
    assert "crashed" in halt.reason
    assert monitoring.asked
    assert driver.world.down() == ()


def test_an_unreadable_source_pauses_the_rollout_naming_it() -> None:
    report, repository, _driver = run(Monitoring(blind=True))
    assert report.phase is RolloutPhase.PAUSED
    pause = repository.transitions(ID)[-1]
    assert pause.reason.startswith("the health source monitoring could not read health: monitoring.example")


def test_sources_are_found_by_name_in_the_registry() -> None:
    assert {"driver", "heartbeats", "ansible", "simulated"} <= set(available_health_sources())
    driver = build_driver("simulated")
    assert build_health_source("driver", driver) is driver
    assert build_health_source("simulated", driver) is driver  # the world's own reading
    engine = sa.create_engine("sqlite://")
    try:
        heartbeats = build_health_source("heartbeats", driver, context=DriverContext(engine=engine))
        assert isinstance(heartbeats, AgentHeartbeats)
        assert heartbeats.engine is engine
    finally:
        engine.dispose()
    with pytest.raises(
        InputError, match="there is no health source 'oracle'; the installed health sources are: driver"
    ):
        build_health_source("oracle", driver)
