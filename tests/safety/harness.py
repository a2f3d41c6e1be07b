"""Play one adversarial rollout to its end, the referee (``checker``) watching every step and every driver call.

Two rigs share one loop (:func:`play`):

- :class:`MemoryRig`: the in-memory repository and the simulation driver over a world in memory;
- :class:`SqlRig`: the SQL repository on a real SQLite file and the file-backed ``simulated`` driver, so that a
  *kill* — the controller process dying at a driver call — is survived the way a restarted process survives
  it: a new :class:`~ringfence.core.rollout.controller.Controller` and a new driver, over what was persisted.

The driver is wrapped by :class:`RefereedDriver`, which is not a mock: every call goes to the real driver.
It asks the referee about rule 7 just before an operation starts, and plays the parts of the world a
simulated driver has no knob for — a host that never answers (its results are never reported), a driver that
refuses an operation, a process killed before or after a call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ringfence.core.driver import Batch, OperationKind, OperationResult
from ringfence.core.errors import ConflictError, DriverError
from ringfence.core.estate import parse_estate_document
from ringfence.core.gates import AssetHealth
from ringfence.core.graph import compile_estate
from ringfence.core.rollout.controller import (
    Controller,
    RolloutRepository,
    abort_rollout,
    pause_rollout,
    resume_rollout,
    roll_back_rollout,
    start_rollout,
)
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.rollout.strategy import StrategyPlan, plan_strategy
from ringfence.core.simulation import FaultModel, SimulatedAsset, SimulatedClock, SimulatedWorld, SimulationDriver
from ringfence.core.update import Update
from ringfence.drivers.simulated import SimulatedDriver
from ringfence.service import rollouts
from ringfence.service.rollouts import SqlRolloutRepository
from ringfence.store.db import make_engine, upgrade

from .checker import Checker, Facts, Move, Progress, RuleViolation
from .strategies import RELEASE, EstateCase, Run

ROLLOUT = "r-safety"


class Killed(BaseException):
    """The controller's process died here. A BaseException, so nothing in the controller catches it."""


# ------------------------------------------------------------------------------------------ world truth


class SimWorld:
    """:class:`~tests.safety.checker.World` over a :class:`SimulatedWorld`."""

    def __init__(self, world: SimulatedWorld, rollout_id: str, silent: frozenset[str]) -> None:
        self.world = world
        self.rollout_id = rollout_id
        self.silent = silent

    def _op(self, kind: str, asset_id: str) -> Any:
        return self.world.operations.get(f"{self.rollout_id}|{kind}|{asset_id}")

    def down(self) -> set[str]:
        return set(self.world.down())

    def unavailable(self) -> set[str]:
        out = self.down()
        for op in self.world.operations.values():
            if op.rollout_id != self.rollout_id or op.kind is OperationKind.restore_point:
                continue
            if op.status == "running":
                out.add(op.asset_id)
        for asset_id in {op.asset_id for op in self.world.operations.values()}:
            apply, rollback = self._op("apply", asset_id), self._op("rollback", asset_id)
            if apply is not None and apply.status == "failed" and (rollback is None or rollback.status != "succeeded"):
                out.add(asset_id)
            if rollback is not None and rollback.status == "failed":
                out.add(asset_id)
        return out

    def install_started(self) -> set[str]:
        return {
            op.asset_id
            for op in self.world.operations.values()
            if op.rollout_id == self.rollout_id and op.kind is OperationKind.apply
        }

    def installs(self, asset_id: str) -> int:
        found = self.world.assets.get(asset_id)
        return found.installs if found is not None else 0

    def runs_release(self, asset_id: str) -> bool:
        found = self.world.assets.get(asset_id)
        return found is not None and found.version == RELEASE

    def reporting(self, asset_id: str) -> bool:
        return asset_id not in self.silent

    def started(self, kind: str, asset_id: str) -> bool:
        return self._op(kind, asset_id) is not None

    def restore_point_verified_before_install(self, asset_id: str) -> bool:
        rp, apply = self._op("restore_point", asset_id), self._op("apply", asset_id)
        return rp is not None and rp.status == "succeeded" and apply is not None and apply.started >= rp.ends


# ------------------------------------------------------------------------------------------ the driver wrapper


@dataclass
class Counters:
    """Kept across restarts: the kill schedule and the refusal count are about the whole run."""

    calls: int = 0
    starts: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    refused: int = 0


class RefereedDriver:
    """The real driver, with the referee asked before each operation starts and the world's worse days played."""

    def __init__(self, inner: SimulationDriver, rig: Rig, counters: Counters) -> None:
        self.inner = inner
        self.rig = rig
        self.counters = counters
        self.name = inner.name

    def _call(self, after: bool) -> None:
        if not after:
            self.counters.calls += 1
        if (self.counters.calls, after) in self.rig.run.kills:
            self.counters.kills += 1
            raise Killed(f"killed {'after' if after else 'before'} driver call {self.counters.calls}")

    def start(self, batch: Batch) -> None:
        self._call(False)
        kind = batch.kind.value
        self.counters.starts[kind] = self.counters.starts.get(kind, 0) + 1
        if self.rig.run.refuse == (kind, self.counters.starts[kind]):
            self.counters.refused += 1
            raise DriverError(f"the test's driver refuses this {kind} (start number {self.counters.starts[kind]})")
        self.inner.poll(Batch(batch.rollout_id, batch.kind, batch.product, batch.version, ()))  # let due events happen
        self.rig.checker.on_start(kind, batch.assets, self.rig.world(), self.rig.clock())
        self.inner.start(batch)
        self._call(True)

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        self._call(False)
        found = self.inner.poll(batch)
        hung = self.rig.run.hung
        # A host that never answers: its operation runs for ever, as far as anyone can tell.
        shown = [r if r.asset_id not in hung else OperationResult(r.asset_id, "running") for r in found]
        self._call(True)
        return shown

    def cancel(self, batch: Batch) -> None:
        self._call(False)
        self.inner.cancel(batch)
        self._call(True)

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        self._call(False)
        found = self.inner.observe(asset_ids)
        self._call(True)
        return found

    def next_event_at(self) -> datetime | None:
        return self.inner.next_event_at()


# ------------------------------------------------------------------------------------------ rigs


class Rig:
    """A rollout of ``case``'s update over its estate, ready to start, with the referee set up."""

    repo: RolloutRepository
    strategy: StrategyPlan

    def __init__(self, case: EstateCase, run: Run) -> None:
        self.case = case
        self.run = run
        self.clock = SimulatedClock()
        self.update = Update.model_validate(case.update)
        self.graph = compile_estate(parse_estate_document(case.document))
        self.facts = Facts.read(case.document, case.update)
        self.counters = Counters()
        self.fault = FaultModel(frozenset(run.fault), after=float(run.fault_after))
        self.checker: Checker = None  # type: ignore[assignment]  # set once the plan is known

    def setup_checker(self, canary_rings: int) -> None:
        self.checker = Checker(
            facts=self.facts,
            canary_rings=canary_rings,
            snapshot_rollback=self.update.rollback == "snapshot",
            state_rule=not self.run.late_fault and not self.run.outside_crashes,
            down_at_start=self.case.down_at_start,
        )

    def initial_world(self) -> SimulatedWorld:
        return SimulatedWorld(
            assets={a: SimulatedAsset(is_down=True, signal="crashed") for a in sorted(self.case.down_at_start)}
        )

    # Overridden by each rig.
    def new_driver(self) -> SimulationDriver:
        raise NotImplementedError

    def world(self) -> SimWorld:
        raise NotImplementedError

    def moves(self) -> list[Move]:
        raise NotImplementedError

    def controller(self) -> Controller:
        self.driver = self.new_driver()
        return Controller(self.repo, RefereedDriver(self.driver, self, self.counters), self.clock)  # type: ignore[arg-type]

    rid: str = ROLLOUT

    def progress(self) -> tuple[RolloutPhase, dict[str, Progress]]:
        with self.repo.session(self.rid) as session:
            view = session.view()
        return view.state.phase, {a.asset_id: Progress(a.ring, a.state) for a in view.assets}


class MemoryRig(Rig):
    def __init__(self, case: EstateCase, run: Run) -> None:
        super().__init__(case, run)
        self._world = self.initial_world()
        memory = MemoryRolloutRepository()
        self.strategy = plan_strategy("ringfence", self.graph, self.update)
        memory.add(ROLLOUT, self.update, self.strategy, at=self.clock())
        self.memory = memory
        self.repo = memory
        self.setup_checker(self.strategy.canary_rings)

    def new_driver(self) -> SimulationDriver:
        return SimulationDriver(
            clock=self.clock,
            timing=self.update.timing,
            fault=self.fault,
            world=self._world,
            restore_point_failures=self.run.restore_point_failures,
            install_failures=self.run.install_failures,
            rollback_failures=self.run.rollback_failures,
            silent=self.run.silent,
        )

    def world(self) -> SimWorld:
        return SimWorld(self._world, ROLLOUT, self.run.silent)

    def moves(self) -> list[Move]:
        return [Move(t.from_phase, t.to_phase, t.ring, t.at, t.reason) for t in self.memory.transitions(ROLLOUT)]

    def crash_outside(self, asset_id: str) -> None:
        """``asset_id`` goes down by itself — unless the rollout touched it (then its health is the release's)."""
        # A silent asset going down is a question of its own (test_run_rules): here the controller can see it.
        touched = asset_id in self.run.silent or any(op.asset_id == asset_id for op in self._world.operations.values())
        asset = self._world.asset(asset_id)
        if not asset.is_down and not touched:
            asset.is_down, asset.signal = True, "crashed"
            asset.failed_at = self.clock().timestamp()
            self.checker.outside_crash(asset_id)


class SqlRig(Rig):
    """SQLite file + file-backed simulated world: what a ``ringfence rollout start`` process leaves behind."""

    def __init__(self, case: EstateCase, run: Run, directory: Path) -> None:
        super().__init__(case, run)
        self.engine = make_engine(f"sqlite:///{directory / 'ringfence.db'}")
        upgrade(self.engine)
        self.world_path = directory / "world.json"
        self.world_path.write_text(json.dumps(self.initial_world().to_document()))
        created = rollouts.create_rollout(
            self.engine,
            estate_text=yaml.safe_dump(case.document, sort_keys=False),
            estate_source="adversarial.yaml",
            update_text=yaml.safe_dump({"apiVersion": "ringfence/v1", "update": case.update}, sort_keys=False),
            update_source="update.yaml",
            actor="tester",
            at=self.clock(),
        )
        assert created.rollout is not None
        self.rollout_id = self.rid = created.rollout.id
        self.strategy = created.strategy
        self.repo = SqlRolloutRepository(self.engine)
        self.setup_checker(self.strategy.canary_rings)

    def new_driver(self) -> SimulationDriver:
        run = self.run
        driver = SimulatedDriver(
            world=str(self.world_path),
            fail=",".join(sorted(run.fault)),
            after=f"{run.fault_after}s",
            apply=f"{self.update.timing.apply}s",
            rollback=f"{self.update.timing.rollback}s",
            restore_point=f"{self.update.timing.restore_point}s",
            restore_point_failures=",".join(sorted(run.restore_point_failures)),
            install_failures=",".join(sorted(run.install_failures)),
            rollback_failures=",".join(sorted(run.rollback_failures)),
            silent=",".join(sorted(run.silent)),
        )
        driver.clock = self.clock  # simulated time, not the wall clock the entry point uses
        return driver

    def world(self) -> SimWorld:
        return SimWorld(self.driver.world, self.rollout_id, self.run.silent)

    def moves(self) -> list[Move]:
        return [
            Move(
                RolloutPhase(str(e.detail["from"])),
                RolloutPhase(str(e.detail["to"])),
                int(e.detail["ring"]),  # type: ignore[arg-type]
                e.at,
                str(e.detail["reason"]),
            )
            for e in rollouts.log(self.engine, self.rollout_id)
            if e.action == "rollout.transition"
        ]

    def crash_outside(self, asset_id: str) -> None:
        raise NotImplementedError("outside crashes are played on the memory rig")


# ------------------------------------------------------------------------------------------ the loop


@dataclass
class Outcome:
    phase: RolloutPhase
    steps: int
    simulated: timedelta
    kills: int
    refused: int
    resumed: int
    exposed: tuple[str, ...]
    trace: list[str]


def step_bound(rig: Rig) -> int:
    """Steps a run may take before it counts as wedged: generous per target and per ring, never unbounded."""
    return 200 + 40 * len(rig.facts.targets) + 20 * len(rig.strategy.rings)


def play(rig: Rig) -> Outcome:
    """Start the rollout and drive it, as people would, until it is over or can only wait for ever."""
    rid = rig.rid
    run = rig.run
    start = rig.clock()
    start_rollout(rig.repo, rid, actor="alice", at=start)
    controller = rig.controller()
    resumes_left = run.resumes
    resumed = 0
    crashes = dict(run.outside_crashes)
    interventions = {i.at_step: i.action for i in run.interventions if i.at_ring is None}
    by_ring = [i for i in run.interventions if i.at_ring is not None]
    rolled_back_by_hand = False
    idle = 0
    bound = step_bound(rig)
    for n in range(1, bound + 1):
        if n in crashes:
            rig.crash_outside(crashes[n])
        action = interventions.get(n)
        if action is not None:
            resumed += _intervene(rig, rid, action)
        for due in [i for i in by_ring if i.at_ring is not None and rig.checker.ring >= i.at_ring]:
            by_ring.remove(due)
            resumed += _intervene(rig, rid, due.action)
        try:
            report = controller.step(rid)
        except Killed as death:
            rig.checker.trace.append(f"** {death}: a new controller and driver over what was persisted")
            controller = rig.controller()
            continue
        phase, assets = rig.progress()
        rig.checker.after_step(rig.clock(), phase, assets, rig.moves(), rig.world())
        if report.is_settled:
            if phase.is_terminal:
                break
            # Waiting for a person, who takes a while to look: the world goes on meanwhile.
            rig.clock.advance(run.reaction)
            if phase is RolloutPhase.PAUSED:
                if resumes_left > 0:
                    resumes_left -= 1
                    resumed += 1
                    resume_rollout(rig.repo, rid, actor="bob", at=rig.clock())
                else:
                    abort_rollout(rig.repo, rid, actor="bob", at=rig.clock(), why="paused too often")
            elif phase is RolloutPhase.HALTED:
                if rig.update.rollback == "none" or rolled_back_by_hand:
                    break  # nothing can take a release without a rollback off again: halted is the end
                rolled_back_by_hand = True
                roll_back_rollout(rig.repo, rid, actor="bob", at=rig.clock())
            else:
                raise RuleViolation(f"settled in {phase}, which no person acts on")
            continue
        if not report.made_progress:
            wake = controller.wake_at()
            if wake is not None:
                rig.clock.advance_to(wake)
                idle = 0
                continue
            # Nothing known will happen. A step that only changed assets' states (an operation given up at its
            # deadline) reports no progress (see test_wedges.py): one more step at the same time is allowed
            # to act on it; a second idle step in a row is a wedge.
            idle += 1
            if idle > 1:
                rig.checker.fail(
                    f"wedged: the rollout is {phase} with {report.in_flight} operations in flight, made no "
                    "progress twice in a row, and neither the driver nor the controller knows of anything "
                    "that will happen"
                )
        else:
            idle = 0
    else:
        rig.checker.fail(f"wedged: not settled after {bound} steps ({(rig.clock() - start)} of simulated time)")
    final, _ = rig.progress()
    ended = final.is_terminal or (final is RolloutPhase.HALTED and rig.update.rollback == "none")
    if not ended:
        rig.checker.fail(f"the run ended in {final}, not in a terminal phase (abort and rollback always end)")
    return Outcome(
        phase=final,
        steps=rig.checker.steps,
        simulated=rig.clock() - start,
        kills=rig.counters.kills,
        refused=rig.counters.refused,
        resumed=resumed,
        exposed=tuple(sorted(rig.world().install_started())),
        trace=rig.checker.trace,
    )


def _intervene(rig: Rig, rid: str, action: str) -> int:
    """A person's move, made only when the phase allows it (the refusals themselves are tested elsewhere)."""
    phase, _ = rig.progress()
    at = rig.clock()
    done = True
    try:
        if action == "pause" and phase.is_running:
            pause_rollout(rig.repo, rid, actor="carol", at=at, why="a look at the dashboards")
        elif action == "resume" and phase is RolloutPhase.PAUSED:
            resume_rollout(rig.repo, rid, actor="carol", at=at)
        elif action == "abort" and (phase.is_running or phase is RolloutPhase.PAUSED):
            abort_rollout(rig.repo, rid, actor="carol", at=at, why="the ward called")
        elif action == "roll back" and phase is RolloutPhase.HALTED and rig.update.rollback != "none":
            roll_back_rollout(rig.repo, rid, actor="carol", at=at)
        else:
            done = False
    except ConflictError as refused:  # pragma: no cover - the phase was checked just before
        raise AssertionError(f"{action} refused in {phase}: {refused}") from None
    if done:
        rig.checker.trace.append(f"-- carol: {action} (in {phase})")
    return int(done and action == "resume")
