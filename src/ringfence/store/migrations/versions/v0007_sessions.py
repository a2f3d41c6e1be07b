"""``api_tokens.expires_at``: a token that stops working at a time, which is what a signed-in session is.

Revision ID: 0007_sessions
Revises: 0006_estate_of_record
Create Date: 2026-12-06

People sign in to the dashboard at the trust's identity provider (OpenID Connect). Each sign-in stores a
session as a row of ``api_tokens`` (its secret in the browser's cookie, only its hash here), with the role
the provider's groups map to and the time it ends. API tokens keep ``expires_at`` NULL: they last until
revoked. The downgrade drops the column, and with it every session's end: run it only with the server
stopped, and revoke the sessions first (they would otherwise last until revoked).

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_sessions"
down_revision: str | None = "0006_estate_of_record"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
