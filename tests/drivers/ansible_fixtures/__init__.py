"""A fleet of local "hosts" for real Ansible runs: each host is a directory, reached with ``ansible_connection=local``.

``hosts/<inventory name>/`` holds ``version`` (what is installed) and ``health`` (``ok`` or ``broken``); the
playbooks beside this file install, snapshot, roll back and check them, and append what they did to the
host's ``journal`` (``installed 7.16.0``, ``broken``, ``rolled back``). Every host has the host variable
``model`` (one of three hardware models, round-robin); hosts marked with a storage fault have
``storage_fault=true``, on which ``snapshot.yml`` produces a copy that fails its verification. Hosts marked
unreachable are reached over SSH at a closed port of 127.0.0.1 instead, so every play finds them unreachable.

Inventory names are upper case (``WARD1-PC000``), so the asset ids ``ringfence import ansible`` makes from
them (``ward1-pc000``) differ: the driver has to map them back.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PLAYBOOKS = Path(__file__).resolve().parent
UPDATE = PLAYBOOKS / "update.yml"
UPDATE_TASKS = PLAYBOOKS / "update-tasks.yml"
SNAPSHOT = PLAYBOOKS / "snapshot.yml"
ROLLBACK = PLAYBOOKS / "rollback.yml"
HEALTH = PLAYBOOKS / "health.yml"
SLOW = PLAYBOOKS / "slow.yml"

MODELS = ("optiplex-7010", "elitedesk-800-g6", "thinkcentre-m70q")
BROKEN_MODEL = "elitedesk-800-g6"
"""The model whose hosts the release breaks (passed to update.yml as the extra variable ``broken_model``)."""
INSTALLED = "7.15.0"
RELEASE = "7.16.0"


@dataclass(frozen=True)
class Fleet:
    root: Path
    inventory: Path
    models: Mapping[str, str]
    """Inventory hostname → hardware model, in inventory order."""

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(self.models)

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    def version(self, host: str) -> str:
        return (self.host_dir(host) / "version").read_text().strip()

    def health(self, host: str) -> str:
        return (self.host_dir(host) / "health").read_text().strip()

    def has_snapshot(self, host: str) -> bool:
        return (self.host_dir(host) / "snapshot").exists()

    def of_model(self, model: str) -> tuple[str, ...]:
        return tuple(h for h, m in self.models.items() if m == model)

    def journal(self, host: str) -> list[str]:
        path = self.host_dir(host) / "journal"
        return path.read_text().splitlines() if path.exists() else []

    def exposed(self) -> tuple[str, ...]:
        """Hosts the release was installed on, at any moment."""
        return tuple(h for h in self.hosts if any(line.startswith("installed ") for line in self.journal(h)))

    def ever_broken(self) -> tuple[str, ...]:
        return tuple(h for h in self.hosts if "broken" in self.journal(h))

    def updated(self) -> tuple[str, ...]:
        """Hosts whose installed version is no longer the one they started with."""
        return tuple(h for h in self.hosts if self.version(h) != INSTALLED)

    def broken(self) -> tuple[str, ...]:
        return tuple(h for h in self.hosts if self.health(h) != "ok")


def host_name(index: int) -> str:
    return f"WARD{index % 4 + 1}-PC{index:03d}"


UNREACHABLE_VARS = "ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=9 ansible_user=nobody"
"""Port 9 (discard) is closed on a machine that runs no such service: the connection is refused at once."""


def build_fleet(
    root: Path, count: int = 51, *, storage_faults: Iterable[str] = (), unreachable: Iterable[str] = ()
) -> Fleet:
    """``count`` hosts under ``root``, each with version INSTALLED and health ok, and their inventory."""
    faulty = set(storage_faults)
    gone = set(unreachable)
    models: dict[str, str] = {}
    lines = ["[workstations]"]
    for index in range(count):
        name = host_name(index)
        model = MODELS[index % len(MODELS)]
        models[name] = model
        directory = root / "hosts" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "version").write_text(f"{INSTALLED}\n")
        (directory / "health").write_text("ok\n")
        extra = " storage_fault=true" if name in faulty else ""
        extra += f" {UNREACHABLE_VARS}" if name in gone else ""
        lines.append(f"{name} model={model}{extra}")
    unknown = (faulty | gone) - set(models)
    if unknown:
        raise ValueError(f"faults on hosts the fleet does not have: {sorted(unknown)}")
    lines += [
        "",
        "[workstations:vars]",
        "ansible_connection=local",
        # The interpreter running the tests: no interpreter discovery, no warnings about it.
        f"ansible_python_interpreter={sys.executable}",
        f"fleet_root={root}",
        "",
    ]
    inventory = root / "inventory.ini"
    inventory.write_text("\n".join(lines))
    return Fleet(root=root, inventory=inventory, models=models)
