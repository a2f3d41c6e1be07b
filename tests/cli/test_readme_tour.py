"""The README's tour runs: every ``ringfence`` line of it, as written, from a fresh folder, succeeds.

The tour went stale once (it imported an ``inventory.ini`` that did not ship). Here each command is read
out of README.md itself, so a command that stops working, or a file the tour names that does not ship,
fails this test. Lines that are not ``ringfence`` commands (``source``, ``pip``, ``make serve``) are the
shell's and the Makefile's, tested elsewhere.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RINGFENCE = shutil.which("ringfence", path=os.path.dirname(sys.executable))
SMALLER_ESTATE = ("--assets", "2000")
"""``generate --assets 200000`` as the README has it takes a quarter of a minute and 40 MB: the tour
test generates a smaller estate with the same command (bench/ measures the large one)."""


def tour_commands() -> list[list[str]]:
    """The tour's ``ringfence`` lines, split as the shell splits them, ``$E`` set as the tour sets it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    tour = re.search(r"## A short tour\n+```sh\n(.*?)```", readme, re.DOTALL)
    assert tour is not None, "README.md has no tour block"
    lines = tour.group(1).splitlines()
    [estate_folder] = [line.split("=", 1)[1].split()[0] for line in lines if line.startswith("E=")]
    commands = []
    for line in lines:
        if line.startswith("ringfence "):
            words = shlex.split(line.replace("$E", estate_folder), comments=True)
            commands.append(words)
    # The one command the text after the block asks a reader to run.
    token = re.search(r"`(ringfence token create [^`]+)`", readme)
    assert token is not None
    commands.append(shlex.split(token.group(1)))
    return commands


def test_the_tour_has_the_commands_it_promises() -> None:
    verbs = [" ".join(c[1:3]) for c in tour_commands()]
    assert "import ansible" in verbs
    assert len(verbs) >= 12


@pytest.mark.slow
def test_every_tour_command_runs_from_a_fresh_folder(tmp_path: Path) -> None:
    assert RINGFENCE is not None
    # The tour is run from a checkout: its paths (examples/...) are relative to the repository's root.
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    env["RINGFENCE_HOME"] = str(tmp_path / "home")
    for words in tour_commands():
        if words[1] == "generate":
            words = [w for w in words if w not in ("--assets", "200000")] + list(SMALLER_ESTATE)
        done = subprocess.run(
            [RINGFENCE, *words[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{shlex.join(words)} exited {done.returncode}: {done.stderr[-1500:]}"
        assert "Traceback" not in done.stderr
    # What the tour says it writes, it writes.
    for written in ("big.json", "estate.yaml", "drill.html", "evidence.md", "packs"):
        assert (tmp_path / written).exists(), written
    imported = (tmp_path / "estate.yaml").read_text(encoding="utf-8")
    assert "id: esx-a01" in imported
    assert "id: epr-app-1" in imported
