"""The same faulty update through plain ``ansible-playbook`` in serial batches, and through ringfence.

The fleet is the one the end-to-end tests use (``tests/drivers/ansible_fixtures``): N local hosts (default
51) of three hardware models, each a directory holding its installed version, its health and a journal of
what was done to it. The release installs cleanly everywhere — the install task *succeeds* — but breaks
the health of every host of one model. That is the honest case for a plain play: Ansible fails a host only
when one of its tasks fails, so a host that breaks silently is invisible to ``serial`` batches and to
``max_fail_percentage``.

Strategies, each on a fresh copy of the fleet:

1. ``ansible-playbook`` with ``serial: [1, "10%", "100%"]`` and ``max_fail_percentage: 0`` running the
   update tasks, as the issue states it;
2. the same play with a health-check task after the update (what a careful team adds): now a broken host
   fails a task and the play stops after that batch — with no rollback;
3. ringfence: the real controller (SQLite store) with the ``ansible`` driver and the team's update,
   snapshot, rollback and health playbooks; rings ``[1, "10%", "100%"]`` after a canary per model.

Measured from the hosts' journals, not from any tool's report: hosts **exposed** (the release was installed
on them at some moment), hosts **broken** (their health broke at some moment), hosts **still broken** at the
end, hosts **rolled back**, and the wall time. No targets: this is a comparison, not a performance claim.

    .venv/bin/python bench/ansible_baseline.py [--hosts 51] [--forks 20] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from drivers.ansible_fixtures import (  # noqa: E402  (the fixtures live with the tests)
    BROKEN_MODEL,
    HEALTH,
    RELEASE,
    ROLLBACK,
    SNAPSHOT,
    UPDATE,
    UPDATE_TASKS,
    Fleet,
    build_fleet,
)

NAME = "ansible_baseline"
SERIAL = '[1, "10%", "100%"]'

PLAIN_PLAY = """\
# The faulty update as a team runs it without ringfence: serial batches, stop at the first failed host.
- name: Install the release in serial batches
  hosts: all
  gather_facts: false
  serial: {serial}
  max_fail_percentage: 0
  vars:
    host_dir: "{{{{ fleet_root }}}}/hosts/{{{{ inventory_hostname }}}}"
  tasks:
    - name: Install and load the release
      ansible.builtin.import_tasks: {tasks}
{health}"""

HEALTH_TASK = """\
    # What a careful team adds: check the service after the update, so a broken host fails the play.
    - name: The ward application's service answers
      ansible.builtin.raw: "grep -qx ok {{ (host_dir ~ '/health') | quote }}"
"""

UPDATE_FILE = f"""\
apiVersion: ringfence/v1
update:
  id: ward-agent-7.16
  product: acme/ward-agent
  version: "{RELEASE}"
  targets: "attrs.group.workstations=true"
  strata: [attrs.model]
  rings: {SERIAL}
  bake: 2s
  rollback: snapshot
"""


@dataclass(frozen=True)
class Outcome:
    strategy: str
    exposed: int
    broken: int
    still_broken: int
    rolled_back: int
    seconds: float
    note: str


def count(fleet: Fleet, strategy: str, seconds: float, note: str) -> Outcome:
    rolled = sum(1 for h in fleet.hosts if "rolled back" in fleet.journal(h))
    return Outcome(strategy, len(fleet.exposed()), len(fleet.ever_broken()), len(fleet.broken()), rolled, seconds, note)


def ansible_environment(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env.update(
        {
            "ANSIBLE_HOME": str(workdir / ".ansible"),
            "ANSIBLE_LOCAL_TEMP": str(workdir / ".ansible" / "tmp"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "True",
        }
    )
    return env


def plain_serial(workdir: Path, hosts: int, forks: int, *, with_health_check: bool) -> Outcome:
    name = "serial-health" if with_health_check else "serial"
    fleet = build_fleet(workdir / name, hosts)
    play = workdir / name / "plain-update.yml"
    play.write_text(
        PLAIN_PLAY.format(serial=SERIAL, tasks=UPDATE_TASKS, health=HEALTH_TASK if with_health_check else "")
    )
    variables = json.dumps({"ringfence_version": RELEASE, "broken_model": BROKEN_MODEL})
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        *("-i", str(fleet.inventory), "-e", variables, "--forks", str(forks), str(play)),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, env=ansible_environment(workdir), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    (workdir / name / "ansible-playbook.log").write_text(done.stdout + done.stderr)
    stopped = "the play stopped after a batch with a failed host" if done.returncode else "the play completed"
    label = "ansible-playbook, serial, max_fail_percentage 0" + (" + health task" if with_health_check else "")
    return count(fleet, label, seconds, f"exit status {done.returncode}: {stopped}; nothing rolled back")


def ringfence_rollout(workdir: Path, hosts: int, forks: int) -> Outcome:
    from ringfence.core.driver import load_driver
    from ringfence.files.disk import write_document
    from ringfence.files.importers.ansible import import_ansible_inventory
    from ringfence.service import rollouts
    from ringfence.store.db import make_engine, upgrade

    fleet = build_fleet(workdir / "ringfence", hosts)
    estate = workdir / "ringfence" / "estate.yaml"
    write_document(import_ansible_inventory(fleet.inventory), estate)
    engine = make_engine(f"sqlite:///{workdir / 'ringfence' / 'ringfence.db'}")
    upgrade(engine)

    def now() -> datetime:
        return datetime.now(UTC)

    start = time.perf_counter()
    created = rollouts.create_rollout(
        engine,
        estate_text=estate.read_text(),
        estate_source=str(estate),
        update_text=UPDATE_FILE,
        update_source="ward-agent-7.16.yaml",
        actor="bench",
        at=now(),
        driver="ansible",
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    driver = load_driver(
        "ansible",
        inventory=str(fleet.inventory),
        update_playbook=str(UPDATE),
        snapshot_playbook=str(SNAPSHOT),
        rollback_playbook=str(ROLLBACK),
        health_playbook=str(HEALTH),
        artifacts_dir=str(workdir / "ringfence" / "artifacts"),
        forks=str(forks),
        timeout="10m",
        health_interval="10m",
        extravars=json.dumps({"broken_model": BROKEN_MODEL}),
    )
    rollouts.start(engine, rollout_id, actor="bench", at=now())
    controller = rollouts.controller(engine, driver, now)
    report = controller.run_until_settled(rollout_id, wait_until=lambda _at: time.sleep(0.2))
    seconds = time.perf_counter() - start
    state = rollouts.status(engine, rollout_id).rollout.state
    engine.dispose()
    note = f"rollout {report.phase.value}; halted at ring {state.ring}: {state.halt_reason or '-'}"
    return count(fleet, "ringfence (ansible driver), canary per model", seconds, note)


def show(outcomes: list[Outcome], hosts: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"The same faulty update on {hosts} hosts ({hosts // 3} of model {BROKEN_MODEL} break)",
        title_justify="left",
    )
    for column in ("strategy", "exposed", "broken", "still broken", "rolled back", "time"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    table.add_column("note", overflow="fold")
    for o in outcomes:
        table.add_row(
            o.strategy,
            str(o.exposed),
            str(o.broken),
            str(o.still_broken),
            str(o.rolled_back),
            f"{o.seconds:.0f} s",
            o.note,
        )
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(table)


def save(outcomes: list[Outcome], hosts: int, forks: int) -> Path:
    document: Mapping[str, Any] = {
        "benchmark": NAME,
        "title": "Faulty update: plain ansible-playbook serial batches against ringfence",
        "hosts": hosts,
        "forks": forks,
        "broken_model": BROKEN_MODEL,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": common.machine(),
        "strategies": [asdict(o) for o in outcomes],
    }
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = common.RESULTS_DIR / f"{NAME}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=51, help="fleet size (default 51)")
    parser.add_argument("--forks", type=int, default=20, help="Ansible forks (default 20)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the fleets here (default: a temp dir)")
    args = parser.parse_args()
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        raise SystemExit(f"{args.workdir} is not empty; each run needs fresh fleets")
    with common.work_directory(args.workdir) as workdir:
        outcomes = []
        for label, run in (
            ("plain serial play", lambda: plain_serial(workdir, args.hosts, args.forks, with_health_check=False)),
            (
                "serial play + health task",
                lambda: plain_serial(workdir, args.hosts, args.forks, with_health_check=True),
            ),
            ("ringfence", lambda: ringfence_rollout(workdir, args.hosts, args.forks)),
        ):
            common.log(f"running: {label}…")
            outcomes.append(run())
    show(outcomes, args.hosts)
    path = save(outcomes, args.hosts, args.forks)
    print(f"results: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
