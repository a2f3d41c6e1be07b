"""Assurance: each estate's assurance file and resilience policy, as the server knows them.

Revision ID: 0009_assurance
Revises: 0008_notifications
Create Date: 2026-12-06

``assurance_documents`` keeps every assurance file and policy file stored for an estate of record (one row per
upload, never changed): the newest of each kind is the one the server assesses the estate with, the older ones
are the history the audit log points at. The upgrade creates it empty (an estate without a stored policy is
assessed with the bundled default); the downgrade drops it (the audit log still says who stored what, by hash).

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_assurance"
down_revision: str | None = "0008_notifications"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "assurance_documents",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("estate", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assurance_documents")),
        sa.CheckConstraint("kind IN ('assurance', 'policy')", name=op.f("ck_assurance_documents_kind")),
    )
    op.create_index(op.f("ix_assurance_documents_estate_kind_id"), "assurance_documents", ["estate", "kind", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_assurance_documents_estate_kind_id"), table_name="assurance_documents")
    op.drop_table("assurance_documents")
