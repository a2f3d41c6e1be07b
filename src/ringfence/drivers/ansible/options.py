"""The ``ansible`` driver's options, declared once (:data:`OPTIONS`), and what they settle (:class:`Settings`).

A playbook named by an option must exist; ``extravars`` is a JSON object that leaves the ``ringfence_*``
variables to ringfence. What the driver cannot do without a playbook is said here too, as the sentences a
refused rollout shows.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringfence.core.driver import DriverOption, DriverOptions, OperationKind, ReadOptions
from ringfence.core.errors import InputError, Problem

MAX_TIMEOUT_SECONDS = 7 * 86400
MAX_HEALTH_INTERVAL_SECONDS = 86400

OPTIONS = DriverOptions(
    "ansible",
    (
        DriverOption("inventory", "the Ansible inventory", "path", required=True),
        DriverOption("update_playbook", "installs the release", "path", required=True),
        DriverOption("snapshot_playbook", "takes and verifies a restore point", "path"),
        DriverOption("rollback_playbook", "rolls a host back", "path"),
        DriverOption("health_playbook", "checks a host's health", "path"),
        DriverOption(
            "artifacts_dir", "where runs keep their artifacts and the ledger ($RINGFENCE_HOME/ansible)", "path"
        ),
        DriverOption(
            "timeout", "longest one run may take", "duration", default="1h", minimum=1, maximum=MAX_TIMEOUT_SECONDS
        ),
        DriverOption("forks", "Ansible's parallelism", "whole", default="10", minimum=1),
        DriverOption("extravars", "a JSON object of extra variables for every run"),
        DriverOption(
            "health_interval",
            "longest a health reading is reused",
            "duration",
            default="5m",
            minimum=0,
            maximum=MAX_HEALTH_INTERVAL_SECONDS,
        ),
    ),
)
"""The options of the ``ansible`` driver (the table in the package docstring)."""

HEALTH_OPTIONS = DriverOptions(
    "ansible health",
    (
        DriverOption("inventory", "the Ansible inventory", "path", required=True),
        DriverOption("health_playbook", "checks a host's health", "path", required=True),
        *(o for o in OPTIONS if o.name in ("artifacts_dir", "timeout", "forks", "extravars", "health_interval")),
    ),
)
"""The options of the ``ansible`` health source: the health playbook alone, whatever installs."""

NO_SNAPSHOT_PLAYBOOK = "the ansible driver has no snapshot playbook configured, so it cannot take restore points"
NO_ROLLBACK_PLAYBOOK = "the ansible driver has no rollback playbook configured, so it cannot roll back"
MISSING_PLAYBOOK = {OperationKind.restore_point: NO_SNAPSHOT_PLAYBOOK, OperationKind.rollback: NO_ROLLBACK_PLAYBOOK}
# What to do about it, said when a rollout is refused before it starts.
GIVE_PLAYBOOK = {
    OperationKind.restore_point: "give --driver-option snapshot_playbook=PATH, or use rollback: reinstall",
    OperationKind.rollback: (
        "give --driver-option rollback_playbook=PATH (rollback: snapshot and rollback: reinstall both roll back "
        "through it)"
    ),
}
PLAYBOOK_WORDS = {
    OperationKind.restore_point: "snapshot playbook",
    OperationKind.apply: "update playbook",
    OperationKind.rollback: "rollback playbook",
}

_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Settings:
    """The driver's options, read and checked: files that exist, durations in seconds."""

    inventory: Path
    playbooks: Mapping[OperationKind, Path]
    health_playbook: Path | None
    artifacts_dir: Path
    timeout: int
    forks: int
    extravars: Mapping[str, Any]
    health_interval: int


def read_settings(options: Mapping[str, str | None], declared: DriverOptions = OPTIONS) -> Settings:
    """The settings ``options`` give (``--driver-option key=value``) as ``declared``; an InputError naming a bad
    one. An option ``declared`` does not hold is unset (the health source has no playbooks to install)."""
    read = declared.read(options)
    inventory = _existing_file(read, "inventory")
    assert inventory is not None  # required by both declarations
    playbooks: dict[OperationKind, Path] = {}
    for kind, key in (
        (OperationKind.apply, "update_playbook"),
        (OperationKind.restore_point, "snapshot_playbook"),
        (OperationKind.rollback, "rollback_playbook"),
    ):
        found = _existing_file(read, key)
        if found is not None:
            playbooks[kind] = found
    given_dir = (read.text("artifacts_dir") or "").strip()
    return Settings(
        inventory=inventory,
        playbooks=playbooks,
        health_playbook=_existing_file(read, "health_playbook"),
        artifacts_dir=Path(given_dir).expanduser().resolve() if given_dir else default_artifacts_dir(),
        timeout=read.seconds("timeout"),
        forks=read.whole("forks"),
        extravars=_extravars(read.text("extravars")),
        health_interval=read.seconds("health_interval"),
    )


def option_error(key: str, value: str, complaint: str) -> InputError:
    return InputError([Problem(f"ansible driver option {key}={value!r}: {complaint}", path=("--driver-option",))])


def _existing_file(read: ReadOptions, key: str) -> Path | None:
    value = read.text(key) if key in read.values else None
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.exists():
        what = next(o.help for o in OPTIONS if o.name == key)
        raise option_error(key, value, f"there is no such file ({what})")
    return path


def _extravars(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise option_error("extravars", text, f"is not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(document, dict):
        raise option_error("extravars", text, "expected a JSON object of variables")
    reserved = sorted(k for k in document if str(k).startswith("ringfence_"))
    if reserved:
        raise option_error(
            "extravars", text, f"ringfence sets the ringfence_* variables itself ({', '.join(reserved)})"
        )
    return {str(k): v for k, v in document.items()}


def default_artifacts_dir() -> Path:
    from ringfence.store.home import user_home

    home = user_home(os.environ)
    return (home / "ansible").resolve()


def safe_name(text: str) -> str:
    """``text`` as a directory name: anything but letters, digits, dots, dashes and underscores becomes a dash."""
    return _UNSAFE_PATH_CHARS.sub("-", text).strip("-") or "rollout"


__all__ = [
    "GIVE_PLAYBOOK",
    "HEALTH_OPTIONS",
    "MAX_HEALTH_INTERVAL_SECONDS",
    "MAX_TIMEOUT_SECONDS",
    "MISSING_PLAYBOOK",
    "NO_ROLLBACK_PLAYBOOK",
    "NO_SNAPSHOT_PLAYBOOK",
    "OPTIONS",
    "PLAYBOOK_WORDS",
    "Settings",
    "default_artifacts_dir",
    "option_error",
    "read_settings",
    "safe_name",
]
