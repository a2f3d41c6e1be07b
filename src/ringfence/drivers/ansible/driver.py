"""The ``ansible`` driver itself: the protocol over runs, the ledger and health readings (see the package
docstring for the whole story)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ringfence.core.driver import Batch, Driver, DriverOptions, OperationKind, OperationResult, OperationStatus
from ringfence.core.durations import humanize_duration
from ringfence.core.errors import DriverError
from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal
from ringfence.core.update import Update
from ringfence.drivers.ansible.events import HostOutcome, RunOutcome
from ringfence.drivers.ansible.inventory import ansible_environment, read_inventory
from ringfence.drivers.ansible.ledger import LEDGER_FILE, Ledger, LedgerOperation, LedgerRun
from ringfence.drivers.ansible.options import (
    GIVE_PLAYBOOK,
    HEALTH_OPTIONS,
    MISSING_PLAYBOOK,
    OPTIONS,
    PLAYBOOK_WORDS,
    read_settings,
    safe_name,
)
from ringfence.drivers.ansible.process import (
    SPEC_FILE,
    launch,
    process_running,
    prune,
    read_outcome,
    read_pid,
    terminate,
)
from ringfence.files.extras import extra_installed, require_extra

HEALTH_DIR = "health"
HEALTH_RUNS_KEPT = 20
"""Health runs happen all along a rollout; only the latest few keep their artifacts."""
STOP_GRACE_SECONDS = 120
"""How long past its timeout a run may still be alive before ringfence stops it itself (ansible-runner
stops it at the timeout; this is the guard for when that did not happen)."""


class AnsibleDriver:
    """The entry point ``ansible``: built from string options (see the module docstring)."""

    name = "ansible"

    options: DriverOptions = OPTIONS

    @classmethod
    def always_refuses(cls, kind: OperationKind, update: Update) -> str | None:
        """Every operation, when Ansible is not installed: the rollout is refused when it is created, with the
        ``pip install`` that fixes it, not when it starts."""
        if not extra_installed("ansible"):
            return (
                "the ansible driver needs the 'ansible' extra, which is not installed: pip install 'ringfence[ansible]'"
            )
        return None

    def __init__(self, **options: str) -> None:
        # Refused before reading any option: without the extra, no option can make the driver work.
        require_extra("ansible", "The ansible driver")
        settings = read_settings(options, self.options)
        self.inventory = settings.inventory
        self.playbooks: dict[OperationKind, Path] = dict(settings.playbooks)
        self.health_playbook = settings.health_playbook
        self.artifacts_dir = settings.artifacts_dir
        self.timeout = settings.timeout
        self.health_interval = settings.health_interval
        self.forks = settings.forks
        self.extravars = dict(settings.extravars)

        # What this process knows about hosts' operations, for health readings (see observe()).
        self._busy: set[str] = set()
        self._changed_at: dict[str, float] = {}
        """When each host's latest install or rollback ended (a restore point changes nothing to judge)."""
        self._installed_at: dict[str, float] = {}
        self._health: dict[str, tuple[float, HostOutcome]] = {}
        self._health_tried: dict[str, float] = {}
        self._last_health_run: float | None = None
        self._last_batch: Batch | None = None

        self._hosts = read_inventory(self.inventory, self._environment())

    # ------------------------------------------------------------------------------------- abilities

    def refuses(self, kind: OperationKind, update: Update) -> str | None:
        """Why this driver, with its options, cannot do ``kind``: the playbook it would run is not given."""
        if kind in self.playbooks or kind not in MISSING_PLAYBOOK:
            return None
        return f"{MISSING_PLAYBOOK[kind]}: {GIVE_PLAYBOOK[kind]}"

    # ------------------------------------------------------------------------------------- hosts

    def host_of(self, asset_id: str) -> str | None:
        """The inventory hostname the asset ``asset_id`` is, or None when no host (or more than one) is."""
        return self._hosts.host_of(asset_id)

    def _unmatched(self, asset_id: str) -> str:
        return self._hosts.unmatched(asset_id)

    def _environment(self) -> dict[str, str]:
        return ansible_environment(self.artifacts_dir)

    # ------------------------------------------------------------------------------------- the protocol

    def start(self, batch: Batch) -> None:
        playbook = self._playbook(batch.kind)
        self._last_batch = batch
        ledger = self._ledger(batch.rollout_id)
        to_run: dict[str, str] = {}
        changed = False
        for asset_id in dict.fromkeys(batch.assets):
            if ledger.operation(batch.kind, asset_id) is not None:
                continue  # idempotent: this rollout already had this operation on this asset
            host = self.host_of(asset_id)
            if host is None:
                ledger.record(
                    batch.kind,
                    asset_id,
                    LedgerOperation(None, "failed", None, self._unmatched(asset_id), finished_at=time.time()),
                )
                changed = True
                continue
            to_run[asset_id] = host
        if to_run:
            run = LedgerRun(ledger.next_run_name(batch.kind), batch.kind, to_run, started_at=time.time())
            ledger.runs[run.name] = run
            for asset_id, host in to_run.items():
                ledger.record(batch.kind, asset_id, LedgerOperation(host, "running", run.name))
                self._busy.add(asset_id)
            # Recorded before the process starts: a crash in between leaves a run that never launched,
            # which the next poll launches; the other order could run a play twice.
            ledger.save()
            self._launch_recorded(ledger, run, playbook, batch)
            changed = True
        if changed:
            ledger.save()

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        self._last_batch = batch
        ledger = self._ledger(batch.rollout_id)
        changed = False
        results: list[OperationResult] = []
        for asset_id in dict.fromkeys(batch.assets):
            operation = ledger.operation(batch.kind, asset_id)
            if operation is None:
                continue
            if operation.status == "running" and operation.run is not None:
                changed = self._settle(ledger, ledger.runs[operation.run], batch) or changed
                operation = ledger.operation(batch.kind, asset_id)
                assert operation is not None
            if operation.status == "running":
                self._busy.add(asset_id)
            results.append(OperationResult(asset_id, operation.status, operation.detail, operation.ref))
        if changed:
            ledger.save()
        return results

    def cancel(self, batch: Batch) -> None:
        ledger = self._ledger(batch.rollout_id)
        runs = {
            o.run
            for asset_id in batch.assets
            if (o := ledger.operation(batch.kind, asset_id)) is not None and o.status == "running" and o.run
        }
        stopping = []
        for name in sorted(runs):
            run = ledger.runs[name]
            if run.settled:
                continue
            if run.stop_reason is None:
                run.stop_reason = "cancelled before it finished"
            if self._stop(ledger, run):
                stopping.append(run)
        if not runs:
            return
        ledger.save()
        # ansible-runner stops the play within a second or two of the signal and records it; wait for
        # that so the cancelled hosts' results are final when cancel returns.
        deadline = time.monotonic() + 15
        while stopping and time.monotonic() < deadline:
            stopping = [r for r in stopping if self._is_running(ledger, r)]
            if stopping:
                time.sleep(0.2)
        changed = False
        for name in sorted(runs):
            changed = self._settle(ledger, ledger.runs[name], batch) or changed
        if changed:
            ledger.save()

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        if self.health_playbook is None:
            return {}  # no health playbook: every asset's health is unknown, which is never a pass
        asked = [a for a in dict.fromkeys(asset_ids) if self.host_of(a) is not None and a not in self._busy]
        now = time.time()
        due = self._last_health_run is None or now - self._last_health_run >= self.health_interval
        # A host whose install or rollback ended after its last health run started has no valid reading:
        # ask now. Hosts never read wait for the next periodic run (unknown is never a pass meanwhile).
        stale = [
            a for a in asked if a in self._changed_at and self._health_tried.get(a, float("-inf")) < self._changed_at[a]
        ]
        targets = asked if due else stale
        if targets:
            self._run_health(targets, periodic=due)
        readings: dict[str, AssetHealth] = {}
        for asset_id in asked:
            found = self._health.get(asset_id)
            if found is None:
                continue
            started, outcome = found
            if started < self._changed_at.get(asset_id, float("-inf")):
                continue  # read before the host's latest operation ended: it says nothing about now
            reading = self._reading(asset_id, started, outcome)
            if reading is not None:
                readings[asset_id] = reading
        return readings

    def next_event_at(self) -> datetime | None:
        return None  # real hosts change in their own time; the controller polls

    # ------------------------------------------------------------------------------------- runs

    def _playbook(self, kind: OperationKind) -> Path:
        found = self.playbooks.get(kind)
        if found is not None:
            return found
        raise DriverError(MISSING_PLAYBOOK.get(kind, f"the ansible driver has no {PLAYBOOK_WORDS[kind]}"))

    def _rollout_dir(self, rollout_id: str) -> Path:
        return self.artifacts_dir / safe_name(rollout_id)

    def _ledger(self, rollout_id: str) -> Ledger:
        return Ledger.load(self._rollout_dir(rollout_id) / LEDGER_FILE, rollout_id)

    def _run_dir(self, ledger: Ledger, run: LedgerRun) -> Path:
        return ledger.path.parent / run.name

    def _extra_variables(self, batch: Batch | None, operation: str, ledger: Ledger | None) -> dict[str, Any]:
        variables: dict[str, Any] = dict(self.extravars)
        variables["ringfence_operation"] = operation
        if batch is not None:
            variables.update(
                {
                    "ringfence_product": batch.product,
                    "ringfence_version": batch.version,
                    "ringfence_rollout": batch.rollout_id,
                }
            )
        if ledger is not None and operation == OperationKind.rollback.value:
            taken = ledger.operations.get(OperationKind.restore_point, {})
            variables["ringfence_restore_points"] = {
                o.host: o.ref for o in taken.values() if o.status == "succeeded" and o.host and o.ref
            }
        return variables

    def _launch_recorded(self, ledger: Ledger, run: LedgerRun, playbook: Path, batch: Batch | None) -> None:
        run_dir = self._run_dir(ledger, run)
        run.pid = self._launch(
            run_dir,
            playbook,
            run.assets.values(),
            self._extra_variables(batch, run.kind.value, ledger),
        )

    def _launch(self, run_dir: Path, playbook: Path, hosts: Iterable[str], variables: Mapping[str, Any]) -> int:
        """Start one detached ansible-runner run in ``run_dir``; its process id."""
        return launch(
            run_dir,
            playbook,
            hosts,
            variables,
            inventory=self.inventory,
            forks=self.forks,
            timeout=self.timeout,
            environment=self._environment(),
        )

    def _pid(self, ledger: Ledger, run: LedgerRun) -> int | None:
        return run.pid if run.pid is not None else read_pid(self._run_dir(ledger, run))

    def _is_running(self, ledger: Ledger, run: LedgerRun) -> bool:
        pid = self._pid(ledger, run)
        return pid is not None and process_running(pid, str(self._run_dir(ledger, run) / SPEC_FILE))

    def _stop(self, ledger: Ledger, run: LedgerRun) -> bool:
        """Ask a run to stop (ansible-runner then kills the play and records it); whether it was running."""
        pid = self._pid(ledger, run)
        if pid is None or not self._is_running(ledger, run):
            return False
        return terminate(pid)

    def _settle(self, ledger: Ledger, run: LedgerRun, batch: Batch) -> bool:
        """Turn a finished run into its hosts' results in ``ledger``; whether the ledger changed."""
        if run.settled:
            return False
        run_dir = self._run_dir(ledger, run)
        outcome = read_outcome(run_dir)
        if outcome is None:
            if self._is_running(ledger, run):
                late = time.time() - run.started_at - self.timeout
                if late > STOP_GRACE_SECONDS and run.stop_reason is None:
                    run.stop_reason = f"did not finish within {humanize_duration(self.timeout)} and was stopped"
                    self._stop(ledger, run)
                    return True
                if late <= 2 * STOP_GRACE_SECONDS:
                    return False
                # Asked to stop a grace period ago and still alive (a hung play, a process that ignores
                # SIGTERM): killed, and its hosts fail now rather than holding the ring open for ever.
                pid = self._pid(ledger, run)
                if pid is not None:
                    terminate(pid, signal.SIGKILL)
                reason = run.stop_reason or f"did not finish within {humanize_duration(self.timeout)}"
                run.stop_reason = f"{reason}; still running {humanize_duration(late)} past it, it was killed"
            if self._pid(ledger, run) is None and run.stop_reason is None:
                # Recorded but never launched (the process died in between): nothing ran, so launch it now.
                self._launch_recorded(ledger, run, self._playbook(run.kind), batch)
                return True
        now = time.time()
        for asset_id, host in run.assets.items():
            operation = ledger.operation(run.kind, asset_id)
            if operation is None or operation.status != "running" or operation.run != run.name:
                continue
            status, detail, ref = self._result(ledger, run, outcome, host)
            finished = outcome.finished_at if outcome is not None else now
            ledger.record(
                run.kind,
                asset_id,
                LedgerOperation(host, status, run.name, f"{detail} (artifacts: {run_dir})", ref, finished),
            )
            self._busy.discard(asset_id)
            if run.kind is not OperationKind.restore_point:
                self._changed_at[asset_id] = max(finished, self._changed_at.get(asset_id, 0.0))
            if run.kind is OperationKind.apply and status == "succeeded":
                self._installed_at[asset_id] = finished
        run.settled = True
        return True

    def _result(
        self, ledger: Ledger, run: LedgerRun, outcome: RunOutcome | None, host: str
    ) -> tuple[OperationStatus, str, str | None]:
        """One host's result of a finished run, as a status, a sentence and a restore point reference."""
        playbook = self.playbooks[run.kind].name if run.kind in self.playbooks else PLAYBOOK_WORDS[run.kind]
        if outcome is None:
            reason = run.stop_reason or (
                "the run stopped before it finished (its process is gone, e.g. killed with the machine or by a "
                "person), so the host may be part-way through the playbook"
            )
            return "failed", f"{playbook} on {host}: {reason}", None
        found = outcome.hosts.get(host, HostOutcome(host, "missing"))
        if found.outcome == "ok":
            counts = f"{found.ok} ok, {found.changed} changed"
            if run.kind is OperationKind.restore_point:
                ref = found.restore_point or f"{ledger.rollout_id}/{run.name}/{host}"
                return "succeeded", f"restore point {ref} taken and verified by {playbook} on {host} ({counts})", ref
            if run.kind is OperationKind.apply:
                return "succeeded", f"{playbook} installed the release on {host} ({counts})", None
            return "succeeded", f"{playbook} rolled {host} back ({counts})", None
        if found.outcome == "failed":
            return "failed", f"{playbook} failed on {host}: {found.message}", None
        if found.outcome == "unreachable":
            return "failed", f"{playbook}: {host} was {found.message}", None
        if outcome.status == "timeout":
            reason = f"did not finish within {humanize_duration(self.timeout)} and was stopped"
        elif outcome.status == "canceled":
            reason = run.stop_reason or "cancelled before it finished"
        elif outcome.status == "error":
            reason = f"ansible-runner could not run it ({outcome.error})"
        else:
            why = outcome.error or f"ansible-playbook exited with status {outcome.rc}"
            reason = f"it did not run on this host ({why})"
        return "failed", f"{playbook} on {host}: {reason}", None

    # ------------------------------------------------------------------------------------- health

    def _run_health(self, asset_ids: Sequence[str], *, periodic: bool) -> None:
        """Run the health playbook on ``asset_ids`` now and keep what it says about each.

        ``periodic``: this is the run on every asked host that ``health_interval`` calls for (not one
        for the few hosts whose operation just ended), so the interval starts again.
        """
        assert self.health_playbook is not None
        hosts = {a: h for a in asset_ids if (h := self.host_of(a)) is not None}
        started = time.time()
        if periodic:
            self._last_health_run = started
        for asset_id in hosts:
            self._health_tried[asset_id] = started
        root = self.artifacts_dir / HEALTH_DIR
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started))
        run_dir = root / f"health-{stamp}-{int(started * 1000) % 1000:03d}-{os.getpid()}"
        variables = self._extra_variables(self._last_batch, "health", None)
        pid = self._launch(run_dir, self.health_playbook, hosts.values(), variables)
        marker = str(run_dir / SPEC_FILE)
        deadline = time.monotonic() + self.timeout + STOP_GRACE_SECONDS
        outcome = read_outcome(run_dir)
        while outcome is None and process_running(pid, marker):
            if time.monotonic() > deadline:
                terminate(pid)
                break
            time.sleep(0.1)
            outcome = read_outcome(run_dir)
        prune(root, keep=HEALTH_RUNS_KEPT)
        if outcome is None:
            return  # nothing said: the hosts' health stays unknown, which is never a pass
        for asset_id, host in hosts.items():
            self._health[asset_id] = (started, outcome.hosts.get(host, HostOutcome(host, "missing")))

    def _reading(self, asset_id: str, started: float, found: HostOutcome) -> AssetHealth | None:
        if found.outcome == "ok":
            return AssetHealth(asset_id, AssetStatus.healthy)
        if found.outcome == "missing":
            return None
        installed = self._installed_at.get(asset_id)
        since = max(0.0, started - installed) if installed is not None else None
        signal_seen = (
            FailureSignal.heartbeat_lost if found.outcome == "unreachable" else FailureSignal.service_check_failed
        )
        playbook = self.health_playbook.name if self.health_playbook else "health playbook"
        return AssetHealth(asset_id, AssetStatus.failed, signal_seen, since, f"{playbook}: {found.message}")


class AnsibleHealth(AnsibleDriver):
    """The health source ``ansible``: the team's health playbook, whatever installs ("Ansible judges").

    On a rollout the ``ansible`` driver carries, the driver's own readings are used (:meth:`of_driver`): it
    knows which hosts are busy and when each install ended. Anywhere else the playbook runs every
    ``health_interval`` on the asked hosts; this source starts no operation.
    """

    name = "ansible health"
    options = HEALTH_OPTIONS

    @classmethod
    def of_driver(cls, driver: Driver) -> AnsibleDriver | None:
        """The driver itself when it is an ansible driver with a health playbook: its readings know its runs."""
        return driver if isinstance(driver, AnsibleDriver) and driver.health_playbook is not None else None


__all__ = ["HEALTH_DIR", "HEALTH_RUNS_KEPT", "STOP_GRACE_SECONDS", "AnsibleDriver", "AnsibleHealth"]
