"""Workers and the driver options a rollout is driven with.

Revision ID: 0010_workers
Revises: 0009_assurance
Create Date: 2026-12-06

``workers`` holds one row per running ``ringfence serve`` controller loop or ``ringfence worker``: which
drivers it can run, which rollouts it drives, and when it last said so (its heartbeat). A rollout whose driver
no live worker can run is shown as waiting for one, rather than nothing happening. ``rollout_driver_options``
holds the ``--driver-option`` values a rollout was created (or last started) with, so that any worker can
build its driver (the ansible driver's inventory and playbooks). The upgrade creates both empty; the
downgrade drops them (rollouts then need their options again at ``rollout start``).

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_workers"
down_revision: str | None = "0009_assurance"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("drivers", sa.JSON(), nullable=False),
        sa.Column("driving", sa.JSON(), nullable=False),
        sa.Column("interval", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.CheckConstraint("role IN ('serve', 'worker')", name=op.f("ck_workers_role")),
    )
    op.create_table(
        "rollout_driver_options",
        sa.Column("rollout_id", sa.String(64), nullable=False),
        sa.Column("driver", sa.String(64), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("health_options", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", name=op.f("pk_rollout_driver_options")),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_rollout_driver_options_rollout_id_rollouts")
        ),
    )


def downgrade() -> None:
    op.drop_table("rollout_driver_options")
    op.drop_table("workers")
