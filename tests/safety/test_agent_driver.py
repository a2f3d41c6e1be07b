"""The safety promise with the ``agent`` driver: the real controller, the real directive board and heartbeat
intake on a real SQLite database, and a fleet of simulated agents that do what the directives say.

The agents are played here (``Fleet``) the way ``tests/agents`` does it, through the service functions an agent's
HTTP calls land on (``DirectiveBoard.directive`` for ``GET /v1/directive``, ``record_heartbeats`` for
``POST /v1/heartbeats``): each simulated tick every agent asks what to do, installs or rolls back (which takes
the update's timing), beats ok or failed, and reports results. An asset is *taken out of service* the moment its
agent starts an install or a rollback, so that is where the referee checks rule 7; it checks rules 6 and 7 again
after every controller step. A few examples only: each is hundreds of database transactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import event, given, seed
from hypothesis import strategies as st

from ringfence.core.gates import FailureSignal
from ringfence.core.rollout.controller import abort_rollout, resume_rollout, roll_back_rollout
from ringfence.core.rollout.directive import DirectiveAction
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.simulation import SimulatedClock
from ringfence.drivers.agent import AgentDriver
from ringfence.service import rollouts
from ringfence.service.agents import DirectiveBoard
from ringfence.service.heartbeats import (
    Heartbeat,
    HeartbeatStatus,
    ReportedOperation,
    ReportedResult,
    record_heartbeats,
)
from ringfence.service.rollouts import SqlRolloutRepository
from ringfence.service.tokens import Caller, Role
from ringfence.store.db import make_engine, upgrade

from .checker import Checker, Facts, Move, Progress, RuleViolation
from .conftest import SEED, hunt
from .strategies import RELEASE, EstateCase, adversarial_estates

PROXY = Caller(1, "vendor-proxy", Role.OPERATOR)
TICK = 10
"""Seconds between two rounds of the agents (each asks for its directive and beats once per round)."""
TIMING = {"apply": "30s", "rollback": "30s", "restore_point": "30s"}


@dataclass
class Agent:
    down: bool = False
    silent: bool = False
    version: str | None = None
    busy: tuple[str, float] | None = None
    """(operation, when it ends) while the agent installs or rolls back."""
    started: set[str] = field(default_factory=set)
    installs: int = 0
    crash_at: float | None = None
    failed_install: bool = False
    failed_rollback: bool = False


@dataclass
class Fleet:
    """Simulated agents, one per asset (targets and members outside the rollout), and world truth for the referee."""

    agents: dict[str, Agent]
    fault: frozenset[str]
    fault_after: int
    install_failures: frozenset[str]
    apply_seconds: int
    rollback_seconds: int

    # -- the referee's World
    def down(self) -> set[str]:
        return {a for a, s in self.agents.items() if s.down}

    def unavailable(self) -> set[str]:
        return {
            a for a, s in self.agents.items() if s.down or s.busy is not None or s.failed_install or s.failed_rollback
        }

    def install_started(self) -> set[str]:
        return {a for a, s in self.agents.items() if "apply" in s.started}

    def installs(self, asset_id: str) -> int:
        return self.agents[asset_id].installs

    def runs_release(self, asset_id: str) -> bool:
        return self.agents[asset_id].version == RELEASE

    def reporting(self, asset_id: str) -> bool:
        return not self.agents[asset_id].silent

    def started(self, kind: str, asset_id: str) -> bool:
        return kind in self.agents[asset_id].started

    def restore_point_verified_before_install(self, asset_id: str) -> bool:
        return False  # agents reinstall; no rollout here rolls back by snapshot

    # -- a round of the agents
    def round(self, engine: object, rollout_id: str, checker: Checker, now_s: float, now: object) -> None:
        board = DirectiveBoard(engine, ttl=0, max_age=0)  # type: ignore[arg-type]
        beats: list[Heartbeat] = []
        for asset_id, agent in sorted(self.agents.items()):
            if agent.silent:
                continue
            result: ReportedResult | None = None
            if agent.crash_at is not None and now_s >= agent.crash_at:
                agent.down, agent.crash_at = True, None
            if agent.busy is not None and now_s >= agent.busy[1]:
                operation = agent.busy[0]
                agent.busy = None
                if operation == "apply":
                    ok = asset_id not in self.install_failures
                    agent.failed_install = not ok
                    if ok:
                        agent.version = RELEASE
                        if asset_id in self.fault:
                            agent.crash_at = now_s + self.fault_after
                    result = ReportedResult(ReportedOperation.install, ok, "exit status 0" if ok else "exit status 1")
                else:
                    agent.version, agent.down, agent.failed_install, agent.crash_at = None, False, False, None
                    result = ReportedResult(ReportedOperation.rollback, True, "previous release reinstalled")
            directive = board.directive(asset_id, now)  # type: ignore[arg-type]
            for action, kind, seconds in (
                (DirectiveAction.install, "apply", self.apply_seconds),
                (DirectiveAction.rollback, "rollback", self.rollback_seconds),
            ):
                if directive.action is action and kind not in agent.started and agent.busy is None:
                    checker.on_start(kind, [asset_id], self, now)  # type: ignore[arg-type]
                    agent.started.add(kind)
                    agent.installs += kind == "apply"
                    agent.busy = (kind, now_s + seconds)
            beats.append(
                Heartbeat(
                    asset_id,
                    HeartbeatStatus.failed if agent.down else HeartbeatStatus.ok,
                    at=now,  # type: ignore[arg-type]
                    signal=FailureSignal.crashed if agent.down else None,
                    rollout_id=rollout_id if result is not None else None,
                    result=result,
                )
            )
        record_heartbeats(engine, PROXY, beats, now)  # type: ignore[arg-type]


@st.composite
def agent_cases(draw: st.DrawFn) -> tuple[EstateCase, frozenset[str], int, frozenset[str], frozenset[str]]:
    case = draw(adversarial_estates(max_targets=6, rollback="reinstall"))
    case.update["timing"] = dict(TIMING)
    case.update["bake"] = "120s"
    targets = list(case.targets)
    fault = frozenset(draw(st.lists(st.sampled_from(targets), max_size=len(targets), unique=True)))
    after = draw(st.sampled_from((0, 30, 60, 120)))
    failures = frozenset(draw(st.lists(st.sampled_from(targets), max_size=1, unique=True)))
    up = [t for t in case.asset_ids if t not in case.down_at_start]
    silent = frozenset(draw(st.lists(st.sampled_from(up), max_size=1, unique=True))) if up else frozenset()
    return case, fault, after, failures, silent


@pytest.mark.slow
@seed(SEED)
@hunt(6)
@given(agent_cases())
def test_agents_pulling_the_update_keep_rules_6_and_7_at_every_step(
    tmp_path_factory: pytest.TempPathFactory,
    drawn: tuple[EstateCase, frozenset[str], int, frozenset[str], frozenset[str]],
) -> None:
    case, fault, after, install_failures, silent = drawn
    directory: Path = tmp_path_factory.mktemp("agents")
    clock = SimulatedClock()
    engine = make_engine(f"sqlite:///{directory / 'ringfence.db'}")
    upgrade(engine)
    try:
        created = rollouts.create_rollout(
            engine,
            estate_text=yaml.safe_dump(case.document, sort_keys=False),
            estate_source="adversarial.yaml",
            update_text=yaml.safe_dump({"apiVersion": "ringfence/v1", "update": case.update}, sort_keys=False),
            update_source="update.yaml",
            actor="alice",
            at=clock(),
            driver="agent",
        )
        assert created.rollout is not None
        rid = created.rollout.id
        facts = Facts.read(case.document, case.update)
        checker = Checker(facts, created.strategy.canary_rings, False, True, case.down_at_start)
        fleet = Fleet(
            agents={a: Agent(down=a in case.down_at_start, silent=a in silent) for a in case.asset_ids},
            fault=fault,
            fault_after=after,
            install_failures=install_failures,
            apply_seconds=30,
            rollback_seconds=30,
        )
        driver = AgentDriver(engine=engine, heartbeat_timeout="1m", install_timeout="5m", clock=clock)
        repo = SqlRolloutRepository(engine)
        controller = rollouts.controller(engine, driver, clock)
        start = clock()
        fleet.round(engine, rid, checker, clock().timestamp(), clock())  # the agents beat before the start
        rollouts.start(engine, rid, actor="alice", at=clock())
        resumes, rolled_back = 1, False
        for _ in range(2000):
            clock.advance(TICK)
            fleet.round(engine, rid, checker, clock().timestamp(), clock())
            report = controller.step(rid)
            with repo.session(rid) as session:
                view = session.view()
            moves = [
                Move(
                    RolloutPhase(str(e.detail["from"])),
                    RolloutPhase(str(e.detail["to"])),
                    int(str(e.detail["ring"])),
                    e.at,
                    str(e.detail["reason"]),
                )
                for e in rollouts.log(engine, rid)
                if e.action == "rollout.transition"
            ]
            assets = {a.asset_id: Progress(a.ring, a.state) for a in view.assets}
            checker.after_step(clock(), view.state.phase, assets, moves, fleet)
            phase = view.state.phase
            if phase.is_terminal:
                break
            if report.is_settled:
                if phase is RolloutPhase.PAUSED:
                    if resumes:
                        resumes -= 1
                        resume_rollout(repo, rid, actor="bob", at=clock())
                    else:
                        abort_rollout(repo, rid, actor="bob", at=clock(), why="paused again")
                elif phase is RolloutPhase.HALTED:
                    if rolled_back:
                        raise RuleViolation("halted again after a rollback was asked for")
                    rolled_back = True
                    roll_back_rollout(repo, rid, actor="bob", at=clock())
        else:
            raise RuleViolation(f"wedged: still {phase} after {clock() - start} of simulated time")
        event(f"ended {phase}")
        assert clock() - start < timedelta(days=1)
    finally:
        engine.dispose()
