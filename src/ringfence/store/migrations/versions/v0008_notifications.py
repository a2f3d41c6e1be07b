"""Notifications: the notifier's outbox of deliveries, its cursor on the audit log, and the RTO clocks it has seen.

Revision ID: 0008_notifications
Revises: 0007_sessions
Create Date: 2026-12-06

``notification_deliveries`` holds one row per message and channel, with every attempt to send it counted
(status, attempts, the last error, when it is due again); ``notification_cursor`` how far the audit log has
been read for events; ``notification_clocks`` the last status seen of each RTO clock, so a person is told once
per change. The upgrade creates them empty: the notifier starts its cursor at the end of the log the first
time it runs, so a database with years of history does not page anyone about it. The downgrade drops them
(the audit log, never touched, still holds every event).

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_notifications"
down_revision: str | None = "0007_sessions"
branch_labels: str | None = None
depends_on: str | None = None

STATUSES = "'pending', 'sending', 'sent', 'failed', 'gave_up'"


def upgrade() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_key", sa.String(300), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint("event_key", "channel", name=op.f("uq_notification_deliveries_event_key_channel")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_notification_deliveries_status")),
    )
    op.create_index(
        op.f("ix_notification_deliveries_status_next_attempt_at"),
        "notification_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_table(
        "notification_cursor",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_notification_cursor")),
    )
    op.create_table(
        "notification_clocks",
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "service", name=op.f("pk_notification_clocks")),
    )


def downgrade() -> None:
    op.drop_table("notification_clocks")
    op.drop_table("notification_cursor")
    op.drop_index(op.f("ix_notification_deliveries_status_next_attempt_at"), table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
