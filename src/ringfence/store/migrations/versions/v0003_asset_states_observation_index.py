"""Asset states ``restore_point_requested`` and ``rollback_failed``; observations indexed by (kind, at).

Revision ID: 0003_asset_states
Revises: 0002_incidents
Create Date: 2026-12-05

Until now both were written into ``rollout_assets.detail`` beside another state: a pending asset whose
restore point was asked for had the detail ``taking a restore point``, a failed asset whose rollback
failed had a detail starting ``rollback failed``. Rows carrying those markers move to the new states
(the rest of a rollback's detail, the driver's words, is kept). Downgrading writes the markers back.

``ix_observations_kind_at`` answers ``/metrics`` (the newest heartbeat of any asset) from the index
alone instead of reading every observation. On a large PostgreSQL table, build it first by hand with
``CREATE INDEX CONCURRENTLY ix_observations_kind_at ON observations (kind, at)`` to avoid blocking
heartbeat writes while it builds; this migration then leaves it as it is (IF NOT EXISTS).

Written by hand and frozen, like 0001: the value lists are copied here, not imported. SQLite cannot
alter a CHECK constraint, so there the table is rebuilt (Alembic's batch mode); PostgreSQL alters it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_asset_states"
down_revision: str | None = "0002_incidents"
branch_labels: str | None = None
depends_on: str | None = None

OLD_ASSET_STATES = (
    "'pending', 'restore_point_taken', 'restore_point_failed', 'applying', 'applied', 'failed', "
    "'rolling_back', 'rolled_back', 'skipped'"
)
NEW_ASSET_STATES = (
    "'pending', 'restore_point_requested', 'restore_point_taken', 'restore_point_failed', 'applying', "
    "'applied', 'failed', 'rolling_back', 'rolled_back', 'rollback_failed', 'skipped'"
)
RESTORE_POINT_MARKER = "taking a restore point"
ROLLBACK_MARKER = "rollback failed"
# What the old controller wrote when the driver gave no detail: nothing worth keeping.
ROLLBACK_NO_DETAIL = "rollback failed: no detail"

CHECK = "ck_rollout_assets_state"
INDEX = "ix_observations_kind_at"


def _drop_check() -> None:
    with op.batch_alter_table("rollout_assets") as batch:
        batch.drop_constraint(op.f(CHECK), type_="check")


def _add_check(states: str) -> None:
    with op.batch_alter_table("rollout_assets") as batch:
        batch.create_check_constraint(op.f(CHECK), sa.text(f"state IN ({states})"))


def upgrade() -> None:
    _drop_check()
    prefix = f"{ROLLBACK_MARKER}: "
    op.execute(
        sa.text(
            "UPDATE rollout_assets SET state = 'restore_point_requested', detail = NULL "
            "WHERE state = 'pending' AND detail = :marker"
        ).bindparams(marker=RESTORE_POINT_MARKER)
    )
    op.execute(
        sa.text(
            "UPDATE rollout_assets SET state = 'rollback_failed', detail = CASE "
            "WHEN detail = :no_detail THEN NULL "
            "WHEN substr(detail, 1, :n) = :prefix THEN substr(detail, :n + 1) "
            "ELSE NULL END "
            "WHERE state = 'failed' AND substr(detail, 1, :m) = :marker"
        ).bindparams(
            no_detail=ROLLBACK_NO_DETAIL,
            prefix=prefix,
            n=len(prefix),
            marker=ROLLBACK_MARKER,
            m=len(ROLLBACK_MARKER),
        )
    )
    _add_check(NEW_ASSET_STATES)
    op.create_index(op.f(INDEX), "observations", ["kind", "at"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index(op.f(INDEX), table_name="observations")
    _drop_check()
    op.execute(
        sa.text(
            "UPDATE rollout_assets SET state = 'pending', detail = :marker WHERE state = 'restore_point_requested'"
        ).bindparams(marker=RESTORE_POINT_MARKER)
    )
    op.execute(
        sa.text(
            "UPDATE rollout_assets SET state = 'failed', detail = :prefix || COALESCE(detail, 'no detail') "
            "WHERE state = 'rollback_failed'"
        ).bindparams(prefix=f"{ROLLBACK_MARKER}: ")
    )
    _add_check(OLD_ASSET_STATES)
