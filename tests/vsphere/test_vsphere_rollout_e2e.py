"""End to end: the incident ringfence exists for, on VMware's own simulator, through the real controller.

A simulated vCenter of 4 clusters × 8 hosts (HA failover capacity 1, 2, 1, 2) with
4 VMs a cluster is imported with ``ringfence import vsphere``; an ESXi update stratified by hardware model and
NIC driver is planned on it and run with the ``vsphere`` driver. The release breaks one NIC driver: a host
with ``qedentv`` drops out of vCenter once its update is in (the test plays that host, through vcsim's
``disconnect`` line; the update command itself is a local script recording what it was asked), and comes back
once rolled back. Nothing is mocked: vCenter's maintenance mode, VM moves and snapshots are vcsim's own.

vcsim gives the hosts distinct NIC drivers and models itself (``vcsim/main.go``: host i of a cluster has driver
(i40en, bnxtnet, qedentv)[i % 3] and model (PowerEdge R740, ProLiant DL380 Gen10)[i % 2]), so the imported
estate is used as imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy.engine import Engine

from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.drivers.registry import build_driver
from ringfence.drivers.vsphere import VSphereDriver
from ringfence.service import rollouts
from ringfence.store.db import make_engine, upgrade

from .conftest import PASSWORD, USER, Simulator, require_pyvmomi

require_pyvmomi()

BROKEN_DRIVER = "qedentv"
SPARE = {"DC0_C0": 1, "DC0_C1": 2, "DC0_C2": 1, "DC0_C3": 2}
"""Hosts each cluster can have out at once: its HA failover capacity."""

UPDATE = """
apiVersion: ringfence/v1
update:
  id: esxi-7u3
  product: vmware/esxi
  version: 7.0.3
  targets: "attrs.os=esxi"
  strata: [attrs.model, attrs.nic_driver]
  rings: [1, "50%", "100%"]
  bake: 2s
  rollback: reinstall
"""

VM_UPDATE = """
apiVersion: ringfence/v1
update:
  id: guest-agent-2
  product: acme/guest-agent
  version: "2.0"
  targets: "kind=vm"
  strata: [attrs.cluster]
  rings: [1, "100%"]
  bake: 1s
  rollback: snapshot
"""


def now() -> datetime:
    return datetime.now(UTC)


def import_estate(sim: Simulator, directory: Path) -> Path:
    """``ringfence import vsphere``, as a person runs it."""
    estate = directory / "estate.yaml"
    command = [sys.executable, "-m", "ringfence", "import", "vsphere", "--server", sim.url, "--user", USER]
    done = subprocess.run(
        [*command, "--site", "DC0=city", "--out", str(estate)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "RINGFENCE_VSPHERE_PASSWORD": PASSWORD},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return estate


def create(engine: Engine, estate: Path, update_text: str, directory: Path) -> str:
    update = directory / "update.yaml"
    update.write_text(update_text)
    created = rollouts.create_rollout(
        engine,
        estate_text=estate.read_text(),
        estate_source=str(estate),
        update_text=update_text,
        update_source=str(update),
        actor="tester",
        at=now(),
        driver="vsphere",
    )
    assert created.rollout is not None
    rollouts.start(engine, created.rollout.id, actor="tester", at=now())
    return created.rollout.id


def drive(engine: Engine, rollout_id: str, driver: VSphereDriver, each: Callable[[], None]) -> RolloutPhase:
    """The controller, stepping as ``ringfence rollout start`` does, calling ``each`` at every step."""
    controller = rollouts.controller(engine, driver, now)
    deadline = time.monotonic() + 50
    phase = None
    for report in controller.steps(rollout_id, wait_until=lambda _at: (each(), time.sleep(0.1))):
        each()
        phase = report.phase
        assert time.monotonic() < deadline, f"rollout {rollout_id} still {phase}"
    assert phase is not None
    return phase


def test_a_release_breaking_one_nic_driver_halts_after_the_canary_rolls_back_and_keeps_ha_capacity(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = simulator("-cluster", "4", "-host", "8", "-vm", "4", "-ds", "2", "-ha", ",".join(map(str, SPARE.values())))
    estate = import_estate(sim, tmp_path)
    document = yaml.safe_load(estate.read_text())
    hosts = {a["name"]: a for a in document["assets"] if a["kind"] == "host"}
    assert len(hosts) == 32
    assert len([a for a in document["assets"] if a["kind"] == "vm"]) == 16
    assert {h["attrs"]["nic_driver"] for h in hosts.values()} == {"i40en", "bnxtnet", BROKEN_DRIVER}
    broken = {name for name, h in hosts.items() if h["attrs"]["nic_driver"] == BROKEN_DRIVER}

    engine = make_engine(f"sqlite:///{tmp_path / 'ringfence.db'}")
    upgrade(engine)
    rollout_id = create(engine, estate, UPDATE, tmp_path)
    record = tmp_path / "record"
    # A command that takes a moment, as an update does: hosts stay in maintenance mode across controller steps.
    script = f"sleep 0.5; echo {{operation}} {{name}} {{version}} >> {record}"
    driver = build_driver(
        "vsphere",
        sim.options(update_command=script, rollback_command=script, state_dir=str(tmp_path / "vsphere"), timeout="30s"),
    )
    assert isinstance(driver, VSphereDriver)

    disconnected: set[str] = set()
    most_out = dict.fromkeys(SPARE, 0)

    def watch() -> None:
        """The world around the rollout, at every step: what vCenter shows, and the broken hosts failing."""
        seen = sim.hosts()
        for cluster in SPARE:
            out = [n for n, h in seen.items() if h["cluster"] == cluster and (h["maintenance"] or n in disconnected)]
            most_out[cluster] = max(most_out[cluster], len(out))
            assert len(out) <= SPARE[cluster], f"cluster {cluster} has {out} out at once"
        done = record.read_text().splitlines() if record.exists() else []
        for line in done:
            operation, name, _ = line.split()
            # A broken host drops out once its update is in (out of maintenance mode), and is back once rolled back.
            if operation == "apply" and name in broken and not seen[name]["maintenance"] and name not in disconnected:
                sim.set_connection(name, connected=False)
                disconnected.add(name)
            if operation == "rollback" and name in disconnected:
                sim.set_connection(name, connected=True)
                disconnected.discard(name)

    phase = drive(engine, rollout_id, driver, watch)

    assert phase is RolloutPhase.ROLLED_BACK
    status = rollouts.status(engine, rollout_id)
    states = {a.asset_id: a.state for a in status.assets}
    canaries = {a.asset_id for a in status.assets if a.ring == 0}
    assert {states[a] for a in canaries} == {AssetState.ROLLED_BACK}
    assert {states[a] for a in states if a not in canaries} == {AssetState.SKIPPED}
    canary_names = {name for name, h in hosts.items() if h["id"] in canaries}
    # One canary per (model, NIC driver): six strata, two of them the broken driver's.
    strata = {(hosts[n]["attrs"]["model"], hosts[n]["attrs"]["nic_driver"]) for n in canary_names}
    assert len(strata) == 6
    assert len(canary_names) == 6
    assert len(canary_names & broken) == 2

    # What the command was asked: the canaries updated, then rolled back; nobody else touched.
    lines = record.read_text().splitlines()
    assert sorted(line for line in lines if line.startswith("apply")) == sorted(
        f"apply {n} 7.0.3" for n in canary_names
    )
    assert sorted(line for line in lines if line.startswith("rollback")) == sorted(
        f"rollback {n} 7.0.3" for n in canary_names
    )

    # Why it halted: the broken driver's canaries lost their heartbeat, after the canary ring.
    entries = rollouts.log(engine, rollout_id)
    halted = [e for e in entries if e.detail.get("to") == RolloutPhase.HALTED.value]
    assert len(halted) == 1
    assert halted[0].detail["ring"] == 0
    reason = str(halted[0].detail["reason"])
    assert reason.startswith(
        "ring 0 failed: 2 of 6 strata failed (PowerEdge R740/qedentv, ProLiant DL380 Gen10/qedentv)"
    )
    assert "stratum PowerEdge R740/qedentv: 1 of 1 updated lost heartbeat" in reason
    # The broken canaries, out of vCenter's sight, were rolled back without maintenance mode; the others with it.
    details = {a.asset_id: a.detail for a in status.assets if a.ring == 0}
    for name in canary_names:
        expected = (
            f"{name} is disconnected in vCenter: rolled back without maintenance mode; "
            f"rollback_command rolled back {name}"
            if name in broken
            else f"rollback_command rolled back {name}; {name} left maintenance mode"
        )
        assert details[hosts[name]["id"]] == expected

    # vCenter at the end: every host back and out of maintenance mode, the clusters never short of capacity.
    end = sim.hosts()
    assert {(h["connection"], h["maintenance"]) for h in end.values()} == {("connected", False)}
    assert all(most_out[c] <= SPARE[c] for c in SPARE)
    assert max(most_out.values()) >= 1
    assert sum(len(h["vms"]) for h in end.values()) == 16  # every VM still runs
    assert driver.release_restore_points(rollout_id) == ()  # hosts take no snapshots
    assert all(names == [] for names in sim.snapshots().values())
    driver.close()


def test_a_vm_update_snapshots_every_vm_first_reverts_the_failed_and_leaves_no_snapshot(
    simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    # Guests of one cluster (C1) fail the update: its canary fails to install, the rollout halts and rolls back
    # from the snapshots, and once it is over no snapshot of it is left on any VM.
    sim = simulator("-cluster", "2", "-host", "3", "-vm", "2", "-ds", "1", "-ha", "1")
    estate = import_estate(sim, tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'ringfence.db'}")
    upgrade(engine)
    rollout_id = create(engine, estate, VM_UPDATE, tmp_path)
    record = tmp_path / "record"
    script = f"echo {{operation}} {{name}} >> {record}; case {{name}} in *_C1_*) exit 1;; esac"
    driver = build_driver("vsphere", sim.options(update_command=script, state_dir=str(tmp_path / "vsphere")))
    assert isinstance(driver, VSphereDriver)
    taken: list[dict[str, list[str]]] = []

    def watch() -> None:
        taken.append(sim.snapshots())

    phase = drive(engine, rollout_id, driver, watch)

    assert phase is RolloutPhase.ROLLED_BACK
    status = rollouts.status(engine, rollout_id)
    canaries = sorted(a.asset_id for a in status.assets if a.ring == 0)
    assert len(canaries) == 2  # one VM of each cluster
    # Each canary had its snapshot before the command touched it.
    assert any(all(snap.get(n.upper()) == [f"ringfence {rollout_id}"] for n in canaries) for snap in taken)
    assert {a.state for a in status.assets if a.ring == 0} == {AssetState.ROLLED_BACK}
    assert [line.split()[0] for line in record.read_text().splitlines()] == ["apply", "apply"]  # snapshots revert
    # Nobody calls the driver by hand: the controller asked it to let go once the rollout was over (the reverts
    # had removed both snapshots already), and recorded it.
    assert all(names == [] for names in sim.snapshots().values()), sim.snapshots()
    assert released(engine, rollout_id) == []
    assert set(sim.power().values()) == {"poweredOn"}
    driver.close()


def released(engine: Engine, rollout_id: str) -> list[str]:
    """What the driver said when the controller asked it to let go of the rollout's restore points (audit log)."""
    entries = [e for e in rollouts.log(engine, rollout_id) if e.action == rollouts.RESTORE_POINTS_RELEASED]
    assert len(entries) == 1, entries
    sentences = entries[0].detail["sentences"]
    assert isinstance(sentences, list | tuple)
    return [str(s) for s in sentences]


def test_a_completed_vm_update_leaves_no_snapshot_behind(simulator: Callable[..., Simulator], tmp_path: Path) -> None:
    # Issue 16: restore points are removed when the rollout completes. Every VM is snapshotted before its update
    # and, with nothing failing, kept through the bakes; once the last ring passes, none is left.
    sim = simulator("-cluster", "2", "-host", "2", "-vm", "2", "-ds", "1", "-ha", "1")
    estate = import_estate(sim, tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'ringfence.db'}")
    upgrade(engine)
    rollout_id = create(engine, estate, VM_UPDATE, tmp_path)
    script = f"echo {{operation}} {{name}} >> {tmp_path / 'record'}"
    driver = build_driver("vsphere", sim.options(update_command=script, state_dir=str(tmp_path / "vsphere")))
    assert isinstance(driver, VSphereDriver)
    most = 0

    def watch() -> None:
        nonlocal most
        most = max(most, sum(1 for names in sim.snapshots().values() if names == [f"ringfence {rollout_id}"]))

    assert drive(engine, rollout_id, driver, watch) is RolloutPhase.COMPLETED
    vms = sim.power()
    assert most == len(vms) == 4  # all four held their snapshot at once, before the end
    assert all(names == [] for names in sim.snapshots().values()), sim.snapshots()
    said = released(engine, rollout_id)
    assert len(said) == 4
    assert all(s.startswith("snapshot ") and s.endswith(" removed") for s in said), said
    assert set(vms.values()) == {"poweredOn"}
    driver.close()
