"""Incidents and their timelines.

Revision ID: 0002_incidents
Revises: 0001_initial
Create Date: 2024-11-30

Written by hand and frozen, like 0001: the value lists are copied here, not imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_incidents"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("estate_version_id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.String(64), nullable=True),
        sa.Column("failed", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("step_seconds", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        _when("declared_at"),
        sa.Column("declared_by", sa.String(200), nullable=False),
        _when("closed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.ForeignKeyConstraint(
            ["estate_version_id"],
            ["estate_versions.id"],
            name=op.f("fk_incidents_estate_version_id_estate_versions"),
        ),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], name=op.f("fk_incidents_rollout_id_rollouts")),
        sa.UniqueConstraint("rollout_id", name=op.f("uq_incidents_rollout_id")),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_incidents_status")),
    )
    op.create_index(op.f("ix_incidents_status"), "incidents", ["status"])

    op.create_table(
        "incident_events",
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=False),
        _when("at"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "seq", name=op.f("pk_incident_events")),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_incident_events_incident_id_incidents")
        ),
        sa.CheckConstraint("kind IN ('declared', 'restored', 'note', 'closed')", name=op.f("ck_incident_events_kind")),
    )


def downgrade() -> None:
    op.drop_table("incident_events")
    op.drop_index(op.f("ix_incidents_status"), table_name="incidents")
    op.drop_table("incidents")
