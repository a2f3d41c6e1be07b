"""One real ``ringfence agent`` process against a real server process: it installs when its ring opens,
reports, keeps beating through a server restart, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from live_server import RINGFENCE, ServerProcess
from ringfence.core.rollout.state import AssetState
from ringfence.service.tokens import issue_token
from ringfence.store.db import make_engine, session_scope
from ringfence.store.observations import list_observations
from ringfence.store.records import ObservationKind
from ringfence.store.rollouts import list_rollout_assets

from .conftest import create_agent_rollout

pytestmark = pytest.mark.slow


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout} s\n{log()}")


def test_an_agent_installs_reports_survives_a_restart_and_stops_on_sigterm(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server_process.start()
    engine = make_engine(server_process.database_url)
    rollout_id = create_agent_rollout(engine, 2, bake="10m")
    token = issue_token(engine, name="agent-lat-01", role="agent", asset_id="lat-01").secret
    marker = tmp_path / "installed"
    agent_log = tmp_path / "agent.log"
    command = [
        RINGFENCE,
        "agent",
        "--server",
        server_process.url,
        "--asset",
        "lat-01",
        "--apply",
        f'echo "$RINGFENCE_PRODUCT $RINGFENCE_VERSION $RINGFENCE_ROLLOUT" > {marker}',
        "--rollback",
        f"rm -f {marker}",
        "--interval",
        "1s",
    ]
    with agent_log.open("wb") as log_file:
        agent = subprocess.Popen(
            command, env=dict(os.environ, RINGFENCE_AGENT_TOKEN=token), stdout=log_file, stderr=subprocess.STDOUT
        )

    def logs() -> str:
        return f"agent:\n{agent_log.read_text(errors='replace')[-3000:]}\nserver:\n{server_process.log()}"

    def state() -> AssetState:
        with session_scope(engine, readonly=True) as session:
            return {a.asset_id: a.state for a in list_rollout_assets(session, rollout_id)}["lat-01"]

    def beats_since(at: datetime) -> int:
        with session_scope(engine, readonly=True) as session:
            found = list_observations(session, since=at, asset_ids=["lat-01"], kinds=[ObservationKind.HEARTBEAT])
        return len(found)

    try:
        wait_for("the install", marker.exists, 60, logs)
        assert marker.read_text().strip() == f"acme/agent 2.0 {rollout_id}"
        # The server's controller loop takes the agent's reported result as the asset's progress.
        wait_for("the result to be recorded", lambda: state() is AssetState.APPLIED, 30, logs)

        server_process.stop()
        # The agent finds the server gone, says so, and keeps running (it backs off and tries again).
        wait_for("the agent to find the server gone", lambda: "server unavailable" in agent_log.read_text(), 30, logs)
        assert agent.poll() is None, logs()
        server_process.start()
        restarted = datetime.now(UTC)
        wait_for("heartbeats after the restart", lambda: beats_since(restarted) >= 2, 60, logs)

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0, logs()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        engine.dispose()
    text = agent_log.read_text()
    assert "install acme/agent 2.0" in text
    assert "SIGTERM received" in text
    assert text.rstrip().endswith("lat-01: stopped")
    # It installed once, whatever the directive said while the controller caught up.
    assert text.count("install of acme/agent 2.0 succeeded") == 1


def test_an_agent_whose_token_is_refused_exits_with_status_2(server_process: ServerProcess, tmp_path: Path) -> None:
    server_process.start()
    done = subprocess.run(
        [
            RINGFENCE,
            "agent",
            "--server",
            server_process.url,
            "--asset",
            "lat-01",
            "--apply",
            "true",
            "--rollback",
            "true",
        ],
        env=dict(os.environ, RINGFENCE_AGENT_TOKEN="rf_nobody"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "error: the server refused the agent's token: 401" in done.stderr
    assert "the token is unknown or revoked" in done.stderr


def test_a_command_that_runs_too_long_is_killed_and_reported_failed(tmp_path: Path) -> None:
    from ringfence.cli.agent import run_command

    started = time.monotonic()
    outcome = run_command("echo begun; sleep 30", env=dict(os.environ), timeout=1)
    assert time.monotonic() - started < 10
    assert not outcome.succeeded
    assert outcome.detail == "did not finish within 1 s and was killed; begun"
    failed = run_command("echo disk full >&2; exit 3", env=dict(os.environ), timeout=5)
    assert (failed.succeeded, failed.detail) == (False, "exit status 3: disk full")
    assert run_command("true", env=dict(os.environ), timeout=5).succeeded
