"""Kill the controller with SIGKILL at many points and start it again: nothing is updated twice, nothing lost.

A real ``ringfence rollout start`` process runs against a database and a simulated world kept in a JSON
file; the test kills it after the n-th decision (read from the database) plus a random few milliseconds,
again and again, then lets it finish. The world counts every install: none may happen twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa

from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.update import parse_update_text
from ringfence.drivers.simulated import read_world
from ringfence.store.audit import list_audit, verify_audit
from ringfence.store.db import make_engine, session_scope
from ringfence.store.decisions import list_decisions
from ringfence.store.records import DecisionStatus
from ringfence.store.rollouts import list_rollout_assets

pytestmark = pytest.mark.slow

RINGFENCE = [sys.executable, "-m", "ringfence"]
ROLLOUT = "r-000001"


def estate_text() -> str:
    assets = []
    for i in range(1, 7):
        assets.append(
            f"  - {{id: app-{i}, kind: vm, attrs: {{os: linux}}, software: [{{product: acme/agent, version: '1'}}]}}"
        )
    for i in range(1, 9):
        assets.append(
            f"  - {{id: ws-{i}, kind: endpoint, attrs: {{os: win}}, software: [{{product: acme/agent, version: '1'}}]}}"
        )
    return (
        "apiVersion: ringfence/v1\nestate: kill\nservices:\n"
        "  - {id: web, name: Web, tier: 2, requires: [{any: 2, where: 'kind=vm'}]}\n"
        "assets:\n" + "\n".join(assets) + "\n"
    )


UPDATE = """
apiVersion: ringfence/v1
update:
  id: agent-2
  product: acme/agent
  version: "2"
  rings: [1, "30%", "60%", "100%"]
  bake: 1s
  rollback: snapshot
  gate: {baseline_failure_rate: 0.001}
"""


def run_start(env: dict[str, str], world: Path, fail: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *RINGFENCE,
            "rollout",
            "start",
            ROLLOUT,
            "--quiet",
            "--poll-interval",
            "0.05",
            *("-o", f"world={world}", "-o", "restore_point=0s", "-o", "apply=1s", "-o", "rollback=1s"),
            *("-o", f"fail={fail}", "-o", "after=0s"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def progress(engine: sa.Engine) -> int:
    """A counter that moves at every write the controller makes: decisions taken and done, transitions."""
    query = (
        "SELECT (SELECT count(*) FROM decisions) + (SELECT count(*) FROM audit_log)"
        " + (SELECT count(*) FROM decisions WHERE status = 'done')"
    )
    with engine.connect() as connection:
        return int(connection.execute(sa.text(query)).scalar_one())


def phase(engine: sa.Engine) -> RolloutPhase:
    with engine.connect() as connection:
        return RolloutPhase(connection.execute(sa.text("SELECT phase FROM rollouts")).scalar_one())


def test_sigkill_at_many_points_never_updates_an_asset_twice(db_url: str, tmp_path: Path) -> None:
    estate_file, update_file, world = tmp_path / "estate.yaml", tmp_path / "update.yaml", tmp_path / "world.json"
    estate_file.write_text(estate_text())
    update_file.write_text(UPDATE)
    plan = plan_strategy("ringfence", compile_estate(parse_estate_text(estate_text())), parse_update_text(UPDATE))
    failing = sorted(plan.rings[2])[0]  # a bad release shows on one asset of ring 2: halt and roll back there
    env = {**os.environ, "RINGFENCE_DATABASE_URL": db_url, "RINGFENCE_ACTOR": "tester"}
    created = subprocess.run(
        [*RINGFENCE, "rollout", "create", str(estate_file), str(update_file)], env=env, capture_output=True, check=False
    )
    assert created.returncode == 0, created.stderr.decode()

    engine = make_engine(db_url)
    rng = random.Random(20240719)
    kills = 0
    target = 1
    try:
        for round_ in range(60):
            if phase(engine).is_terminal:
                break
            process = run_start(env, world, failing)
            if round_ % 3 == 2:
                time.sleep(rng.uniform(0.2, 3.0))  # anywhere: start-up, a transaction, a driver call
            else:
                deadline = time.monotonic() + 60
                while process.poll() is None and progress(engine) < target and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0, 0.05))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            _, stderr_bytes = process.communicate(timeout=30)
            stderr = stderr_bytes.decode()
            assert process.returncode in (-signal.SIGKILL, 0, 1), stderr
            target = progress(engine) + rng.randint(1, 3)
        final = run_start(env, world, failing)
        _, final_err = final.communicate(timeout=120)
        assert final.returncode == 1, final_err.decode()  # rolled back: the command reports a problem
        assert phase(engine) is RolloutPhase.ROLLED_BACK
        # How many kills land depends on the machine's speed; five restarts mid-flight still exercise recovery.
        assert kills >= 5, f"only {kills} kills landed: the test did not exercise recovery"

        stored = read_world(world)
        targets = {a for ring in plan.rings for a in ring}
        assert all(stored.assets[a].installs <= 1 for a in stored.assets), {
            a: s.installs for a, s in stored.assets.items() if s.installs > 1
        }
        with session_scope(engine, readonly=True) as session:
            assets = {a.asset_id: a for a in list_rollout_assets(session, ROLLOUT)}
            assert set(assets) == targets
            assert list_decisions(session, ROLLOUT, status=DecisionStatus.PENDING) == []
            audit = verify_audit(session)
            assert audit.ok, audit.reason
            log = list_audit(session, subject=f"rollout:{ROLLOUT}")
        # Every target accounted for, and the database agrees with the world about each one.
        for asset_id, state in assets.items():
            simulated = stored.assets.get(asset_id)
            if state.state is AssetState.ROLLED_BACK:
                assert simulated is not None
                assert (simulated.installs, simulated.rollbacks, simulated.version) == (1, 1, None)
                # Updated only after its restore point was taken and verified.
                rp = stored.operations[f"{ROLLOUT}|restore_point|{asset_id}"]
                assert stored.operations[f"{ROLLOUT}|apply|{asset_id}"].started >= rp.ends
            else:
                assert state.state in (AssetState.SKIPPED, AssetState.RESTORE_POINT_TAKEN), (asset_id, state)
                assert simulated is None or simulated.installs == 0
        rolled = {a for a, p in assets.items() if p.state is AssetState.ROLLED_BACK}
        assert rolled == set(plan.rings[0]) | set(plan.rings[1]) | set(plan.rings[2])
        moves = [(e.detail["from"], e.detail["to"]) for e in log if e.action == "rollout.transition"]
        assert moves[-2:] == [("halted", "rolling_back"), ("rolling_back", "rolled_back")]
        # One unbroken path from pending: each transition starts where the one before ended, so none was
        # recorded twice by a controller restarted after a kill (nor one lost between two that were).
        assert moves[0][0] == RolloutPhase.PENDING.value
        broken = [(before, after) for before, after in pairwise(moves) if before[1] != after[0]]
        assert broken == [], moves
    finally:
        engine.dispose()
