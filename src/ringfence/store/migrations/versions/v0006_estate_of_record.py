"""The estate of record, and tokens tied to people: who may approve is decided by persons, not free-form names.

Revision ID: 0006_estate_of_record
Revises: 0005_gate_verdicts
Create Date: 2026-12-06

- ``estate_versions``: ``status`` (accepted, proposed, rejected), ``accepted_at`` (when it became current: the
  accepted version accepted last is an estate's current one), ``decided_by``/``decided_at`` (the second
  person of a proposal) and ``created_by_token`` (the API token that uploaded it).
- ``estate_assets``: which estate of record holds each asset (its current version), one row per asset id.
- ``rollouts.created_by_token``: the API token that created the rollout.
- ``api_tokens.person`` (the name, NFKC-casefolded, format characters removed, stripped) and
  ``api_tokens.issued_by`` (the token that issued it; None for tokens made on the CLI).

The upgrade keeps what the service did before: every stored version is accepted, accepted when it was
uploaded, and an estate's newest version is its current one; an asset is held by the estate whose current
version is the newest of those that list it. Asset ids are read from each current version's text with the
plain YAML and JSON readers (ids are ``[a-z0-9._-]``: read as text by the base loader, never retyped). A
database migrated with the SQL that ``alembic upgrade --sql`` renders starts with ``estate_assets`` empty
and every token's person empty: upload the estates again and re-issue tokens, or run the upgrade online.

Written by hand and frozen, like 0001: the person rule below is copied, not imported.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import sqlalchemy as sa
import yaml
from alembic import context, op

revision = "0006_estate_of_record"
down_revision: str | None = "0005_gate_verdicts"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("estate_versions", sa.Column("status", sa.String(16), nullable=False, server_default="accepted"))
    op.add_column("estate_versions", sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("estate_versions", sa.Column("decided_by", sa.String(200), nullable=True))
    op.add_column("estate_versions", sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("estate_versions", sa.Column("created_by_token", sa.Integer(), nullable=True))
    op.create_table(
        "estate_assets",
        sa.Column("asset_id", sa.String(200), nullable=False),
        sa.Column("estate_name", sa.String(200), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", name=op.f("pk_estate_assets")),
        sa.ForeignKeyConstraint(
            ["version_id"], ["estate_versions.id"], name=op.f("fk_estate_assets_version_id_estate_versions")
        ),
    )
    op.create_index(op.f("ix_estate_assets_version_id"), "estate_assets", ["version_id"])
    op.add_column("rollouts", sa.Column("created_by_token", sa.Integer(), nullable=True))
    op.add_column("api_tokens", sa.Column("person", sa.String(200), nullable=False, server_default=""))
    op.add_column("api_tokens", sa.Column("issued_by", sa.Integer(), nullable=True))
    if context.is_offline_mode():
        return  # rendered as SQL there are no texts to read (see the module docstring)
    _accept_every_version()
    _fill_persons()


def downgrade() -> None:
    op.drop_column("api_tokens", "issued_by")
    op.drop_column("api_tokens", "person")
    op.drop_column("rollouts", "created_by_token")
    op.drop_index(op.f("ix_estate_assets_version_id"), table_name="estate_assets")
    op.drop_table("estate_assets")
    for column in ("created_by_token", "decided_at", "decided_by", "accepted_at", "status"):
        op.drop_column("estate_versions", column)


def _accept_every_version() -> None:
    bind = op.get_bind()
    versions = sa.table(
        "estate_versions",
        sa.column("id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("content", sa.Text()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("accepted_at", sa.DateTime(timezone=True)),
    )
    bind.execute(versions.update().values(accepted_at=versions.c.created_at))
    newest: dict[str, int] = {}
    for version_id, name in bind.execute(sa.select(versions.c.id, versions.c.name).order_by(versions.c.id)):
        newest[str(name)] = int(version_id)
    holders: dict[str, tuple[str, int]] = {}
    for name, version_id in sorted(newest.items(), key=lambda item: item[1]):
        content = bind.execute(sa.select(versions.c.content).where(versions.c.id == version_id)).scalar_one()
        for asset_id in _asset_ids(str(content)):
            holders[asset_id] = (name, version_id)  # the newest current version listing it holds it
    assets = sa.table(
        "estate_assets",
        sa.column("asset_id", sa.String()),
        sa.column("estate_name", sa.String()),
        sa.column("version_id", sa.Integer()),
    )
    rows = [{"asset_id": a, "estate_name": n, "version_id": v} for a, (n, v) in holders.items()]
    for start in range(0, len(rows), 1000):
        bind.execute(assets.insert(), rows[start : start + 1000])


def _asset_ids(content: str) -> list[str]:
    """The ``id`` of every item under ``assets`` (texts stored were checked whole when uploaded)."""
    try:
        document: Any = (
            json.loads(content) if content.lstrip().startswith(("{", "[")) else yaml.load(content, yaml.BaseLoader)
        )
    except (ValueError, yaml.YAMLError):
        return []
    found = document.get("assets") if isinstance(document, dict) else None
    if not isinstance(found, list):
        return []
    return [str(a["id"]) for a in found if isinstance(a, dict) and isinstance(a.get("id"), str)]


def _person(name: str) -> str:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return "".join(c for c in folded if unicodedata.category(c) != "Cf").strip()


def _fill_persons() -> None:
    bind = op.get_bind()
    tokens = sa.table(
        "api_tokens", sa.column("id", sa.Integer()), sa.column("name", sa.String()), sa.column("person", sa.String())
    )
    for token_id, name in bind.execute(sa.select(tokens.c.id, tokens.c.name)).all():
        bind.execute(tokens.update().where(tokens.c.id == token_id).values(person=_person(str(name))[:200]))
