"""The ``ansible`` driver: a rollout's operations as runs of the team's own playbooks, through ansible-runner.

Each operation on a batch is one ``ansible-playbook`` run of the matching playbook, limited to the batch's
hosts, with the extra variables ``ringfence_product``, ``ringfence_version``, ``ringfence_rollout`` and
``ringfence_operation`` (and, for a rollback, ``ringfence_restore_points``: each host's restore point).
Each host's outcome in the run's events becomes that asset's :class:`~ringfence.core.driver.OperationResult`;
health comes from a health-check playbook. docs/ansible.md shows how a team wires its playbooks in.

Options (``--driver-option key=value``)

=====================  ==========================================================================
``inventory``          the Ansible inventory the playbooks run against (required)
``update_playbook``    installs the release (required)
``snapshot_playbook``  takes *and verifies* a restore point; a host it fails on is never updated
``rollback_playbook``  restores a host (from its restore point when there is one)
``health_playbook``    checks a host's health: a failed task is a failed service check, an
                       unreachable host a lost heartbeat
``artifacts_dir``      where runs keep their artifacts and the ledger (default
                       ``$RINGFENCE_HOME/ansible``)
``timeout``            longest one run may take (default ``1h``, at most 7d); a run stopped then
                       fails its hosts
``forks``              Ansible's parallelism (default 10)
``extravars``          a JSON object of extra variables for every run
``health_interval``    longest a health reading is reused (default ``5m``, at most 1d)
=====================  ==========================================================================

Abilities
    Without ``snapshot_playbook`` the driver cannot take restore points, so it refuses an update with
    ``rollback: snapshot``; without ``rollback_playbook`` it cannot roll back, so it refuses any update
    that may roll back (``snapshot`` or ``reinstall``). It says so in :meth:`AnsibleDriver.refuses` once
    built, so ``rollout start`` stops with the sentence (exit 2) before the rollout moves.

Hosts and assets
    An asset is the inventory host whose name, sanitized as ``ringfence import ansible`` does it
    (:func:`~ringfence.files.importers.ansible.asset_id_for_host`), is the asset's id; the inventory is read once,
    with ``ansible-inventory``, when the driver is built. An asset no host matches fails with a sentence.

Runs outlive the controller
    A run is a detached process (``ansible_runner.run`` in its own session), so ``start`` returns at
    once and a controller killed mid-play does not kill the play. Its directory
    ``ARTIFACTS/<rollout>/<operation>-<NN>/`` holds ansible-runner's artifacts (``stdout``,
    ``job_events/``, ``status``, ``rc``) and the run's outcome (``ringfence-outcome.json``), written when
    the run ends. ``poll`` reads that outcome; a run whose process is gone without one was interrupted,
    and its hosts fail ("may be part-way through the playbook"), because nobody knows how far it got.

What ``poll`` never waits past
    ansible-runner stops a run at ``timeout``. A run still alive ``STOP_GRACE_SECONDS`` after that is
    stopped by ringfence (SIGTERM to its session); one still alive ``STOP_GRACE_SECONDS`` after that is
    killed (SIGKILL) and its hosts fail at once with the reason. So every host's operation is final at the
    latest ``timeout`` + 2 × ``STOP_GRACE_SECONDS`` after its run started, whatever the play does.

Idempotent
    ``ARTIFACTS/<rollout>/ledger.json`` (written atomically) remembers each (operation, asset) of the
    rollout: its run and, once known, its result. An operation an asset already had in this rollout is
    never started again; its result is reported as before.

Results
    A host the run's recap shows processed with no failed task and reachable → succeeded; a failed task
    → failed, naming the task and Ansible's message; unreachable → failed; not in the recap (the play
    did not target it, or ansible-playbook stopped early) → failed, with ansible's error line; a run
    that timed out or was cancelled → failed for every host that had not already failed. Every detail
    ends with the run's artifacts directory, so it lands in the rollout's records. Nothing here raises
    for what happens on hosts; only a missing ability does (:class:`~ringfence.core.errors.DriverError`).

Health (:meth:`AnsibleDriver.observe`)
    The health playbook runs, synchronously, on every asked host at the first call and whenever
    ``health_interval`` has passed since the last such run, and in between on the asked hosts whose
    install or rollback ended after their last reading began. A reading taken before a host's latest
    install or rollback ended is never reported; hosts with an operation in flight are left out
    (unknown), as are hosts the run said nothing about.

Environment of every run
    The environment of the process, plus: the interpreter's ``bin`` directory first on ``PATH`` (so
    ``ansible-playbook`` of the same installation is found), ``ANSIBLE_HOME`` and ``ANSIBLE_LOCAL_TEMP``
    inside the artifacts directory (the collection and role paths keep the user's defaults), no host key
    checking, no retry files, no colour, and no password prompts. The working directory is the
    playbook's, so an ``ansible.cfg`` beside the playbooks applies as it does when the team runs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

import ringfence
from ringfence.core.driver import Batch, OperationKind, OperationResult, OperationStatus
from ringfence.core.durations import format_duration, humanize_duration, parse_duration
from ringfence.core.errors import DriverError, InputError, Problem
from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal
from ringfence.core.update import Update
from ringfence.files.disk import write_text_atomic
from ringfence.files.importers.ansible import asset_id_for_host

__all__ = [
    "AnsibleDriver",
    "HostOutcome",
    "RunOutcome",
    "read_run_outcome",
]

HostOutcomeKind = Literal["ok", "failed", "unreachable", "missing"]

LEDGER_FILE = "ledger.json"
SPEC_FILE = "ringfence-run.json"
PID_FILE = "ringfence-pid.json"
OUTCOME_FILE = "ringfence-outcome.json"
CHILD_LOG = "ringfence-child.log"
HEALTH_DIR = "health"
HEALTH_RUNS_KEPT = 20
"""Health runs happen all along a rollout; only the latest few keep their artifacts."""

INVENTORY_TIMEOUT_SECONDS = 300
LAUNCH_TIMEOUT_SECONDS = 60
STOP_GRACE_SECONDS = 120
"""How long past its timeout a run may still be alive before ringfence stops it itself (ansible-runner
stops it at the timeout; this is the guard for when that did not happen)."""
UNLAUNCHED_GRACE_SECONDS = 30
MAX_TIMEOUT_SECONDS = 7 * 86400
MAX_HEALTH_INTERVAL_SECONDS = 86400
MESSAGE_LIMIT = 300

_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

NO_SNAPSHOT_PLAYBOOK = "the ansible driver has no snapshot playbook configured, so it cannot take restore points"
NO_ROLLBACK_PLAYBOOK = "the ansible driver has no rollback playbook configured, so it cannot roll back"
_MISSING_PLAYBOOK = {OperationKind.restore_point: NO_SNAPSHOT_PLAYBOOK, OperationKind.rollback: NO_ROLLBACK_PLAYBOOK}
# What to do about it, said when a rollout is refused before it starts.
_GIVE_PLAYBOOK = {
    OperationKind.restore_point: "give --driver-option snapshot_playbook=PATH, or use rollback: reinstall",
    OperationKind.rollback: (
        "give --driver-option rollback_playbook=PATH (rollback: snapshot and rollback: reinstall both roll back "
        "through it)"
    ),
}

_PLAYBOOK_WORDS = {
    OperationKind.restore_point: "snapshot playbook",
    OperationKind.apply: "update playbook",
    OperationKind.rollback: "rollback playbook",
}


# ------------------------------------------------------------------------------------------ run outcomes


@dataclass(frozen=True)
class HostOutcome:
    """What one run did on one host, from its events.

    ``ok`` only when the run's recap shows the host processed, reachable and with no failed task;
    ``failed`` / ``unreachable`` carry Ansible's message and the task; ``missing`` means the run said
    nothing final about the host (not targeted, or the run stopped before its recap).
    """

    host: str
    outcome: HostOutcomeKind
    message: str = ""
    ok: int = 0
    changed: int = 0
    restore_point: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended (ansible-runner's ``status`` and ``rc``) and each of its hosts' outcome."""

    status: str
    """successful, failed, timeout, canceled (ansible-runner's words), or error (the runner itself failed)."""
    rc: int | None
    hosts: Mapping[str, HostOutcome]
    finished_at: float
    error: str = ""
    """Why the run went wrong as a whole: ansible's ERROR line, or the runner's exception."""

    def to_document(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "rc": self.rc,
            "finished_at": self.finished_at,
            "error": self.error,
            "hosts": {
                h.host: {
                    "outcome": h.outcome,
                    "message": h.message,
                    "ok": h.ok,
                    "changed": h.changed,
                    "restore_point": h.restore_point,
                }
                for h in self.hosts.values()
            },
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> RunOutcome:
        hosts = {
            str(name): HostOutcome(
                host=str(name),
                outcome=cast(HostOutcomeKind, str(h["outcome"])),
                message=str(h.get("message") or ""),
                ok=int(h.get("ok") or 0),
                changed=int(h.get("changed") or 0),
                restore_point=str(h["restore_point"]) if h.get("restore_point") is not None else None,
            )
            for name, h in dict(document.get("hosts") or {}).items()
        }
        rc = document.get("rc")
        return cls(
            status=str(document["status"]),
            rc=int(rc) if rc is not None else None,
            hosts=hosts,
            finished_at=float(document["finished_at"]),
            error=str(document.get("error") or ""),
        )


def read_run_outcome(
    events: Iterable[Mapping[str, Any]],
    hosts: Sequence[str],
    *,
    status: str,
    rc: int | None,
    finished_at: float,
    error: str = "",
) -> RunOutcome:
    """Each of ``hosts``' outcome from a run's ansible-runner events (``runner.events``).

    The recap (``playbook_on_stats``) decides: Ansible counts a rescued or ignored failure as no failure
    there, which the per-task events cannot tell. The task events only give the message. Without a recap
    (the run timed out, was cancelled or never got going), a host with a failed or unreachable event
    still fails with it; the others are ``missing``.
    """
    failures: dict[str, str] = {}
    unreachable: dict[str, str] = {}
    restore_points: dict[str, str] = {}
    stats: Mapping[str, Any] | None = None
    for event in events:
        kind = event.get("event")
        data = event.get("event_data") or {}
        host = data.get("host")
        if kind == "playbook_on_stats":
            stats = data
            continue
        if not isinstance(host, str):
            continue
        found = data.get("res")
        result: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            failures[host] = f"task '{data.get('task') or '?'}' failed: {_result_message(result)}"
        elif kind == "runner_on_unreachable":
            unreachable[host] = f"unreachable at task '{data.get('task') or '?'}': {_result_message(result)}"
        elif kind == "runner_on_ok":
            facts = result.get("ansible_facts") if isinstance(result.get("ansible_facts"), Mapping) else {}
            point = facts.get("ringfence_restore_point") if facts else None
            if point is not None and str(point).strip():
                restore_points[host] = str(point).strip()

    outcomes: dict[str, HostOutcome] = {}
    for host in hosts:
        if stats is None:
            if host in unreachable:
                outcomes[host] = HostOutcome(host, "unreachable", unreachable[host])
            elif host in failures:
                outcomes[host] = HostOutcome(host, "failed", failures[host])
            else:
                outcomes[host] = HostOutcome(host, "missing")
            continue
        ok, changed = _count(stats, "ok", host), _count(stats, "changed", host)
        if _count(stats, "dark", host):
            message = unreachable.get(host, "unreachable")
            outcomes[host] = HostOutcome(host, "unreachable", message, ok, changed)
        elif _count(stats, "failures", host):
            message = failures.get(host, "a task failed")
            outcomes[host] = HostOutcome(host, "failed", message, ok, changed)
        elif host in (stats.get("processed") or {}):
            outcomes[host] = HostOutcome(host, "ok", "", ok, changed, restore_points.get(host))
        else:
            outcomes[host] = HostOutcome(host, "missing")
    return RunOutcome(status=status, rc=rc, hosts=outcomes, finished_at=finished_at, error=error)


def _count(stats: Mapping[str, Any], key: str, host: str) -> int:
    found = stats.get(key) or {}
    return int(found.get(host, 0)) if isinstance(found, Mapping) else 0


def _result_message(result: Mapping[str, Any]) -> str:
    """Ansible's message for a failed or unreachable result, on one line, cut to a readable length."""
    parts = []
    msg = result.get("msg")
    if msg:
        parts.append(str(msg))
    stderr = result.get("stderr")
    if stderr and str(stderr).strip() and str(stderr).strip() not in " ".join(parts):
        parts.append(str(stderr).strip())
    if not parts and result.get("rc") is not None:
        parts.append(f"exit status {result.get('rc')}")
    return _shorten(" — ".join(parts) or "no message")


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MESSAGE_LIMIT else flat[: MESSAGE_LIMIT - 1] + "…"


def _inventory_complaint(stderr: str) -> str:
    """What ansible-inventory said was wrong: its error line, and the first parser's reason."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [
        line.removeprefix("[ERROR]:").removeprefix("ERROR!").strip()
        for line in lines
        if line.startswith(("[ERROR]", "ERROR!"))
    ]
    reasons = [
        line.removeprefix("[WARNING]:").strip() for line in lines if line.startswith("[WARNING]: Failed to parse")
    ]
    said = "; ".join([*errors[:1], *reasons[:1]])
    return _shorten(said or " ".join(lines[-3:]))


def _ansible_error_line(stdout: Path) -> str:
    """The first line of a run's output where ansible-playbook says what stopped it (``ERROR!`` or ``[ERROR]``)."""
    try:
        text = stdout.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("ERROR!", "[ERROR]")):
            return _shorten(stripped)
    return ""


# ------------------------------------------------------------------------------------------ the ledger


@dataclass
class _Operation:
    """One (operation, asset) of a rollout: which run carries it and, once known, its result."""

    host: str | None
    status: OperationStatus
    run: str | None
    detail: str = ""
    ref: str | None = None
    finished_at: float | None = None


@dataclass
class _Run:
    """One ansible-runner run of a rollout: its hosts (asset id → host) and its process."""

    name: str
    kind: OperationKind
    assets: dict[str, str]
    started_at: float
    pid: int | None = None
    stop_reason: str | None = None
    """Why ringfence stopped the run, when it did (cancelled, or over its timeout)."""
    settled: bool = False


@dataclass
class _Ledger:
    """What the driver did for one rollout, kept in ``ARTIFACTS/<rollout>/ledger.json``."""

    path: Path
    rollout_id: str
    runs: dict[str, _Run] = field(default_factory=dict)
    operations: dict[OperationKind, dict[str, _Operation]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, rollout_id: str) -> _Ledger:
        if not path.exists():
            return cls(path, rollout_id)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            runs = {
                name: _Run(
                    name=name,
                    kind=OperationKind(r["kind"]),
                    assets={str(a): str(h) for a, h in r["assets"].items()},
                    started_at=float(r["started_at"]),
                    pid=int(r["pid"]) if r.get("pid") is not None else None,
                    stop_reason=r.get("stop_reason"),
                    settled=bool(r.get("settled")),
                )
                for name, r in document.get("runs", {}).items()
            }
            operations = {
                OperationKind(kind): {
                    str(asset): _Operation(
                        host=o.get("host"),
                        status=cast(OperationStatus, o["status"]),
                        run=o.get("run"),
                        detail=str(o.get("detail") or ""),
                        ref=o.get("ref"),
                        finished_at=float(o["finished_at"]) if o.get("finished_at") is not None else None,
                    )
                    for asset, o in entries.items()
                }
                for kind, entries in document.get("operations", {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DriverError(
                f"{path}: the ansible driver's ledger of rollout {rollout_id} cannot be read ({exc}); "
                "it records which hosts were already updated, so ringfence will not guess — restore it or "
                "move the rollout's artifacts directory aside"
            ) from None
        return cls(path, rollout_id, runs, operations)

    def save(self) -> None:
        document = {
            "ledger": 1,
            "rollout": self.rollout_id,
            "runs": {
                name: {
                    "kind": r.kind.value,
                    "assets": r.assets,
                    "started_at": r.started_at,
                    "pid": r.pid,
                    "stop_reason": r.stop_reason,
                    "settled": r.settled,
                }
                for name, r in sorted(self.runs.items())
            },
            "operations": {
                kind.value: {asset: vars(o).copy() for asset, o in sorted(entries.items())}
                for kind, entries in self.operations.items()
            },
        }
        # Atomic: a process killed mid-write leaves the previous ledger whole, never half of one.
        write_text_atomic(self.path, json.dumps(document, indent=1, sort_keys=True) + "\n")

    def operation(self, kind: OperationKind, asset_id: str) -> _Operation | None:
        return self.operations.get(kind, {}).get(asset_id)

    def record(self, kind: OperationKind, asset_id: str, operation: _Operation) -> None:
        self.operations.setdefault(kind, {})[asset_id] = operation

    def next_run_name(self, kind: OperationKind) -> str:
        count = sum(1 for r in self.runs.values() if r.kind is kind)
        return f"{kind.value}-{count + 1:02d}"


# ------------------------------------------------------------------------------------------ the driver


def _option_error(key: str, value: str, expected: str) -> InputError:
    return InputError([Problem(f"ansible driver option {key}={value!r}: {expected}", path=("--driver-option",))])


def _required_file(key: str, value: str | None, what: str) -> Path:
    if value is None or not value.strip():
        problem = Problem(f"the ansible driver needs --driver-option {key}=PATH ({what})", path=("--driver-option",))
        raise InputError([problem])
    return _existing_file(key, value, what)


def _optional_file(key: str, value: str | None, what: str) -> Path | None:
    return _existing_file(key, value, what) if value is not None and value.strip() else None


def _existing_file(key: str, value: str, what: str) -> Path:
    path = Path(value).expanduser().resolve()
    if not path.exists():
        raise _option_error(key, value, f"there is no such file ({what})")
    return path


def _default_artifacts_dir() -> Path:
    from ringfence.store.db import DEFAULT_HOME, HOME_ENV

    home = Path(os.environ.get(HOME_ENV, "").strip() or DEFAULT_HOME).expanduser()
    return (home / "ansible").resolve()


def _safe_name(text: str) -> str:
    return _UNSAFE_PATH_CHARS.sub("-", text).strip("-") or "rollout"


class AnsibleDriver:
    """The entry point ``ansible``: built from string options (see the module docstring)."""

    name = "ansible"

    def __init__(
        self,
        *,
        inventory: str | None = None,
        update_playbook: str | None = None,
        snapshot_playbook: str | None = None,
        rollback_playbook: str | None = None,
        health_playbook: str | None = None,
        artifacts_dir: str | None = None,
        timeout: str = "1h",
        forks: str = "10",
        extravars: str | None = None,
        health_interval: str = "5m",
    ) -> None:
        self.inventory = _required_file("inventory", inventory, "the Ansible inventory")
        self.playbooks: dict[OperationKind, Path] = {
            OperationKind.apply: _required_file("update_playbook", update_playbook, "installs the release")
        }
        snapshot = _optional_file("snapshot_playbook", snapshot_playbook, "takes and verifies a restore point")
        if snapshot is not None:
            self.playbooks[OperationKind.restore_point] = snapshot
        rollback = _optional_file("rollback_playbook", rollback_playbook, "rolls a host back")
        if rollback is not None:
            self.playbooks[OperationKind.rollback] = rollback
        self.health_playbook = _optional_file("health_playbook", health_playbook, "checks a host's health")
        given_dir = (artifacts_dir or "").strip()
        self.artifacts_dir = Path(given_dir).expanduser().resolve() if given_dir else _default_artifacts_dir()
        self.timeout = self._duration("timeout", timeout, minimum=1, maximum=MAX_TIMEOUT_SECONDS)
        self.health_interval = self._duration(
            "health_interval", health_interval, minimum=0, maximum=MAX_HEALTH_INTERVAL_SECONDS
        )
        if not forks.strip().isdigit() or int(forks) < 1:
            raise _option_error("forks", forks, "expected a whole number of at least 1")
        self.forks = int(forks)
        self.extravars = self._extravars(extravars)

        # What this process knows about hosts' operations, for health readings (see observe()).
        self._busy: set[str] = set()
        self._changed_at: dict[str, float] = {}
        """When each host's latest install or rollback ended (a restore point changes nothing to judge)."""
        self._installed_at: dict[str, float] = {}
        self._health: dict[str, tuple[float, HostOutcome]] = {}
        self._health_tried: dict[str, float] = {}
        self._last_health_run: float | None = None
        self._last_batch: Batch | None = None

        self._host_by_asset, self._ambiguous = self._read_inventory()

    # ------------------------------------------------------------------------------------- options

    @staticmethod
    def _duration(key: str, value: str, *, minimum: int, maximum: int) -> int:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise _option_error(key, value, "expected a duration such as 30s, 5m or 1h") from None
        if seconds < minimum:
            raise _option_error(key, value, f"expected at least {minimum}s")
        if seconds > maximum:
            raise _option_error(key, value, f"expected at most {format_duration(maximum)}")
        return seconds

    # ------------------------------------------------------------------------------------- abilities

    def refuses(self, kind: OperationKind, update: Update) -> str | None:
        """Why this driver, with its options, cannot do ``kind``: the playbook it would run is not given."""
        if kind in self.playbooks or kind not in _MISSING_PLAYBOOK:
            return None
        return f"{_MISSING_PLAYBOOK[kind]}: {_GIVE_PLAYBOOK[kind]}"

    @staticmethod
    def _extravars(text: str | None) -> dict[str, Any]:
        if text is None or not text.strip():
            return {}
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _option_error("extravars", text, f"is not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(document, dict):
            raise _option_error("extravars", text, "expected a JSON object of variables")
        reserved = sorted(k for k in document if str(k).startswith("ringfence_"))
        if reserved:
            raise _option_error(
                "extravars", text, f"ringfence sets the ringfence_* variables itself ({', '.join(reserved)})"
            )
        return {str(k): v for k, v in document.items()}

    # ------------------------------------------------------------------------------------- hosts

    def host_of(self, asset_id: str) -> str | None:
        """The inventory hostname the asset ``asset_id`` is, or None when no host (or more than one) is."""
        if asset_id in self._ambiguous:
            return None
        return self._host_by_asset.get(asset_id)

    def _read_inventory(self) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
        """Every inventory host by asset id, read by ``ansible-inventory`` as the runs will read it."""
        command = [self._tool("ansible-inventory"), "-i", str(self.inventory), "--list"]
        try:
            done = subprocess.run(
                command,
                env=self._environment(),
                cwd=self.inventory.parent,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INVENTORY_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InputError(
                [
                    Problem(
                        f"ansible-inventory took more than {INVENTORY_TIMEOUT_SECONDS}s to read the inventory",
                        source=str(self.inventory),
                    )
                ]
            ) from None
        except OSError as exc:
            raise DriverError(f"ansible-inventory could not be started ({exc}); is ansible-core installed?") from None
        try:
            document = json.loads(done.stdout) if done.returncode == 0 else None
        except json.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            tail = _inventory_complaint(done.stderr) or f"exit status {done.returncode}"
            raise InputError(
                [Problem(f"ansible-inventory could not read the inventory: {tail}", source=str(self.inventory))]
            )
        names: list[str] = list((document.get("_meta") or {}).get("hostvars") or {})
        for group, body in document.items():
            if group != "_meta" and isinstance(body, dict):
                names.extend(str(h) for h in body.get("hosts") or ())
        if not names:
            raise InputError(
                [
                    Problem(
                        "the inventory lists no hosts, so no playbook could reach any asset", source=str(self.inventory)
                    )
                ]
            )
        by_id: dict[str, set[str]] = {}
        for name in names:
            by_id.setdefault(asset_id_for_host(name) or name, set()).add(name)
        hosts = {asset: next(iter(found)) for asset, found in by_id.items() if len(found) == 1}
        ambiguous = {asset: tuple(sorted(found)) for asset, found in by_id.items() if len(found) > 1}
        return hosts, ambiguous

    def _unmatched(self, asset_id: str) -> str:
        if asset_id in self._ambiguous:
            both = " and ".join(f"'{h}'" for h in self._ambiguous[asset_id])
            return f"asset '{asset_id}' matches hosts {both} of the inventory {self.inventory}; rename one of them"
        return f"asset '{asset_id}' is not a host of the inventory {self.inventory}, so no playbook can reach it"

    # ------------------------------------------------------------------------------------- environment

    @staticmethod
    def _tool(name: str) -> str:
        beside = Path(sys.executable).with_name(name)
        return str(beside) if beside.exists() else name

    def _environment(self) -> dict[str, str]:
        """The environment of every ansible process (see the module docstring)."""
        env = dict(os.environ)
        home = self.artifacts_dir / ".ansible"
        user_home = Path(os.environ.get("ANSIBLE_HOME", "~/.ansible")).expanduser()
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(p for p in (bin_dir, os.environ.get("PATH", "")) if p)
        # Collections and roles the team installed under ~/.ansible stay visible with ANSIBLE_HOME moved.
        env.setdefault(
            "ANSIBLE_COLLECTIONS_PATH",
            os.pathsep.join((str(user_home / "collections"), "/usr/share/ansible/collections")),
        )
        env.setdefault(
            "ANSIBLE_ROLES_PATH",
            os.pathsep.join((str(user_home / "roles"), "/usr/share/ansible/roles", "/etc/ansible/roles")),
        )
        env.update(
            {
                "ANSIBLE_HOME": str(home),
                "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
                # Unattended: a prompt would wait for nobody until the run's timeout.
                "ANSIBLE_HOST_KEY_CHECKING": "False",
                "ANSIBLE_ASK_PASS": "False",
                "ANSIBLE_BECOME_ASK_PASS": "False",
                "ANSIBLE_RETRY_FILES_ENABLED": "False",
                "ANSIBLE_NOCOLOR": "True",
                "ANSIBLE_FORCE_COLOR": "False",
                # An inventory Ansible cannot parse is an error, not a warning and a run against no hosts.
                "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
            }
        )
        package_root = str(Path(ringfence.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        return env

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
                    _Operation(None, "failed", None, self._unmatched(asset_id), finished_at=time.time()),
                )
                changed = True
                continue
            to_run[asset_id] = host
        if to_run:
            run = _Run(ledger.next_run_name(batch.kind), batch.kind, to_run, started_at=time.time())
            ledger.runs[run.name] = run
            for asset_id, host in to_run.items():
                ledger.record(batch.kind, asset_id, _Operation(host, "running", run.name))
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
        raise DriverError(_MISSING_PLAYBOOK.get(kind, f"the ansible driver has no {_PLAYBOOK_WORDS[kind]}"))

    def _rollout_dir(self, rollout_id: str) -> Path:
        return self.artifacts_dir / _safe_name(rollout_id)

    def _ledger(self, rollout_id: str) -> _Ledger:
        return _Ledger.load(self._rollout_dir(rollout_id) / LEDGER_FILE, rollout_id)

    def _run_dir(self, ledger: _Ledger, run: _Run) -> Path:
        return ledger.path.parent / run.name

    def _extra_variables(self, batch: Batch | None, operation: str, ledger: _Ledger | None) -> dict[str, Any]:
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

    def _launch_recorded(self, ledger: _Ledger, run: _Run, playbook: Path, batch: Batch | None) -> None:
        run_dir = self._run_dir(ledger, run)
        run.pid = self._launch(
            run_dir,
            playbook,
            run.assets.values(),
            self._extra_variables(batch, run.kind.value, ledger),
        )

    def _launch(self, run_dir: Path, playbook: Path, hosts: Iterable[str], variables: Mapping[str, Any]) -> int:
        """Start one detached ansible-runner run in ``run_dir``; its process id."""
        host_list = sorted(set(hosts))
        run_dir.mkdir(parents=True, exist_ok=True)
        # The limit goes through a file: thousands of names would not fit on a command line.
        limit_file = run_dir / "limit"
        write_text_atomic(limit_file, "".join(f"{h}\n" for h in host_list))
        spec = {
            "run_dir": str(run_dir),
            "playbook": str(playbook),
            "inventory": str(self.inventory),
            "limit": f"@{limit_file}",
            "hosts": host_list,
            "extravars": dict(variables),
            "forks": self.forks,
            "timeout": self.timeout,
            "cwd": str(playbook.parent),
            "envvars": {k: v for k, v in self._environment().items() if k.startswith("ANSIBLE_") or k == "PATH"},
        }
        spec_file = run_dir / SPEC_FILE
        write_text_atomic(spec_file, json.dumps(spec, indent=1))
        (run_dir / PID_FILE).unlink(missing_ok=True)
        with (run_dir / CHILD_LOG).open("ab") as log:
            try:
                # The child forks the run into a session of its own and exits once the run has written
                # its pid: the run outlives this process, and nothing is left for us to reap.
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        "from ringfence.drivers.ansible import _run_main; _run_main()",
                        str(spec_file),
                    ],
                    env=self._environment(),
                    cwd=run_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    timeout=LAUNCH_TIMEOUT_SECONDS,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise DriverError(f"the ansible run in {run_dir} could not be started ({exc})") from None
        pid = _read_pid(run_dir)
        if pid is None:
            raise DriverError(f"the ansible run in {run_dir} did not start; see {run_dir / CHILD_LOG}")
        return pid

    def _pid(self, ledger: _Ledger, run: _Run) -> int | None:
        return run.pid if run.pid is not None else _read_pid(self._run_dir(ledger, run))

    def _is_running(self, ledger: _Ledger, run: _Run) -> bool:
        pid = self._pid(ledger, run)
        return pid is not None and _process_running(pid, str(self._run_dir(ledger, run) / SPEC_FILE))

    def _stop(self, ledger: _Ledger, run: _Run) -> bool:
        """Ask a run to stop (ansible-runner then kills the play and records it); whether it was running."""
        pid = self._pid(ledger, run)
        if pid is None or not self._is_running(ledger, run):
            return False
        return _terminate(pid)

    def _settle(self, ledger: _Ledger, run: _Run, batch: Batch) -> bool:
        """Turn a finished run into its hosts' results in ``ledger``; whether the ledger changed."""
        if run.settled:
            return False
        run_dir = self._run_dir(ledger, run)
        outcome = _read_outcome(run_dir)
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
                    _terminate(pid, signal.SIGKILL)
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
                _Operation(host, status, run.name, f"{detail} (artifacts: {run_dir})", ref, finished),
            )
            self._busy.discard(asset_id)
            if run.kind is not OperationKind.restore_point:
                self._changed_at[asset_id] = max(finished, self._changed_at.get(asset_id, 0.0))
            if run.kind is OperationKind.apply and status == "succeeded":
                self._installed_at[asset_id] = finished
        run.settled = True
        return True

    def _result(
        self, ledger: _Ledger, run: _Run, outcome: RunOutcome | None, host: str
    ) -> tuple[OperationStatus, str, str | None]:
        """One host's result of a finished run, as a status, a sentence and a restore point reference."""
        playbook = self.playbooks[run.kind].name if run.kind in self.playbooks else _PLAYBOOK_WORDS[run.kind]
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
        outcome = _read_outcome(run_dir)
        while outcome is None and _process_running(pid, marker):
            if time.monotonic() > deadline:
                _terminate(pid)
                break
            time.sleep(0.1)
            outcome = _read_outcome(run_dir)
        _prune(root, keep=HEALTH_RUNS_KEPT)
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


# ------------------------------------------------------------------------------------------ processes


def _read_pid(run_dir: Path) -> int | None:
    try:
        return int(json.loads((run_dir / PID_FILE).read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_outcome(run_dir: Path) -> RunOutcome | None:
    try:
        return RunOutcome.from_document(json.loads((run_dir / OUTCOME_FILE).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DriverError(f"{run_dir / OUTCOME_FILE}: the outcome of this ansible run cannot be read ({exc})") from None


def _process_running(pid: int, marker: str) -> bool:
    """Whether ``pid`` is a live process whose command line holds ``marker`` (a reused pid is not ours)."""
    proc = Path("/proc")
    if (proc / "self").exists():
        try:
            stat = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
            cmdline = (proc / str(pid) / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        # An exited process nobody has reaped yet (a zombie) is not running.
        state = stat.rsplit(")", 1)[-1].split()[:1]
        return state not in (["Z"], ["X"]) and marker in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pid: int, how: signal.Signals = signal.SIGTERM) -> bool:
    """SIGTERM to the run's session (it leads its own): ansible-runner cancels the play and records it.

    ``how=SIGKILL`` for a run that did not stop when asked: it is gone at once, recording nothing.
    """
    try:
        os.killpg(pid, how)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _prune(root: Path, *, keep: int) -> None:
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name) if root.exists() else []
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------ the run process
# Everything below runs in the process started by AnsibleDriver._launch; only there is ansible_runner imported.


def _run_main() -> None:
    """Entry point of a run: fork into a session of its own, record its pid, run the playbook, write the outcome."""
    spec_file = Path(sys.argv[1])
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    run_dir = Path(spec["run_dir"])
    ready, told = os.pipe()
    if os.fork():
        # The launcher: leave once the run has recorded its pid, so the driver can read it at once.
        os.close(told)
        confirmed = os.read(ready, 1)
        os._exit(0 if confirmed else 1)
    os.close(ready)
    os.setsid()
    # Installed before the pid is known, so no cancel request can come before we listen for one.
    cancelled = threading.Event()
    signal.signal(signal.SIGTERM, lambda _number, _frame: cancelled.set())
    write_text_atomic(run_dir / PID_FILE, json.dumps({"pid": os.getpid()}))
    os.write(told, b"1")
    os.close(told)
    outcome = _run_playbook(spec, run_dir, cancelled)
    write_text_atomic(run_dir / OUTCOME_FILE, json.dumps(outcome.to_document(), indent=1))


def _run_playbook(spec: Mapping[str, Any], run_dir: Path, cancelled: threading.Event) -> RunOutcome:
    hosts = [str(h) for h in spec["hosts"]]
    missing = {h: HostOutcome(h, "missing") for h in hosts}
    try:
        import ansible_runner

        if cancelled.is_set():
            return RunOutcome("canceled", None, missing, time.time())

        # ansible-runner reads its settings from env/settings only (a settings= argument is dropped when
        # that file is missing): look for a cancel request every second rather than every five.
        write_text_atomic(run_dir / "env" / "settings", "pexpect_timeout: 1\nsuppress_ansible_output: true\n")
        runner = ansible_runner.run(
            private_data_dir=str(run_dir),
            artifact_dir=str(run_dir.parent),
            ident=run_dir.name,
            playbook=spec["playbook"],
            inventory=spec["inventory"],
            limit=spec["limit"],
            extravars=spec["extravars"],
            forks=int(spec["forks"]),
            timeout=int(spec["timeout"]),
            envvars=spec["envvars"],
            host_cwd=spec["cwd"],
            quiet=True,
            suppress_env_files=True,
            cancel_callback=cancelled.is_set,
        )
        status, rc = str(runner.status), runner.rc
        error = "" if status == "successful" else _ansible_error_line(run_dir / "stdout")
        return read_run_outcome(runner.events, hosts, status=status, rc=rc, finished_at=time.time(), error=error)
    except Exception as exc:  # the run's process must always leave an outcome behind
        return RunOutcome("error", None, missing, time.time(), _shorten(f"{type(exc).__name__}: {exc}"))
