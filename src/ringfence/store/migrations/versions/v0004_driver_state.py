"""``driver_state``: what a driver keeps between processes, one JSON document per (rollout, driver).

Revision ID: 0004_driver_state
Revises: 0003_asset_states
Create Date: 2026-12-06

The simulated driver kept its world in the memory of the process that drove the rollout: a ``rollout start``
or a server killed mid-install left the assets ``applying`` under a decision already marked done, and no
process could ever learn how those installs ended. The world now lives in this table, replaced whole after
every change.

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_driver_state"
down_revision: str | None = "0003_asset_states"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "driver_state",
        sa.Column("rollout_id", sa.String(64), nullable=False),
        sa.Column("driver", sa.String(64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", "driver", name=op.f("pk_driver_state")),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], name=op.f("fk_driver_state_rollout_id_rollouts")),
    )


def downgrade() -> None:
    op.drop_table("driver_state")
