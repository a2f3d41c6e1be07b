"""The safety promise with the ``ansible`` driver: real ``ansible-playbook`` runs on local hosts (each a directory,
``ansible_connection=local``, from ``tests/drivers/ansible_fixtures``), the real controller and SQL store.

World truth is the hosts themselves: a host is down when its ``health`` file says ``broken``, runs the release
when its ``version`` file says so; an operation is in flight from the moment the driver starts its run until
its result is polled. The referee is asked just before each run starts (rule 7) and after every step.
Slow (tens of seconds per rollout), so a handful of examples.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, seed
from hypothesis import strategies as st

from drivers.ansible_fixtures import (
    BROKEN_MODEL,
    HEALTH,
    INSTALLED,
    RELEASE,
    ROLLBACK,
    SNAPSHOT,
    UPDATE,
    Fleet,
    build_fleet,
)
from ringfence.core.driver import Batch, OperationResult
from ringfence.core.gates import AssetHealth
from ringfence.core.rollout.controller import Controller
from ringfence.core.rollout.state import RolloutPhase
from ringfence.drivers.ansible import AnsibleDriver
from ringfence.drivers.registry import load_driver
from ringfence.files.importers.ansible import asset_id_for_host
from ringfence.service import rollouts
from ringfence.service.rollouts import SqlRolloutRepository
from ringfence.store.db import make_engine, upgrade

from .checker import Checker, Facts, Move, Progress, RuleViolation
from .conftest import SEED, hunt

pytestmark = pytest.mark.slow
HOSTS = 6
PRODUCT = "acme/ward-agent"


def now() -> datetime:
    return datetime.now(UTC)


class HostWorld:
    """World truth read from the host directories, and the operations the driver has in flight."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.host = {asset_id_for_host(h): h for h in fleet.hosts}
        self.started_ops: dict[str, set[str]] = {a: set() for a in self.host}
        self.in_flight: dict[str, str] = {}
        self.failed: dict[str, set[str]] = {a: set() for a in self.host}

    def down(self) -> set[str]:
        return {a for a, h in self.host.items() if self.fleet.health(h) != "ok"}

    def unavailable(self) -> set[str]:
        failed = {a for a, kinds in self.failed.items() if kinds & {"apply", "rollback"}}
        return self.down() | set(self.in_flight) | failed

    def install_started(self) -> set[str]:
        return {a for a, kinds in self.started_ops.items() if "apply" in kinds}

    def installs(self, asset_id: str) -> int:
        return sum(1 for line in self.fleet.journal(self.host[asset_id]) if line.startswith("installed "))

    def runs_release(self, asset_id: str) -> bool:
        return self.fleet.version(self.host[asset_id]) == RELEASE

    def reporting(self, asset_id: str) -> bool:
        return True

    def started(self, kind: str, asset_id: str) -> bool:
        return kind in self.started_ops[asset_id]

    def restore_point_verified_before_install(self, asset_id: str) -> bool:
        return "restore_point" in self.started_ops[asset_id] and "restore_point" not in self.failed[asset_id]


class Refereed:
    """The ansible driver, the referee asked before every run, and in-flight operations noted for world truth."""

    def __init__(self, inner: AnsibleDriver, world: HostWorld, checker: Checker) -> None:
        self.inner, self.world, self.checker = inner, world, checker
        self.name = inner.name

    def start(self, batch: Batch) -> None:
        kind = batch.kind.value
        self.checker.on_start(kind, batch.assets, self.world, now())
        self.inner.start(batch)
        for a in batch.assets:
            if kind not in self.world.started_ops[a]:
                self.world.started_ops[a].add(kind)
                self.world.in_flight[a] = kind

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        found = self.inner.poll(batch)
        for r in found:
            if r.is_final and self.world.in_flight.get(r.asset_id) == batch.kind.value:
                del self.world.in_flight[r.asset_id]
                if r.status == "failed":
                    self.world.failed[r.asset_id].add(batch.kind.value)
                elif batch.kind.value == "rollback":
                    self.world.failed[r.asset_id].discard("apply")
        return found

    def cancel(self, batch: Batch) -> None:
        self.inner.cancel(batch)

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        return self.inner.observe(asset_ids)

    def next_event_at(self) -> datetime | None:
        return None


def estate(fleet: Fleet, outside: str, members: list[str], k: int) -> dict[str, Any]:
    assets = []
    for host, model in fleet.models.items():
        asset: dict[str, Any] = {"id": asset_id_for_host(host), "kind": "endpoint", "attrs": {"model": model}}
        if host != outside:
            asset["software"] = [{"product": PRODUCT, "version": INSTALLED}]
        assets.append(asset)
    group = {"any": k, "of": [asset_id_for_host(h) for h in members]}
    services = [{"id": "ward", "name": "Ward observations", "tier": 1, "requires": [group]}]
    return {"apiVersion": "ringfence/v1", "estate": "wards", "services": services, "assets": assets}


@seed(SEED)
@hunt(2)
@given(
    data=st.data(),
    rollback=st.sampled_from(("snapshot", "reinstall")),
    breaks=st.booleans(),
    outside_down=st.booleans(),
)
def test_ansible_playbooks_on_local_hosts_keep_rules_6_and_7_at_every_step(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, rollback: str, breaks: bool, outside_down: bool
) -> None:
    directory: Path = tmp_path_factory.mktemp("ansible")
    fleet = build_fleet(directory / "fleet", HOSTS)
    hosts = list(fleet.hosts)
    outside = data.draw(st.sampled_from(hosts), label="outside member")
    members = [
        outside,
        *data.draw(
            st.lists(st.sampled_from([h for h in hosts if h != outside]), min_size=2, max_size=4, unique=True),
            label="members",
        ),
    ]
    k = len(members) - 1  # one member may be down at a time
    if outside_down:
        (fleet.host_dir(outside) / "health").write_text("broken\n")
    document = estate(fleet, outside, members, k)
    update = {
        "id": "ward-agent-7-16",
        "product": PRODUCT,
        "version": RELEASE,
        "strata": ["attrs.model"],
        "rings": [1, "50%", "100%"],
        "bake": "2s",
        "rollback": rollback,
        "timing": {"apply": "20s", "rollback": "20s", "restore_point": "20s"},
    }
    engine = make_engine(f"sqlite:///{directory / 'ringfence.db'}")
    upgrade(engine)
    try:
        created = rollouts.create_rollout(
            engine,
            estate_text=yaml.safe_dump(document, sort_keys=False),
            estate_source="wards.yaml",
            update_text=yaml.safe_dump({"apiVersion": "ringfence/v1", "update": update}, sort_keys=False),
            update_source="update.yaml",
            actor="alice",
            at=now(),
            driver="ansible",
        )
        assert created.rollout is not None
        rid = created.rollout.id
        facts = Facts.read(document, update)
        down_at_start = frozenset({asset_id_for_host(outside)} if outside_down else set())
        checker = Checker(facts, created.strategy.canary_rings, rollback == "snapshot", True, down_at_start)
        world = HostWorld(fleet)
        driver = load_driver(
            "ansible",
            inventory=str(fleet.inventory),
            update_playbook=str(UPDATE),
            snapshot_playbook=str(SNAPSHOT),
            rollback_playbook=str(ROLLBACK),
            health_playbook=str(HEALTH),
            artifacts_dir=str(directory / "artifacts"),
            forks="10",
            timeout="5m",
            health_interval="1m",
            extravars=json.dumps({"broken_model": BROKEN_MODEL if breaks else "none"}),
        )
        assert isinstance(driver, AnsibleDriver)
        controller = Controller(SqlRolloutRepository(engine), Refereed(driver, world, checker), now)  # type: ignore[arg-type]
        rollouts.start(engine, rid, actor="alice", at=now())
        deadline = time.monotonic() + 300
        report = None
        for report in controller.steps(rid, wait_until=lambda _at: time.sleep(0.2)):
            moves = [
                Move(
                    RolloutPhase(str(e.detail["from"])),
                    RolloutPhase(str(e.detail["to"])),
                    int(str(e.detail["ring"])),
                    e.at,
                    str(e.detail["reason"]),
                )
                for e in rollouts.log(engine, rid)
                if e.action == "rollout.transition"
            ]
            status = rollouts.status(engine, rid)
            assets = {a.asset_id: Progress(a.ring, a.state) for a in status.assets}
            checker.after_step(now(), status.rollout.state.phase, assets, moves, world)
            if time.monotonic() > deadline:
                raise RuleViolation(f"wedged: rollout {rid} still {report.phase} after 300 s")
        assert report is not None
        # Settled: complete, rolled back, failed (a rollback redundancy would not allow), or waiting for a person.
        ended = (RolloutPhase.COMPLETED, RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED, RolloutPhase.PAUSED)
        assert report.phase in ended, [m.reason for m in moves]
        if breaks:
            assert report.phase is not RolloutPhase.COMPLETED
            broken = [h for h in fleet.ever_broken() if fleet.models[h] == BROKEN_MODEL]
            assert len(broken) <= 1, broken  # only the broken model's canary ever broke
    finally:
        engine.dispose()
