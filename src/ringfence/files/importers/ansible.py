"""Import an Ansible inventory (INI or YAML, a file or a directory) as estate assets.

Ansible itself reads the inventory (``DataLoader``, ``InventoryManager``, ``VariableManager``), so host
ranges (``web[01:20]``), ``children`` groups, ``[group:vars]``, and ``group_vars/`` and ``host_vars/``
next to the inventory mean exactly what they mean to ``ansible-playbook``. Each host becomes one asset;
docs/importers.md gives the mapping.

Ansible runs in a child process, never in ours. Its configuration is read once, at import time, from
the environment, ``./ansible.cfg``, ``~/.ansible.cfg`` and ``/etc/ansible/ansible.cfg``, and stays for
the life of the process; it keeps a local temp directory under ``~/.ansible``; and it prints warnings
through a process-wide display. In a child we can start it with an empty configuration of our own,
point its home and temp directory into a scratch directory we delete, allow only the ``yaml`` and
``ini`` inventory plugins (the ``script`` plugin would *run* an executable inventory file), and keep
its output off the user's terminal — without touching our own process's environment or warnings.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ringfence
from ringfence.core.errors import InputError, Problem, RingfenceError, format_path
from ringfence.files.extras import require_extra
from ringfence.files.importers.document import (
    capped,
    check_asset_fields,
    estate_document,
    parse_requires_text,
    parse_software_text,
)

__all__ = [
    "InventoryHost",
    "asset_id_for_host",
    "estate_from_inventory_hosts",
    "import_ansible_inventory",
    "read_inventory",
]

WORKER_TIMEOUT_SECONDS = 300
"""Reading even a large inventory takes seconds; a child still running after this is stuck."""

RINGFENCE_VARIABLES = (
    "ringfence_kind",
    "ringfence_name",
    "ringfence_requires",
    "ringfence_site",
    "ringfence_software",
    "ringfence_supplier",
)
"""Host variables ringfence reads for itself; any other ``ringfence_*`` variable is a typo and an error."""

SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "vault")
"""A variable whose name contains one of these never becomes an attribute: the estate file is shared
with the whole team, so when in doubt a value is left out (``ansible_password``, ``api_key``)."""

_ATTR_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_NOT_IN_ID = re.compile(r"[^a-z0-9._-]+")
_NOT_IN_ATTR_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class InventoryHost:
    """One host as Ansible sees it: its inventory name, every group it is in (ancestors included, not
    ``all`` or ``ungrouped``) and its variables after Ansible's precedence rules, as plain data.

    Vault-encrypted values are never decrypted and so never appear in ``variables``.
    """

    name: str
    groups: tuple[str, ...]
    variables: Mapping[str, object]


def import_ansible_inventory(path: Path, *, estate_name: str | None = None) -> dict[str, object]:
    """Read the inventory at ``path`` with Ansible and return an estate document of its hosts.

    ``estate_name`` defaults to the inventory file's stem (or the directory's name). Raises
    :class:`~ringfence.core.errors.InputError` naming the file and what Ansible said when the inventory
    cannot be read, when it lists no hosts, or when a host's ringfence variables do not hold.
    """
    hosts = read_inventory(path)
    name = estate_name if estate_name is not None else (path.name if path.is_dir() else path.stem)
    return estate_from_inventory_hosts(hosts, estate_name=name, source=str(path))


def read_inventory(path: Path) -> list[InventoryHost]:
    """Every host of the inventory at ``path``, in inventory order, read by Ansible in a child process."""
    shown = str(path)
    if not path.exists():
        raise InputError([Problem(f"inventory '{shown}' does not exist", source=shown)])
    require_extra("ansible", "Reading an Ansible inventory")
    # Ansible resolves inventory paths without following symlinks, so group_vars/ is looked for
    # next to the path as given, not next to a link's target.
    source = os.path.abspath(path)
    with tempfile.TemporaryDirectory(prefix="ringfence-ansible-") as scratch_dir:
        scratch = Path(scratch_dir)
        result_file = scratch / "result.json"
        command = [
            sys.executable,
            "-P",  # never import from the working directory (an `ansible/` there would shadow Ansible)
            "-W",
            "ignore",
            "-c",
            "from ringfence.files.importers.ansible import _worker_main; _worker_main()",
            source,
            str(result_file),
        ]
        try:
            completed = subprocess.run(
                command,
                cwd=scratch,
                env=_worker_environment(scratch),
                capture_output=True,
                text=True,
                timeout=WORKER_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RingfenceError(
                f"ansible took more than {WORKER_TIMEOUT_SECONDS}s to read the inventory '{shown}'"
            ) from None
        if completed.returncode != 0 or not result_file.exists():
            tail = "\n".join(completed.stderr.strip().splitlines()[-20:])
            raise RingfenceError(
                f"ansible could not be run to read the inventory '{shown}' "
                f"(exit status {completed.returncode}):\n{tail}"
            )
        result = json.loads(result_file.read_text(encoding="utf-8"))

    if result.get("problems"):
        raise InputError(
            [
                Problem(
                    str(p["message"]),
                    source=shown if p.get("source") in (None, source) else str(p["source"]),
                    line=p.get("line"),
                )
                for p in result["problems"]
            ]
        )
    hosts = [
        InventoryHost(name=str(h["name"]), groups=tuple(h["groups"]), variables=dict(h["variables"]))
        for h in result["hosts"]
    ]
    if not hosts:
        raise InputError([Problem("the inventory lists no hosts, so there is nothing to import", source=shown)])
    return hosts


def asset_id_for_host(hostname: str) -> str:
    """The asset id for an inventory hostname: lowercased, each run of characters an id cannot hold
    (anything but ``a-z 0-9 . _ -``) replaced by ``-``, and ``-`` trimmed from both ends.
    Empty when nothing is left."""
    return _NOT_IN_ID.sub("-", hostname.lower()).strip("-")


def estate_from_inventory_hosts(hosts: Sequence[InventoryHost], *, estate_name: str, source: str) -> dict[str, object]:
    """Map hosts to an estate document (the rules are in docs/importers.md); raise every problem at once."""
    problems: list[Problem] = []
    assets: list[dict[str, object]] = []
    asset_hosts: list[str] = []
    host_by_id: dict[str, str] = {}

    for host in hosts:
        asset_id = asset_id_for_host(host.name)
        if not asset_id:
            problems.append(
                Problem(f"host '{host.name}' has no letter or digit to make an asset id from", source=source)
            )
            continue
        if asset_id in host_by_id:
            problems.append(
                Problem(
                    f"hosts '{host_by_id[asset_id]}' and '{host.name}' would both become asset '{asset_id}'; "
                    "rename one of them in the inventory",
                    source=source,
                )
            )
            continue
        host_by_id[asset_id] = host.name
        asset, messages = _asset_from_host(host, asset_id)
        problems.extend(Problem(f"host '{host.name}': {m}", source=source) for m in messages)
        assets.append(asset)
        asset_hosts.append(host.name)

    for found in check_asset_fields(assets):
        host_name = asset_hosts[found.index] if 0 <= found.index < len(asset_hosts) else "?"
        problems.append(Problem(f"host '{host_name}': {_variable_path(found.field)}: {found.message}", source=source))

    if problems:
        raise InputError(capped(problems, source))
    return estate_document(estate_name, assets)


def _asset_from_host(host: InventoryHost, asset_id: str) -> tuple[dict[str, object], list[str]]:
    variables = host.variables
    messages: list[str] = []
    asset: dict[str, object] = {"id": asset_id, "kind": "host"}
    for field in ("kind", "name", "site", "supplier"):
        variable = f"ringfence_{field}"
        if variable not in variables or variables[variable] is None:
            continue
        value = variables[variable]
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            asset[field] = str(value)
        else:
            messages.append(f"{variable} must be a single value, not {_described(value)}")

    attrs: dict[str, str] = {}
    for name in sorted(variables):
        value = variables[name]
        if name.startswith("ringfence_"):
            if name not in RINGFENCE_VARIABLES:
                messages.append(
                    f"variable '{name}' is not one ringfence reads; ringfence reads {', '.join(RINGFENCE_VARIABLES)}"
                )
            continue
        if _is_secret(name) or not _ATTR_NAME.match(name) or _is_reserved(name):
            continue
        # Only single values become attributes: selectors compare strings, and lists or mappings
        # (package lists, user lists) would only be noise in the estate file.
        if isinstance(value, bool):
            attrs[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            attrs[name] = str(value)
    for group in host.groups:
        # One attribute per group, so a selector can pick a group: attrs.group.webservers=true. Only the
        # host's real groups: a variable named like one was left out above.
        attrs[f"group.{_NOT_IN_ATTR_NAME.sub('_', group)}"] = "true"
    if asset_id != host.name:
        # The ansible driver targets hosts by their inventory name; keep it when the id differs.
        attrs["ansible_inventory_hostname"] = host.name
    if attrs:
        asset["attrs"] = dict(sorted(attrs.items()))

    if variables.get("ringfence_software") is not None:
        software, errors = _software_from(variables["ringfence_software"])
        messages.extend(f"ringfence_software: {e}" for e in errors)
        if software:
            asset["software"] = software
    if variables.get("ringfence_requires") is not None:
        requires, errors = _requires_from(variables["ringfence_requires"])
        messages.extend(f"ringfence_requires: {e}" for e in errors)
        if requires:
            asset["requires"] = requires
    return asset, messages


def _software_from(value: object) -> tuple[list[dict[str, object]], list[str]]:
    """A list of ``{product, version}`` mappings or ``VENDOR/NAME@VERSION`` strings; a single string is
    read like a CSV cell (items separated by ``;``)."""
    if isinstance(value, str):
        return parse_software_text(value)
    if not isinstance(value, list):
        return [], [f"must be a list of {{product, version}} or VENDOR/NAME@VERSION, not {_described(value)}"]
    items: list[dict[str, object]] = []
    errors: list[str] = []
    for item in value:
        if isinstance(item, str):
            parsed, item_errors = parse_software_text(item)
            items.extend(parsed)
            errors.extend(item_errors)
        elif isinstance(item, Mapping):
            items.append({str(k): v for k, v in item.items()})
        else:
            errors.append(f"item {_described(item)} is neither {{product, version}} nor VENDOR/NAME@VERSION")
    return items, errors


def _requires_from(value: object) -> tuple[list[object], list[str]]:
    """Estate-format requirements as written (ids and ``{any, of|where}`` mappings); strings, alone or
    in the list, are read like a CSV cell (``ID``, ``any:K:ID|ID``, ``where:K:SELECTOR``, ``;`` between)."""
    if isinstance(value, str):
        return parse_requires_text(value)
    if not isinstance(value, list):
        return [], [f"must be a list of requirements, not {_described(value)}"]
    entries: list[object] = []
    errors: list[str] = []
    for item in value:
        if isinstance(item, str):
            parsed, item_errors = parse_requires_text(item)
            entries.extend(parsed)
            errors.extend(item_errors)
        elif isinstance(item, Mapping):
            entries.append({str(k): v for k, v in item.items()})
        else:
            errors.append(f"item {_described(item)} is neither an id nor an {{any, of|where}} group")
    return entries, errors


def _variable_path(field: tuple[str | int, ...]) -> str:
    """Where in the host's variables an asset field came from, for messages."""
    if not field:
        return "host"
    head = field[0]
    if head == "attrs" and len(field) > 1:
        return f"variable '{field[1]}'"
    if head in ("kind", "name", "site", "supplier", "software", "requires"):
        return format_path((f"ringfence_{head}", *field[1:]))
    return format_path(field)


RESERVED_ATTRIBUTES = ("ansible_inventory_hostname",)
"""Attributes only the importer writes, from the inventory itself: a host variable of one of these names (or
``group.*``) never becomes an attribute, so it can neither pose as a group membership nor redirect the ansible
driver to another host."""


def _is_reserved(name: str) -> bool:
    return name in RESERVED_ATTRIBUTES or name.startswith("group.")


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def _described(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"'{value}'"


def _worker_environment(scratch: Path) -> dict[str, str]:
    """The child's environment: ours without any ANSIBLE_* setting, plus a configuration of our own."""
    config = scratch / "ansible.cfg"
    # An ANSIBLE_CONFIG that exists wins over ./ansible.cfg, ~/.ansible.cfg and /etc/ansible/ansible.cfg.
    config.write_text("# ringfence reads inventories with Ansible's defaults and nothing else\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    package_root = str(Path(ringfence.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    env.update(
        {
            "ANSIBLE_CONFIG": str(config),
            "ANSIBLE_HOME": str(scratch / "home"),
            "ANSIBLE_LOCAL_TEMP": str(scratch / "tmp"),
            # Never the `script` plugin: it executes an executable inventory file.
            "ANSIBLE_INVENTORY_ENABLED": "yaml,ini",
            # A file no plugin can read is an error, not a warning and a silently smaller estate.
            "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
            "ANSIBLE_VARS_ENABLED": "host_group_vars",
            "ANSIBLE_NOCOLOR": "true",
        }
    )
    return env


# ------------------------------------------------------------------------------------ the child process
# Everything below runs in the child started by read_inventory; only there is ansible imported.


def _worker_main() -> None:
    """Entry point of the child: read ``argv[1]`` with Ansible, write plain JSON to ``argv[2]``."""
    source, result_file = sys.argv[1], sys.argv[2]
    result = _worker_read(source)
    Path(result_file).write_text(json.dumps(result), encoding="utf-8")


def _worker_read(source: str) -> dict[str, Any]:
    from ansible import constants
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import is_encrypted_file
    from ansible.vars.manager import VariableManager

    def is_vaulted(file_name: str) -> bool:
        try:
            with open(file_name, "rb") as handle:
                return bool(is_encrypted_file(handle))
        except OSError:
            return False

    class VaultBlindLoader(DataLoader):  # type: ignore[misc]
        """Skips vault-encrypted files (typically group_vars/all/vault.yml) instead of failing for want
        of a password: ringfence never decrypts secrets, and would leave their values out anyway."""

        def load_from_file(self, file_name: str, *args: Any, **kwargs: Any) -> Any:
            if is_vaulted(self.path_dwim(file_name)):
                return None
            return super().load_from_file(file_name, *args, **kwargs)

    _worker_keep_quoted_ini_values()
    if os.path.isfile(source) and is_vaulted(source):
        return _worker_problems(
            f"the inventory '{source}' is vault-encrypted; ringfence never decrypts vault files", source
        )

    loader = VaultBlindLoader()
    failure: AnsibleError | None = None
    try:
        inventory = InventoryManager(loader=loader, sources=[source])
    except AnsibleError as exc:
        failure = exc
    if failure is not None:
        # Diagnosed outside the except block, so the plugins' errors do not chain onto this one.
        found = _worker_diagnose(source, loader)
        return {"problems": found or [_worker_problem(failure, "ansible could not read it")]}

    variables = VariableManager(loader=loader, inventory=inventory)
    hosts = []
    for host in inventory.hosts.values():
        try:
            # What `ansible-inventory --host` shows: every inventory source and group_vars/host_vars
            # merged by Ansible's own precedence, minus the magic variables Ansible adds itself.
            host_vars = variables.get_vars(host=host, include_hostvars=False, stage="all")
        except AnsibleError as exc:
            return {"problems": [_worker_problem(exc, f"ansible could not load the variables of host '{host.name}'")]}
        for internal in constants.INTERNAL_STATIC_VARS:
            host_vars.pop(internal, None)
        groups = sorted({g.name for g in host.get_groups()} - {"all", "ungrouped"})
        hosts.append({"name": str(host.name), "groups": groups, "variables": _worker_plain_mapping(host_vars)})
    return {"hosts": hosts}


def _worker_keep_quoted_ini_values() -> None:
    """Make a quoted value on an INI host line stay a string: ``web1 version="10.10"`` is ``'10.10'``.

    Ansible's ini plugin splits a host line with shlex, which drops the quotes, and then reads each value as
    a Python literal, so the quoted ``"10.10"`` becomes the number 10.1 — though its own documentation says
    to quote a number to keep it a string, and a ``[group:vars]`` line does keep it. ringfence compares
    attributes as text, so a version would silently change. Here, in the child only, a value that was
    quoted whole is read as the string it spells; an unquoted one is still Ansible's literal, and so is a
    quoted list, tuple or mapping (``"['a', 'b']"``): quoting is the only way to write one on a host line.
    """
    from ansible.plugins.inventory import ini

    plugin = ini.InventoryModule
    if getattr(plugin, "_ringfence_keeps_quotes", False):
        return
    parse_host_definition = plugin._parse_host_definition

    def keeping_quotes(self: Any, line: str) -> Any:
        hostnames, port, variables = parse_host_definition(self, line)
        quoted = _quoted_whole(line)
        for key in list(variables):
            if str(key) in quoted and not quoted[str(key)].lstrip().startswith(("[", "{", "(")):
                # repr() spells the string as a Python literal, so Ansible's own reading gives it back as is.
                variables[key] = self._parse_value(repr(quoted[str(key)]))
        return hostnames, port, variables

    plugin._parse_host_definition = keeping_quotes
    plugin._ringfence_keeps_quotes = True


def _quoted_whole(line: str) -> dict[str, str]:
    """The ``key=value`` words of an INI host line whose value is one quoted string, key → the string.

    The words are split as shlex splits them (quotes, backslashes, ``#`` comments), so they pair up with
    the words Ansible reads; a line this cannot follow is left to Ansible alone.
    """
    import shlex

    raw: list[str] = []
    current: list[str] = []
    quote: str | None = None
    escaped = False
    in_word = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif quote is not None:
            current.append(char)
            if char == quote:
                quote = None
            elif char == "\\" and quote == '"':
                escaped = True
        elif char == "\\":
            current.append(char)
            escaped = in_word = True
        elif char in "'\"":
            current.append(char)
            quote, in_word = char, True
        elif char.isspace():
            if in_word:
                raw.append("".join(current))
                current, in_word = [], False
        elif char == "#":
            break
        else:
            current.append(char)
            in_word = True
    if in_word:
        raw.append("".join(current))
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return {}
    if len(words) != len(raw):
        return {}
    found: dict[str, str] = {}
    for text, word in zip(raw[1:], words[1:], strict=True):
        key, equals, value = text.partition("=")
        if not equals or len(value) < 2 or value[0] not in "'\"" or value[-1] != value[0]:
            continue
        # Quoted whole: one quoted part, nothing before or after it (not 'a'b or "a"'b').
        if value[0] in value[1:-1].replace("\\" + value[0], ""):
            continue
        found[key] = word.partition("=")[2]
    return found


def _worker_diagnose(source: str, loader: Any) -> list[dict[str, Any]]:
    """Say why Ansible could not read ``source``: ask each allowed plugin again, as the inventory manager
    did, and keep what they said (the manager only prints it as warnings)."""
    from ansible import constants
    from ansible.inventory import manager
    from ansible.inventory.data import InventoryData
    from ansible.plugins.loader import inventory_loader

    if os.path.isdir(source):
        ignored = getattr(manager, "IGNORED", re.compile(rb"^\.|^host_vars$|^group_vars$"))
        for entry in sorted(os.listdir(source)):
            if ignored.search(os.fsencode(entry)):
                continue
            found = _worker_diagnose(os.path.join(source, entry), loader)
            if found:
                return found
        return []

    failures: list[tuple[str, Exception]] = []
    for name in constants.INVENTORY_ENABLED:
        plugin = inventory_loader.get(name)
        try:
            wants = plugin is not None and bool(plugin.verify_file(source))
        except Exception:
            wants = False
        if not wants:
            continue
        try:
            plugin.parse(InventoryData(), loader, source, cache=False)
        except Exception as exc:
            failures.append((name, exc))
        else:
            return []
    if not failures:
        return [
            {
                "message": "no Ansible inventory plugin (yaml, ini) accepts this file",
                "source": source,
                "line": None,
            }
        ]
    # A .yml file that the ini plugin also failed on: only the yaml plugin's complaint makes sense.
    extension = os.path.splitext(source)[1].lower()
    preferred = "yaml" if extension in (".yml", ".yaml", ".json") else "ini" if extension == ".ini" else None
    if preferred and any(name == preferred for name, _ in failures):
        failures = [(name, exc) for name, exc in failures if name == preferred]
    return [
        _worker_problem(exc, f"ansible's {name} inventory plugin could not read it", default_source=source)
        for name, exc in failures
    ]


def _worker_problem(exc: BaseException, prefix: str, default_source: str | None = None) -> dict[str, Any]:
    """One problem from an Ansible error: its messages down the cause chain, and the deepest location."""
    from ansible.errors import AnsibleError

    messages: list[str] = []
    source, line = default_source, None
    current: BaseException | None = exc
    while isinstance(current, AnsibleError):
        text = str(getattr(current, "message", "") or current).strip()
        if text and not any(text in earlier for earlier in messages):
            messages.append(text)
        origin = getattr(current, "obj", None)
        origin_path = getattr(origin, "path", None)
        origin_line = getattr(origin, "line_num", None)
        position = getattr(origin, "ansible_pos", None)  # ansible-core before 2.19
        if isinstance(origin_path, str) and os.path.isabs(origin_path):
            source = origin_path
            line = origin_line if isinstance(origin_line, int) else line
        elif isinstance(position, tuple) and len(position) >= 2:
            source, line = str(position[0]), int(position[1])
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    detail = ": ".join(messages) or type(exc).__name__
    return {"message": f"{prefix}: {detail}", "source": source, "line": line}


def _worker_problems(message: str, source: str) -> dict[str, Any]:
    return {"problems": [{"message": message, "source": source, "line": None}]}


_SKIPPED = object()


def _worker_plain(value: Any) -> Any:
    """Ansible's values (tagged str/int subclasses, YAML dates) as plain JSON; anything else is left out.

    Vault-encrypted values (``EncryptedString``, ``AnsibleVaultEncryptedUnicode``) are neither str nor
    list, so they are left out here without ever being decrypted.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return _worker_plain_mapping(value)
    if isinstance(value, list | tuple):
        items = [_worker_plain(item) for item in value]
        return [item for item in items if item is not _SKIPPED]
    return _SKIPPED


def _worker_plain_mapping(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    plain = {str(key): _worker_plain(value) for key, value in mapping.items()}
    return {key: value for key, value in plain.items() if value is not _SKIPPED}
