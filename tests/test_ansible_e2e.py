"""End to end: a rollout through the real controller, the SQL store and the ansible driver, on real Ansible.

The fleet (``drivers/ansible_fixtures``) is 51 local hosts of three hardware models, each a directory
holding its installed version and health. The estate is what ``ringfence import ansible`` makes of the
fleet's inventory, enriched with a service as docs/ansible.md shows; the update stratifies by
``attrs.model``. Nothing is mocked: every step is ansible-playbook changing files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import Engine

from drivers.ansible_fixtures import (
    BROKEN_MODEL,
    HEALTH,
    INSTALLED,
    MODELS,
    RELEASE,
    ROLLBACK,
    SNAPSHOT,
    UPDATE,
    Fleet,
    build_fleet,
)
from ringfence.core.rollout.controller import StepReport
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.drivers.registry import load_driver
from ringfence.files.importers.ansible import asset_id_for_host
from ringfence.service import rollouts
from ringfence.store.db import make_engine, upgrade

pytestmark = pytest.mark.slow  # real ansible-playbook runs: tens of seconds each test

UPDATE_FILE = f"""
apiVersion: ringfence/v1
update:
  id: ward-agent-7.16
  product: acme/ward-agent
  version: "{RELEASE}"
  targets: "attrs.group.workstations=true"
  strata: [attrs.model]
  rings: [1, "25%", "100%"]
  bake: 2s
  rollback: snapshot
"""


def now() -> datetime:
    return datetime.now(UTC)


def import_estate(fleet: Fleet, directory: Path, *, service: bool) -> Path:
    """``ringfence import ansible`` of the fleet's inventory, then (optionally) a service added by hand."""
    estate = directory / "estate.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "ringfence", "import", "ansible", str(fleet.inventory), "--out", str(estate)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if service:
        document = yaml.safe_load(estate.read_text())
        document["services"] = [
            {
                "id": "ward-desktops",
                "name": "Ward clinical desktops",
                "tier": 2,
                "rto": "4h",
                "continuity": "Paper observation charts; spare laptops from the IT store",
                "requires": [{"any": 40, "where": "attrs.group.workstations=true"}],
            }
        ]
        estate.write_text(yaml.safe_dump(document, sort_keys=False))
    return estate


def database(directory: Path) -> Engine:
    engine = make_engine(f"sqlite:///{directory / 'ringfence.db'}")
    upgrade(engine)
    return engine


def ansible_driver(fleet: Fleet, artifacts: Path, **extra: str) -> object:
    return load_driver(
        "ansible",
        inventory=str(fleet.inventory),
        update_playbook=str(UPDATE),
        snapshot_playbook=str(SNAPSHOT),
        rollback_playbook=str(ROLLBACK),
        health_playbook=str(HEALTH),
        artifacts_dir=str(artifacts),
        forks="20",
        timeout="5m",
        health_interval="10m",
        **extra,
    )


def drive(engine: Engine, rollout_id: str, driver: object, seconds: float = 600) -> StepReport:
    """The controller, stepping as ``ringfence rollout start`` does, until the rollout waits or ends."""
    from ringfence.core.driver import Driver

    assert isinstance(driver, Driver)
    controller = rollouts.controller(engine, driver, now)
    deadline = time.monotonic() + seconds
    report = None
    for report in controller.steps(rollout_id, wait_until=lambda _at: time.sleep(0.2)):
        if time.monotonic() > deadline:
            pytest.fail(f"rollout {rollout_id} still {report.phase} after {seconds}s")
    assert report is not None
    return report


def apply_limits(artifacts: Path, rollout_id: str) -> dict[str, list[str]]:
    """Each install run of the rollout and the hosts it was limited to."""
    return {
        run.name: run.joinpath("limit").read_text().split() for run in sorted((artifacts / rollout_id).glob("apply-*"))
    }


def test_a_release_that_breaks_one_model_halts_after_the_canary_and_rolls_back(tmp_path: Path) -> None:
    fleet = build_fleet(tmp_path / "fleet", 51)
    assert len(fleet.of_model(BROKEN_MODEL)) == 17
    estate = import_estate(fleet, tmp_path, service=True)
    update = tmp_path / "update.yaml"
    update.write_text(UPDATE_FILE)
    engine = database(tmp_path)
    created = rollouts.create_rollout(
        engine,
        estate_text=estate.read_text(),
        estate_source=str(estate),
        update_text=update.read_text(),
        update_source=str(update),
        actor="tester",
        at=now(),
        driver="ansible",
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    host_of = {asset_id_for_host(h): h for h in fleet.hosts}
    canaries = [host_of[a] for a in created.strategy.rings[0]]
    assert sorted(fleet.models[h] for h in canaries) == sorted(MODELS)  # one canary per model
    [broken_canary] = [h for h in canaries if fleet.models[h] == BROKEN_MODEL]
    others = [h for h in fleet.hosts if h not in canaries]

    artifacts = tmp_path / "artifacts"
    driver = ansible_driver(fleet, artifacts, extravars=json.dumps({"broken_model": BROKEN_MODEL}))
    rollouts.start(engine, rollout_id, actor="tester", at=now())
    report = drive(engine, rollout_id, driver)

    assert report.phase is RolloutPhase.ROLLED_BACK
    status = rollouts.status(engine, rollout_id)
    states = {a.asset_id: a.state for a in status.assets}
    assert {states[asset_id_for_host(h)] for h in canaries} == {AssetState.ROLLED_BACK}
    assert {states[asset_id_for_host(h)] for h in others} == {AssetState.SKIPPED}

    # The hosts themselves: the canaries were updated and restored; the others never ran the update.
    assert apply_limits(artifacts, rollout_id) == {"apply-01": sorted(canaries)}
    assert sorted(fleet.exposed()) == sorted(canaries)
    assert fleet.ever_broken() == (broken_canary,)
    assert fleet.journal(broken_canary) == [f"installed {RELEASE}", "broken", "rolled back"]
    for host in canaries:
        assert (fleet.version(host), fleet.health(host)) == (INSTALLED, "ok")
        restored_from = (fleet.host_dir(host) / "restored_from").read_text().strip()
        assert restored_from == f"{host}/snapshot@{rollout_id}"
    for host in others:
        assert fleet.journal(host) == []
        assert (fleet.version(host), fleet.health(host)) == (INSTALLED, "ok")
        assert not fleet.has_snapshot(host)  # not even a restore point: their ring never started

    # Why it halted, in the audit log: the broken model's canary failed its service check.
    entries = rollouts.log(engine, rollout_id)
    halted = [e for e in entries if e.detail.get("to") == RolloutPhase.HALTED.value]
    assert len(halted) == 1
    reason = str(halted[0].detail["reason"])
    assert BROKEN_MODEL in reason
    assert "1 of 1 updated failed a service check" in reason
    assert halted[0].detail["ring"] == 0
    # Each canary's record points at the artifacts of the run that rolled it back.
    details = {a.asset_id: a.detail or "" for a in status.assets}
    run_dir = artifacts / rollout_id / "rollback-01"
    assert details[asset_id_for_host(broken_canary)] == (
        f"rollback.yml rolled {broken_canary} back (3 ok, 3 changed) (artifacts: {run_dir})"
    )


def test_hosts_whose_restore_point_fails_verification_are_never_updated(tmp_path: Path) -> None:
    fleet = build_fleet(tmp_path / "fleet", 24)
    estate = import_estate(fleet, tmp_path, service=False)
    update = tmp_path / "update.yaml"
    update.write_text(UPDATE_FILE.replace('rings: [1, "25%", "100%"]', 'rings: [1, "100%"]'))
    engine = database(tmp_path)
    created = rollouts.create_rollout(
        engine,
        estate_text=estate.read_text(),
        estate_source=str(estate),
        update_text=update.read_text(),
        update_source=str(update),
        actor="tester",
        at=now(),
        driver="ansible",
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    host_of = {asset_id_for_host(h): h for h in fleet.hosts}
    canary_ring, last_ring = (sorted(host_of[a] for a in ring) for ring in created.strategy.rings)
    # Storage that corrupts restore points on one canary and two hosts of the last ring.
    faulty = [canary_ring[0], last_ring[0], last_ring[-1]]
    fleet = build_fleet(tmp_path / "fleet", 24, storage_faults=faulty)

    artifacts = tmp_path / "artifacts"
    rollouts.start(engine, rollout_id, actor="tester", at=now())
    report = drive(engine, rollout_id, ansible_driver(fleet, artifacts))

    # The update is good: the rollout completes, around the hosts it could not protect.
    assert report.phase is RolloutPhase.COMPLETED
    status = rollouts.status(engine, rollout_id)
    by_host = {host_of[a.asset_id]: a for a in status.assets}
    for host in faulty:
        assert by_host[host].state is AssetState.RESTORE_POINT_FAILED
        assert fleet.version(host) == INSTALLED
        assert (by_host[host].detail or "").startswith(
            f"snapshot.yml failed on {host}: task 'Verify the restore point against the installed version' failed"
        )
    updated = [h for h in fleet.hosts if h not in faulty]
    assert {by_host[h].state for h in updated} == {AssetState.APPLIED}
    assert all(fleet.version(h) == RELEASE for h in updated)
    assert sorted(fleet.updated()) == sorted(updated)
    installed_on = [h for hosts in apply_limits(artifacts, rollout_id).values() for h in hosts]
    assert sorted(installed_on) == sorted(updated)  # no install ever ran on a host without a restore point

    # Reported: the transition into each ring's install names the hosts left out.
    reasons = [str(e.detail.get("reason")) for e in rollouts.log(engine, rollout_id)]
    ring0 = next(r for r in reasons if r.startswith("ring 0: ") and "restore points taken" in r)
    assert ring0 == (
        f"ring 0: {len(canary_ring) - 1} of {len(canary_ring)} restore points taken and verified; "
        f"1 asset whose restore point failed verification will not be updated ({asset_id_for_host(faulty[0])})"
    )
    ring1 = next(r for r in reasons if r.startswith("ring 1: ") and "restore points taken" in r)
    assert "2 assets whose restore point failed verification will not be updated" in ring1
