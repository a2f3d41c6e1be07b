"""The after-transition policies: which fire on each move of the whole transition matrix, and what each does
when the SQL rollout session writes that move on a real SQLite database."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from ringfence.core.incident import EventKind, IncidentStatus
from ringfence.core.rollout.reconcile import AssetUpdate
from ringfence.core.rollout.state import ALLOWED, AssetState, RolloutPhase, RolloutState, TransitionRejected, transition
from ringfence.service import incidents, rollouts
from ringfence.service.policies import AFTER_TRANSITION, policies_for
from ringfence.store.db import make_engine, session_scope, upgrade
from ringfence.store.rollouts import apply_transition, get_rollout

P = RolloutPhase
T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)

# Which policy fires on a move, as the issue states it, written out independently of the table under test.
DECLARE = "declare_incident_on_halt"
SETTLE = "settle_incident_on_end"


def expected_policies(frm: RolloutPhase, to: RolloutPhase) -> list[str]:
    if to is P.HALTED:
        return [DECLARE]
    if to in (P.ROLLED_BACK, P.FAILED):
        return [SETTLE]
    return []


ALLOWED_MOVES = [(frm, to) for frm, targets in ALLOWED.items() for to in sorted(targets)]

ESTATE = """\
apiVersion: ringfence/v1
estate: policies
services:
  - {id: web, name: Web, tier: 1, rto: 4h, requires: [{any: 1, of: [app-1, app-2]}]}
assets:
  - {id: app-1, kind: vm, software: [{product: acme/agent, version: "1.0"}]}
  - {id: app-2, kind: vm, software: [{product: acme/agent, version: "1.0"}]}
"""
UPDATE = """\
apiVersion: ringfence/v1
update:
  id: agent-2
  product: acme/agent
  version: "2.0"
  rings: [1, "100%"]
  bake: 1m
  rollback: reinstall
"""


# ------------------------------------------------------------------------------------------ the table


def test_every_policy_is_named_once_and_says_why() -> None:
    names = [p.name for p in AFTER_TRANSITION]
    assert sorted(names) == sorted({DECLARE, SETTLE})
    for policy in AFTER_TRANSITION:
        assert len(policy.why) > 80, policy.name  # a reason a person can act on, not a label
        assert policy.to_phases, policy.name


@pytest.mark.parametrize(("frm", "to"), list(itertools.product(RolloutPhase, RolloutPhase)))
def test_the_policies_that_fire_on_each_pair_of_phases(frm: RolloutPhase, to: RolloutPhase) -> None:
    assert [p.name for p in policies_for(frm, to)] == expected_policies(frm, to)


# ------------------------------------------------------------------------------------------ on a real database


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One real SQLite database for the module; each case makes its own rollouts in it."""
    found = make_engine(f"sqlite:///{tmp_path_factory.mktemp('policies') / 'ringfence.db'}")
    upgrade(found)
    try:
        yield found
    finally:
        found.dispose()


def path_to(start: RolloutState, frm: RolloutPhase, to: RolloutPhase) -> list[RolloutPhase]:
    """The shortest walk from ``start`` through the state machine to a state in ``frm`` that may move to ``to``
    (a paused rollout resumes only where it paused, so where it paused from matters)."""
    queue: deque[tuple[RolloutState, list[RolloutPhase]]] = deque([(start, [])])
    seen = {(start.phase, start.paused_from)}
    while queue:
        state, walk = queue.popleft()
        if state.phase is frm:
            try:
                transition(state, to, "probe", at=state.updated_at)
            except TransitionRejected:
                pass
            else:
                return walk
        for nxt in sorted(ALLOWED[state.phase]):
            try:
                moved, _ = transition(state, nxt, "walk", at=state.updated_at)
            except TransitionRejected:
                continue
            if (moved.phase, moved.paused_from) not in seen:
                seen.add((moved.phase, moved.paused_from))
                queue.append((moved, [*walk, nxt]))
    raise AssertionError(f"no walk reaches {frm} able to move to {to}")


def rollout_at(engine: Engine, frm: RolloutPhase, to: RolloutPhase) -> str:
    """A new rollout with app-1's install failed, in phase ``frm`` ready to move to ``to``: walked there through
    the state machine and written by the store alone, so no policy has run on the way."""
    created = rollouts.create_rollout(
        engine,
        estate_text=ESTATE,
        estate_source="policies.yaml",
        update_text=UPDATE,
        update_source="agent-2.yaml",
        actor="alice",
        at=T0,
        require_approval=frm is P.AWAITING_APPROVAL,
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    with rollouts.SqlRolloutRepository(engine).session(rollout_id) as session:
        session.update_assets([AssetUpdate("app-1", AssetState.APPLYING)], T0)
        session.update_assets([AssetUpdate("app-1", AssetState.FAILED, "install failed: exit 1")], T0)
    with session_scope(engine) as session:
        state = get_rollout(session, rollout_id).state
        for n, phase in enumerate(path_to(state, frm, to), start=1):
            state, record = transition(state, phase, f"walked to {phase}", at=T0 + timedelta(minutes=n))
            apply_transition(session, record, state, actor="walker")
    return rollout_id


def move(engine: Engine, rollout_id: str, to: RolloutPhase, at: datetime) -> None:
    """The move under test, through the SQL rollout session: the transition, then its policies."""
    with rollouts.SqlRolloutRepository(engine).session(rollout_id) as session:
        new_state, record = transition(session.view().state, to, f"moved to {to} by bob", at=at)
        session.apply_transition(new_state, record, actor="bob")


LATER = T0 + timedelta(hours=1)


@pytest.mark.parametrize(("frm", "to"), ALLOWED_MOVES)
def test_each_move_runs_exactly_its_policies_in_the_transaction_of_the_move(
    engine: Engine, frm: RolloutPhase, to: RolloutPhase
) -> None:
    fires = expected_policies(frm, to)

    # No incident yet: only a halt declares one (app-1 failed), linked to the rollout, quoting the halt.
    rollout_id = rollout_at(engine, frm, to)
    move(engine, rollout_id, to, LATER)
    declared = incidents.of_rollout(engine, rollout_id)
    if DECLARE in fires:
        assert declared is not None
        assert (declared.failed, declared.declared_at, declared.declared_by) == (("asset:app-1",), LATER, "controller")
        assert f"moved to {to} by bob" in declared.events[0].text
    else:
        assert declared is None

    # An incident already declared for the rollout: only an end settles it, as the person who ended it.
    rollout_id = rollout_at(engine, frm, to)
    before = incidents.declare_from_rollout(engine, rollout_id, T0 + timedelta(minutes=30))
    assert before is not None
    move(engine, rollout_id, to, LATER)
    after = incidents.of_rollout(engine, rollout_id)
    assert after is not None
    assert after.id == before.id
    settled = list(after.events[len(before.events) :])
    if SETTLE in fires and to is P.ROLLED_BACK:
        assert after.status is IncidentStatus.CLOSED
        assert [e.kind for e in settled] == [EventKind.RESTORED, EventKind.CLOSED]
        assert {e.actor for e in settled} == {"bob"}
    elif SETTLE in fires:
        assert after.status is IncidentStatus.OPEN
        (note,) = settled
        assert (note.kind, note.actor) == (EventKind.NOTE, "bob")
        assert note.text.startswith(f"rollout {rollout_id} ended failed (moved to failed by bob)")
        assert "app-1 (install failed, not rolled back)" in note.text
    else:
        assert (after.status, settled) == (IncidentStatus.OPEN, [])  # a second halt declares nothing more


def test_a_halt_that_left_nothing_failed_declares_nothing(engine: Engine) -> None:
    created = rollouts.create_rollout(
        engine,
        estate_text=ESTATE,
        estate_source="policies.yaml",
        update_text=UPDATE,
        update_source="agent-2.yaml",
        actor="alice",
        at=T0,
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    rollouts.start(engine, rollout_id, actor="alice", at=T0)
    rollouts.abort(engine, rollout_id, actor="bob", at=LATER, why="wrong change window")
    assert rollouts.status(engine, rollout_id).rollout.state.phase is P.HALTED
    assert incidents.of_rollout(engine, rollout_id) is None
