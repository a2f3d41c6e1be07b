"""reconcile(): every phase, from hand-built views; every decided move must be one the state machine allows."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from ringfence.core.driver import OperationKind
from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal
from ringfence.core.rollout.reconcile import (
    GIVEN_UP,
    AssetProgress,
    AssetUpdate,
    Decision,
    RolloutView,
    StartOperation,
    actions_from_document,
    reconcile,
)
from ringfence.core.rollout.state import (
    ASSET_MOVES,
    AssetState,
    RolloutPhase,
    RolloutState,
    new_rollout_state,
    transition,
)
from ringfence.core.rollout.strategy import GateMode
from ringfence.core.update import Update

T0 = datetime(2024, 1, 1, tzinfo=UTC)
P = RolloutPhase
S = AssetState
VM = ("vm", "windows-2019")
HOST = ("host", "esxi")

# The path from a new rollout to each phase, through the one door.
PATHS: dict[RolloutPhase, tuple[RolloutPhase, ...]] = {
    P.PENDING: (),
    P.TAKING_RESTORE_POINTS: (P.TAKING_RESTORE_POINTS,),
    P.APPLYING: (P.APPLYING,),
    P.BAKING: (P.APPLYING, P.BAKING),
    P.JUDGING: (P.APPLYING, P.BAKING, P.JUDGING),
    P.PAUSED: (P.APPLYING, P.PAUSED),
    P.HALTED: (P.APPLYING, P.HALTED),
    P.ROLLING_BACK: (P.APPLYING, P.HALTED, P.ROLLING_BACK),
    P.COMPLETED: (P.APPLYING, P.BAKING, P.JUDGING, P.COMPLETED),
    P.ROLLED_BACK: (P.APPLYING, P.HALTED, P.ROLLING_BACK, P.ROLLED_BACK),
    P.FAILED: (P.APPLYING, P.HALTED, P.FAILED),
}


def state_at(phase: RolloutPhase, ring: int = 0, at: datetime = T0) -> RolloutState:
    state = new_rollout_state("r-1", at=at, needs_approval=phase is P.AWAITING_APPROVAL)
    for _ in range(ring):
        for step in (P.APPLYING, P.BAKING, P.JUDGING) if state.phase is P.PENDING else (P.BAKING, P.JUDGING):
            state, _ = transition(state, step, "test", at=at)
        state, _ = transition(state, P.APPLYING, "test", at=at)
    for step in PATHS.get(phase, ()):
        if state.phase is step:
            continue
        if state.phase is P.APPLYING and step is P.APPLYING:
            continue
        state, _ = transition(state, step, "test", at=at)
    assert state.phase is phase
    return state


def make_update(rollback: str = "snapshot", **fields: object) -> Update:
    return Update.model_validate(
        {"id": "u", "product": "acme/agent", "version": "2.0", "bake": "1h", "rollback": rollback, **fields}
    )


def asset(
    asset_id: str, ring: int, state: AssetState = S.PENDING, stratum: tuple[str, ...] = VM, detail: str | None = None
) -> AssetProgress:
    return AssetProgress(asset_id, ring, stratum, state, T0, detail)


def view(
    phase: RolloutPhase,
    assets: list[AssetProgress],
    *,
    ring: int = 0,
    rollback: str = "snapshot",
    gate: GateMode = GateMode.statistical,
    bake: int = 3600,
    health: dict[str, AssetHealth] | None = None,
    rings: int = 2,
    rolls_back: bool = True,
) -> RolloutView:
    return RolloutView(
        state=state_at(phase, ring),
        update=make_update(rollback),
        gate_mode=gate,
        rolls_back_on_halt=rolls_back,
        bake=bake,
        ring_count=rings,
        assets=tuple(assets),
        health=health or {},
    )


def healthy(*ids: str) -> dict[str, AssetHealth]:
    return {a: AssetHealth(a, AssetStatus.healthy) for a in ids}


def crashed(asset_id: str, after: float = 60) -> AssetHealth:
    return AssetHealth(asset_id, AssetStatus.failed, FailureSignal.crashed, after)


def decide(v: RolloutView, now: datetime = T0) -> Decision:
    """reconcile, checked to be idempotent and to decide only moves the state machines allow."""
    decision = reconcile(v, now)
    assert reconcile(v, now) == decision
    state = v.state
    for change in decision.transitions:
        assert change.reason.strip()
        state, _ = transition(state, change.to, change.reason, at=now, ring=change.ring)
    was = {a.asset_id: a.state for a in v.assets}
    for update in decision.asset_updates:
        assert update.state in ASSET_MOVES[was[update.asset_id]], (was[update.asset_id], update)
    return decision


def phases(decision: Decision) -> list[RolloutPhase]:
    return [t.to for t in decision.transitions]


@pytest.mark.parametrize("phase", [P.PENDING, P.AWAITING_APPROVAL, P.PAUSED, P.COMPLETED, P.ROLLED_BACK, P.FAILED])
def test_people_act_in_waiting_phases(phase: RolloutPhase) -> None:
    assert decide(view(phase, [asset("a", 0, S.APPLIED), asset("b", 1, S.RESTORE_POINT_TAKEN)])).is_empty


def test_restore_points_are_asked_for_on_the_current_ring_only_and_only_once() -> None:
    v = view(P.TAKING_RESTORE_POINTS, [asset("a", 0), asset("b", 0), asset("c", 1)])
    decision = decide(v)
    assert decision.actions == (StartOperation(OperationKind.restore_point, ("a", "b")),)
    assert decision.asset_updates == (
        AssetUpdate("a", S.RESTORE_POINT_REQUESTED),
        AssetUpdate("b", S.RESTORE_POINT_REQUESTED),
    )
    asked = view(
        P.TAKING_RESTORE_POINTS,
        [asset("a", 0, S.RESTORE_POINT_REQUESTED), asset("b", 0, S.RESTORE_POINT_TAKEN), asset("c", 1)],
    )
    assert decide(asked).is_empty  # still being taken: do nothing


def test_applying_starts_once_each_restore_point_is_taken_or_failed() -> None:
    v = view(
        P.TAKING_RESTORE_POINTS,
        [asset("a", 0, S.RESTORE_POINT_TAKEN), asset("b", 0, S.RESTORE_POINT_FAILED), asset("c", 1)],
    )
    decision = decide(v)
    assert phases(decision) == [P.APPLYING]
    assert decision.actions == ()
    assert "1 of 2 restore points taken" in decision.transitions[0].reason
    assert "b" in decision.transitions[0].reason


def test_with_snapshots_only_assets_with_a_verified_restore_point_are_applied() -> None:
    v = view(
        P.APPLYING,
        [asset("a", 0, S.RESTORE_POINT_TAKEN), asset("b", 0, S.RESTORE_POINT_FAILED), asset("c", 0), asset("d", 1)],
    )
    decision = decide(v)
    assert decision.actions == (StartOperation(OperationKind.apply, ("a",)),)
    assert decision.asset_updates == (AssetUpdate("a", S.APPLYING),)


def test_without_snapshots_pending_assets_are_applied() -> None:
    decision = decide(view(P.APPLYING, [asset("a", 0), asset("b", 0), asset("c", 1)], rollback="reinstall"))
    assert decision.actions == (StartOperation(OperationKind.apply, ("a", "b")),)


def test_applying_waits_for_installs_then_bakes() -> None:
    running = view(P.APPLYING, [asset("a", 0, S.APPLYING), asset("b", 0, S.APPLIED)], rollback="reinstall")
    assert decide(running).is_empty
    done = view(
        P.APPLYING, [asset("a", 0, S.FAILED, detail="install failed"), asset("b", 0, S.APPLIED)], rollback="reinstall"
    )
    decision = decide(done)
    assert phases(decision) == [P.BAKING]
    assert "1 of 2 assets updated, 1 failed to install (a)" in decision.transitions[0].reason


def test_a_straggler_without_a_restore_point_is_skipped_not_applied() -> None:
    decision = decide(view(P.APPLYING, [asset("a", 0, S.APPLIED), asset("b", 0)]))
    assert decision.actions == ()
    assert phases(decision) == [P.BAKING]
    assert decision.asset_updates == (AssetUpdate("b", S.SKIPPED, "never updated: no verified restore point"),)


def test_no_bake_goes_straight_to_judging() -> None:
    decision = decide(view(P.APPLYING, [asset("a", 0, S.APPLIED)], rollback="reinstall", bake=0))
    assert phases(decision) == [P.BAKING, P.JUDGING]


def test_baking_waits_out_the_bake_on_good_news_and_judges_after_it() -> None:
    assets = [asset("a", 0, S.APPLIED), asset("b", 1)]
    good = view(P.BAKING, assets, health=healthy("a", "b"))
    assert decide(good, T0 + timedelta(minutes=59)).is_empty
    decision = decide(good, T0 + timedelta(hours=1))
    assert phases(decision) == [P.JUDGING]
    assert decision.transitions[0].reason == "ring 0 baked for 1h"


def test_a_crashed_canary_is_judged_at_once_but_missing_telemetry_waits() -> None:
    assets = [asset("a", 0, S.APPLIED), asset("b", 1), asset("c", 1)]
    bad = view(P.BAKING, assets, health={"a": crashed("a"), **healthy("b", "c")})
    decision = decide(bad, T0 + timedelta(minutes=2))
    assert phases(decision) == [P.JUDGING]
    assert "2 min into the 1h bake" in decision.transitions[0].reason
    silent = view(P.BAKING, assets, health=healthy("b", "c"))
    assert decide(silent, T0 + timedelta(minutes=2)).is_empty


def test_a_passed_ring_starts_the_next_one_with_restore_points() -> None:
    v = view(P.JUDGING, [asset("a", 0, S.APPLIED), asset("b", 1), asset("c", 1)], health=healthy("a", "b", "c"))
    decision = decide(v)
    assert [(t.to, t.ring) for t in decision.transitions] == [(P.TAKING_RESTORE_POINTS, 1)]
    assert "starting ring 1 (2 assets)" in decision.transitions[0].reason
    assert decision.verdict is not None
    assert decision.verdict.outcome == "passed"


def test_the_last_ring_passing_completes_the_rollout() -> None:
    v = view(P.JUDGING, [asset("a", 0, S.APPLIED), asset("b", 1, S.APPLIED)], ring=1, health=healthy("a", "b"))
    decision = decide(v)
    assert phases(decision) == [P.COMPLETED]
    assert "2 of 2 targets updated" in decision.transitions[0].reason


def test_a_failed_gate_halts_rolls_back_and_skips_the_unreached() -> None:
    v = view(
        P.JUDGING,
        [asset("a", 0, S.APPLIED), asset("b", 1), asset("c", 1)],
        health={"a": crashed("a", 840), **healthy("b", "c")},
    )
    decision = decide(v)
    assert phases(decision) == [P.HALTED, P.ROLLING_BACK]
    assert "ring 0 failed" in decision.transitions[0].reason
    assert "1 of 1 updated crashed 14 min after install" in decision.transitions[0].reason
    assert {u.asset_id: u.state for u in decision.asset_updates} == {"b": S.SKIPPED, "c": S.SKIPPED}


@pytest.mark.parametrize(("rollback", "rolls_back"), [("none", True), ("reinstall", False)])
def test_a_failed_gate_only_halts_when_there_is_no_automatic_rollback(rollback: str, rolls_back: bool) -> None:
    v = view(
        P.JUDGING,
        [asset("a", 0, S.APPLIED), asset("b", 1)],
        rollback=rollback,
        rolls_back=rolls_back,
        health={"a": crashed("a"), **healthy("b")},
    )
    assert phases(decide(v)) == [P.HALTED]


def test_missing_telemetry_pauses_for_a_person() -> None:
    v = view(P.JUDGING, [asset("a", 0, S.APPLIED), asset("b", 1)], health=healthy("b"))
    decision = decide(v)
    assert phases(decision) == [P.PAUSED]
    assert "missing telemetry is never a pass" in decision.transitions[0].reason


def test_any_failure_mode_stops_at_a_failure_anywhere_so_far() -> None:
    assets = [asset("a", 0, S.APPLIED), asset("b", 1, S.APPLIED), asset("c", 2)]
    v = view(
        P.JUDGING,
        assets,
        ring=1,
        gate=GateMode.any_failure,
        rolls_back=False,
        rings=3,
        health={"a": crashed("a"), **healthy("b", "c")},
        rollback="reinstall",
    )
    decision = decide(v)
    assert phases(decision) == [P.HALTED]
    assert "1 of 2 updated assets failed (a)" in decision.transitions[0].reason
    quiet = view(P.JUDGING, assets, ring=1, gate=GateMode.any_failure, rolls_back=False, rings=3, rollback="reinstall")
    assert phases(decide(quiet)) == [P.APPLYING]  # no report is no failure seen, for a fixed-batch tool


def test_no_gate_mode_always_passes() -> None:
    v = view(P.JUDGING, [asset("a", 0, S.APPLIED)], gate=GateMode.none, rings=1, health={"a": crashed("a")})
    assert phases(decide(v)) == [P.COMPLETED]


def test_rolling_back_takes_every_updated_asset_of_every_ring_and_waits_for_installs() -> None:
    v = view(
        P.ROLLING_BACK,
        [asset("a", 0, S.APPLIED), asset("b", 1, S.FAILED), asset("c", 1, S.APPLYING), asset("d", 1)],
        ring=1,
    )
    decision = decide(v)
    assert decision.actions == (StartOperation(OperationKind.rollback, ("a", "b")),)
    assert {u.asset_id: u.state for u in decision.asset_updates} == {
        "a": S.ROLLING_BACK,
        "b": S.ROLLING_BACK,
        "d": S.SKIPPED,
    }
    waiting = view(P.ROLLING_BACK, [asset("a", 0, S.ROLLING_BACK), asset("c", 1, S.APPLYING)], ring=1)
    assert decide(waiting).is_empty


def test_rolling_back_ends_rolled_back_or_failed_naming_the_assets() -> None:
    done = view(P.ROLLING_BACK, [asset("a", 0, S.ROLLED_BACK), asset("b", 0, S.ROLLED_BACK), asset("c", 1, S.SKIPPED)])
    decision = decide(done)
    assert phases(decision) == [P.ROLLED_BACK]
    assert decision.transitions[0].reason == "all 2 updated assets rolled back"
    broken = view(
        P.ROLLING_BACK,
        [asset("a", 0, S.ROLLED_BACK), asset("b", 0, S.ROLLBACK_FAILED, detail="disk gone")],
    )
    decision = decide(broken)
    assert phases(decision) == [P.FAILED]
    assert "1 of 2 rollbacks failed (b)" in decision.transitions[0].reason


def test_a_halted_rollout_marks_the_unreached_as_skipped_and_nothing_else() -> None:
    decision = decide(view(P.HALTED, [asset("a", 0, S.APPLIED), asset("b", 1)]))
    assert decision.transitions == ()
    assert decision.actions == ()
    assert decision.asset_updates == (AssetUpdate("b", S.SKIPPED, "never updated: the rollout stopped at ring 0"),)


def test_strata_are_judged_apart() -> None:
    assets = [
        asset("a", 0, S.APPLIED, VM),
        asset("h", 0, S.APPLIED, HOST),
        asset("b", 1, stratum=VM),
        asset("i", 1, stratum=HOST),
    ]
    v = view(P.JUDGING, assets, health={"h": crashed("h"), **healthy("a", "b", "i")})
    decision = decide(v)
    assert decision.verdict is not None
    by_stratum = {s.stratum: s.outcome for s in decision.verdict.strata}
    assert by_stratum == {VM: "passed", HOST: "failed"}


def test_actions_round_trip_through_their_document() -> None:
    decision = decide(view(P.TAKING_RESTORE_POINTS, [asset("a", 0), asset("b", 0)]))
    assert actions_from_document(decision.actions_document()) == decision.actions


# ------------------------------------------------------------------------------------------ asset states


@pytest.mark.parametrize("phase", [p for p in RolloutPhase if p is not P.AWAITING_APPROVAL])
@pytest.mark.parametrize("state", list(AssetState))
@pytest.mark.parametrize("rollback", ["snapshot", "reinstall"])
def test_every_asset_move_reconcile_decides_is_in_the_table(
    phase: RolloutPhase, state: AssetState, rollback: str
) -> None:
    # The whole matrix: one asset in each state, in the current ring, the next and an earlier one, beside
    # healthy neighbours, in every phase. `decide` checks each asset update against ASSET_MOVES.
    placements = [(0, 0), (1, 0)]  # (the asset's ring, the rollout's): current ring, the next
    if phase not in (P.PENDING, P.TAKING_RESTORE_POINTS):
        placements.append((0, 1))  # a ring already passed
    for (ring, of), late in itertools.product(placements, (False, True)):
        assets = [asset("x", ring, state), asset("n0", 0, S.APPLIED), asset("n1", 1), asset("n2", 1, S.APPLIED)]
        v = view(phase, assets, ring=of, rollback=rollback, health=healthy("n0", "n2"), rings=2)
        # Within every operation's deadline, and long past it.
        decision = decide(v, T0 + (timedelta(hours=2) if late else timedelta(minutes=5)))
        moved = {u.asset_id: u.state for u in decision.asset_updates}
        kind = asset("x", ring, state).in_flight
        if kind is not None and late:
            # Past its deadline an operation in flight is given up: an observation, never a wait for ever.
            assert moved.get("x") is GIVEN_UP[kind]
            continue
        # An operation under way ends with its result, which the controller records: reconcile only
        # abandons a restore point still being taken when the rollout stops.
        if state in (S.APPLYING, S.ROLLING_BACK):
            assert "x" not in moved
        if state is S.RESTORE_POINT_REQUESTED:
            assert moved.get("x") in (None, S.SKIPPED)


def test_the_asset_table_has_one_start_and_reaches_every_state() -> None:
    reached = {S.PENDING}
    frontier = [S.PENDING]
    while frontier:
        for nxt in ASSET_MOVES[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached == set(AssetState)
    assert set(ASSET_MOVES) == set(AssetState)
    done = {s for s, moves in ASSET_MOVES.items() if not moves}
    assert done == {S.RESTORE_POINT_FAILED, S.ROLLED_BACK, S.ROLLBACK_FAILED, S.SKIPPED}


@pytest.mark.parametrize("kind", list(OperationKind))
@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_every_result_the_controller_records_is_a_move_in_the_table(kind: OperationKind, status: str) -> None:
    from ringfence.core.driver import OperationResult
    from ringfence.core.rollout.controller import _progress

    waiting = next(s for s in AssetState if asset("x", 0, s).in_flight is kind)
    update = _progress(kind, OperationResult("x", status, "disk gone"))
    assert update.state in ASSET_MOVES[waiting]
    if kind is OperationKind.rollback and status == "failed":
        assert (update.state, update.detail) == (S.ROLLBACK_FAILED, "disk gone")
