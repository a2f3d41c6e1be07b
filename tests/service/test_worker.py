"""Every driver driven by the service: ``ringfence worker`` loops, the options kept with a rollout, and what a
person is told when no worker can drive a rollout.

- an ansible rollout created at the console with ``--driver-option`` (relative paths) and started as the API
  starts it is driven to the end by a worker's loop on real Ansible, from the options kept in the database;
- the server's own loop does not run ansible: a running ansible rollout's status (API and page) says it is
  waiting for a worker that can run driver 'ansible', and stops saying so once a worker that runs it beats;
- bad input to ``rollout create --driver-option`` and ``ringfence worker`` is exit 2 with nothing stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from drivers.ansible_fixtures import HEALTH, RELEASE, ROLLBACK, SNAPSHOT, UPDATE, build_fleet
from live_server import RINGFENCE, make_tokens, running_server
from ringfence.core.clock import utc_now
from ringfence.service import rollouts
from ringfence.service.runner import ControllerLoop, check_driver
from ringfence.service.workers import kept_driver_options
from ringfence.store.db import make_engine, session_scope, upgrade
from ringfence.store.workers import WorkerBeat, put_worker

UPDATE_FILE = f"""
apiVersion: ringfence/v1
update:
  id: ward-agent-7.16
  product: acme/ward-agent
  version: "{RELEASE}"
  targets: "attrs.group.workstations=true"
  strata: [attrs.model]
  rings: [1, "100%"]
  bake: 0s
  rollback: snapshot
"""
SIMPLE_ESTATE = """
apiVersion: ringfence/v1
estate: tiny
assets:
  - {id: pc-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: pc-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
"""
SIMPLE_UPDATE = """
apiVersion: ringfence/v1
update: {id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 0s, rollback: reinstall}
"""


def cli(*args: str, cwd: Path, url: str) -> subprocess.CompletedProcess[str]:
    assert RINGFENCE is not None
    env = {**os.environ, "RINGFENCE_DATABASE_URL": url, "RINGFENCE_ACTOR": "tester"}
    return subprocess.run([RINGFENCE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ringfence.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.mark.slow
def test_an_ansible_rollout_is_driven_by_a_worker_from_the_options_kept_with_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    fleet = build_fleet(tmp_path / "fleet", count=3)
    estate = tmp_path / "estate.yaml"
    imported = subprocess.run(
        [sys.executable, "-m", "ringfence", "import", "ansible", str(fleet.inventory), "--out", str(estate)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    (tmp_path / "update.yaml").write_text(UPDATE_FILE)
    playbooks = Path(os.path.relpath(UPDATE.parent, tmp_path))
    created = cli(
        "rollout",
        "create",
        "estate.yaml",
        "update.yaml",
        "--driver",
        "ansible",
        "-o",
        f"inventory={os.path.relpath(fleet.inventory, tmp_path)}",
        "-o",
        f"update_playbook={playbooks / UPDATE.name}",
        "-o",
        f"snapshot_playbook={playbooks / SNAPSHOT.name}",
        "-o",
        f"rollback_playbook={playbooks / ROLLBACK.name}",
        "-o",
        f"health_playbook={playbooks / HEALTH.name}",
        "-o",
        "artifacts_dir=artifacts",
        "-o",
        "timeout=5m",
        "--json",
        cwd=tmp_path,
        url=sqlite_url,
    )
    assert created.returncode == 0, created.stderr
    engine = make_engine(sqlite_url)
    loop = ControllerLoop(engine, interval=0.2, runs=["ansible"], role="worker")
    try:
        rollout_id = rollouts.status(engine, "r-000001").rollout.id
        kept = kept_driver_options(engine, rollout_id)
        # Made absolute where the person ran the command: a worker started anywhere reads the same files.
        assert kept["inventory"] == str(fleet.inventory.resolve())
        assert kept["artifacts_dir"] == str((tmp_path / "artifacts").resolve())
        check_driver(engine, rollout_id)  # what POST /v1/rollouts/{id}/start does before it moves
        rollouts.start(engine, rollout_id, actor="olga", at=utc_now())
        loop.start()
        deadline = time.monotonic() + 240
        while (phase := rollouts.status(engine, rollout_id).rollout.state.phase).value != "completed":
            assert not phase.is_terminal, f"the rollout ended {phase}: {loop.stats}"
            assert time.monotonic() < deadline, f"still {phase}: {loop.stats}"
            time.sleep(0.2)
        assert {fleet.version(h) for h in fleet.hosts} == {RELEASE}
        assert all(fleet.has_snapshot(h) for h in fleet.hosts)
        assert (tmp_path / "artifacts" / rollout_id / "ledger.json").exists()
    finally:
        loop.stop()
        engine.dispose()


def test_a_running_rollout_no_live_worker_can_drive_says_it_waits_for_one(tmp_path: Path, sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        created = rollouts.create_rollout(
            engine,
            estate_text=SIMPLE_ESTATE,
            estate_source="estate.yaml",
            update_text=SIMPLE_UPDATE,
            update_source="update.yaml",
            actor="tester",
            at=utc_now(),
            driver="ansible",
        )
        assert created.rollout is not None
        rid = created.rollout.id
        with running_server(sqlite_url) as server:
            tokens = make_tokens(sqlite_url)
            with httpx.Client(base_url=server.url, headers=tokens.headers(tokens.operator), timeout=20) as client:
                before = client.get(f"/v1/rollouts/{rid}").json()
                assert before["waiting_for_worker"] is None  # pending: waiting for a person, not a worker
                started = client.post(f"/v1/rollouts/{rid}/start")
                assert started.status_code == 200, started.text
                time.sleep(0.5)  # several turns of the server's loop, which runs simulated and agent only
                status = client.get(f"/v1/rollouts/{rid}").json()
                assert status["phase"] == "applying"
                assert status["waiting_for_worker"].startswith("waiting for a worker that can run driver 'ansible'")
                assert status["driven_by"] is None
                page = httpx.get(f"{server.url}/rollouts/{rid}", cookies={"ringfence_token": tokens.viewer})
                assert page.status_code == 200, page.text[:300]
                assert "waiting for a worker that can run driver &#39;ansible&#39;" in page.text

                # A worker that runs ansible beats (as `ringfence worker --driver ansible` does): no longer waiting.
                now = utc_now()
                beat = WorkerBeat("worker@elsewhere:1:x", "elsewhere", 1, "worker", ("ansible",), (), 2.0, now, now)
                with session_scope(engine) as session:
                    put_worker(session, beat)
                assert client.get(f"/v1/rollouts/{rid}").json()["waiting_for_worker"] is None
                # Its heartbeat stops: after max(3 × its interval, 15 s) it is dead, and the rollout waits again.
                stale = now - timedelta(seconds=16)
                with session_scope(engine) as session:
                    put_worker(
                        session, WorkerBeat(beat.id, "elsewhere", 1, "worker", ("ansible",), (), 2.0, stale, stale)
                    )
                assert client.get(f"/v1/rollouts/{rid}").json()["waiting_for_worker"] is not None
                with engine.connect() as connection:
                    serve = connection.execute(sa.text("SELECT role, drivers FROM workers WHERE role = 'serve'")).all()
                assert len(serve) == 1  # the server's own loop beats too, with the drivers it runs
                assert "ansible" not in str(serve[0][1])
    finally:
        engine.dispose()


def test_bad_driver_options_and_worker_flags_are_exit_2_with_nothing_stored(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "estate.yaml").write_text(SIMPLE_ESTATE)
    (tmp_path / "update.yaml").write_text(SIMPLE_UPDATE)
    unknown = cli("rollout", "create", "estate.yaml", "update.yaml", "-o", "colour=blue", cwd=tmp_path, url=sqlite_url)
    assert unknown.returncode == 2, unknown.stderr
    assert "does not take these options (colour)" in unknown.stderr
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM rollouts")).scalar() == 0
    finally:
        engine.dispose()
    for args, said in (
        (("--interval", "0"), "is not a number of seconds above 0"),
        (("--interval", "nan"), "is not a number of seconds above 0"),
        (("--driver", "teleport"), "there is no driver 'teleport'"),
    ):
        done = cli("worker", *args, cwd=tmp_path, url=sqlite_url)
        assert done.returncode == 2, (args, done.stderr)
        assert said in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
