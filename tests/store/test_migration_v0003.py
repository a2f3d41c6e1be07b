"""Migration 0003 on a database holding rollouts written by 0002's code, on real SQLite and PostgreSQL.

Rows whose ``detail`` carried a state move into the new states, the CHECK takes the new states (and still
refuses others), observations get their (kind, at) index, and a downgrade gives back what was there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from old_schema import add_old_rollouts
from ringfence.store.audit import verify_audit
from ringfence.store.db import alembic_config, current_revision, head_revision, make_engine, session_scope, upgrade
from ringfence.store.rollouts import list_rollout_assets
from ringfence.store.tables import ObservationRow, RolloutAssetRow

T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)
BEFORE = "0002_incidents"

# (asset, state, detail) as 0002's controller wrote them, and what 0003 makes of each.
OLD_ROWS = [
    ("asked", "pending", "taking a restore point"),
    ("waiting", "pending", None),
    ("broken", "failed", "rollback failed: vmware tools did not answer"),
    ("silent", "failed", "rollback failed: no detail"),
    ("crashed", "failed", "install exited 3"),
    ("done", "rolled_back", None),
]
NEW_ROWS = {
    "asked": ("restore_point_requested", None),
    "waiting": ("pending", None),
    "broken": ("rollback_failed", "vmware tools did not answer"),
    "silent": ("rollback_failed", None),
    "crashed": ("failed", "install exited 3"),
    "done": ("rolled_back", None),
}


@pytest.fixture
def old_engine(db_url: str) -> Iterator[Engine]:
    """A database at 0002 holding one rollout whose assets carry states in their detail, as 0002 wrote them."""
    engine = make_engine(db_url)
    upgrade(engine, BEFORE)
    with session_scope(engine) as session:
        # Plain SQL: the store's functions write columns this revision does not have yet (tests/old_schema.py).
        add_old_rollouts(session, ["r-1"], at=T0, asset_count=6)
        session.execute(
            sa.insert(RolloutAssetRow.__table__),
            [
                {
                    "rollout_id": "r-1",
                    "asset_id": asset,
                    "ring": 0,
                    "stratum": "[]",
                    "state": state,
                    "detail": detail,
                    "restore_point_ref": None,
                    "updated_at": T0,
                }
                for asset, state, detail in OLD_ROWS
            ],
        )
        session.execute(
            sa.insert(ObservationRow.__table__),
            [{"rollout_id": None, "asset_id": "asked", "at": T0, "kind": "heartbeat", "status": "ok", "detail": {}}],
        )
    try:
        yield engine
    finally:
        engine.dispose()


def _rows(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as connection:
        found = connection.execute(sa.select(RolloutAssetRow.asset_id, RolloutAssetRow.state, RolloutAssetRow.detail))
        return {asset: (state, detail) for asset, state, detail in found}


def _set_state(engine: Engine, state: str) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE rollout_assets SET state = :s WHERE asset_id = 'done'"), {"s": state})


def _indexes(engine: Engine) -> set[str | None]:
    return {ix["name"] for ix in sa.inspect(engine).get_indexes("observations")}


def test_upgrade_moves_the_markers_into_states_and_indexes_observations(old_engine: Engine) -> None:
    with pytest.raises(IntegrityError):
        _set_state(old_engine, "rollback_failed")  # 0002 knows no such state
    assert "ix_observations_kind_at" not in _indexes(old_engine)

    upgrade(old_engine)

    assert current_revision(old_engine) == head_revision()
    assert _rows(old_engine) == NEW_ROWS
    assert "ix_observations_kind_at" in _indexes(old_engine)
    _set_state(old_engine, "rollback_failed")
    with pytest.raises(IntegrityError):
        _set_state(old_engine, "exploded")
    # Nothing else of the rollout was lost in SQLite's table rebuild.
    with session_scope(old_engine, readonly=True) as session:
        assets = list_rollout_assets(session, "r-1")
        assert [a.asset_id for a in assets] == sorted(NEW_ROWS)
        assert verify_audit(session).ok


def test_downgrade_gives_the_markers_back(old_engine: Engine) -> None:
    upgrade(old_engine)
    with old_engine.begin() as connection:
        config = alembic_config(connection)
        command.downgrade(config, BEFORE)
    assert current_revision(old_engine) == BEFORE
    rows = _rows(old_engine)
    assert rows["asked"] == ("pending", "taking a restore point")
    assert rows["broken"] == ("failed", "rollback failed: vmware tools did not answer")
    assert rows["silent"] == ("failed", "rollback failed: no detail")
    assert rows["crashed"] == ("failed", "install exited 3")
    assert "ix_observations_kind_at" not in _indexes(old_engine)
    with pytest.raises(IntegrityError):
        _set_state(old_engine, "restore_point_requested")
    upgrade(old_engine)  # and up again
    assert _rows(old_engine) == NEW_ROWS
