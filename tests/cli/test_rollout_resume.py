"""``ringfence rollout start`` on the default simulated driver, as a user runs it: real processes, real SQLite.

The faults of issue 10 item 4: the update's own ``timing`` was ignored (every install took the driver's default
10 minutes), and a ``rollout start`` killed mid-install (SIGKILL or Ctrl-C) never progressed again, because the
simulated world lived in the killed process while the database already held the assets as ``applying`` under a
decision marked done. Here the world lives in the database: a process started again finds the installs begun
before the kill, they end at their recorded end time, and the rollout carries on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from .conftest import RINGFENCE

pytestmark = pytest.mark.slow

ESTATE = """
apiVersion: ringfence/v1
estate: small
services:
  - {id: web, name: Web, tier: 3, requires: [app-1]}
assets:
  - {id: app-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
"""
# The update says how long its operations take; nothing on the command line says otherwise.
UPDATE = """
apiVersion: ringfence/v1
update:
  id: agent-2
  product: acme/agent
  version: "2"
  rings: [1, "100%"]
  bake: 0s
  rollback: reinstall
  timing: {apply: 1s, rollback: 1s, restore_point: 0s}
"""
ROLLOUT = "r-000001"
# Longer than a rollout of two 1-second rings ever takes here, far shorter than the driver's 10-minute default.
TIMEOUT = 60.0


class Ringfence:
    """The ``ringfence`` console script of this environment, on one SQLite database, without a terminal."""

    def __init__(self, tmp_path: Path) -> None:
        self.database = tmp_path / "ringfence.db"
        self.url = f"sqlite:///{self.database}"
        drop = ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env.update({"RINGFENCE_DATABASE_URL": self.url, "RINGFENCE_ACTOR": "tester"})
        self.engine = sa.create_engine(self.url)

    def run(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        assert RINGFENCE is not None
        return subprocess.run(
            [RINGFENCE, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        assert RINGFENCE is not None
        return subprocess.Popen(
            [RINGFENCE, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def create(self, tmp_path: Path, update: str = UPDATE) -> str:
        estate_file, update_file = tmp_path / "estate.yaml", tmp_path / "update.yaml"
        estate_file.write_text(ESTATE)
        update_file.write_text(update)
        created = self.run("rollout", "create", str(estate_file), str(update_file), "--json")
        assert created.returncode == 0, created.stderr
        return str(json.loads(created.stdout)["id"])

    def status(self) -> dict[str, Any]:
        found = self.run("rollout", "status", ROLLOUT, "--json")
        assert found.returncode == 0, found.stderr
        document: dict[str, Any] = json.loads(found.stdout)
        return document

    def scalar(self, query: str) -> object:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(query)).scalar()

    def wait_until_installing(self, process: subprocess.Popen[str]) -> None:
        """Until an asset is ``applying`` and no decision is pending: the install was handed to the driver."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the rollout ended before any install: {process.communicate()}"
            applying = self.scalar("SELECT count(*) FROM rollout_assets WHERE state = 'applying'")
            pending = self.scalar("SELECT count(*) FROM decisions WHERE status = 'pending'")
            if applying and not pending:
                return
            time.sleep(0.02)
        raise AssertionError("no asset started applying")


@pytest.fixture
def ringfence(tmp_path: Path) -> Iterator[Ringfence]:
    found = Ringfence(tmp_path)
    try:
        yield found
    finally:
        found.engine.dispose()


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"still driving after {TIMEOUT:.0f} s:\n{stdout}\n{stderr}") from None
    return process.returncode, stdout, stderr


def stored_world(ringfence: Ringfence) -> dict[str, dict[str, dict[str, object]]]:
    """The simulated world the driver kept in the database for the rollout."""
    found = ringfence.scalar(f"SELECT document FROM driver_state WHERE rollout_id = '{ROLLOUT}'")
    assert isinstance(found, str), found
    world: dict[str, dict[str, dict[str, object]]] = json.loads(found)
    return world


def installs(world: dict[str, dict[str, dict[str, object]]]) -> dict[str, dict[str, object]]:
    return {str(op["asset_id"]): op for op in world["operations"].values() if op["kind"] == "apply"}


def seconds(op: dict[str, object]) -> float:
    started, ends = op["started"], op["ends"]
    assert isinstance(started, float | int)
    assert isinstance(ends, float | int)
    return float(ends) - float(started)


def test_sigkill_mid_install_and_start_again_carries_on(ringfence: Ringfence, tmp_path: Path) -> None:
    assert ringfence.create(tmp_path) == ROLLOUT
    first = ringfence.popen("rollout", "start", ROLLOUT, "--poll-interval", "0.1")
    ringfence.wait_until_installing(first)
    killed_at = time.time()
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=TIMEOUT)
    assert first.returncode == -signal.SIGKILL
    caught = {a["id"] for a in ringfence.status()["assets"] if a["state"] == "applying"}
    assert caught, "the kill did not land mid-install"

    second = ringfence.popen("rollout", "start", ROLLOUT, "--poll-interval", "0.1")
    code, stdout, stderr = finish(second)

    assert code == 0, stderr
    assert f"Rollout {ROLLOUT} is completed" in stdout
    status = ringfence.status()
    assert status["phase"] == "completed"
    assert sorted(a["state"] for a in status["assets"]) == ["applied"] * 2
    world = installs(stored_world(ringfence))
    for asset in caught:
        op = world[asset]
        # Started by the killed process, finished at the end time it recorded: installed once, not again.
        assert float(str(op["started"])) < killed_at
        assert op["status"] == "succeeded"
        assert stored_world(ringfence)["assets"][asset]["installed_at"] == op["ends"]
    assert all(a["installs"] == 1 for a in stored_world(ringfence)["assets"].values())
    assert ringfence.scalar("SELECT count(*) FROM decisions WHERE status = 'pending'") == 0


def test_the_update_says_how_long_an_install_takes_unless_an_option_does(ringfence: Ringfence, tmp_path: Path) -> None:
    ringfence.create(tmp_path)
    done = ringfence.run("rollout", "start", ROLLOUT, "--poll-interval", "0.1")
    assert done.returncode == 0, done.stderr
    world = stored_world(ringfence)
    # Every install took the update's 1 s (the driver's default is 10 min), and ended when it said it would.
    assert {seconds(op) for op in installs(world).values()} == {1.0}
    assert all(world["assets"][a]["installed_at"] == op["ends"] for a, op in installs(world).items())

    other = ringfence.create(tmp_path)
    done = ringfence.run("rollout", "start", other, "-o", "apply=2s", "--poll-interval", "0.1")
    assert done.returncode == 0, done.stderr
    found = ringfence.scalar(f"SELECT document FROM driver_state WHERE rollout_id = '{other}'")
    assert isinstance(found, str)
    assert {seconds(op) for op in installs(json.loads(found)).values()} == {2.0}


def test_ctrl_c_stops_driving_cleanly_and_a_later_start_carries_on(ringfence: Ringfence, tmp_path: Path) -> None:
    ringfence.create(tmp_path)
    first = ringfence.popen("rollout", "start", ROLLOUT, "--poll-interval", "0.1")
    ringfence.wait_until_installing(first)
    first.send_signal(signal.SIGINT)
    code, stdout, stderr = finish(first)

    assert code == 130, (stdout, stderr)
    phase = ringfence.status()["phase"]
    assert phase == "applying"
    expected = f"stopped driving {ROLLOUT}; it is still {phase}; run `ringfence rollout start {ROLLOUT}` to carry on"
    assert expected in " ".join(stderr.split()), stderr
    assert "Traceback" not in stderr
    # Nothing half-written: the step under way was finished or never begun.
    assert ringfence.scalar("SELECT count(*) FROM decisions WHERE status = 'pending'") == 0

    again = ringfence.run("rollout", "start", ROLLOUT, "--poll-interval", "0.1")
    assert again.returncode == 0, again.stderr
    assert ringfence.status()["phase"] == "completed"


def test_progress_is_printed_as_lines_when_not_on_a_terminal(ringfence: Ringfence, tmp_path: Path) -> None:
    ringfence.create(tmp_path)
    done = ringfence.run("rollout", "start", ROLLOUT, "--poll-interval", "0.1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # Where it is while it drives: the phase, the ring by its name, what is in flight.
    assert any("applying canary" in line and "1 install in flight" in line for line in lines), done.stdout
    assert any("applying ring 1" in line and "1 install in flight" in line for line in lines), done.stdout
    # Phase changes one to a line, with their reasons, never wrapped.
    assert any(
        line.endswith("applying: ring 0 passed: 1 of 1 stratum passed; starting ring 1 (1 asset)") for line in lines
    )
    # Each stratum the gate judged, with its verdict.
    assert any(line.strip().startswith("stratum vm/linux") for line in lines), done.stdout
    assert lines[-1] == f"Rollout {ROLLOUT} is completed."

    quiet = ringfence.run("rollout", "start", ROLLOUT, "--quiet")
    assert quiet.stdout.splitlines() == [f"Rollout {ROLLOUT} is completed."], (quiet.stdout, quiet.stderr)
