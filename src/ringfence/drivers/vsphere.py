"""The ``vsphere`` driver: a rollout's operations on ESXi hosts and VMs through vCenter's API (pyVmomi).

Hosts
    *apply* and *rollback*: check the cluster can spare the host (below), move its powered-on VMs to the
    cluster's other hosts (``RelocateVM_Task``: what DRS does when it is fully automated; without DRS, or in
    govmomi's vcsim, nobody else would), enter maintenance mode, run the team's own command for this host
    (``update_command`` or ``rollback_command``: esxcli over ssh, an Ansible ``community.vmware`` playbook, a
    vLCM script), exit maintenance mode. A host that was already in maintenance mode before the rollout
    touched it is left there. A host whose command fails is *left in maintenance mode* and said so: it holds
    none of the cluster's VMs, and a person decides. A disconnected host is never updated (the install fails
    with vCenter's connection state); it can be rolled back (the command reaches the host itself, not through
    vCenter), without maintenance mode.

    *restore_point*: an ESXi host cannot be snapshotted; its previous image stays in the alternate bootbank.
    The restore point is the record of the ESXi version and build it ran, read back from vCenter, handed to
    ``rollback_command`` as ``{restore_point}``.

Never more hosts of a cluster out than its HA failover capacity
    Rule 7 of the update format: before a host leaves, the driver counts the hosts of its cluster that are
    out now — in maintenance mode or entering it, disconnected or not responding, or being evacuated by this
    driver — and waits (the operation stays ``running``, saying why) while one more would exceed what the
    cluster can spare: its admission control's failover capacity F (read as ``ringfence import vsphere``
    reads it). A cluster whose HA reserves nothing (HA or admission control off) has no capacity to keep: its
    VMs require their own host in the imported estate, so the plan counts them down with it, and evacuation
    fails with a sentence when no host can take them. The planner already keeps rings
    within F (the importer writes F into each VM's requirements); this is the driver's own check against
    vCenter's live state, so a host that fails meanwhile, or a person's maintenance, is counted too.

VMs
    *restore_point*: a vSphere snapshot (no memory, not quiesced) named ``ringfence <rollout>``, taken before
    the VM is touched and verified: the task succeeded and the snapshot is in the VM's snapshot tree. Its
    moref is the restore point's ``ref``. *apply*: ``update_command`` for the VM. *rollback*: revert to the
    snapshot, power the VM on again if it was on when the snapshot was taken (a snapshot without memory
    reverts to powered off), then remove the snapshot; without one, ``rollback_command``. Snapshots left by a
    rollout that completed are removed by :meth:`VSphereDriver.release_restore_points`: none is left behind.

Commands
    A command template is a shell command line with placeholders, each replaced by its value quoted for the
    shell: ``{name}`` (the vCenter name of the host or VM), ``{asset}``, ``{moref}``, ``{kind}`` (``host`` or
    ``vm``), ``{product}``, ``{version}``, ``{rollout}``, ``{operation}``, ``{restore_point}``. The same values
    are in the environment as ``RINGFENCE_NAME`` … ``RINGFENCE_RESTORE_POINT``. It runs detached (a
    controller killed meanwhile does not kill it) with its output in ``STATE_DIR/<rollout>/<operation>-<asset>/
    command.log``; exit status 0 is success.

Idempotent and restartable
    ``STATE_DIR/<rollout>/ledger.json`` (written atomically after every change) holds each (operation, asset)
    of the rollout: the step it is at, the vCenter task or the command process it waits on, and its result.
    Steps advance when the controller polls; a new process carries on from the ledger. An operation an asset
    already had is never started again.

Observations, never crashes
    A failed vCenter task, a host that disconnects, a command that fails, an operation past ``timeout``: each
    becomes the asset's ``failed`` result with a sentence. vCenter not answering leaves operations where they
    were (``running``) until it answers or their ``timeout`` passes; only ``observe`` says so, as a
    :class:`~ringfence.core.errors.DriverError` the controller turns into a pause.

Health (:meth:`VSphereDriver.observe`)
    A host: its connection state (not connected: lost heartbeat) and its HA agent's state
    (``runtime.dasHostState``: host down, isolated, partitioned, unreachable or in error: failed service
    check); vCenter's overall status red is a failed service check. A VM: not connected or powered off
    (crashed), VMware Tools' heartbeat red (lost heartbeat). Assets with an operation in flight are left out
    (unknown). Any other health source (Prometheus) may judge instead.

Options: :data:`OPTIONS`; docs/vsphere.md shows the wiring and the privileges the account needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ringfence.core.driver import (
    Batch,
    DriverOption,
    DriverOptions,
    OperationKind,
    OperationResult,
    OperationStatus,
)
from ringfence.core.durations import humanize_duration
from ringfence.core.errors import DriverError, InputError, Problem
from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal
from ringfence.core.update import Update
from ringfence.drivers.ansible.process import process_running, terminate
from ringfence.files.disk import write_text_atomic
from ringfence.files.extras import extra_installed, require_extra

VSPHERE = "vsphere"
PASSWORD_ENV = "RINGFENCE_VSPHERE_PASSWORD"
LEDGER_FILE = "ledger.json"
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
PLACEHOLDERS = ("name", "asset", "moref", "kind", "product", "version", "rollout", "operation", "restore_point")
SNAPSHOT_PREFIX = "ringfence "
"""Every snapshot this driver takes is named ``ringfence <rollout>``: a person can tell them apart."""

_HA_AGENT_FAILED = {
    "hostDown": "HA sees the host as down",
    "networkIsolated": "HA sees the host as isolated from the network",
    "networkPartitionedFromMaster": "HA sees the host as partitioned from its primary",
    "fdmUnreachable": "HA's agent on the host does not answer",
    "initializationError": "HA's agent failed to initialise",
    "uninitializationError": "HA's agent failed to uninitialise",
}
"""HA agent states (``runtime.dasHostState.state``) that mean the host cannot protect or run the cluster's VMs."""

_TEMPLATE_HELP = "{" + "} {".join(PLACEHOLDERS) + "}"

OPTIONS = DriverOptions(
    VSPHERE,
    (
        DriverOption("server", "vCenter's address, https://vcenter.example.org", required=True),
        DriverOption("user", "the vCenter account the driver acts as (docs/vsphere.md, privileges)", required=True),
        DriverOption("password", f"its password (default ${PASSWORD_ENV}, better: not on a command line)"),
        DriverOption("insecure", "accept vCenter's certificate unchecked: a lab's, never production", "flag", "false"),
        DriverOption(
            "update_command",
            f"shell command installing the release on one host or VM; placeholders {_TEMPLATE_HELP}",
            required=True,
        ),
        DriverOption("rollback_command", "shell command rolling one host (or a VM without snapshot) back; same"),
        DriverOption(
            "state_dir", "where the ledger and command logs are kept (default $RINGFENCE_HOME/vsphere)", "path"
        ),
        DriverOption(
            "timeout",
            "longest one operation on one asset may take (evacuation, maintenance mode and command together)",
            "duration",
            default="1h",
            minimum=1,
            maximum=MAX_TIMEOUT_SECONDS,
        ),
    ),
)
"""The options of the ``vsphere`` driver (``--driver-option key=value``)."""

NO_ROLLBACK_COMMAND = (
    "the vsphere driver has no rollback_command, so it cannot reinstall a host's or VM's previous release: "
    "give --driver-option rollback_command=… (or roll VMs back from snapshots with rollback: snapshot)"
)


# ------------------------------------------------------------------------------------------ the ledger


@dataclass
class Step:
    """One (operation, asset) of a rollout: where it is, what it waits on, and its result once final."""

    asset: str
    kind: str
    """``host`` or ``vm``."""
    moref: str
    name: str
    started_at: float
    step: str = "start"
    status: str = "running"
    detail: str = ""
    ref: str | None = None
    task: str | None = None
    """The vCenter task (moref) the step waits on."""
    relocations: dict[str, str] = field(default_factory=dict)
    """VM moref → the RelocateVM task moving it off this host."""
    pid: int | None = None
    entered: bool = False
    """This operation put the host in maintenance mode (so it takes it out again)."""
    was_in_maintenance: bool = False
    powered_on: bool = False
    """A VM's power at its snapshot: reverting a snapshot without memory leaves it off."""
    released: bool = False
    """A snapshot restore point removed after the rollout (release_restore_points)."""
    evacuations: int = 0
    """Rounds of moving VMs off the host: VMs that keep coming back fail the step rather than loop for ever."""

    @property
    def is_final(self) -> bool:
        return self.status != "running"

    def result(self) -> OperationResult:
        status: OperationStatus = (
            "succeeded" if self.status == "succeeded" else "failed" if self.status == "failed" else "running"
        )
        return OperationResult(self.asset, status, self.detail, self.ref)


@dataclass
class Ledger:
    path: Path
    rollout_id: str
    steps: dict[str, dict[str, Step]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, rollout_id: str) -> Ledger:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path, rollout_id)
        except (OSError, ValueError) as exc:
            raise DriverError(
                f"{path}: the vsphere driver's ledger of rollout {rollout_id} cannot be read ({exc})"
            ) from None
        steps = {
            kind: {asset: Step(**fields) for asset, fields in by_asset.items()}
            for kind, by_asset in dict(document.get("steps", {})).items()
        }
        return cls(path, rollout_id, steps)

    def get(self, kind: OperationKind, asset: str) -> Step | None:
        return self.steps.get(kind.value, {}).get(asset)

    def put(self, kind: OperationKind, step: Step) -> None:
        self.steps.setdefault(kind.value, {})[step.asset] = step

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "rollout": self.rollout_id,
            "steps": {kind: {a: vars(s) for a, s in by.items()} for kind, by in self.steps.items()},
        }
        write_text_atomic(self.path, json.dumps(document, sort_keys=True, indent=1))

    def running(self) -> Iterator[tuple[OperationKind, Step]]:
        for kind, by_asset in self.steps.items():
            for step in by_asset.values():
                if not step.is_final:
                    yield OperationKind(kind), step


# ------------------------------------------------------------------------------------------ vCenter


@dataclass(frozen=True)
class Target:
    """An asset as vCenter knows it."""

    asset: str
    kind: str
    moref: str
    name: str
    cluster: str | None = None


@dataclass(frozen=True)
class Cluster:
    moref: str
    name: str
    hosts: tuple[str, ...]
    failover: int
    """HA's failover capacity F: hosts that may be out at once (0: HA reserves nothing, so nothing to keep)."""


class VCenterSilentError(Exception):
    """vCenter did not answer (or dropped the connection): the step waits and tries again next poll."""


class VSphereDriver:
    """The entry point ``vsphere`` (see the module docstring)."""

    name = VSPHERE
    options: DriverOptions = OPTIONS

    @classmethod
    def always_refuses(cls, kind: OperationKind, update: Update) -> str | None:
        if not extra_installed("vsphere"):
            return (
                "the vsphere driver needs the 'vsphere' extra, which is not installed: pip install 'ringfence[vsphere]'"
            )
        return None

    def __init__(self, **options: str) -> None:
        require_extra("vsphere", "The vsphere driver")
        read = OPTIONS.read(options)
        self.server = read.text("server") or ""
        self.user = read.text("user") or ""
        password = read.text("password")
        if password is None:
            password = os.environ.get(PASSWORD_ENV)
        if not password:
            raise InputError(
                [
                    Problem(
                        f"the vsphere driver needs the account's password: set ${PASSWORD_ENV} "
                        "(or --driver-option password=…)",
                        path=("--driver-option",),
                    )
                ]
            )
        self._password = password
        self.insecure = read.flag("insecure")
        self.update_command = _template("update_command", read.text("update_command") or "")
        rollback = read.text("rollback_command")
        self.rollback_command = _template("rollback_command", rollback) if rollback and rollback.strip() else None
        given_dir = (read.text("state_dir") or "").strip()
        self.state_dir = Path(given_dir).expanduser().resolve() if given_dir else _default_state_dir()
        self.timeout = read.seconds("timeout")
        self._si: Any = None
        self._targets: dict[str, Target] | None = None
        self._clusters: dict[str, Cluster] = {}
        self._busy: set[str] = set()
        self._connect()  # a wrong address or password is said now (exit 2), not at the first ring
        self._read_inventory()

    # ------------------------------------------------------------------------------------- abilities

    def refuses(self, kind: OperationKind, update: Update) -> str | None:
        """Reinstalling (``rollback: reinstall``) needs ``rollback_command``; snapshots roll VMs back without one."""
        if kind is OperationKind.rollback and update.rollback == "reinstall" and self.rollback_command is None:
            return NO_ROLLBACK_COMMAND
        return None

    # ------------------------------------------------------------------------------------- the protocol

    def start(self, batch: Batch) -> None:
        ledger = self._ledger(batch.rollout_id)
        now = time.time()
        for asset in dict.fromkeys(batch.assets):
            if ledger.get(batch.kind, asset) is not None:
                continue  # idempotent: this rollout already had this operation on this asset
            target = self._target(asset)
            if target is None:
                step = Step(asset, "", "", asset, now, step="done", status="failed")
                step.detail = f"vCenter at {self.server} has no host or VM that is asset {asset}"
            else:
                step = Step(asset, target.kind, target.moref, target.name, now)
                self._busy.add(asset)
            ledger.put(batch.kind, step)
        ledger.save()  # recorded before anything is asked of vCenter: a crash then repeats nothing twice
        self._advance(ledger, batch)

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        ledger = self._ledger(batch.rollout_id)
        self._advance(ledger, batch)
        results = []
        for asset in dict.fromkeys(batch.assets):
            step = ledger.get(batch.kind, asset)
            if step is not None:
                results.append(step.result())
                if step.is_final:
                    self._busy.discard(asset)
                else:
                    self._busy.add(asset)
        return results

    def cancel(self, batch: Batch) -> None:
        ledger = self._ledger(batch.rollout_id)
        for asset in dict.fromkeys(batch.assets):
            step = ledger.get(batch.kind, asset)
            if step is None or step.is_final:
                continue
            self._stop(step)
            where = " (left in maintenance mode)" if step.kind == "host" and step.entered else ""
            self._finish(step, "failed", f"{self._what(batch.kind, step)} was cancelled before it finished{where}")
        ledger.save()

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        asked = [a for a in dict.fromkeys(asset_ids) if a not in self._busy]
        targets = [t for a in asked if (t := self._target(a)) is not None]
        if not targets:
            return {}
        try:
            hosts = self._read([t.moref for t in targets if t.kind == "host"], "HostSystem", _HOST_HEALTH)
            vms = self._read([t.moref for t in targets if t.kind == "vm"], "VirtualMachine", _VM_HEALTH)
        except VCenterSilentError as exc:
            raise DriverError(f"vCenter at {self.server} did not answer ({exc})") from None
        readings: dict[str, AssetHealth] = {}
        for target in targets:
            props = (hosts if target.kind == "host" else vms).get(target.moref)
            if props is None:
                continue  # gone from vCenter, or not visible to the account: unknown, never a pass
            reading = _host_health(target, props) if target.kind == "host" else _vm_health(target, props)
            readings[target.asset] = reading
        return readings

    def next_event_at(self) -> datetime | None:
        return None  # vCenter's tasks end in their own time; the controller polls

    def close(self) -> None:
        """Log out of vCenter (the next call logs in again)."""
        if self._si is not None:
            from pyVim import connect

            pyvim: Any = connect
            with contextlib.suppress(Exception):  # logging out is a courtesy
                pyvim.Disconnect(self._si)
            self._drop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at exit, modules may be gone already
            self.close()

    def _drop(self) -> None:
        """Forget the session and close its sockets (a vCenter gone away cannot be logged out of)."""
        si, self._si = getattr(self, "_si", None), None
        if si is not None:
            with contextlib.suppress(Exception):
                si._stub.DropConnections()

    # ------------------------------------------------------------------------------------- after a rollout

    def release_restore_points(self, rollout_id: str) -> tuple[str, ...]:
        """Remove the snapshots rollout ``rollout_id`` took and still holds: once it is over, none is left.

        Returns a sentence for each snapshot removed (or that could not be); waits for vCenter's tasks, at
        most ``timeout`` each. Idempotent: a snapshot already removed (by a rollback, or an earlier call) is
        not asked for again.
        """
        ledger = self._ledger(rollout_id)
        said: list[str] = []
        taken = ledger.steps.get(OperationKind.restore_point.value, {})
        for step in taken.values():
            if step.kind != "vm" or step.status != "succeeded" or step.released or not step.ref:
                continue
            rolled = ledger.get(OperationKind.rollback, step.asset)
            if rolled is not None and rolled.status == "succeeded" and rolled.ref == step.ref:
                step.released = True  # the rollback reverted to it and removed it already
                continue
            try:
                snapshot = self._object("vim.vm.Snapshot", step.ref)
                task = snapshot.RemoveSnapshot_Task(removeChildren=False)
                state, error, _ = self._wait(task._moId, self.timeout)
            except VCenterSilentError as exc:
                said.append(f"snapshot {step.ref} of {step.name} was not removed: vCenter did not answer ({exc})")
                continue
            except Exception as exc:  # a snapshot a person removed already: vCenter says it is not there
                state, error = "error", _fault(exc)
            if state == "success":
                step.released = True
                said.append(f"snapshot {step.ref} of {step.name} removed")
            elif "ManagedObjectNotFound" in (error or ""):
                step.released = True
                said.append(f"snapshot {step.ref} of {step.name} was already gone")
            else:
                said.append(f"snapshot {step.ref} of {step.name} was not removed: {error or state}")
        ledger.save()
        return tuple(said)

    # ------------------------------------------------------------------------------------- steps

    def _advance(self, ledger: Ledger, batch: Batch) -> None:
        """Move every running step of ``batch`` as far as vCenter and its command allow now."""
        from pyVmomi import vmodl

        changed = False
        for asset in dict.fromkeys(batch.assets):
            step = ledger.get(batch.kind, asset)
            if step is None or step.is_final:
                continue
            changed = True
            try:
                with self._calling():
                    for _ in range(12):  # a step ends when it waits on something; the bound guards a loop
                        was = step.step
                        self._move(ledger, batch, step)
                        if step.is_final or step.step == was:
                            break
            except VCenterSilentError as exc:
                step.detail = f"waiting for vCenter at {self.server}, which did not answer ({exc})"
            except vmodl.MethodFault as exc:  # vCenter refused a call (a host in the wrong state, a lost object)
                self._finish(
                    step, "failed", f"vCenter refused {self._what(batch.kind, step)}: {_fault(exc)}{self._left(step)}"
                )
            if not step.is_final and time.time() - step.started_at > self.timeout:
                self._stop(step)
                where = " (left in maintenance mode)" if step.kind == "host" and step.entered else ""
                self._finish(
                    step,
                    "failed",
                    f"{self._what(batch.kind, step)} did not finish within {humanize_duration(self.timeout)} "
                    f"and was stopped {_STEP_WORDS.get(step.step, 'part-way')}{where}",
                )
        if changed:
            ledger.save()

    def _move(self, ledger: Ledger, batch: Batch, step: Step) -> None:
        kind = batch.kind
        if step.kind == "vm":
            if kind is OperationKind.restore_point:
                self._vm_snapshot(ledger, step)
            elif kind is OperationKind.rollback and self._snapshot_of(ledger, step) is not None:
                self._vm_revert(ledger, step)
            else:
                self._command_step(ledger, batch, step)
            return
        if kind is OperationKind.restore_point:
            self._host_restore_point(step)
            return
        match step.step:
            case "start":
                self._host_start(kind, step)
            case "capacity":
                self._host_capacity(ledger, step)
            case "evacuate":
                self._host_evacuate(ledger, step)
            case "entering":
                state, error = self._task_state(step.task)
                if state == "error":
                    self._finish(step, "failed", f"{step.name} did not enter maintenance mode: {error}")
                elif state == "success":
                    step.task, step.step = None, "evacuate"  # look again: a VM may have started meanwhile
            case "command":
                self._command_step(ledger, batch, step)
            case "exiting":
                state, error = self._task_state(step.task)
                if state == "error":
                    self._finish(
                        step, "failed", f"{step.detail}; but {step.name} did not exit maintenance mode: {error}"
                    )
                elif state == "success":
                    self._finish(step, "succeeded", f"{step.detail}; {step.name} left maintenance mode")

    # hosts

    def _host_restore_point(self, step: Step) -> None:
        props = self._read([step.moref], "HostSystem", _HOST_STATE).get(step.moref, {})
        version, build = props.get("config.product.version"), props.get("config.product.build")
        if not version or not build:
            self._finish(step, "failed", f"vCenter did not say which ESXi {step.name} runs: no restore point")
            return
        ref = f"{step.moref} ESXi {version} build {build}"
        self._finish(
            step,
            "succeeded",
            f"restore point of {step.name}: ESXi {version} build {build}, read back from vCenter "
            "(the previous image stays in the host's alternate bootbank)",
            ref,
        )

    def _host_start(self, kind: OperationKind, step: Step) -> None:
        props = self._read([step.moref], "HostSystem", _HOST_STATE).get(step.moref)
        if props is None:
            self._finish(step, "failed", f"vCenter at {self.server} no longer has host {step.name} ({step.moref})")
            return
        connection = str(props.get("runtime.connectionState", "unknown"))
        if connection != "connected":
            if kind is OperationKind.apply:
                self._finish(step, "failed", f"{step.name} is {connection} in vCenter: not updated")
                return
            # A host that failed after its update is the one most needing its rollback; the command reaches
            # the host itself (ssh, its BMC), and a host vCenter cannot see has nothing to evacuate through it.
            step.detail = f"{step.name} is {connection} in vCenter: rolled back without maintenance mode"
            step.step = "command"
            return
        step.was_in_maintenance = bool(props.get("runtime.inMaintenanceMode"))
        step.step = "evacuate" if step.was_in_maintenance else "capacity"

    def _host_capacity(self, ledger: Ledger, step: Step) -> None:
        target = self._target(step.asset)
        cluster = self._clusters.get(target.cluster or "") if target is not None else None
        if cluster is None or cluster.failover == 0:
            # A standalone host, or a cluster whose HA reserves nothing: no failover capacity to keep. Its VMs
            # require their own host in the estate, so the plan already counts them down while it is out.
            step.step = "evacuate"
            return
        props = self._read(list(cluster.hosts), "HostSystem", _HOST_STATE)
        out = {
            moref
            for moref, p in props.items()
            if p.get("runtime.inMaintenanceMode") or str(p.get("runtime.connectionState")) != "connected"
        }
        # Hosts this driver is taking out right now count before vCenter shows them in maintenance mode.
        out |= {s.moref for _, s in ledger.running() if s.step in _LEAVING and s.moref in props}
        out.discard(step.moref)
        if len(out) + 1 > cluster.failover:
            names = ", ".join(sorted(self._name_of(m) for m in out))
            step.detail = (
                f"waiting: cluster {cluster.name} already has {len(out)} host(s) out ({names}); "
                f"its HA failover capacity is {cluster.failover}"
            )
            return
        step.detail = ""
        step.step = "evacuate"

    def _host_evacuate(self, ledger: Ledger, step: Step) -> None:
        if step.relocations:
            states = {vm: self._task_state(task) for vm, task in step.relocations.items()}
            if any(state == "running" for state, _ in states.values()):
                return
            failed = [f"{self._name_of(vm)}: {error}" for vm, (state, error) in states.items() if state == "error"]
            step.relocations = {}
            if failed:
                self._finish(
                    step, "failed", f"could not move VMs off {step.name} ({'; '.join(failed)}){self._left(step)}"
                )
                return
            step.detail = ""
        host = self._read([step.moref], "HostSystem", ("vm", "runtime.inMaintenanceMode")).get(step.moref, {})
        # The host's VM list, each checked by where it runs now (vcsim keeps a moved VM in its old host's list).
        vms = [vm._moId for vm in host.get("vm") or ()]
        placed = self._read(vms, "VirtualMachine", ("runtime.powerState", "runtime.host"))
        powered = [
            m for m, p in placed.items() if _is_on(p) and getattr(p.get("runtime.host"), "_moId", None) == step.moref
        ]
        if powered:
            if step.evacuations >= 3:
                # Moved thrice and powered-on VMs are back: something (a person, DRS rules) keeps them here.
                self._finish(step, "failed", f"VMs keep running on {step.name} after evacuation{self._left(step)}")
                return
            self._relocate(ledger, step, powered)
            return
        if host.get("runtime.inMaintenanceMode"):
            step.step = "command"
            return
        task = self._object("vim.HostSystem", step.moref).EnterMaintenanceMode_Task(timeout=0)
        step.task, step.entered, step.step = task._moId, True, "entering"

    def _relocate(self, ledger: Ledger, step: Step, vms: Sequence[str]) -> None:
        """Start moving ``vms`` off ``step``'s host onto the cluster's hosts that stay in."""
        target = self._target(step.asset)
        cluster = self._clusters.get(target.cluster or "") if target is not None else None
        # Not onto a host this rollout is taking out too: its VMs would only have to move again.
        leaving = {s.moref for _, s in ledger.running() if s.step in _LEAVING}
        peers = [m for m in (cluster.hosts if cluster else ()) if m != step.moref and m not in leaving]
        props = self._read(peers, "HostSystem", _HOST_STATE)
        fit = [
            m
            for m in peers
            if (p := props.get(m)) is not None
            and str(p.get("runtime.connectionState")) == "connected"
            and not p.get("runtime.inMaintenanceMode")
        ]
        if not fit:
            self._finish(step, "failed", f"no host of its cluster can take the VMs running on {step.name}")
            return
        for i, vm in enumerate(sorted(vms)):
            destination = self._object("vim.HostSystem", fit[i % len(fit)])
            spec = self._vim().vm.RelocateSpec(host=destination)
            step.relocations[vm] = self._object("vim.VirtualMachine", vm).RelocateVM_Task(spec=spec)._moId
        step.evacuations += 1
        step.detail = f"moving {len(vms)} VM(s) off {step.name}"

    # commands (hosts and VMs)

    def _command_step(self, ledger: Ledger, batch: Batch, step: Step) -> None:
        template = self.update_command if batch.kind is OperationKind.apply else self.rollback_command
        if template is None:
            self._finish(step, "failed", NO_ROLLBACK_COMMAND)
            return
        run_dir = self._run_dir(ledger, batch.kind, step.asset)
        log, rc_file = run_dir / "command.log", run_dir / "rc"
        if step.pid is None:
            restore = self._restore_point_of(ledger, step.asset) if batch.kind is OperationKind.rollback else None
            step.pid = self._launch(run_dir, template, self._values(batch, step, restore or ""))
            step.step = "command"
            return
        rc = _read_rc(rc_file)
        if rc is None:
            if _command_alive(step.pid, str(log)):
                return
            rc = _read_rc(rc_file)  # it may have ended between the two looks
            if rc is None:
                self._finish(
                    step,
                    "failed",
                    f"the {_word(batch.kind)} command on {step.name} stopped before it finished (its process is "
                    f"gone){self._left(step)} (log: {log})",
                )
                return
        what = "update_command" if batch.kind is OperationKind.apply else "rollback_command"
        if rc != 0:
            self._finish(
                step, "failed", f"{what} exited with status {rc} on {step.name}: {_last_line(log)}{self._left(step)}"
            )
            return
        done = (
            f"{what} {'installed the release on' if batch.kind is OperationKind.apply else 'rolled back'} {step.name}"
        )
        if step.detail and "without maintenance mode" in step.detail:
            done = f"{step.detail}; {done}"
        if step.kind == "host" and step.entered and not step.was_in_maintenance:
            task = self._object("vim.HostSystem", step.moref).ExitMaintenanceMode_Task(timeout=0)
            step.task, step.step, step.detail = task._moId, "exiting", done
            return
        kept = " (it stays in maintenance mode, as it was before)" if step.was_in_maintenance else ""
        self._finish(step, "succeeded", f"{done}{kept}")

    def _values(self, batch: Batch, step: Step, restore_point: str) -> dict[str, str]:
        return {
            "name": step.name,
            "asset": step.asset,
            "moref": step.moref,
            "kind": step.kind,
            "product": batch.product,
            "version": batch.version,
            "rollout": batch.rollout_id,
            "operation": batch.kind.value,
            "restore_point": restore_point,
        }

    def _launch(self, run_dir: Path, template: str, values: Mapping[str, str]) -> int:
        run_dir.mkdir(parents=True, exist_ok=True)
        command = template.format_map({k: shlex.quote(v) for k, v in values.items()})
        log, rc = run_dir / "command.log", run_dir / "rc"
        rc.unlink(missing_ok=True)
        env = {**os.environ, **{f"RINGFENCE_{k.upper()}": v for k, v in values.items()}}
        # Detached, in a session of its own (setsid): a controller killed meanwhile does not kill an ESXi update
        # half-way, and no process of ours is left to reap it. The wrapper writes the exit status atomically, so
        # any later process can read how it ended.
        wrapper = '/bin/sh -c "$1" >"$2" 2>&1 </dev/null; echo $? >"$3.part"; mv "$3.part" "$3"'
        spawn = 'setsid /bin/sh -c "$1" ringfence-vsphere-command "$2" "$3" "$4" </dev/null >/dev/null 2>&1 & echo $!'
        started = subprocess.run(
            ["/bin/sh", "-c", spawn, "spawn", wrapper, command, str(log), str(rc)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=run_dir,
            env=env,
            check=False,
            timeout=30,
        )
        try:
            return int(started.stdout.strip())
        except ValueError:
            raise DriverError(
                f"the command for {values['name']} could not be started: {started.stderr.strip()}"
            ) from None

    # VMs

    def _vm_snapshot(self, ledger: Ledger, step: Step) -> None:
        if step.step == "start":
            props = self._read([step.moref], "VirtualMachine", _VM_HEALTH).get(step.moref)
            if props is None or str(props.get("runtime.connectionState")) != "connected":
                state = "gone" if props is None else props.get("runtime.connectionState")
                self._finish(step, "failed", f"VM {step.name} is {state} in vCenter: no snapshot taken")
                return
            step.powered_on = _is_on(props)
            task = self._object("vim.VirtualMachine", step.moref).CreateSnapshot_Task(
                name=f"{SNAPSHOT_PREFIX}{ledger.rollout_id}",
                description=f"taken by ringfence before rollout {ledger.rollout_id} touched this VM",
                memory=False,
                quiesce=False,
            )
            step.task, step.step = task._moId, "snapshotting"
            return
        state, error, result = self._task(step.task)
        if state == "error":
            self._finish(step, "failed", f"snapshot of VM {step.name} failed: {error}")
        elif state == "success":
            snapshot = getattr(result, "_moId", None)
            self._verify_snapshot(ledger, step, snapshot)

    def _verify_snapshot(self, ledger: Ledger, step: Step, snapshot: str | None) -> None:
        # Read through the property collector: vcsim panics on vm.snapshot read as an attribute once emptied.
        tree = self._read([step.moref], "VirtualMachine", ("snapshot",)).get(step.moref, {}).get("snapshot")
        found = [node for node in _snapshot_nodes(tree) if node.snapshot._moId == snapshot]
        name = f"{SNAPSHOT_PREFIX}{ledger.rollout_id}"
        if snapshot is None or not found or found[0].name != name:
            self._finish(step, "failed", f"snapshot of VM {step.name} is not in its snapshot tree: not verified")
            return
        self._finish(
            step,
            "succeeded",
            f"snapshot '{name}' ({snapshot}) of VM {step.name} taken and verified (VM {found[0].state})",
            snapshot,
        )

    def _vm_revert(self, ledger: Ledger, step: Step) -> None:
        snapshot = self._snapshot_of(ledger, step)
        assert snapshot is not None
        if step.step == "start":
            step.task = self._object("vim.vm.Snapshot", snapshot).RevertToSnapshot_Task()._moId
            step.step = "reverting"
            return
        state, error = self._task_state(step.task)
        if state == "running":
            return
        if state == "error":
            self._finish(step, "failed", f"VM {step.name}: {step.step} failed: {error}")
            return
        taken = ledger.get(OperationKind.restore_point, step.asset)
        if step.step == "reverting":
            power = self._read([step.moref], "VirtualMachine", ("runtime.powerState",)).get(step.moref, {})
            if taken is not None and taken.powered_on and not _is_on(power):
                step.task = self._object("vim.VirtualMachine", step.moref).PowerOnVM_Task()._moId
                step.step = "powering_on"
                return
            step.step = "powering_on"  # nothing to power on: straight on to removing the snapshot
        if step.step == "powering_on":
            step.task = self._object("vim.vm.Snapshot", snapshot).RemoveSnapshot_Task(removeChildren=False)._moId
            step.step = "removing"
            return
        if taken is not None:
            taken.released = True
        self._finish(
            step, "succeeded", f"VM {step.name} reverted to snapshot {snapshot}, which was then removed", snapshot
        )

    def _snapshot_of(self, ledger: Ledger, step: Step) -> str | None:
        taken = ledger.get(OperationKind.restore_point, step.asset)
        if taken is None or taken.kind != "vm" or taken.status != "succeeded" or taken.released:
            return None
        return taken.ref

    def _restore_point_of(self, ledger: Ledger, asset: str) -> str | None:
        taken = ledger.get(OperationKind.restore_point, asset)
        return taken.ref if taken is not None and taken.status == "succeeded" else None

    # ------------------------------------------------------------------------------------- helpers

    def _finish(self, step: Step, status: str, detail: str, ref: str | None = None) -> None:
        step.status, step.detail, step.step, step.task = status, detail, "done", None
        if ref is not None:
            step.ref = ref
        self._busy.discard(step.asset)

    def _left(self, step: Step) -> str:
        return f"; {step.name} is left in maintenance mode" if step.kind == "host" and step.entered else ""

    def _what(self, kind: OperationKind, step: Step) -> str:
        return f"the {_word(kind)} of {step.name}"

    def _stop(self, step: Step) -> None:
        """Cancel what ``step`` waits on: its vCenter tasks (where vCenter can) and its command's session."""
        for task in [step.task, *step.relocations.values()]:
            if task:
                with contextlib.suppress(Exception):  # a task that cannot be cancelled runs on; nothing waits on it
                    self._object("vim.Task", task).CancelTask()
        if step.pid is not None:
            terminate(step.pid)

    def _run_dir(self, ledger: Ledger, kind: OperationKind, asset: str) -> Path:
        return ledger.path.parent / f"{kind.value}-{asset}"

    def _ledger(self, rollout_id: str) -> Ledger:
        return Ledger.load(self.state_dir / _safe(rollout_id) / LEDGER_FILE, rollout_id)

    def _target(self, asset: str) -> Target | None:
        if self._targets is None:
            self._read_inventory()
        return (self._targets or {}).get(asset)

    def _name_of(self, moref: str) -> str:
        for target in (self._targets or {}).values():
            if target.moref == moref:
                return target.name
        return moref

    def _read_inventory(self) -> None:
        """Asset ids as ``ringfence import vsphere`` gives them, and each cluster's failover capacity."""
        from ringfence.files.importers.vsphere import read_vcenter
        from ringfence.files.importers.vsphere_estate import _assign_ids

        # The importer's own reading and naming: an asset id here is the id `ringfence import vsphere` wrote.
        facts = read_vcenter(self._login())
        ids = _assign_ids(facts)
        targets = {ids[h.moref]: Target(ids[h.moref], "host", h.moref, h.name, h.cluster) for h in facts.hosts} | {
            ids[v.moref]: Target(ids[v.moref], "vm", v.moref, v.name) for v in facts.vms
        }
        self._targets = targets
        self._clusters = {
            c.moref: Cluster(
                c.moref,
                c.name,
                c.hosts,
                c.failover_hosts if c.ha_enabled else 0,
            )
            for c in facts.clusters
        }

    # vCenter I/O

    def _connect(self) -> Any:
        from ringfence.files.importers.vsphere import _connect

        self._si = _connect(self._login())
        return self._si

    def _login(self) -> Any:
        from ringfence.files.importers.vsphere import VCenterLogin

        return VCenterLogin(self.server, self.user, self._password, self.insecure)

    def _session(self) -> Any:
        if self._si is None:
            try:
                self._connect()
            except InputError as exc:
                raise VCenterSilentError(str(exc)) from None
        return self._si

    def _vim(self) -> Any:
        from pyVmomi import vim

        return vim

    def _object(self, kind: str, moref: str) -> Any:
        """The managed object ``moref`` of type ``kind`` (``vim.HostSystem``) on this session."""
        cls: Any = self._vim()
        for part in kind.split(".")[1:]:
            cls = getattr(cls, part)
        return cls(moref, self._session()._stub)

    def _read(self, morefs: Sequence[str], kind: str, paths: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Properties ``paths`` of the ``kind`` objects ``morefs``, through the property collector (one trip).

        Objects vCenter no longer has are left out. A dropped connection is :class:`VCenterSilentError`.
        """
        if not morefs:
            return {}
        from pyVmomi import vmodl as typed_vmodl

        from ringfence.files.importers.vsphere import _PAGE, _retrieve

        vmodl: Any = typed_vmodl
        with self._calling():
            collector = self._session().content.propertyCollector
            cls = getattr(self._vim(), kind)
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[
                    vmodl.query.PropertyCollector.ObjectSpec(obj=self._object(f"vim.{kind}", m)) for m in morefs
                ],
                propSet=[vmodl.query.PropertyCollector.PropertySpec(type=cls, pathSet=list(paths))],
            )
            try:
                return {obj._moId: props for obj, props in _retrieve(collector, spec, _PAGE)}
            except vmodl.fault.ManagedObjectNotFound:
                # One of them is gone: ask one at a time, so the others still answer.
                found: dict[str, dict[str, Any]] = {}
                for moref in morefs if len(morefs) > 1 else ():
                    found |= self._read([moref], kind, paths)
                return found

    def _task(self, task: str | None) -> tuple[str, str | None, Any]:
        """A vCenter task's state (``running``, ``success``, ``error``), its error as a sentence, its result.

        Read through the property collector, never pyVim's WaitForTask (which fails on snapshot tasks in vcsim).
        """
        if task is None:
            return "error", "no task was recorded", None
        props = self._read([task], "Task", ("info.state", "info.error", "info.result")).get(task)
        if props is None:
            return "error", f"vCenter no longer knows task {task}", None
        state = str(props.get("info.state", "running"))
        if state in ("queued", "running"):
            return "running", None, None
        error = props.get("info.error")
        return state, (_fault(error) if error is not None else None), props.get("info.result")

    def _task_state(self, task: str | None) -> tuple[str, str | None]:
        state, error, _ = self._task(task)
        return state, error

    def _wait(self, task: str, seconds: float) -> tuple[str, str | None, Any]:
        deadline = time.monotonic() + seconds
        while True:
            state, error, result = self._task(task)
            if state != "running" or time.monotonic() > deadline:
                return state, error, result
            time.sleep(0.2)

    @contextlib.contextmanager
    def _calling(self) -> Iterator[None]:
        """A call to vCenter: a dropped connection (vcsim drops it on some reads) ends the session, to be opened
        again at the next call, and is :class:`VCenterSilentError`, never a crash."""
        from pyVmomi import vim as typed_vim
        from pyVmomi import vmodl

        try:
            yield
        except (vmodl.MethodFault, VCenterSilentError):
            raise  # vCenter answered: a fault is the caller's to word
        except (OSError, ConnectionError, typed_vim.fault.NotAuthenticated) as exc:
            self._drop()
            raise VCenterSilentError(_fault(exc)) from None
        except Exception as exc:  # http.client's RemoteDisconnected and pyVmomi's own errors for a broken answer
            if type(exc).__module__.startswith(("http.", "pyVmomi", "urllib3")):
                self._drop()
                raise VCenterSilentError(_fault(exc)) from None
            raise


_HOST_STATE = ("runtime.connectionState", "runtime.inMaintenanceMode", "config.product.version", "config.product.build")
_HOST_HEALTH = ("runtime.connectionState", "runtime.dasHostState", "overallStatus", "runtime.inMaintenanceMode")
_VM_HEALTH = ("runtime.connectionState", "runtime.powerState", "guestHeartbeatStatus")
_STEP_WORDS = {
    "start": "before it began",
    "capacity": "while waiting for its cluster to have a host to spare",
    "evacuate": "while its VMs were moved off",
    "entering": "while entering maintenance mode",
    "command": "while its command ran",
    "exiting": "while exiting maintenance mode",
    "snapshotting": "while the snapshot was taken",
    "reverting": "while reverting to its snapshot",
    "powering_on": "while powering the VM on",
    "removing": "while removing its snapshot",
}
_LEAVING = frozenset({"evacuate", "entering", "command", "exiting"})
"""Steps in which a host is out of its cluster's capacity (or about to be), whatever vCenter shows yet."""


def _host_health(target: Target, props: Mapping[str, Any]) -> AssetHealth:
    connection = str(props.get("runtime.connectionState", "unknown"))
    if connection != "connected":
        return AssetHealth(
            target.asset,
            AssetStatus.failed,
            FailureSignal.heartbeat_lost,
            detail=f"vCenter sees host {target.name} as {connection}",
        )
    das = props.get("runtime.dasHostState")
    state = str(getattr(das, "state", "") or "")
    if state in _HA_AGENT_FAILED:
        return AssetHealth(
            target.asset,
            AssetStatus.failed,
            FailureSignal.service_check_failed,
            detail=f"host {target.name}: {_HA_AGENT_FAILED[state]} (HA state {state})",
        )
    if str(props.get("overallStatus", "")) == "red":
        return AssetHealth(
            target.asset,
            AssetStatus.failed,
            FailureSignal.service_check_failed,
            detail=f"vCenter's overall status of host {target.name} is red",
        )
    return AssetHealth(target.asset, AssetStatus.healthy)


def _vm_health(target: Target, props: Mapping[str, Any]) -> AssetHealth:
    connection = str(props.get("runtime.connectionState", "unknown"))
    if connection != "connected":
        return AssetHealth(
            target.asset,
            AssetStatus.failed,
            FailureSignal.crashed,
            detail=f"vCenter sees VM {target.name} as {connection}",
        )
    if not _is_on(props):
        power = props.get("runtime.powerState", "unknown")
        return AssetHealth(
            target.asset, AssetStatus.failed, FailureSignal.crashed, detail=f"VM {target.name} is {power}"
        )
    if str(props.get("guestHeartbeatStatus", "")) == "red":
        return AssetHealth(
            target.asset,
            AssetStatus.failed,
            FailureSignal.heartbeat_lost,
            detail=f"VMware Tools' heartbeat of VM {target.name} is red",
        )
    return AssetHealth(target.asset, AssetStatus.healthy)


def _is_on(props: Mapping[str, Any]) -> bool:
    return str(props.get("runtime.powerState", "")) == "poweredOn"


def _snapshot_nodes(tree: Any) -> Iterator[Any]:
    stack = list(getattr(tree, "rootSnapshotList", None) or ())
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.childSnapshotList or ())


def _fault(error: Any) -> str:
    """A vSphere fault (or any exception) as a short sentence: its message, else its type."""
    message = getattr(error, "msg", None) or getattr(error, "localizedMessage", None) or str(error)
    text = str(message).strip().splitlines()[0] if str(message).strip() else ""
    name = type(error).__name__.rsplit(".", 1)[-1]
    return f"{name}: {text}" if text and name not in text else (text or name)


def _template(option: str, text: str) -> str:
    """``text`` as a command template, every placeholder known; an InputError naming the option otherwise."""
    try:
        text.format_map(dict.fromkeys(PLACEHOLDERS, "x"))
    except KeyError as exc:
        said = f"unknown placeholder {{{exc.args[0]}}}; it may use {_TEMPLATE_HELP} (write {{{{ }}}} for a brace)"
    except (ValueError, IndexError) as exc:
        said = f"not a command template ({exc}); write {{{{ }}}} for a literal brace"
    else:
        if not text.strip():
            said = "empty: give the command that does it"
        else:
            return text
    raise InputError([Problem(f"vsphere driver option {option}={text!r}: {said}", path=("--driver-option",))])


def _command_alive(pid: int, marker: str) -> bool:
    """Whether the command's process still runs. Looked at twice, a moment apart: while a process execs (the
    wrapper becoming ``sh``), its command line is briefly unreadable, and one look would call it gone."""
    for attempt in range(3):
        if process_running(pid, marker):
            return True
        if attempt < 2:
            time.sleep(0.05)
    return False


def _read_rc(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _last_line(log: Path) -> str:
    try:
        lines = [
            line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
        ]
    except OSError:
        lines = []
    last = lines[-1] if lines else "it printed nothing"
    return (last[:300] + "…" if len(last) > 300 else last) + f" (log: {log})"


def _word(kind: OperationKind) -> str:
    return {"apply": "update", "rollback": "rollback", "restore_point": "restore point"}[kind.value]


def _safe(text: str) -> str:
    from ringfence.drivers.ansible.options import safe_name

    return safe_name(text)


def _default_state_dir() -> Path:
    from ringfence.store.home import user_home

    return (user_home(os.environ) / VSPHERE).resolve()


__all__ = [
    "LEDGER_FILE",
    "NO_ROLLBACK_COMMAND",
    "OPTIONS",
    "PASSWORD_ENV",
    "PLACEHOLDERS",
    "SNAPSHOT_PREFIX",
    "VSPHERE",
    "Ledger",
    "Step",
    "VSphereDriver",
]
