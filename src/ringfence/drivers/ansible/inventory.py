"""Hosts and the environment of every ansible process.

An asset is the inventory host whose name, sanitized as ``ringfence import ansible`` does it
(:func:`~ringfence.files.importers.ansible.asset_id_for_host`), is the asset's id; the inventory is read
once, with ``ansible-inventory``, when the driver is built, in the environment the runs get
(:func:`ansible_environment`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ringfence
from ringfence.core.errors import DriverError, InputError, Problem
from ringfence.drivers.ansible.events import inventory_complaint
from ringfence.files.importers.ansible import asset_id_for_host

INVENTORY_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Inventory:
    """The inventory's hosts by asset id; an asset id two hosts sanitize to matches neither."""

    path: Path
    hosts: Mapping[str, str]
    ambiguous: Mapping[str, tuple[str, ...]]

    def host_of(self, asset_id: str) -> str | None:
        """The inventory hostname the asset ``asset_id`` is, or None when no host (or more than one) is."""
        if asset_id in self.ambiguous:
            return None
        return self.hosts.get(asset_id)

    def unmatched(self, asset_id: str) -> str:
        """Why no playbook can reach ``asset_id``, in a sentence."""
        if asset_id in self.ambiguous:
            both = " and ".join(f"'{h}'" for h in self.ambiguous[asset_id])
            return f"asset '{asset_id}' matches hosts {both} of the inventory {self.path}; rename one of them"
        return f"asset '{asset_id}' is not a host of the inventory {self.path}, so no playbook can reach it"


def read_inventory(inventory: Path, environment: Mapping[str, str]) -> Inventory:
    """Every inventory host by asset id, read by ``ansible-inventory`` as the runs will read it."""
    command = [tool("ansible-inventory"), "-i", str(inventory), "--list"]
    try:
        done = subprocess.run(
            command,
            env=dict(environment),
            cwd=inventory.parent,
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
                    source=str(inventory),
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
        tail = inventory_complaint(done.stderr) or f"exit status {done.returncode}"
        raise InputError([Problem(f"ansible-inventory could not read the inventory: {tail}", source=str(inventory))])
    names: list[str] = list((document.get("_meta") or {}).get("hostvars") or {})
    for group, body in document.items():
        if group != "_meta" and isinstance(body, dict):
            names.extend(str(h) for h in body.get("hosts") or ())
    if not names:
        raise InputError(
            [Problem("the inventory lists no hosts, so no playbook could reach any asset", source=str(inventory))]
        )
    by_id: dict[str, set[str]] = {}
    for name in names:
        by_id.setdefault(asset_id_for_host(name) or name, set()).add(name)
    hosts = {asset: next(iter(found)) for asset, found in by_id.items() if len(found) == 1}
    ambiguous = {asset: tuple(sorted(found)) for asset, found in by_id.items() if len(found) > 1}
    return Inventory(inventory, hosts, ambiguous)


def tool(name: str) -> str:
    """An Ansible command of the same installation as this interpreter, when there is one."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def ansible_environment(artifacts_dir: Path) -> dict[str, str]:
    """The environment of every ansible process (see the package docstring)."""
    env = dict(os.environ)
    home = artifacts_dir / ".ansible"
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


__all__ = ["INVENTORY_TIMEOUT_SECONDS", "Inventory", "ansible_environment", "read_inventory", "tool"]
