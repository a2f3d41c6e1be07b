"""Rules 6 and 7 while a rollout runs, deadlines and driver refusals: the controller over the simulated world.

Each test is a fault seen on an estate nobody here wrote, replayed small: a skipped canary that let its stratum
widen unjudged, a group whose spare member was already down, an operation that never answered, a driver that
refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pytest

from ringfence.core.driver import Batch, OperationResult
from ringfence.core.errors import DriverError
from ringfence.core.estate import parse_estate_text
from ringfence.core.gates import AssetHealth
from ringfence.core.graph import compile_estate
from ringfence.core.rollout.controller import Controller, roll_back_rollout, start_rollout
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.simulation import (
    FaultModel,
    SimulatedAsset,
    SimulatedClock,
    SimulatedWorld,
    SimulationDriver,
)
from ringfence.core.update import Update

ID = "r-1"


def _estate(linux: int, windows: int, extra: str = "") -> str:
    """``linux`` hosts in one stratum, ``windows`` in another, all running acme/agent."""
    lines = [
        "apiVersion: ringfence/v1",
        "estate: strata",
        "services:",
        "  - {id: desk, name: Desk, tier: 3, requires: [{any: 1, where: 'kind=vm'}]}",
        *([extra] if extra else []),
        "assets:",
    ]
    for i in range(1, linux + 1):
        lines.append(
            f"  - {{id: lin-{i}, kind: vm, attrs: {{os: linux}}, software: [{{product: acme/agent, version: '1'}}]}}"
        )
    for i in range(1, windows + 1):
        lines.append(
            f"  - {{id: win-{i}, kind: vm, attrs: {{os: windows}}, software: [{{product: acme/agent, version: '1'}}]}}"
        )
    return "\n".join(lines) + "\n"


def _update(**fields: object) -> Update:
    return Update.model_validate(
        {
            "id": "agent-2",
            "product": "acme/agent",
            "version": "2",
            "bake": "30m",
            "rings": [1, "50%", "100%"],
            "strata": ["kind", "attrs.os"],
            "rollback": "snapshot",
            "timing": {"apply": "5m", "rollback": "5m", "restore_point": "2m"},
            **fields,
        }
    )


class Rig:
    def __init__(self, estate: str, update: Update, *, world: SimulatedWorld | None = None, **driver: object) -> None:
        self.clock = SimulatedClock()
        self.graph = compile_estate(parse_estate_text(estate, "estate.yaml"))
        self.strategy = plan_strategy("ringfence", self.graph, update)
        self.driver = SimulationDriver(
            clock=self.clock,
            timing=update.timing,
            world=world or SimulatedWorld(),
            **driver,  # type: ignore[arg-type]
        )
        self.repo = MemoryRolloutRepository()
        self.repo.add(ID, update, self.strategy, at=self.clock())
        self.controller = Controller(self.repo, self.driver, self.clock)

    def run(self) -> RolloutPhase:
        start_rollout(self.repo, ID, actor="alice", at=self.clock())

        def wait_until(at: datetime | None) -> None:
            self.clock.advance_to(at if at is not None else self.clock() + timedelta(minutes=1))

        return self.controller.run_until_settled(ID, wait_until=wait_until, max_steps=5_000).phase

    def states(self) -> dict[str, AssetState]:
        return {a.asset_id: a.state for a in self.repo.assets(ID)}

    def reasons(self) -> str:
        return "\n".join(t.reason for t in self.repo.transitions(ID))


def _canary_of(rig: Rig, prefix: str) -> str:
    return next(a for a in rig.strategy.rings[0] if a.startswith(prefix))


def test_a_skipped_canary_is_replaced_and_its_stratum_is_judged_before_it_widens() -> None:
    # The Ansible fault: the broken stratum's only canary fails its restore point; it used to be skipped and the
    # stratum then widened unjudged to every remaining host at once.
    probe = Rig(_estate(6, 3), _update())
    canary = _canary_of(probe, "lin-")
    linux = {f"lin-{i}" for i in range(1, 7)}
    rig = Rig(
        _estate(6, 3),
        _update(),
        fault=FaultModel(affected=frozenset(linux), after=60.0),
        restore_point_failures=frozenset({canary}),
    )
    assert rig.run() is RolloutPhase.ROLLED_BACK
    states = rig.states()
    assert states[canary] is AssetState.RESTORE_POINT_FAILED
    installed_linux = [a for a in linux if rig.driver.world.assets.get(a, SimulatedAsset()).installs]
    # Exactly one replacement canary of the broken stratum was installed, in a further wave of ring 0.
    assert len(installed_linux) == 1
    replacement = installed_linux[0]
    assert {a.asset_id: a.ring for a in rig.repo.assets(ID)}[replacement] == 0
    assert f"another canary wave of ring 0 with {replacement} for stratum vm/linux" in rig.reasons()


def test_a_stratum_whose_canaries_keep_failing_their_restore_points_pauses_for_a_person() -> None:
    linux = frozenset(f"lin-{i}" for i in range(1, 7))
    rig = Rig(_estate(6, 3), _update(), restore_point_failures=linux)
    assert rig.run() is RolloutPhase.PAUSED
    # Three canaries tried, none installed, nothing of the stratum widened.
    assert not any(rig.driver.world.assets.get(a, SimulatedAsset()).installs for a in linux)
    assert sum(1 for a, s in rig.states().items() if a in linux and s is AssetState.RESTORE_POINT_FAILED) == 3
    assert "3 canaries skipped in a row" in rig.reasons()
    assert "rule 6" in rig.reasons()


def test_a_stratum_with_nothing_left_to_update_does_not_hold_the_others() -> None:
    # One windows host, whose restore point fails: nothing of that stratum can ever be updated, so the rest go on.
    rig = Rig(_estate(4, 1), _update(), restore_point_failures=frozenset({"win-1"}))
    assert rig.run() is RolloutPhase.COMPLETED
    states = rig.states()
    assert states["win-1"] is AssetState.RESTORE_POINT_FAILED
    assert all(states[f"lin-{i}"] is AssetState.APPLIED for i in range(1, 5))
    assert "has no asset left to update" in rig.reasons()


PAIR = "  - {id: epr, name: EPR, tier: 1, requires: [{any: 1, of: [lin-1, lin-2]}]}"


def test_a_member_already_down_holds_its_partner_back_and_the_rollout_pauses() -> None:
    # lin-2 is down before the rollout starts: updating lin-1 would take the EPR down, so it must wait.
    world = SimulatedWorld(assets={"lin-2": SimulatedAsset(is_down=True, signal="crashed")})
    rig = Rig(_estate(2, 2, PAIR), _update(targets="id=lin-1|win-1|win-2"), world=world)
    assert rig.run() is RolloutPhase.PAUSED
    assert rig.driver.world.assets.get("lin-1", SimulatedAsset()).installs == 0
    reasons = rig.reasons()
    assert "rule 7" in reasons
    assert "epr needs 1 of 2 (lin-1, lin-2) up" in reasons
    assert "lin-2 is unavailable" in reasons


def test_a_member_down_outside_the_rollout_is_watched() -> None:
    # The same, but the EPR's other member is not a target: the controller still observes it.
    world = SimulatedWorld(assets={"lin-2": SimulatedAsset(is_down=True)})
    rig = Rig(_estate(2, 2, PAIR), _update(targets="id=lin-1"), world=world)
    assert rig.run() is RolloutPhase.PAUSED
    assert rig.driver.world.assets.get("lin-1", SimulatedAsset()).installs == 0


def test_with_both_members_up_the_pair_is_updated_one_at_a_time() -> None:
    rig = Rig(_estate(2, 2, PAIR), _update(targets="id=lin-1|lin-2"))
    assert rig.run() is RolloutPhase.COMPLETED
    rings = {a.asset_id: a.ring for a in rig.repo.assets(ID)}
    assert rings["lin-1"] != rings["lin-2"]


def test_a_pair_alone_in_its_stratum_replaces_its_skipped_canary_with_its_partner() -> None:
    # lin-1 and lin-2 are the whole linux stratum and the EPR's pair; the canary lin-1 fails its restore point,
    # so lin-2 is its only replacement and joins ring 0. Found: the safety guard counted the skipped lin-1 too
    # (two of the pair in ring 0) and paused the rollout; lin-1 is never updated, so the pair is never both down.
    probe = Rig(_estate(2, 3, PAIR), _update())
    canary = _canary_of(probe, "lin-")
    partner = next(a for a in ("lin-1", "lin-2") if a != canary)
    rig = Rig(_estate(2, 3, PAIR), _update(), restore_point_failures=frozenset({canary}))
    assert rig.run() is RolloutPhase.COMPLETED, rig.reasons()
    states = rig.states()
    assert states[canary] is AssetState.RESTORE_POINT_FAILED
    assert states[partner] is AssetState.APPLIED
    assert {a.asset_id: a.ring for a in rig.repo.assets(ID)}[partner] == 0
    assert "safety guard" not in rig.reasons()


def test_a_group_already_below_k_is_left_alone_even_for_a_member_that_is_down() -> None:
    # Both EPR databases are down before the rollout (the service is out). Updating lin-2 adds nothing to the
    # count, but rule 7 counts every member down: the group is left for a person. Found: reconcile started the
    # install on the down member and the safety guard refused it, each reading rule 7 its own way.
    world = SimulatedWorld(assets={a: SimulatedAsset(is_down=True) for a in ("lin-1", "lin-2")})
    rig = Rig(_estate(2, 2, PAIR), _update(targets="id=lin-2|win-1|win-2"), world=world)
    assert rig.run() is RolloutPhase.PAUSED
    assert rig.driver.world.assets["lin-2"].installs == 0
    reasons = rig.reasons()
    assert "rule 7" in reasons
    assert "safety guard" not in reasons


def _sites_estate() -> str:
    """The EHR needs 1 of its 5 servers, one per site. Sites a–c hold a server alone (it is their canary); sites d
    and e also hold kiosks, the least critical there, so kiosks are their canaries and their servers wait."""
    lines = [
        "apiVersion: ringfence/v1",
        "estate: sites",
        "services:",
        "  - {id: ehr, name: EHR, tier: 1, requires: [{any: 1, of: [ehr-a, ehr-b, ehr-c, ehr-d, ehr-e]}]}",
        "assets:",
    ]
    agent = "software: [{product: acme/agent, version: '1'}]"
    for asset, site in [*((f"ehr-{s}", s) for s in "abcde"), ("kiosk-d", "d"), ("kiosk-e", "e"), ("kiosk-e2", "e")]:
        lines.append(f"  - {{id: {asset}, kind: vm, site: {site}, {agent}}}")
    return "\n".join(lines) + "\n"


def test_a_replacement_canary_never_overfills_its_ring_for_a_group() -> None:
    # Every kiosk's restore point fails. Wave 2 of ring 0 replaces kiosk-d with ehr-d (4 of the 5 servers in
    # ring 0: the most that may be down at once) and kiosk-e with kiosk-e2, which fails too. Wave 3 could only
    # bring ehr-e, a fifth server in ring 0. Found: reconcile moved it in (rule 7 saw the earlier servers proven
    # up) and the safety guard refused the ring under rule 4 — the two read the ring differently. Now reconcile
    # counts the ring as rule 4 does and pauses, naming the group, before anything is moved.
    update = _update(strata=["kind", "site"])
    probe = Rig(_sites_estate(), update)
    assert set(probe.strategy.rings[0]) == {"ehr-a", "ehr-b", "ehr-c", "kiosk-d", "kiosk-e"}, probe.strategy.rings
    kiosks = frozenset({"kiosk-d", "kiosk-e", "kiosk-e2"})
    rig = Rig(_sites_estate(), update, restore_point_failures=kiosks)
    assert rig.run() is RolloutPhase.PAUSED
    reasons = rig.reasons()
    assert "another canary wave of ring 0 with ehr-d for stratum vm/d" in reasons
    assert "safety guard" not in reasons
    assert "no replacement can be updated now without breaking redundancy" in reasons
    assert "ring 0 holds 4 of them already" in reasons
    assert rig.driver.world.assets.get("ehr-e", SimulatedAsset()).installs == 0


class Silent(SimulationDriver):
    """A world whose installs never report back: a host that never answers."""

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        return [r for r in super().poll(batch) if batch.kind.value != "apply"]


@pytest.mark.parametrize("rollback", ["reinstall", "none"])
def test_an_install_that_never_answers_is_failed_at_its_deadline(rollback: str) -> None:
    update = _update(rollback=rollback)
    rig = Rig(_estate(2, 1), update)
    rig.driver = Silent(clock=rig.clock, timing=update.timing)
    rig.controller = Controller(rig.repo, rig.driver, rig.clock)
    # Rolled back when it can be, halted for a person when it cannot: never `applying` for ever.
    assert rig.run() is (RolloutPhase.ROLLED_BACK if rollback == "reinstall" else RolloutPhase.HALTED)
    if rollback == "none":
        details = [a.detail or "" for a in rig.repo.assets(ID) if a.state is AssetState.FAILED]
        assert details
        assert all("no install result from the driver within 15 min" in d for d in details)


class Refusing(SimulationDriver):
    """A driver that cannot take restore points, and says so only when asked (as the agent driver did)."""

    name = "refusing"

    def start(self, batch: Batch) -> None:
        if batch.kind.value == "restore_point":
            raise DriverError("this driver cannot take restore points; use rollback: reinstall")
        super().start(batch)

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        return super().observe(asset_ids)


def test_a_refusing_driver_halts_the_rollout_with_its_sentence_and_a_rollback_ends() -> None:
    update = _update()
    rig = Rig(_estate(2, 1), update)
    rig.driver = Refusing(clock=rig.clock, timing=update.timing)
    rig.controller = Controller(rig.repo, rig.driver, rig.clock)
    assert rig.run() is RolloutPhase.HALTED
    state = rig.repo.state(ID)
    assert state.halt_reason is not None
    assert "the refusing driver could not take restore points: this driver cannot take" in state.halt_reason
    assert all(s is not AssetState.RESTORE_POINT_REQUESTED for s in rig.states().values())
    roll_back_rollout(rig.repo, ID, actor="alice", at=rig.clock())

    def wait_until(at: datetime | None) -> None:
        rig.clock.advance_to(at if at is not None else rig.clock() + timedelta(minutes=1))

    assert rig.controller.run_until_settled(ID, wait_until=wait_until, max_steps=1_000).phase.is_terminal


def test_a_rollback_never_takes_a_group_below_k() -> None:
    # Three web servers, any 1 of 3 (two spare): the bad release crashes the third one, in the last ring, after the
    # first two were judged healthy. Rolling back all three at once would leave none up.
    web = "  - {id: web, name: Web, tier: 2, requires: [{any: 2, of: [lin-1, lin-2, lin-3, lin-4]}]}"
    update = _update(rings=[1, 2, 4], targets="id=lin-1|lin-2|lin-3|lin-4", strata=["kind"], rollback="reinstall")
    rig = Rig(_estate(4, 0, web), update, fault=FaultModel(affected=frozenset({"lin-4"}), after=60.0))
    start_rollout(rig.repo, ID, actor="alice", at=rig.clock())
    members = {f"lin-{i}" for i in range(1, 5)}
    out_of_service = {AssetState.APPLYING, AssetState.FAILED, AssetState.ROLLING_BACK, AssetState.ROLLBACK_FAILED}
    worst = 0

    def wait_until(at: datetime | None) -> None:
        rig.clock.advance_to(at if at is not None else rig.clock() + timedelta(minutes=1))

    for report in rig.controller.steps(ID, wait_until=wait_until):
        unavailable = {a for a, s in rig.states().items() if a in members and s in out_of_service}
        unavailable |= set(rig.driver.world.down()) & members
        worst = max(worst, len(unavailable))
        if report.phase.is_terminal:
            break
    assert rig.repo.state(ID).phase is RolloutPhase.ROLLED_BACK
    assert worst <= 2, worst
