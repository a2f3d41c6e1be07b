"""What the safety guard adds to a ring's opening over a 1,000,000-asset estate, on several estate shapes.

Target ([rollouts] issue 10): the guard adds ≤ 5% to a ring's opening on 1,000,000 assets. A ring's opening
is the controller step that starts the ring's installs: read the view, reconcile, observe health, reconcile
again, the guard (``Controller._guarded``: build its plan and state, ``check_opening``), persist the
decision, hand it to the driver, poll, record. It is measured on each estate shape of ``shapes.py``.

Each shape runs in its own worker process: load and compile the estate, plan the endpoint-agent update of
``plan_1m.py`` with the ``ringfence`` strategy (rollback by reinstalling, so a ring opens straight into its
installs; a bake of one minute; every operation takes 0 s in the simulated world), put the rollout in the
in-memory repository with the simulated driver on a simulated clock, and step it until it has opened every
canary ring and the first ring after the canary phase. Each of those openings is timed:

- **with the guard** — the controller as it ships, the time ``_guarded`` takes measured apart;
- **without** — the same controller with ``_guarded`` returning the decision unchanged (a bench harness).

The rollout's stored state and the simulated world are kept from just before the opening, and the opening
is replayed from there, alternately with and without the guard, ``repeat`` times each; the best of each is
compared (noise only ever adds time). Ring 0's opening is the rollout's first check: each replay starts
from a fresh controller, so each compiles the guard's plan again (and the unguarded one recomputes what a
new controller computes once, too). A later opening reuses the controllers of the earlier ones, as a running
controller does. A full collection of the cyclic garbage collector runs before each replay so that both
variants start from the same heap; a collection the guard's allocations set off is charged to it.

    .venv/bin/python bench/guard_1m.py [--assets N] [--quick] [--workdir DIR] [--shapes NAME ...]
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import common
import plan_1m
import shapes
from ringfence.core.driver import OperationKind
from ringfence.core.rollout.controller import Controller, StepReport, start_rollout
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.reconcile import Decision, RolloutView
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.simulation import SimulatedClock, SimulatedWorld, SimulationDriver

NAME = "guard_1m"
NOMINAL_ASSETS = 1_000_000
TARGET_ADDED = 5.0
"""Percent the guard may add to a ring's opening."""
ROLLOUT = "guard-bench"
MAX_STEPS = 200


@dataclass
class MeasuredController(Controller):
    """The controller as it ships, or (``guard=False``) with ``_guarded`` handing the decision back unchanged."""

    guard: bool = True
    guard_seconds: list[float] = field(default_factory=list)
    guard_cpu_seconds: list[float] = field(default_factory=list)

    def _guarded(self, view: RolloutView, decision: Decision) -> Decision:
        if not self.guard:
            return decision
        checked, seconds, cpu_seconds = common.cpu_timed(super()._guarded, view, decision)
        self.guard_seconds.append(seconds)
        self.guard_cpu_seconds.append(cpu_seconds)
        return checked


class ReplayableRepository(MemoryRolloutRepository):
    """The in-memory repository, whose stored rollout can be kept and put back to replay a step.

    A session works on a copy and commits it as a new object, so the stored rollout a step starts from is
    never changed in place: keeping a reference is a snapshot."""

    def kept(self, rollout_id: str) -> object:
        return self._rollouts[rollout_id]

    def put_back(self, rollout_id: str, kept: object) -> None:
        self._rollouts[rollout_id] = kept  # type: ignore[assignment]


def update_text(product: str, version: str) -> str:
    return (
        "apiVersion: ringfence/v1\n"
        "update:\n"
        f"  id: agent-{version}\n"
        f"  product: {product}\n"
        f'  version: "{version}"\n'
        "  rings: [1, '5%', '25%', '100%']\n"
        "  bake: 1m\n"
        "  rollback: reinstall\n"
        "  timing: {apply: 0s, rollback: 0s, restore_point: 0s}\n"
    )


def installs_started(report: StepReport) -> int:
    return sum(len(a.assets) for a in report.started if a.kind is OperationKind.apply)


@dataclass
class Opening:
    """Every replay of one ring's opening."""

    ring: int
    installs: int = 0
    with_guard: list[float] = field(default_factory=list)
    with_guard_cpu: list[float] = field(default_factory=list)
    guard: list[float] = field(default_factory=list)
    guard_cpu: list[float] = field(default_factory=list)
    without: list[float] = field(default_factory=list)
    without_cpu: list[float] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "ring": self.ring,
            "installs": self.installs,
            "with_guard_seconds": self.with_guard,
            "with_guard_cpu_seconds": self.with_guard_cpu,
            "guard_seconds": self.guard,
            "guard_cpu_seconds": self.guard_cpu,
            "without_guard_seconds": self.without,
            "without_guard_cpu_seconds": self.without_cpu,
        }


class Rig:
    """One rollout in the in-memory repository, its simulated world, and the controller that drives it."""

    def __init__(self, strategy: Any, repeat: int) -> None:
        self.clock = SimulatedClock()
        self.repeat = repeat
        self.repository = ReplayableRepository()
        self.repository.add(ROLLOUT, strategy.update, strategy, at=self.clock())
        start_rollout(self.repository, ROLLOUT, actor="bench", at=self.clock())
        self.timing = strategy.update.timing
        self.controller = self._controller(SimulatedWorld())

    def _controller(self, world: SimulatedWorld) -> MeasuredController:
        driver = SimulationDriver(clock=self.clock, timing=self.timing, world=world)
        return MeasuredController(self.repository, driver, self.clock, actor="bench")

    def state(self) -> tuple[RolloutPhase, int]:
        state = self.repository.state(ROLLOUT)
        return state.phase, state.ring

    def step(self) -> StepReport:
        """A step that is not measured, with the guard; time moves on when nothing happened."""
        report = self.controller.step(ROLLOUT)
        if not report.made_progress and not report.is_settled:
            wake = self.controller.wake_at()
            self.clock.advance_to(wake if wake is not None else self.clock() + timedelta(minutes=1))
        return report

    def open_ring(self, ring: int, *, first: bool) -> Opening | None:
        """Replay the next step from the same state, without and with the guard, if it opens ``ring``.

        None (and the step taken once) when it starts no install. The last replay is one with the guard, and
        the rollout goes on from where it left the repository, the world and the controller."""
        kept = self.repository.kept(ROLLOUT)
        world = self.controller.driver.world.to_document()  # type: ignore[attr-defined]
        opening = Opening(ring)
        for run, guard in enumerate([False, True] * self.repeat):
            if run:
                self.repository.put_back(ROLLOUT, kept)
            # The rollout's first check is a new controller's: its guard compiles its plan. A later opening
            # is made by the controller that made the earlier ones, as a running controller does.
            controller = self._controller(SimulatedWorld()) if first else self.controller
            controller.guard = guard
            controller.guard_seconds.clear()
            controller.guard_cpu_seconds.clear()
            controller.driver = SimulationDriver(
                clock=self.clock, timing=self.timing, world=SimulatedWorld.from_document(world)
            )
            self.controller = controller
            gc.collect()
            report, wall, cpu = common.cpu_timed(controller.step, ROLLOUT)
            controller.guard = True
            started = installs_started(report)
            if not started:
                if run == 0:
                    return None  # not an opening (the guard checks installs only): the step stands
                raise SystemExit(f"ring {ring}: a replay started no install: {report}")
            if report.phase not in (RolloutPhase.APPLYING, RolloutPhase.BAKING):
                raise SystemExit(f"ring {ring}: the opening ended {report.phase}: {report.transitions}")
            if opening.installs and started != opening.installs:
                raise SystemExit(f"ring {ring}: replays started {opening.installs} and {started} installs")
            opening.installs = started
            if guard:
                opening.with_guard.append(wall)
                opening.with_guard_cpu.append(cpu)
                opening.guard.append(sum(controller.guard_seconds))
                opening.guard_cpu.append(sum(controller.guard_cpu_seconds))
            else:
                opening.without.append(wall)
                opening.without_cpu.append(cpu)
        return opening


def worker(path: Path, repeat: int) -> dict[str, Any]:
    from ringfence.core.graph import compile_estate
    from ringfence.core.rollout.strategy import plan_strategy
    from ringfence.core.update import parse_update_text

    estate, t_load, _ = common.cpu_timed(plan_1m.load_estate, path)
    graph, t_compile, _ = common.cpu_timed(compile_estate, estate)
    product, version = plan_1m.agent_product(estate)
    update = parse_update_text(update_text(product, plan_1m.next_version(version)), "<bench update>")
    strategy, t_plan, _ = common.cpu_timed(plan_strategy, "ringfence", graph, update)
    rig, t_add, _ = common.cpu_timed(Rig, strategy, repeat)
    last = strategy.canary_rings  # every canary ring and the first ring after the canary phase
    openings: list[Opening] = []
    steps = 0
    started = time.perf_counter()
    while len(openings) <= last:
        steps += 1
        if steps > MAX_STEPS:
            raise SystemExit(f"no opening of ring {len(openings)} within {MAX_STEPS} steps")
        phase, ring = rig.state()
        if phase is RolloutPhase.APPLYING and ring == len(openings):
            opening = rig.open_ring(ring, first=not openings)
            if opening is not None:
                openings.append(opening)
                common.log(
                    f"  ring {ring}: {opening.installs:,} installs; with the guard {min(opening.with_guard):.3f} s "
                    f"(guard {min(opening.guard):.3f} s), without {min(opening.without):.3f} s"
                )
            continue
        report = rig.step()
        if report.is_settled:
            reason = rig.repository.transitions(ROLLOUT)[-1].reason
            raise SystemExit(f"the rollout stopped ({report.phase}) before ring {len(openings)} opened: {reason}")
    drive = time.perf_counter() - started
    # The guard's plan compiled alone, for the note: a copy of the rollout's plan, not compiled yet.
    plan = rig.controller._guard_plans[ROLLOUT]
    compile_seconds = []
    for _ in range(repeat):
        fresh = replace(plan)
        gc.collect()
        compile_seconds.append(common.timed(lambda p: p.exempt, fresh)[1])
        del fresh
    return {
        "assets": len(estate.assets),
        "load": t_load,
        "compile": t_compile,
        "plan": t_plan,
        "add": t_add,
        "drive": drive,
        "guard_compile_seconds": compile_seconds,
        "steps": steps,
        "targets": strategy.targets,
        "rings": [len(r) for r in strategy.rings],
        "canary_rings": strategy.canary_rings,
        "groups": len(strategy.groups),
        "group_members": sum(len(g.members) for g in strategy.groups),
        "openings": [o.document() for o in openings],
        "peak_mb": common.peak_rss_bytes() / 1e6,
    }


def share(part: float, whole: float) -> float:
    return 100.0 * part / whole


def run(args: argparse.Namespace) -> common.Report:
    report, results, repeat = shapes.run_over_shapes(
        NAME,
        f"The safety guard's share of a ring's opening over {args.assets:,} assets, on {len(args.shapes)} shapes",
        args,
        NOMINAL_ASSETS,
        Path(__file__).resolve(),
        "load, compile, plan, drive the rollout to each opening…",
        add_shape_rows,
    )
    report.details = {"repeat": repeat, "shapes": results}
    return report


def add_shape_rows(report: common.Report, shape: str, result: dict[str, Any], repeat: int) -> None:
    canary = result["canary_rings"]
    for o in result["openings"]:
        ring = o["ring"]
        with_guard, without = min(o["with_guard_seconds"]), min(o["without_guard_seconds"])
        with_cpu, without_cpu = min(o["with_guard_cpu_seconds"]), min(o["without_guard_cpu_seconds"])
        guard, guard_cpu = min(o["guard_seconds"]), min(o["guard_cpu_seconds"])
        if ring == 0:
            compiled = min(result["guard_compile_seconds"])
            what = f"the rollout's first check: compiles the guard's plan ({compiled:.3f} s of it)"
        else:
            what = "a later check"
        kind = f"canary ring {ring}" if ring < canary else f"ring {ring}, the first after the canary"
        report.add(
            f"{shape}: ring {ring} opens, the guard adds",
            share(guard, without),
            "%",
            target=TARGET_ADDED,
            note=(
                f"{kind}, {o['installs']:,} installs; {what}. Guard {guard:.3f} s (CPU {guard_cpu:.3f} s = "
                f"{share(guard_cpu, without_cpu):.1f}%) of a step of {without:.3f} s without it (CPU "
                f"{without_cpu:.3f} s); step with it {with_guard:.3f} s (CPU {with_cpu:.3f} s): "
                f"{share(with_guard - without, without):+.1f}% "
                f"(CPU {share(with_cpu - without_cpu, without_cpu):+.1f}%). "
                f"Best of {repeat}"
            ),
        )
    sizes = ", ".join(f"{n:,}" for n in result["rings"])
    report.add(
        f"{shape}: the rollout",
        result["targets"],
        "targets",
        note=(
            f"{shapes.DESCRIPTIONS[shape]}; rings {sizes} ({canary} canary); {result['groups']:,} groups, "
            f"{result['group_members']:,} member ids; load {result['load']:.1f} s, compile {result['compile']:.1f} s, "
            f"plan {result['plan']:.1f} s, into the repository {result['add']:.1f} s, {result['steps']} steps driven "
            f"in {result['drive']:.0f} s; worker peak {result['peak_mb']:,.0f} MB"
        ),
    )


def main() -> None:
    shapes.estate_bench_main(__doc__, NOMINAL_ASSETS, worker, run)


if __name__ == "__main__":
    main()
