"""Migration 0004 (``driver_state``) on a database holding a rollout written by 0003's code, on real SQLite and
PostgreSQL: the table appears, keeps one document per (rollout, driver) replaced whole, refuses documents of
rollouts that do not exist, and a downgrade takes it away leaving the rollout as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from old_schema import add_old_rollouts, old_update_id
from ringfence.core.driver import OperationKind
from ringfence.core.errors import NotFoundError
from ringfence.core.simulation import SimulatedOperation, SimulatedWorld
from ringfence.service.driver_state import DatabaseWorlds
from ringfence.store.db import alembic_config, current_revision, head_revision, make_engine, session_scope, upgrade
from ringfence.store.driver_state import get_driver_state, put_driver_state

T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)
BEFORE = "0003_asset_states"


@pytest.fixture
def old_engine(db_url: str) -> Iterator[Engine]:
    """A database at 0003 holding one rollout."""
    engine = make_engine(db_url)
    upgrade(engine, BEFORE)
    with session_scope(engine) as session:
        # Plain SQL: the store's functions write columns this revision does not have yet (tests/old_schema.py).
        add_old_rollouts(session, ["r-1"], at=T0, asset_count=1)
    try:
        yield engine
    finally:
        engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_adds_driver_state_kept_per_rollout_and_driver(old_engine: Engine) -> None:
    assert "driver_state" not in _tables(old_engine)

    upgrade(old_engine)

    assert current_revision(old_engine) == head_revision()
    with session_scope(old_engine) as session:
        assert get_driver_state(session, "r-1", "simulated") is None
        put_driver_state(session, "r-1", "simulated", {"assets": {"a": {"installs": 1}}}, at=T0)
        put_driver_state(session, "r-1", "other", {"n": 1}, at=T0)
    with session_scope(old_engine) as session:
        # Replaced whole, not merged; the other driver's document is its own.
        put_driver_state(session, "r-1", "simulated", {"operations": {}}, at=T0 + timedelta(seconds=1))
    with session_scope(old_engine, readonly=True) as session:
        assert get_driver_state(session, "r-1", "simulated") == {"operations": {}}
        assert get_driver_state(session, "r-1", "other") == {"n": 1}
    with pytest.raises(NotFoundError, match="r-9"), session_scope(old_engine) as session:
        put_driver_state(session, "r-9", "simulated", {}, at=T0)
    # The database itself holds the rule too.
    with pytest.raises(IntegrityError), old_engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO driver_state (rollout_id, driver, document, updated_at) VALUES (:r, 'x', '{}', :t)"),
            {"r": "r-9", "t": T0},
        )


def test_a_simulated_world_round_trips_through_the_table(old_engine: Engine) -> None:
    upgrade(old_engine)
    world = SimulatedWorld()
    world.asset("a").installs = 1
    world.operations["r-1|apply|a"] = SimulatedOperation("r-1", OperationKind.apply, "a", "2", 1.5, 3.5)
    worlds = DatabaseWorlds(old_engine, clock=lambda: T0)
    assert worlds.load("r-1") == SimulatedWorld()
    worlds.save("r-1", world)
    assert worlds.load("r-1") == world


def test_downgrade_takes_the_table_away_and_leaves_the_rollout(old_engine: Engine) -> None:
    upgrade(old_engine)
    with session_scope(old_engine) as session:
        put_driver_state(session, "r-1", "simulated", {"assets": {}}, at=T0)
    with old_engine.begin() as connection:
        command.downgrade(alembic_config(connection), BEFORE)
    assert current_revision(old_engine) == BEFORE
    assert "driver_state" not in _tables(old_engine)
    with session_scope(old_engine, readonly=True) as session:
        assert old_update_id(session, "r-1") == "u"
    upgrade(old_engine)  # and up again, empty
    with session_scope(old_engine, readonly=True) as session:
        assert get_driver_state(session, "r-1", "simulated") is None
