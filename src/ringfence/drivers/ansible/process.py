"""Runs as detached processes: launching one, finding out whether it still runs, stopping it, and the run
process itself.

A run is a detached process (``ansible_runner.run`` in its own session), so ``start`` returns at once and a
controller killed mid-play does not kill the play. Its directory holds ansible-runner's artifacts and the
run's outcome (:data:`OUTCOME_FILE`), written when the run ends. Only the run process imports
``ansible_runner``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ringfence.core.errors import DriverError
from ringfence.drivers.ansible.events import HostOutcome, RunOutcome, ansible_error_line, read_run_outcome, shorten
from ringfence.files.disk import write_text_atomic

SPEC_FILE = "ringfence-run.json"
PID_FILE = "ringfence-pid.json"
OUTCOME_FILE = "ringfence-outcome.json"
CHILD_LOG = "ringfence-child.log"
LAUNCH_TIMEOUT_SECONDS = 60


def launch(
    run_dir: Path,
    playbook: Path,
    hosts: Iterable[str],
    variables: Mapping[str, Any],
    *,
    inventory: Path,
    forks: int,
    timeout: int,
    environment: Mapping[str, str],
) -> int:
    """Start one detached ansible-runner run in ``run_dir``; its process id."""
    host_list = sorted(set(hosts))
    run_dir.mkdir(parents=True, exist_ok=True)
    # The limit goes through a file: thousands of names would not fit on a command line.
    limit_file = run_dir / "limit"
    write_text_atomic(limit_file, "".join(f"{h}\n" for h in host_list))
    spec = {
        "run_dir": str(run_dir),
        "playbook": str(playbook),
        "inventory": str(inventory),
        "limit": f"@{limit_file}",
        "hosts": host_list,
        "extravars": dict(variables),
        "forks": forks,
        "timeout": timeout,
        "cwd": str(playbook.parent),
        "envvars": {k: v for k, v in environment.items() if k.startswith("ANSIBLE_") or k == "PATH"},
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
                    "from ringfence.drivers.ansible.process import run_main; run_main()",
                    str(spec_file),
                ],
                env=dict(environment),
                cwd=run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=LAUNCH_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DriverError(f"the ansible run in {run_dir} could not be started ({exc})") from None
    pid = read_pid(run_dir)
    if pid is None:
        raise DriverError(f"the ansible run in {run_dir} did not start; see {run_dir / CHILD_LOG}")
    return pid


def read_pid(run_dir: Path) -> int | None:
    try:
        return int(json.loads((run_dir / PID_FILE).read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_outcome(run_dir: Path) -> RunOutcome | None:
    try:
        return RunOutcome.from_document(json.loads((run_dir / OUTCOME_FILE).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DriverError(f"{run_dir / OUTCOME_FILE}: the outcome of this ansible run cannot be read ({exc})") from None


def process_running(pid: int, marker: str) -> bool:
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


def terminate(pid: int, how: signal.Signals = signal.SIGTERM) -> bool:
    """SIGTERM to the run's session (it leads its own): ansible-runner cancels the play and records it.

    ``how=SIGKILL`` for a run that did not stop when asked: it is gone at once, recording nothing.
    """
    try:
        os.killpg(pid, how)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def prune(root: Path, *, keep: int) -> None:
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name) if root.exists() else []
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------ the run process
# Everything below runs in the process started by launch(); only there is ansible_runner imported.


def run_main() -> None:
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
        error = "" if status == "successful" else ansible_error_line(run_dir / "stdout")
        return read_run_outcome(runner.events, hosts, status=status, rc=rc, finished_at=time.time(), error=error)
    except Exception as exc:  # the run's process must always leave an outcome behind
        return RunOutcome("error", None, missing, time.time(), shorten(f"{type(exc).__name__}: {exc}"))


__all__ = [
    "CHILD_LOG",
    "LAUNCH_TIMEOUT_SECONDS",
    "OUTCOME_FILE",
    "PID_FILE",
    "SPEC_FILE",
    "launch",
    "process_running",
    "prune",
    "read_outcome",
    "read_pid",
    "run_main",
    "terminate",
]
