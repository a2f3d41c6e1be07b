"""The base install is the analysis and the server; Ansible is the ``ansible`` extra (``ringfence.files.extras``).

Two promises, each tested on the real command:

* the analysis commands never import Ansible, so they work where it is not installed (``-X importtime``
  lists every module a process imported);
* a feature of the extra, used where the extra is missing, stops with one sentence naming
  ``pip install 'ringfence[ansible]'`` and exit 2. "Missing" is made real for the child process by
  ``sys.modules[name] = None``, which is how Python itself marks a module that cannot be imported: both
  ``import ansible`` and ``importlib.util.find_spec("ansible")`` then fail as on a base install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ringfence.drivers.registry import load_driver
from ringfence.files.disk import sample_estate_path
from ringfence.files.extras import EXTRA_MODULES, MissingExtraError, extra_installed
from ringfence.files.importers.ansible import import_ansible_inventory

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "examples" / "inventory.ini"
ANSIBLE_MODULES = EXTRA_MODULES["ansible"]
FIX = "pip install 'ringfence[ansible]'"


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    env["RINGFENCE_HOME"] = str(home)
    return env


def _imported_modules(stderr: str) -> set[str]:
    """The modules ``-X importtime`` reports: its lines end ``| <cumulative> | <indent><module>``."""
    found = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            found.add(line.rsplit("|", 1)[1].strip())
    return found


@pytest.mark.parametrize(
    "command",
    [
        ("check", "{estate}"),
        ("impact", "{estate}", "--fail", "supplier:advanced"),
        ("spof", "{estate}", "--tier", "1"),
        ("concentration", "{estate}"),
        ("drill", "{estate}", "{scenarios}/vsphere-7u3.yaml"),
        ("plan", "{estate}", "{updates}/falcon-7.16.yaml"),
        ("recover", "{estate}", "--fail", "supplier:advanced"),
    ],
    ids=lambda command: command[0],
)
def test_analysis_commands_never_import_ansible(command: tuple[str, ...], tmp_path: Path) -> None:
    folder = sample_estate_path().parent
    args = [
        a.format(estate=sample_estate_path(), scenarios=folder / "scenarios", updates=folder / "updates")
        for a in command
    ]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ringfence", *args],
        capture_output=True,
        text=True,
        env=_environment(tmp_path),
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = _imported_modules(done.stderr)
    assert "ringfence.cli.main" in imported, "importtime output not understood"
    leaked = sorted(m for m in imported if m.split(".")[0] in ANSIBLE_MODULES)
    assert leaked == [], f"{command[0]} imported {leaked[:5]}"


def _run_without_ansible(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    """``ringfence ARGS`` in a process where the ansible extra's modules cannot be imported."""
    hide = "".join(f"sys.modules[{m!r}] = None; " for m in ANSIBLE_MODULES)
    program = f"import sys; {hide}from ringfence.cli.main import main; sys.argv[0] = 'ringfence'; main()"
    return subprocess.run(
        [sys.executable, "-c", program, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=_environment(home),
        cwd=home,
        timeout=300,
        check=False,
    )


def test_import_ansible_without_the_extra_names_it_and_exits_2(tmp_path: Path) -> None:
    done = _run_without_ansible("import", "ansible", INVENTORY, "--out", tmp_path / "estate.yaml", home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert FIX in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "estate.yaml").exists()


def test_analysis_works_without_the_extra(tmp_path: Path) -> None:
    done = _run_without_ansible("impact", sample_estate_path(), "--fail", "supplier:advanced", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "nhs111" in done.stdout


def test_the_ansible_driver_and_importer_refuse_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert extra_installed("ansible")
    for module in ANSIBLE_MODULES:
        monkeypatch.setitem(sys.modules, module, None)
    assert not extra_installed("ansible")
    with pytest.raises(MissingExtraError, match=r"pip install 'ringfence\[ansible\]'"):
        load_driver("ansible", inventory=str(INVENTORY), update_playbook="site.yml")
    with pytest.raises(MissingExtraError, match=r"pip install 'ringfence\[ansible\]'"):
        import_ansible_inventory(INVENTORY)


def test_a_rollout_on_the_ansible_driver_is_refused_when_created_without_the_extra(tmp_path: Path) -> None:
    sample = sample_estate_path()
    update = sample.parent / "updates" / "falcon-7.16.yaml"
    done = _run_without_ansible("rollout", "create", sample, update, "--driver", "ansible", home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert FIX in done.stderr
    assert "Traceback" not in done.stderr
    listed = _run_without_ansible("rollout", "list", "--json", home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["rollouts"] == []  # nothing was created
