"""Run the real ``ringfence`` command as a user's script would: a separate process, no terminal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The console script installed beside this interpreter (there is no ``python -m ringfence`` yet).
RINGFENCE = shutil.which("ringfence", path=os.path.dirname(sys.executable))

CliRunner = Callable[..., "subprocess.CompletedProcess[str]"]


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``ringfence ARGS...`` with stdout and stderr captured as text; never raises on a non-zero exit."""
    assert RINGFENCE is not None, f"no ringfence console script next to {sys.executable}"
    # What a terminal would pass in changes how Rich lays out text: a script's environment has none of it.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    return subprocess.run(
        [RINGFENCE, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="session")
def cli() -> CliRunner:
    return run_cli
