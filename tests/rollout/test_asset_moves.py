"""The asset door: every change of an asset's state over the whole matrix, and both repositories refusing an
impossible one before writing anything (the in-memory one, and the SQL one on a real SQLite file)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ringfence.core.errors import ConflictError
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.rollout.controller import RolloutRepository
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.reconcile import GIVEN_UP, AssetProgress, AssetUpdate, RingMove
from ringfence.core.rollout.state import ASSET_MOVES, AssetMoveRejected, AssetState, move_asset
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.update import parse_update_text
from ringfence.service import rollouts
from ringfence.store.db import make_engine, upgrade

S = AssetState
T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)

# The moves as the AssetState docstring states them, written out independently of the code under test.
EXPECTED: dict[str, set[str]] = {
    "pending": {"restore_point_requested", "applying", "skipped"},
    "restore_point_requested": {"restore_point_taken", "restore_point_failed", "skipped"},
    "restore_point_taken": {"applying", "skipped"},
    "restore_point_failed": set(),
    "applying": {"applied", "failed", "skipped"},
    "applied": {"rolling_back"},
    "failed": {"rolling_back"},
    "rolling_back": {"rolled_back", "rollback_failed"},
    "rolled_back": set(),
    "rollback_failed": set(),
    "skipped": set(),
}

ESTATE = """\
apiVersion: ringfence/v1
estate: moves
services:
  - {id: web, name: Web, tier: 2, requires: [{any: 1, of: [app-1, app-2]}]}
assets:
  - {id: app-1, kind: vm, software: [{product: acme/agent, version: "1.0"}]}
  - {id: app-2, kind: vm, software: [{product: acme/agent, version: "1.0"}]}
  - {id: app-3, kind: vm, software: [{product: acme/agent, version: "1.0"}]}
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
TARGETS = ("app-1", "app-2", "app-3")


# ------------------------------------------------------------------------------------------ the door itself


def test_the_table_is_the_one_the_design_states() -> None:
    assert {s.value: {t.value for t in moves} for s, moves in ASSET_MOVES.items()} == EXPECTED


@pytest.mark.parametrize(("frm", "to"), list(itertools.product(AssetState, AssetState)))
def test_the_door_over_the_whole_matrix(frm: AssetState, to: AssetState) -> None:
    if to is frm or to.value in EXPECTED[frm.value]:
        move_asset("esx-a01", frm, to, rollout_id="r-7")  # a move of the table, or a new detail for the same state
        return
    with pytest.raises(AssetMoveRejected) as refused:
        move_asset("esx-a01", frm, to, rollout_id="r-7")
    sentence = str(refused.value)
    assert sentence.startswith(f"rollout r-7: asset esx-a01 cannot go from {frm} to {to}: ")
    why = sentence.split(f"to {to}: ", 1)[1]
    assert len(why) > 10, sentence  # says why, not just that
    if not EXPECTED[frm.value]:
        assert why == f"{frm} is final for this rollout"
    assert isinstance(refused.value, ConflictError)  # the CLI and the API map it like a refused transition


def test_an_operation_given_up_is_a_move_of_the_table() -> None:
    # The controller's refusals (_driver_refused) and reconcile's deadlines (_overdue) end an in-flight asset in
    # GIVEN_UP[kind]: each must pass the door from the state that has that operation in flight.
    in_flight = {
        kind: state for state in AssetState if (kind := AssetProgress("a", 0, (), state, T0).in_flight) is not None
    }
    assert set(in_flight) == set(GIVEN_UP)
    for kind, state in in_flight.items():
        move_asset("a", state, GIVEN_UP[kind], rollout_id="r-1")


# ------------------------------------------------------------------------------------------ both repositories


def memory_repository() -> tuple[MemoryRolloutRepository, str]:
    update = parse_update_text(UPDATE, "agent-2.yaml")
    strategy = plan_strategy("ringfence", compile_estate(parse_estate_text(ESTATE, "moves.yaml")), update)
    repository = MemoryRolloutRepository()
    repository.add("r-1", update, strategy, at=T0)
    return repository, "r-1"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One real SQLite database for the module; each test makes its own rollout in it."""
    found = make_engine(f"sqlite:///{tmp_path_factory.mktemp('moves') / 'ringfence.db'}")
    upgrade(found)
    try:
        yield found
    finally:
        found.dispose()


def sql_repository(engine: Engine) -> tuple[rollouts.SqlRolloutRepository, str]:
    created = rollouts.create_rollout(
        engine,
        estate_text=ESTATE,
        estate_source="moves.yaml",
        update_text=UPDATE,
        update_source="agent-2.yaml",
        actor="alice",
        at=T0,
    )
    assert created.rollout is not None
    return rollouts.SqlRolloutRepository(engine), created.rollout.id


@pytest.fixture(params=["memory", "sqlite"])
def rollout(request: pytest.FixtureRequest) -> tuple[RolloutRepository, str]:
    if request.param == "memory":
        return memory_repository()
    return sql_repository(request.getfixturevalue("engine"))


def progress(repository: RolloutRepository, rollout_id: str) -> dict[str, tuple[AssetState, int, str | None]]:
    with repository.session(rollout_id) as session:
        return {a.asset_id: (a.state, a.ring, a.detail) for a in session.view().assets}


def state_and_detail(repository: RolloutRepository, rollout_id: str, asset_id: str) -> tuple[AssetState, str | None]:
    state, _, detail = progress(repository, rollout_id)[asset_id]
    return state, detail


def update(repository: RolloutRepository, rollout_id: str, *updates: AssetUpdate, at: datetime = T0) -> None:
    with repository.session(rollout_id) as session:
        session.update_assets(updates, at)


def test_an_impossible_update_is_refused_and_nothing_of_its_batch_is_written(
    rollout: tuple[RolloutRepository, str],
) -> None:
    repository, rollout_id = rollout
    before = progress(repository, rollout_id)
    assert {state for state, _, _ in before.values()} == {S.PENDING}

    # The first update is legal, the second is not (pending assets are never installed without being applied).
    with pytest.raises(AssetMoveRejected, match=f"rollout {rollout_id}: asset app-2 cannot go from pending to applied"):
        update(repository, rollout_id, AssetUpdate("app-1", S.APPLYING), AssetUpdate("app-2", S.APPLIED, "done"))
    assert progress(repository, rollout_id) == before


def test_a_batch_moves_an_asset_step_by_step_and_a_new_detail_is_no_move(
    rollout: tuple[RolloutRepository, str],
) -> None:
    repository, rollout_id = rollout
    # Two moves of one asset in one batch: the second starts where the first left it.
    update(repository, rollout_id, AssetUpdate("app-1", S.APPLYING), AssetUpdate("app-1", S.APPLIED, "installed"))
    assert state_and_detail(repository, rollout_id, "app-1") == (S.APPLIED, "installed")
    # The same state with a new detail passes the door.
    update(repository, rollout_id, AssetUpdate("app-1", S.APPLIED, "installed, heard from"))
    assert state_and_detail(repository, rollout_id, "app-1") == (S.APPLIED, "installed, heard from")
    # Back to applying would install it twice: refused, and the detail stays.
    with pytest.raises(AssetMoveRejected, match="an applied asset can only be rolled back"):
        update(repository, rollout_id, AssetUpdate("app-1", S.APPLYING, "again"))
    assert state_and_detail(repository, rollout_id, "app-1") == (S.APPLIED, "installed, heard from")


def test_a_ring_move_keeps_the_state_and_passes_the_door(rollout: tuple[RolloutRepository, str]) -> None:
    repository, rollout_id = rollout
    spare = next(a for a, (_, ring, _) in progress(repository, rollout_id).items() if ring == 1)
    with repository.session(rollout_id) as session:
        session.move_assets([RingMove(spare, 0, "replacement canary")], T0)
    assert progress(repository, rollout_id)[spare] == (S.PENDING, 0, "replacement canary")


# ------------------------------------------------------------------------------------------ both agree, always


@st.composite
def batches(draw: st.DrawFn) -> list[list[tuple[str, AssetState]]]:
    """Batches of moves, mostly along the table (so deep states are reached), now and then anything at all."""
    states = dict.fromkeys(TARGETS, S.PENDING)
    found = []
    for _ in range(draw(st.integers(1, 8))):
        batch = []
        for _ in range(draw(st.integers(1, 4))):
            asset = draw(st.sampled_from(TARGETS))
            legal = sorted(ASSET_MOVES[states[asset]] | {states[asset]})
            to = draw(st.sampled_from(legal) if draw(st.booleans()) else st.sampled_from(list(AssetState)))
            batch.append((asset, to))
            states[asset] = to
        found.append(batch)
    return found


@settings(max_examples=40, deadline=None)
@given(drawn=batches())
def test_both_repositories_accept_and_refuse_the_same_batches_and_never_store_an_impossible_move(
    engine: Engine, drawn: list[list[tuple[str, AssetState]]]
) -> None:
    memory, memory_id = memory_repository()
    sql, sql_id = sql_repository(engine)
    states = dict.fromkeys(TARGETS, S.PENDING)  # the oracle: what is stored, moved only by legal batches
    for n, batch in enumerate(drawn, start=1):
        at = T0 + timedelta(minutes=n)
        after = dict(states)
        legal = True
        for asset, to in batch:
            legal = legal and (to is after[asset] or to in ASSET_MOVES[after[asset]])
            after[asset] = to
        outcomes = []
        for repository, rollout_id in ((memory, memory_id), (sql, sql_id)):
            try:
                update(repository, rollout_id, *(AssetUpdate(a, to, f"batch {n}") for a, to in batch), at=at)
            except AssetMoveRejected:
                outcomes.append(False)
            else:
                outcomes.append(True)
        assert outcomes == [legal, legal], (batch, states)
        if legal:
            states = after
        for repository, rollout_id in ((memory, memory_id), (sql, sql_id)):
            assert {a: s for a, (s, _, _) in progress(repository, rollout_id).items()} == states
