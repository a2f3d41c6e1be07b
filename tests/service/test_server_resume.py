"""A ``ringfence serve`` killed with SIGKILL mid-install carries on with those installs when it starts again.

The server's controller loop drives rollouts on the simulated driver in-process. Its world used to live in the
server's memory: after a kill -9 the assets stayed ``applying`` for ever under a decision already marked done.
Now the world is kept in the database per rollout, so the restarted server finds the installs the killed one
had begun; they end at the time they were given and the rollout completes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from live_server import RINGFENCE, ServerProcess

pytestmark = pytest.mark.slow

ESTATE = """
apiVersion: ringfence/v1
estate: small
services:
  - {id: web, name: Web, tier: 1, requires: [{any: 1, of: [app-1, app-2]}]}
assets:
  - {id: app-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-3, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
"""
UPDATE = """
apiVersion: ringfence/v1
update:
  id: agent-2
  product: acme/agent
  version: "2"
  rings: [1, "100%"]
  bake: 0s
  rollback: reinstall
  timing: {apply: 2s, rollback: 1s, restore_point: 0s}
"""
TIMEOUT = 60.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    found = ServerProcess(
        database_url=f"sqlite:///{tmp_path / 'ringfence.db'}",
        log_path=tmp_path / "server.log",
        env={"RINGFENCE_HOME": str(tmp_path / "home")},
    )
    try:
        yield found
    finally:
        found.close()


def cli(server: ServerProcess, *args: str) -> str:
    assert RINGFENCE is not None
    done = subprocess.run(
        [RINGFENCE, *args],
        env={**server.env, "RINGFENCE_DATABASE_URL": server.database_url, "RINGFENCE_ACTOR": "tester"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_server_killed_mid_install_finishes_those_installs_after_a_restart(
    server: ServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "estate.yaml").write_text(ESTATE)
    (tmp_path / "update.yaml").write_text(UPDATE)
    rollout = json.loads(
        cli(server, "rollout", "create", str(tmp_path / "estate.yaml"), str(tmp_path / "update.yaml"), "--json")
    )["id"]
    token = json.loads(
        cli(server, "token", "create", "ops", "--role", "operator", "--json", "--database", server.database_url)
    )["token"]
    engine = sa.create_engine(server.database_url)

    def scalar(query: str) -> object:
        with engine.connect() as connection:
            return connection.execute(sa.text(query)).scalar()

    try:
        server.start()
        started = httpx.post(
            f"{server.url}/v1/rollouts/{rollout}/start", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert started.status_code == 200, started.text
        deadline = time.monotonic() + TIMEOUT
        while not (
            scalar("SELECT count(*) FROM rollout_assets WHERE state = 'applying'")
            and not scalar("SELECT count(*) FROM decisions WHERE status = 'pending'")
        ):
            assert time.monotonic() < deadline, f"no install began: {server.log()}"
            time.sleep(0.02)
        assert server.process is not None
        killed_at = time.time()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(TIMEOUT)
        with engine.connect() as connection:
            caught = set(
                connection.execute(sa.text("SELECT asset_id FROM rollout_assets WHERE state = 'applying'")).scalars()
            )
        assert caught

        server.start()
        deadline = time.monotonic() + TIMEOUT
        while scalar("SELECT phase FROM rollouts") != "completed":
            assert time.monotonic() < deadline, f"the restarted server did not finish the rollout: {server.log()}"
            time.sleep(0.1)

        assert scalar("SELECT count(*) FROM rollout_assets WHERE state != 'applied'") == 0
        document = scalar(f"SELECT document FROM driver_state WHERE rollout_id = '{rollout}'")
        assert isinstance(document, str)
        world = json.loads(document)
        assert all(asset["installs"] == 1 for asset in world["assets"].values())
        for asset in caught:
            install = world["operations"][f"{rollout}|apply|{asset}"]
            # Begun by the killed server, ended when it said it would: the restarted one did not start it again.
            assert install["started"] < killed_at
            assert world["assets"][asset]["installed_at"] == install["ends"]
    finally:
        engine.dispose()
