"""Incidents that declare a change freeze.

Revision ID: 0011_incident_freezes
Revises: 0010_workers
Create Date: 2026-12-06

``incidents.change_freeze``: the incident declared an organisation-wide change freeze; while it is open, no
rollout opens a ring (``ringfence.core.windows``). Existing incidents declared none (false). The downgrade drops
the column: freezes declared since are forgotten, and rings open again.

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_incident_freezes"
down_revision: str | None = "0010_workers"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("change_freeze", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("change_freeze")
