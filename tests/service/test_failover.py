"""``ringfence worker`` processes on one PostgreSQL: kill -9 the one driving a rollout, another carries on.

Real processes, a real database: four workers (``ringfence worker --driver simulated``) on a fresh schema,
then three rollouts in a row of a good release on the simulated driver (its world kept in the database, so
"installed twice" is countable); for each, wait a random moment, SIGKILL whichever worker holds the rollout's
claim (two or more others are alive), and wait for the rollout to end. Then, from what was recorded (the
world's operations, the gate verdicts, the rollout's assets, the workers' heartbeats), independently of the
controller:

- another worker took the rollout over and completed it;
- every target was installed exactly once (the world counts installs; an install begun by the killed worker
  was not begun again), and at no moment did two live workers say they drove the rollout;
- rule 7: at no moment were more members of a group being installed than the group can spare (n − K);
- rule 6: no asset after the canary phase began its install before the canary phase's gate passed, with a
  canary of its stratum installed.

The kill moments are drawn from ``RINGFENCE_SAFETY_SEED`` (or a fixed seed), printed with any failure.
bench/failover.py measures how long the takeover takes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from live_server import RINGFENCE
from ringfence.core.clock import utc_now
from ringfence.service import rollouts
from ringfence.store.db import make_engine, upgrade

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ESTATE = """
apiVersion: ringfence/v1
estate: failover
services:
  - {id: web, name: Web, tier: 3, requires: [{any: 2, of: [web-1, web-2, web-3, web-4]}]}
  - {id: db, name: DB, tier: 3, requires: [{any: 1, of: [db-1, db-2]}]}
assets:
  - {id: web-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: web-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: web-3, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: web-4, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: db-1, kind: vm, attrs: {os: windows}, software: [{product: acme/agent, version: "1"}]}
  - {id: db-2, kind: vm, attrs: {os: windows}, software: [{product: acme/agent, version: "1"}]}
  - {id: tool-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: tool-2, kind: vm, attrs: {os: windows}, software: [{product: acme/agent, version: "1"}]}
"""
UPDATE = """
apiVersion: ringfence/v1
update:
  id: agent-2
  product: acme/agent
  version: "2"
  strata: [attrs.os]
  rings: [1, "50%", "100%"]
  bake: 0s
  rollback: reinstall
  timing: {apply: 1s, rollback: 1s, restore_point: 0s}
"""
GROUPS = {"web": (2, {"web-1", "web-2", "web-3", "web-4"}), "db": (1, {"db-1", "db-2"})}
STRATUM = {
    **dict.fromkeys(["web-1", "web-2", "web-3", "web-4", "tool-1"], "linux"),
    **dict.fromkeys(["db-1", "db-2", "tool-2"], "windows"),
}
STUCK = 90.0
"""Seconds after which a run that has not ended is a failure (no timing is asserted: bench/failover.py measures)."""
SEED = int(os.environ.get("RINGFENCE_SAFETY_SEED", "20261205"))


class Workers:
    """``ringfence worker`` subprocesses on one database, each logging to a file of its own."""

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._logs: list[BinaryIO] = []

    def start(self, count: int) -> None:
        assert RINGFENCE is not None
        for n in range(len(self.processes), len(self.processes) + count):
            log = (self.directory / f"worker-{n}.log").open("wb")
            self._logs.append(log)
            process = subprocess.Popen(
                [RINGFENCE, "worker", "--driver", "simulated", "--interval", "0.2"],
                env={**os.environ, "RINGFENCE_DATABASE_URL": self.url, "RINGFENCE_ACTOR": "tester"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.processes[process.pid] = process

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.directory.glob("worker-*.log")))

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for log in self._logs:
            log.close()


@pytest.fixture
def workers(postgres_url: str, tmp_path: Path) -> Iterator[Workers]:
    engine = make_engine(postgres_url)
    upgrade(engine)  # once, before the workers start (each would migrate it too)
    engine.dispose()
    found = Workers(postgres_url, tmp_path)
    try:
        yield found
    finally:
        found.close()


def rows(engine: Engine, query: str, **params: object) -> list[sa.Row[tuple[object, ...]]]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text(query), params))


def drivers_of(engine: Engine, rollout_id: str) -> list[int]:
    """The pids of the workers whose last heartbeat says they drive ``rollout_id``."""
    found = []
    for pid, driving in rows(engine, "SELECT pid, driving FROM workers"):
        listed = json.loads(driving) if isinstance(driving, str) else driving
        if rollout_id in listed:
            found.append(int(str(pid)))
    return found


def wait_for(condition: object, what: str, workers: Workers) -> None:
    assert callable(condition)
    deadline = time.monotonic() + STUCK
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {STUCK:.0f} s:\n{workers.logs()}"
        time.sleep(0.05)


RUNS = 3
"""Rollouts in a row, each with its driving worker killed: four workers are started, so two or more are alive
at every kill."""


def test_killing_the_driving_worker_hands_the_rollout_to_another_with_no_asset_updated_twice(
    workers: Workers,
) -> None:
    engine = make_engine(workers.url)
    try:
        workers.start(RUNS + 1)
        wait_for(lambda: len(rows(engine, "SELECT id FROM workers")) == RUNS + 1, "every worker beats", workers)
        for run in range(RUNS):
            kill_the_driver_mid_rollout(engine, workers, run)
    finally:
        engine.dispose()


def kill_the_driver_mid_rollout(engine: Engine, workers: Workers, run: int) -> None:
    delay = random.Random(SEED * 10 + run).uniform(0.3, 4.0)
    where = f"(run {run}, seed {SEED}, kill {delay:.2f} s after the start)"
    created = rollouts.create_rollout(
        engine,
        estate_text=ESTATE,
        estate_source="estate.yaml",
        update_text=UPDATE,
        update_source="update.yaml",
        actor="tester",
        at=utc_now(),
    )
    assert created.rollout is not None
    rid = created.rollout.id
    rollouts.start(engine, rid, actor="tester", at=utc_now())
    started = time.monotonic()
    wait_for(lambda: len(drivers_of(engine, rid)) == 1, "a worker claims the rollout", workers)
    overlaps: list[list[int]] = []
    while time.monotonic() - started < delay:
        found = drivers_of(engine, rid)
        if len(found) > 1:
            overlaps.append(found)
        time.sleep(0.02)

    victim = drivers_of(engine, rid)
    assert len(victim) == 1, f"one worker drives it at the kill {where}: {victim}"
    phase = rows(engine, "SELECT phase FROM rollouts WHERE id = :id", id=rid)[0][0]
    assert phase not in ("completed", "halted", "failed"), f"the kill came mid-rollout {where}: {phase}"
    killed = workers.processes[victim[0]]
    killed_at = time.time()
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    survivors = {pid for pid, p in workers.processes.items() if p.poll() is None}

    took_over: list[float] = []

    def ended() -> bool:
        found = drivers_of(engine, rid)
        if len([pid for pid in found if pid in survivors]) > 1:
            overlaps.append(found)
        if survivors & set(found) and not took_over:
            took_over.append(time.time() - killed_at)
        return rows(engine, "SELECT phase FROM rollouts WHERE id = :id", id=rid)[0][0] == "completed"

    wait_for(ended, f"the other worker completes the rollout {where}", workers)
    assert overlaps == [], f"two workers drove the rollout at once {where}: {overlaps}"
    assert took_over, f"the other worker said it drove the rollout {where}"
    assert all(workers.processes[pid].poll() is None for pid in survivors), f"the others still run {where}"
    steps_by = {
        str(actor)
        for (actor,) in rows(engine, "SELECT DISTINCT actor FROM audit_log WHERE subject = :s", s=f"rollout:{rid}")
    }
    assert "controller" in steps_by

    # Every target installed exactly once; installs under way at the kill were not begun again.
    document = rows(engine, "SELECT document FROM driver_state WHERE rollout_id = :id", id=rid)[0][0]
    world = json.loads(document) if isinstance(document, str) else document
    targets = set(STRATUM)
    assert set(world["assets"]) == targets, where
    installs = {a: s["installs"] for a, s in world["assets"].items()}
    assert installs == dict.fromkeys(targets, 1), f"installs per asset {where}: {installs}"
    applies = {k.split("|")[2]: op for k, op in world["operations"].items() if k.split("|")[1] == "apply"}
    assert set(applies) == targets, where
    assert all(world["assets"][a]["installed_at"] == op["ends"] for a, op in applies.items()), (
        f"each install ended when it was given to {where}"
    )
    states = {
        str(a): str(s)
        for a, s in rows(engine, "SELECT asset_id, state FROM rollout_assets WHERE rollout_id = :id", id=rid)
    }
    assert set(states.values()) == {"applied"}, where

    # Rule 7: at no moment more members of a group being installed than it can spare.
    for name, (k, members) in GROUPS.items():
        spans = [(applies[m]["started"], applies[m]["ends"]) for m in members]
        for moment, _ in spans:
            busy = sum(1 for s, e in spans if s <= moment < e)
            assert busy <= len(members) - k, f"rule 7, group {name}: {busy} installing at {moment} {where}"

    # Rule 6: after the canary phase only once its gate passed with a canary of the stratum installed.
    plan = rows(engine, "SELECT plan FROM rollouts WHERE id = :id", id=rid)[0][0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    canary_rings = int(plan["canary_rings"])
    canaries = {a for ring in plan["rings"][:canary_rings] for a in ring}
    passed = [
        at
        for ring, at, outcome in rows(
            engine, "SELECT ring, at, outcome FROM gate_verdicts WHERE rollout_id = :id", id=rid
        )
        if int(str(ring)) == canary_rings - 1 and outcome == "passed"
    ]
    assert passed, f"the canary phase's gate passed {where}"
    gate_at = min(_epoch(at) for at in passed)
    for asset in targets - canaries:
        op = applies[asset]
        assert op["started"] >= gate_at, f"rule 6: {asset} began before the canary gate passed {where}"
        judged = [c for c in canaries if STRATUM[c] == STRATUM[asset] and applies[c]["ends"] <= gate_at]
        assert judged, f"rule 6: no installed canary of {STRATUM[asset]} before {asset} {where}"
    # Installs the killed worker had begun ended as given, begun once (their start is before the kill).
    assert any(op["started"] < killed_at for op in applies.values()), where


def _epoch(at: object) -> float:
    if isinstance(at, datetime):
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return datetime.fromisoformat(str(at)).replace(tzinfo=UTC).timestamp()
