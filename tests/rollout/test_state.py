"""The rollout state machine over its whole transition matrix, plus the rules beyond the table."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.core.errors import ConflictError, InputError
from ringfence.core.rollout.state import (
    ALLOWED,
    RolloutPhase,
    RolloutState,
    Transition,
    TransitionRejected,
    new_rollout_state,
    transition,
)

P = RolloutPhase
T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)

# The table as the design states it, written out independently of the code under test.
EXPECTED: dict[str, set[str]] = {
    "pending": {"taking_restore_points", "applying", "failed"},
    "awaiting_approval": {"pending", "failed"},
    "taking_restore_points": {"applying", "paused", "halted"},
    "applying": {"baking", "paused", "halted"},
    "baking": {"judging", "paused", "halted"},
    "judging": {"taking_restore_points", "applying", "completed", "paused", "halted"},
    "paused": {"taking_restore_points", "applying", "baking", "judging", "halted"},
    "halted": {"rolling_back", "failed"},
    "rolling_back": {"rolled_back", "failed"},
    "rolled_back": set(),
    "completed": set(),
    "failed": set(),
}

# How to reach each phase from a new rollout, through the one door. Paused is reached from each
# running phase separately (see PAUSED_FROM), because where it paused decides where it may resume.
PATHS: dict[RolloutPhase, list[RolloutPhase]] = {
    P.PENDING: [],
    P.AWAITING_APPROVAL: [],
    P.TAKING_RESTORE_POINTS: [P.TAKING_RESTORE_POINTS],
    P.APPLYING: [P.APPLYING],
    P.BAKING: [P.APPLYING, P.BAKING],
    P.JUDGING: [P.APPLYING, P.BAKING, P.JUDGING],
    P.HALTED: [P.APPLYING, P.HALTED],
    P.ROLLING_BACK: [P.APPLYING, P.HALTED, P.ROLLING_BACK],
    P.ROLLED_BACK: [P.APPLYING, P.HALTED, P.ROLLING_BACK, P.ROLLED_BACK],
    P.COMPLETED: [P.APPLYING, P.BAKING, P.JUDGING, P.COMPLETED],
    P.FAILED: [P.FAILED],
}
RUNNING = [P.TAKING_RESTORE_POINTS, P.APPLYING, P.BAKING, P.JUDGING]


def reach(phase: RolloutPhase, *, paused_from: RolloutPhase | None = None) -> RolloutState:
    """A rollout r-12 in ``phase``, got there by real transitions."""
    state = new_rollout_state("r-12", at=T0, needs_approval=phase is P.AWAITING_APPROVAL)
    path = PATHS[paused_from] + [P.PAUSED] if phase is P.PAUSED and paused_from else PATHS[phase]
    for step, to in enumerate(path, start=1):
        state, _ = transition(state, to, f"step {step}", at=T0 + timedelta(minutes=step))
    assert state.phase is phase
    return state


def test_the_table_is_the_designed_one() -> None:
    assert {frm.value: {to.value for to in tos} for frm, tos in ALLOWED.items()} == EXPECTED


def test_the_table_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        ALLOWED[P.COMPLETED] = frozenset({P.APPLYING})  # type: ignore[index]


@pytest.mark.parametrize(
    ("frm", "to"),
    [(frm, to) for frm, to in itertools.product(P, P) if frm is not P.PAUSED],
    ids=lambda phase: phase.value,
)
def test_every_pair_outside_paused(frm: RolloutPhase, to: RolloutPhase) -> None:
    state = reach(frm)
    at = T0 + timedelta(hours=1)
    if to.value in EXPECTED[frm.value]:
        new, record = transition(state, to, "because the test says so", at=at)
        assert new.phase is to
        assert new.version == state.version + 1
        assert new.updated_at == at
        assert new.id == "r-12"
        assert record == Transition("r-12", frm, to, new.ring, "because the test says so", at)
    else:
        with pytest.raises(TransitionRejected) as caught:
            transition(state, to, "because the test says so", at=at)
        assert str(caught.value).startswith(f"rollout r-12 cannot go from {frm.value} to {to.value}: ")


@pytest.mark.parametrize(("paused_from", "to"), list(itertools.product(RUNNING, P)), ids=lambda p: p.value)
def test_every_pair_out_of_paused(paused_from: RolloutPhase, to: RolloutPhase) -> None:
    state = reach(P.PAUSED, paused_from=paused_from)
    assert state.paused_from is paused_from
    if to is paused_from or to is P.HALTED:
        new, _ = transition(state, to, "resumed by a human", at=T0 + timedelta(hours=1))
        assert new.phase is to
        assert new.paused_from is None
        assert new.version == state.version + 1
    else:
        with pytest.raises(TransitionRejected) as caught:
            transition(state, to, "resumed by a human", at=T0 + timedelta(hours=1))
        assert str(caught.value).startswith(f"rollout r-12 cannot go from paused to {to.value}: ")


def test_a_terminal_phase_says_it_is_terminal() -> None:
    with pytest.raises(TransitionRejected) as caught:
        transition(reach(P.COMPLETED), P.APPLYING, "try again", at=T0)
    assert str(caught.value) == "rollout r-12 cannot go from completed to applying: completed is terminal"


def test_a_rollout_starts_by_restore_points_or_ring_0() -> None:
    with pytest.raises(TransitionRejected) as caught:
        transition(reach(P.PENDING), P.BAKING, "skip ahead", at=T0)
    assert str(caught.value) == (
        "rollout r-12 cannot go from pending to baking: a rollout starts by taking restore points or applying ring 0"
    )


def test_a_move_to_the_same_phase_is_refused() -> None:
    with pytest.raises(TransitionRejected, match="from baking to baking: it is already baking"):
        transition(reach(P.BAKING), P.BAKING, "again", at=T0)


def test_rejections_are_conflicts() -> None:
    with pytest.raises(ConflictError):
        transition(reach(P.FAILED), P.PENDING, "revive", at=T0)


def test_resume_goes_back_where_it_paused() -> None:
    paused = reach(P.PAUSED, paused_from=P.BAKING)
    with pytest.raises(TransitionRejected) as caught:
        transition(paused, P.APPLYING, "resume", at=T0)
    assert str(caught.value) == (
        "rollout r-12 cannot go from paused to applying: it paused while baking and resumes there (or is halted)"
    )
    resumed, record = transition(paused, P.BAKING, "operator resumed", at=T0)
    assert (resumed.phase, resumed.paused_from) == (P.BAKING, None)
    assert (record.from_phase, record.to_phase) == (P.PAUSED, P.BAKING)


def test_pausing_records_where_from_and_halting_records_why() -> None:
    judging = reach(P.JUDGING)
    paused, _ = transition(judging, P.PAUSED, "gate inconclusive: 2 of 5 canaries sent no heartbeat", at=T0)
    assert paused.paused_from is P.JUDGING
    assert paused.halt_reason is None
    halted, _ = transition(paused, P.HALTED, "operator aborted: vendor withdrew the release", at=T0)
    assert halted.paused_from is None
    assert halted.halt_reason == "operator aborted: vendor withdrew the release"
    rolling, _ = transition(halted, P.ROLLING_BACK, "automatic rollback", at=T0)
    done, _ = transition(rolling, P.ROLLED_BACK, "all 3 assets rolled back", at=T0)
    # The halt reason stays with the rollout after the halt, so its end can be explained.
    assert rolling.halt_reason == done.halt_reason == "operator aborted: vendor withdrew the release"


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_a_reason_is_required(reason: str) -> None:
    with pytest.raises(TransitionRejected) as caught:
        transition(reach(P.PENDING), P.APPLYING, reason, at=T0)
    assert str(caught.value).startswith("rollout r-12 cannot go from pending to applying without a reason")


def test_even_an_illegal_move_needs_a_reason_first() -> None:
    with pytest.raises(TransitionRejected, match="without a reason"):
        transition(reach(P.COMPLETED), P.APPLYING, "", at=T0)


def test_version_grows_by_one_per_transition() -> None:
    state = new_rollout_state("r-1", at=T0, needs_approval=True)
    assert state.version == 1
    for expected, to in enumerate([P.PENDING, P.APPLYING, P.BAKING, P.JUDGING, P.COMPLETED], start=2):
        state, _ = transition(state, to, "next", at=T0)
        assert state.version == expected


def test_a_passed_ring_starts_the_next_one() -> None:
    judging = reach(P.JUDGING)
    assert judging.ring == 0
    ring1, record = transition(judging, P.APPLYING, "ring 0 passed", at=T0)
    assert ring1.ring == record.ring == 1
    ring1_restore, _ = transition(judging, P.TAKING_RESTORE_POINTS, "ring 0 passed", at=T0, ring=1)
    assert ring1_restore.ring == 1


def test_the_ring_moves_only_forward_and_only_by_one() -> None:
    judging = reach(P.JUDGING)
    with pytest.raises(TransitionRejected, match="ring 0 is followed by ring 1, not ring 2"):
        transition(judging, P.APPLYING, "skip a ring", at=T0, ring=2)
    with pytest.raises(TransitionRejected, match="stays at ring 0 \\(asked for ring 3\\)"):
        transition(reach(P.APPLYING), P.BAKING, "applied", at=T0, ring=3)
    same, _ = transition(reach(P.APPLYING), P.BAKING, "applied", at=T0, ring=0)
    assert same.ring == 0


def test_a_pause_in_judging_resumes_at_the_same_ring() -> None:
    paused, _ = transition(reach(P.JUDGING), P.PAUSED, "inconclusive", at=T0)
    resumed, _ = transition(paused, P.JUDGING, "a human looked", at=T0)
    assert resumed.ring == 0


def test_times_are_kept_in_utc_and_naive_times_refused() -> None:
    plus_two = timezone(timedelta(hours=2))
    new, record = transition(reach(P.PENDING), P.APPLYING, "go", at=datetime(2024, 1, 1, 12, tzinfo=plus_two))
    assert new.updated_at == record.at == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert new.updated_at.tzinfo is UTC
    with pytest.raises(InputError, match="has no timezone"):
        transition(reach(P.PENDING), P.APPLYING, "go", at=datetime(2024, 1, 1, 12))


def test_new_rollouts() -> None:
    assert new_rollout_state("r-1", at=T0, needs_approval=False).phase is P.PENDING
    waiting = new_rollout_state("r-1", at=T0, needs_approval=True)
    assert (waiting.phase, waiting.ring, waiting.paused_from, waiting.halt_reason) == (
        P.AWAITING_APPROVAL,
        0,
        None,
        None,
    )
    with pytest.raises(InputError):
        new_rollout_state(" ", at=T0, needs_approval=False)


def test_terminal_and_running_phases() -> None:
    assert {p for p in P if p.is_terminal} == {P.COMPLETED, P.ROLLED_BACK, P.FAILED}
    assert {p for p in P if p.is_running} == set(RUNNING)
    assert all(not ALLOWED[p] for p in P if p.is_terminal)


def test_a_transition_reads_as_a_sentence() -> None:
    _, record = transition(reach(P.BAKING), P.JUDGING, "bake of 1h over", at=T0)
    assert str(record) == "rollout r-12 went from baking to judging at ring 0: bake of 1h over"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=11), max_size=40), st.booleans())
def test_random_walks_keep_the_invariants(choices: list[int], needs_approval: bool) -> None:
    state = new_rollout_state("r-7", at=T0, needs_approval=needs_approval)
    for steps, choice in enumerate(choices, start=1):
        candidates = sorted(ALLOWED[state.phase])
        if state.phase is P.PAUSED:
            candidates = [p for p in candidates if p in (state.paused_from, P.HALTED)]
        if not candidates:
            assert state.phase.is_terminal
            break
        before = state
        state, record = transition(state, candidates[choice % len(candidates)], f"step {steps}", at=T0)
        assert state.version == before.version + 1
        assert (state.paused_from is not None) == (state.phase is P.PAUSED)
        assert state.ring in (before.ring, before.ring + 1)
        assert (state.ring == before.ring + 1) == (before.phase is P.JUDGING and state.phase in RUNNING)
        assert record.ring == state.ring
        if state.phase in (P.HALTED, P.ROLLING_BACK, P.ROLLED_BACK):
            assert state.halt_reason is not None
        if before.phase is P.PAUSED and state.phase is not P.HALTED:
            assert state.phase is before.paused_from
