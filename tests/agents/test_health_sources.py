"""A rollout names what judges its health, apart from what installs it: the simulated driver installs, the
agents' heartbeats (posted to the real API) judge. Both ways a rollout is driven read the named source:
``ringfence rollout start`` in this process, and the server's own controller loop."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from live_server import RINGFENCE, make_tokens, running_server
from ringfence.cli.main import _register, app
from ringfence.core.gates import AssetStatus
from ringfence.service.driver_state import rollout_driver
from ringfence.service.tokens import issue_token

from .conftest import UPDATE, AppServer, asset_ids, estate_text

_register()
runner = CliRunner()

EVERYONE = asset_ids(3)
KNOWN = "the known health sources are: driver, ansible, heartbeats, prometheus, simulated"
FAST = {"apply": "0s", "rollback": "0s", "restore_point": "0s"}


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def _status(rollout_id: str) -> dict[str, Any]:
    code, output = _cli("rollout", "status", rollout_id, "--json")
    assert code == 0, output
    document: dict[str, Any] = json.loads(output)
    return document


def _beat(
    client: httpx.Client, headers: dict[str, str], assets: list[str], *, failed: frozenset[str] = frozenset()
) -> None:
    now = datetime.now(UTC).isoformat()
    batch = [
        {"asset": a, "status": "failed", "signal": "crashed", "detail": "acme exited 3", "at": now}
        if a in failed
        else {"asset": a, "status": "ok", "at": now}
        for a in assets
    ]
    posted = client.post("/v1/heartbeats", json=batch, headers=headers)
    assert posted.status_code == 200, posted.text


def test_ringfence_rollout_start_is_judged_by_heartbeats_not_by_the_simulated_world(
    app_server: AppServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulated world breaks every asset it updates; the agents say all is well: the rollout completes."""
    engine, client = app_server.engine, app_server.client
    monkeypatch.setenv("RINGFENCE_DATABASE_URL", str(engine.url))
    proxy = {"Authorization": f"Bearer {issue_token(engine, name='vendor-proxy', role='operator').secret}"}
    estate, update = tmp_path / "estate.yaml", tmp_path / "update.yaml"
    estate.write_text(estate_text(3))
    update.write_text(UPDATE.format(bake="0s"))
    args = ("rollout", "create", str(estate), str(update), "--driver", "simulated")
    code, output = _cli(*args, "--health-source", "heartbeats", "--actor", "alice", "--json")
    assert code == 0, output
    rollout_id = json.loads(output)["id"]
    assert _status(rollout_id)["health_source"] == "heartbeats"
    assert "health judged by: heartbeats" in _cli("rollout", "status", rollout_id)[1]

    broken = {**FAST, "fail": ",".join(EVERYONE), "after": "0s"}
    options = [part for key, value in broken.items() for part in ("-o", f"{key}={value}")]
    for _ in range(10):  # until ring 0 is installed
        assert _cli("rollout", "start", rollout_id, "--once", *options)[0] == 0
        canaries = [a["id"] for a in _status(rollout_id)["assets"] if a["ring"] == 0]
        if {a["state"] for a in _status(rollout_id)["assets"] if a["ring"] == 0} == {"applied"}:
            break
    assert {a["state"] for a in _status(rollout_id)["assets"] if a["ring"] == 0} == {"applied"}
    # What the simulated world would say, were the rollout judged by its driver.
    world = rollout_driver(engine, rollout_id, broken).observe(canaries)
    assert {world[a].status for a in canaries} == {AssetStatus.failed}

    for _ in range(30):
        _beat(client, proxy, EVERYONE)  # every agent, after every install, says its asset is well
        code, output = _cli("rollout", "start", rollout_id, "--once", *options)
        if _status(rollout_id)["phase"] in ("completed", "halted", "rolling_back", "rolled_back", "failed"):
            break
    status = _status(rollout_id)
    assert (status["phase"], status["halt_reason"]) == ("completed", None), status
    assert {a["state"] for a in status["assets"]} == {"applied"}


def test_the_servers_loop_halts_on_a_failed_heartbeat_the_simulated_world_never_saw(db_url: str) -> None:
    """The simulated world says every asset is healthy; one canary's agent reports a crash: the gate halts."""
    update = UPDATE.format(bake="10m") + "  timing: {apply: 0s, rollback: 0s, restore_point: 0s}\n"
    with (
        running_server(db_url) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        tokens = make_tokens(server.database_url)
        operator = tokens.headers(tokens.operator)
        stored = client.post("/v1/estates", json={"content": estate_text(3)}, headers=operator)
        assert stored.status_code in (200, 201), stored.text
        body = {"estate": "agents-test", "update": update, "driver": "simulated"}

        unknown = client.post("/v1/rollouts", json={**body, "health_source": "nagios"}, headers=operator)
        assert unknown.status_code == 422, unknown.text
        assert unknown.json()["errors"][0]["field"] == "health_source"
        assert f"there is no health source 'nagios'; {KNOWN}" in unknown.json()["detail"]
        assert client.get("/v1/rollouts", headers=operator).json()["rollouts"] == []  # nothing stored

        created = client.post("/v1/rollouts", json={**body, "health_source": "heartbeats"}, headers=operator)
        assert created.status_code == 201, created.text
        rollout_id = created.json()["id"]
        assert created.json()["health_source"] == "heartbeats"
        page = client.get(f"/rollouts/{rollout_id}", headers={"Cookie": f"ringfence_token={tokens.viewer}"})
        assert page.status_code == 200, page.text
        assert "health judged by heartbeats" in " ".join(page.text.split())
        _beat(client, operator, EVERYONE)
        assert client.post(f"/v1/rollouts/{rollout_id}/start", headers=operator).status_code == 200

        def status() -> dict[str, Any]:
            found: dict[str, Any] = client.get(f"/v1/rollouts/{rollout_id}", headers=operator).json()
            return found

        baking = _wait(status, lambda s: s["phase"] == "baking")
        canaries = sorted(a["id"] for a in baking["assets"] if a["ring"] == 0)
        bad = next(a for a in canaries if a.startswith("srv-"))
        _beat(client, operator, EVERYONE, failed=frozenset({bad}))
        halted = _wait(status, lambda s: s["phase"] in ("rolling_back", "rolled_back", "halted", "failed"))
        assert halted["halt_reason"] is not None
        assert halted["halt_reason"].startswith("ring 0 failed"), halted
        assert "vm/windows-2019/vmware-7/city: 1 of 1 updated" in halted["halt_reason"]
        final = _wait(status, lambda s: s["phase"] in ("rolled_back", "failed"))
        assert final["phase"] == "rolled_back"


def test_an_unknown_health_source_is_refused_at_create_with_the_known_ones(tmp_path: Path) -> None:
    database = tmp_path / "untouched.db"
    estate, update = tmp_path / "estate.yaml", tmp_path / "update.yaml"
    estate.write_text(estate_text(2))
    update.write_text(UPDATE.format(bake="0s"))
    command = [RINGFENCE, "rollout", "create", str(estate), str(update), "--health-source", "nagios", "--json"]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    env["RINGFENCE_DATABASE_URL"] = f"sqlite:///{database}"
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert refused.returncode == 2, refused.stderr
    assert refused.stdout == ""
    assert f"--health-source: there is no health source 'nagios'; {KNOWN}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not database.exists()  # refused before the database was opened


def _wait(read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        found = read()
        if done(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still {found['phase']} after 60 s: {found}")
        time.sleep(0.05)
