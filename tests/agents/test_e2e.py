"""End to end: a real server, 36 real agent processes, and a bad update (over SQLite and PostgreSQL).

The estate has three strata of twelve assets. The update's install breaks the health of the servers (the
``vm/windows-2019/vmware-7`` stratum): after installing, such an asset's ``--health`` command fails. The
server's own controller loop drives the rollout on the ``agent`` driver. Expected: the canary ring (one asset
per stratum) installs, the server canary's failed health check fails the gate, the rollout halts at ring 0
and rolls back, the rollback directives reach the canaries (the broken one included), and none of the other
33 agents ever runs its install command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from live_server import RINGFENCE, ServerProcess
from ringfence.core.rollout.state import RolloutPhase
from ringfence.service import rollouts
from ringfence.service.tokens import issue_token
from ringfence.store.db import make_engine, session_scope
from ringfence.store.observations import list_observations
from ringfence.store.records import ObservationKind

from .conftest import asset_ids, create_agent_rollout

pytestmark = pytest.mark.slow

PER_STRATUM = 12
TERMINAL = (RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED, RolloutPhase.COMPLETED)


def test_a_bad_update_halts_at_the_canary_and_the_other_agents_never_install(
    any_server_process: ServerProcess, tmp_path: Path
) -> None:
    server_process = any_server_process
    # A healthy agent must not be judged lost because a busy test machine slowed its heartbeats down; the
    # broken canary is caught by its failing health check, not by the timeout.
    server_process.env["RINGFENCE_AGENT_HEARTBEAT_TIMEOUT"] = "30s"
    server_process.start()
    engine = make_engine(server_process.database_url)
    marks = tmp_path / "marks"
    marks.mkdir()
    logs = tmp_path / "agents"
    logs.mkdir()
    assets = asset_ids(PER_STRATUM)
    agents: dict[str, subprocess.Popen[bytes]] = {}

    def report() -> str:
        tails = [f"--- {p.name}\n{p.read_text(errors='replace')[-600:]}" for p in sorted(logs.iterdir())[:6]]
        return "\n".join([*tails, "--- server", server_process.log()])

    try:
        for asset in assets:
            token = issue_token(engine, name=f"agent-{asset}", role="agent", asset_id=asset).secret
            installed, broken, rolled = (marks / f"{asset}.{s}" for s in ("installed", "broken", "rolledback"))
            # The bad release: installing it on a server breaks the server's service.
            apply = f"touch {installed}" + (f" && touch {broken}" if asset.startswith("srv-") else "")
            command = [
                RINGFENCE,
                "agent",
                "--server",
                server_process.url,
                "--asset",
                asset,
                "--apply",
                apply,
                "--rollback",
                f"rm -f {broken} && touch {rolled}",
                "--health",
                f"test ! -e {broken}",
                "--interval",
                "2s",
                # Ask again within 2 s whatever the server hints (it says 30 s before any rollout includes
                # the asset), so the test does not wait for the first directive of ring 0.
                "--max-wait",
                "2s",
            ]
            with (logs / f"{asset}.log").open("wb") as out:
                agents[asset] = subprocess.Popen(
                    command, env=dict(os.environ, RINGFENCE_AGENT_TOKEN=token), stdout=out, stderr=subprocess.STDOUT
                )

        # Every agent beats before the rollout starts, so each stratum's control group is healthy.
        started = datetime.now(UTC) - timedelta(minutes=5)
        deadline = time.monotonic() + 240
        while True:
            with session_scope(engine, readonly=True) as session:
                heard = {
                    o.asset_id for o in list_observations(session, since=started, kinds=[ObservationKind.HEARTBEAT])
                }
            if heard >= set(assets):
                break
            assert time.monotonic() < deadline, f"silent agents: {sorted(set(assets) - heard)}\n{report()}"
            time.sleep(0.5)

        rollout_id = create_agent_rollout(engine, PER_STRATUM, bake="2m")
        deadline = time.monotonic() + 120
        while True:
            found = rollouts.status(engine, rollout_id)
            if found.rollout.state.phase in TERMINAL:
                break
            assert time.monotonic() < deadline, f"still {found.rollout.state.phase}\n{report()}"
            time.sleep(0.5)

        assert found.rollout.state.phase is RolloutPhase.ROLLED_BACK, report()
        halt = found.rollout.state.halt_reason or ""
        assert "stratum vm/windows-2019/vmware-7/city: 1 of 1 updated failed a service check" in halt
        # Halted at the canary ring: no transition ever opened ring 1.
        transitions = [e for e in rollouts.log(engine, rollout_id) if e.action == "rollout.transition"]
        assert {e.detail["ring"] for e in transitions} == {0}
        canaries = {a.asset_id for a in found.assets if a.ring == 0}
        assert len(canaries) == 3
        assert {a.state.value for a in found.assets if a.ring == 0} == {"rolled_back"}
        assert {a.state.value for a in found.assets if a.ring > 0} == {"skipped"}

        installed = {p.name.removesuffix(".installed") for p in marks.glob("*.installed")}
        assert installed == canaries, "only the canaries ever ran the install command"
        rolled = {p.name.removesuffix(".rolledback") for p in marks.glob("*.rolledback")}
        assert rolled == canaries, "every canary, the broken server included, ran the rollback command"
        bad = next(a for a in canaries if a.startswith("srv-"))
        assert not (marks / f"{bad}.broken").exists()
        assert "rollback acme/agent 2.0" in (logs / f"{bad}.log").read_text()

        alive = [a for a, p in agents.items() if p.poll() is not None]
        assert alive == [], f"agents that died: {alive}\n{report()}"
    finally:
        for process in agents.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for asset, process in agents.items():
            try:
                codes[asset] = process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[asset] = process.wait()
        engine.dispose()
    unclean = {asset: code for asset, code in codes.items() if code != 0}
    assert unclean == {}, "every agent exits cleanly on SIGTERM"
