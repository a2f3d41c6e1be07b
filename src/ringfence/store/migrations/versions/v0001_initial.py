"""Initial schema: estate versions, rollouts and their assets, decisions, observations, audit log, API tokens.

Revision ID: 0001_initial
Revises:
Create Date: 2024-11-23

Written by hand and frozen: the value lists below are copied, not imported, so that this migration
creates the same schema whatever later code says. Every name is given in full (``op.f``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

PHASES = (
    "'pending', 'awaiting_approval', 'taking_restore_points', 'applying', 'baking', 'judging', "
    "'paused', 'halted', 'rolling_back', 'rolled_back', 'completed', 'failed'"
)
ASSET_STATES = (
    "'pending', 'restore_point_taken', 'restore_point_failed', 'applying', 'applied', 'failed', "
    "'rolling_back', 'rolled_back', 'skipped'"
)
OBSERVATION_KINDS = "'heartbeat', 'install_result', 'health_check', 'rollback_result', 'restore_point'"


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "estate_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        _when("created_at"),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("asset_count", sa.Integer(), nullable=False),
        sa.Column("service_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estate_versions")),
        sa.UniqueConstraint("name", "sha256", name=op.f("uq_estate_versions_name_sha256")),
        sa.CheckConstraint("format IN ('yaml', 'json')", name=op.f("ck_estate_versions_format")),
    )

    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("estate_version_id", sa.Integer(), nullable=False),
        sa.Column("update_id", sa.String(200), nullable=False),
        sa.Column("update_doc", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("ring", sa.Integer(), nullable=False),
        sa.Column("paused_from", sa.String(32), nullable=True),
        sa.Column("halt_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=True),
        sa.Column("needs_approval", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
        sa.ForeignKeyConstraint(
            ["estate_version_id"],
            ["estate_versions.id"],
            name=op.f("fk_rollouts_estate_version_id_estate_versions"),
        ),
        sa.CheckConstraint(f"phase IN ({PHASES})", name=op.f("ck_rollouts_phase")),
        sa.CheckConstraint(f"paused_from IS NULL OR paused_from IN ({PHASES})", name=op.f("ck_rollouts_paused_from")),
    )
    op.create_index(op.f("ix_rollouts_phase"), "rollouts", ["phase"])

    op.create_table(
        "rollout_assets",
        sa.Column("rollout_id", sa.String(64), nullable=False),
        sa.Column("asset_id", sa.String(200), nullable=False),
        sa.Column("ring", sa.Integer(), nullable=False),
        sa.Column("stratum", sa.Text(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("restore_point_ref", sa.Text(), nullable=True),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("rollout_id", "asset_id", name=op.f("pk_rollout_assets")),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], name=op.f("fk_rollout_assets_rollout_id_rollouts")),
        sa.CheckConstraint(f"state IN ({ASSET_STATES})", name=op.f("ck_rollout_assets_state")),
    )

    op.create_table(
        "decisions",
        sa.Column("rollout_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=False),
        _when("created_at"),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        _when("done_at", nullable=True),
        sa.PrimaryKeyConstraint("rollout_id", "seq", name=op.f("pk_decisions")),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], name=op.f("fk_decisions_rollout_id_rollouts")),
        sa.CheckConstraint("status IN ('pending', 'done')", name=op.f("ck_decisions_status")),
    )

    op.create_table(
        "observations",
        # 64-bit where heartbeats pile up; SQLite only auto-increments a column typed INTEGER.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("rollout_id", sa.String(64), nullable=True),
        sa.Column("asset_id", sa.String(200), nullable=False),
        _when("at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], name=op.f("fk_observations_rollout_id_rollouts")),
        sa.CheckConstraint(f"kind IN ({OBSERVATION_KINDS})", name=op.f("ck_observations_kind")),
    )
    op.create_index(op.f("ix_observations_asset_id_at"), "observations", ["asset_id", "at"])
    op.create_index(op.f("ix_observations_rollout_id_at"), "observations", ["rollout_id", "at"])

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        _when("at"),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    op.create_index(op.f("ix_audit_log_subject_seq"), "audit_log", ["subject", "seq"])

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("asset_id", sa.String(200), nullable=True),
        _when("created_at"),
        _when("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sa.CheckConstraint(
            "role IN ('viewer', 'operator', 'approver', 'admin', 'agent')", name=op.f("ck_api_tokens_role")
        ),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_index(op.f("ix_audit_log_subject_seq"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_observations_rollout_id_at"), table_name="observations")
    op.drop_index(op.f("ix_observations_asset_id_at"), table_name="observations")
    op.drop_table("observations")
    op.drop_table("decisions")
    op.drop_table("rollout_assets")
    op.drop_index(op.f("ix_rollouts_phase"), table_name="rollouts")
    op.drop_table("rollouts")
    op.drop_table("estate_versions")
