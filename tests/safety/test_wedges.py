"""No wedge: a rollout always gets somewhere in simulated time, and abort or rollback from any moment ends it.

A loop on a simulated clock (drills, ``run_until_settled`` with a clock that jumps) only moves time to
``Controller.wake_at()``. So every wait the controller or reconcile makes must have a wake time, and a step that
changed the rollout must say it made progress — otherwise the loop concludes that nothing will ever happen and
stops with the rollout mid-ring (``ringfence.core.drills`` does exactly that: ``wake is None: break``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import pytest
from hypothesis import given, seed
from hypothesis import strategies as st

from ringfence.core.rollout.controller import Controller, start_rollout
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.simulation import SimulatedClock

from .conftest import SEED, hunt
from .harness import MemoryRig, RefereedDriver, play
from .strategies import EstateCase, Intervention, Run, adversarial_estates, adversarial_runs

SIMPLE = {
    "apiVersion": "ringfence/v1",
    "estate": "wedges",
    "services": [],
    "assets": [
        {"id": f"t{i}", "kind": "vm", "attrs": {"os": "win"}, "software": [{"product": "acme/agent", "version": "1.0"}]}
        for i in range(3)
    ],
}


def update(rollback: str = "snapshot", rings: list[object] | None = None) -> dict[str, object]:
    return {
        "id": "agent-2",
        "product": "acme/agent",
        "version": "2.0",
        "strata": ["kind", "attrs.os", "site"],
        "rings": rings or [1, "100%"],
        "bake": "600s",
        "rollback": rollback,
        "timing": {"apply": "1m", "rollback": "2m", "restore_point": "30s"},
    }


def jump(clock: SimulatedClock) -> Callable[[datetime | None], None]:
    """What a simulated loop does between steps: jump to the wake time; none means nothing will ever happen."""

    def wait_until(at: datetime | None) -> None:
        assert at is not None, "the controller waited with nothing to wait for: a simulated loop stops here"
        clock.advance_to(at)

    return wait_until


def test_a_restore_point_given_up_at_its_deadline_lets_a_simulated_loop_go_on() -> None:
    """A host that never answers its restore point: given up at the deadline, the ring goes on without it."""
    rig = MemoryRig(EstateCase(SIMPLE, update(), frozenset()), Run(hung=frozenset({"t2"})))
    start_rollout(rig.repo, "r-safety", actor="alice", at=rig.clock())
    controller = Controller(rig.repo, RefereedDriver(rig.new_driver(), rig, rig.counters), rig.clock)
    # The step that gives the restore point up changes the asset, and nothing else: it must count as progress
    # (or name a wake time), or the loop below asserts "waited with nothing to wait for".
    report = controller.run_until_settled("r-safety", wait_until=jump(rig.clock), max_steps=500)
    assert report.phase is RolloutPhase.COMPLETED


def test_a_ring_held_back_by_rule_7_while_a_silent_member_may_still_report_names_when_to_look_again() -> None:
    """Counter-example found by test_every_step_keeps_rules_6_and_7_and_every_run_ends: t2 is held back by rule 7
    (its partner t1 was down before the start); reconcile waits for t0, installed moments ago and silent, to
    report — but that wait has no wake time, so a simulated loop stops as though nothing could happen."""
    assets = SIMPLE["assets"]
    document = {
        **SIMPLE,
        # t1 is what a tier-1 service stands on, so t2 is its stratum's canary and t1 waits for ring 1.
        "services": [{"id": "lab", "name": "Lab", "tier": 1, "requires": ["t1"]}],
        "assets": [
            {**assets[0], "site": "a", "requires": [{"any": 1, "of": ["t1", "t2"]}]},  # type: ignore[index]
            {**assets[1], "site": "b"},  # type: ignore[index]
            {**assets[2], "site": "b"},  # type: ignore[index]
        ],
    }
    rig = MemoryRig(
        EstateCase(document, update(rings=[1, "50%", "100%"]), frozenset({"t1"})), Run(silent=frozenset({"t0"}))
    )
    start_rollout(rig.repo, "r-safety", actor="alice", at=rig.clock())
    controller = Controller(rig.repo, RefereedDriver(rig.new_driver(), rig, rig.counters), rig.clock)
    report = controller.run_until_settled("r-safety", wait_until=jump(rig.clock), max_steps=500)
    assert report.phase is RolloutPhase.PAUSED  # held back for a person, who is told why
    assert "rule 7" in rig.moves()[-1].reason


@st.composite
def abort_anywhere(draw: st.DrawFn) -> tuple[EstateCase, Run]:
    case = draw(adversarial_estates())
    run = draw(adversarial_runs(case, people=False))
    at = draw(st.integers(1, 40))
    # A person aborts at a random step, and rolls back (when the update can be) as soon as it halts.
    return case, replace(run, interventions=(Intervention(at, "abort"), Intervention(at + 1, "roll back")))


@seed(SEED)
@hunt(600)
@given(abort_anywhere())
def test_abort_then_roll_back_from_any_moment_ends_with_nothing_left_on_the_release(
    drawn: tuple[EstateCase, Run],
) -> None:
    case, run = drawn
    rig = MemoryRig(case, run)
    outcome = play(rig)
    assert outcome.phase in (RolloutPhase.COMPLETED, RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED, RolloutPhase.HALTED)
    if outcome.phase is RolloutPhase.HALTED:
        assert rig.update.rollback == "none"
    world = rig.world()
    if outcome.phase is RolloutPhase.ROLLED_BACK:
        left = sorted(a for a in rig.facts.targets if world.runs_release(a))
        assert not left, f"rolled back, yet {left} still run the release"
    if outcome.phase is RolloutPhase.FAILED:
        # Failed names what a person must finish: every target still on the release is named in the reason.
        reason = rig.moves()[-1].reason
        for a in sorted(a for a in rig.facts.targets if world.runs_release(a) and a not in run.hung):
            assert a in reason or "more" in reason, (a, reason)


@pytest.mark.parametrize("rollback", ["snapshot", "reinstall", "none"])
def test_a_driver_refusal_halts_and_the_rollout_still_ends(rollback: str) -> None:
    for kind in ("restore_point", "apply", "rollback"):
        if kind == "restore_point" and rollback != "snapshot":
            continue
        run = Run(fault=frozenset({"t0", "t1", "t2"}), fault_after=60, refuse=(kind, 1), resumes=0)
        rig = MemoryRig(EstateCase(SIMPLE, update(rollback), frozenset()), run)
        outcome = play(rig)
        assert outcome.phase in (RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED, RolloutPhase.HALTED), (kind, outcome)
        halts = [m for m in rig.moves() if m.to_phase is RolloutPhase.HALTED]
        if kind != "rollback":
            assert halts, (kind, [m.reason for m in rig.moves()])
            assert "could not" in halts[0].reason, (kind, halts[0].reason)
