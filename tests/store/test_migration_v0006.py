"""Migration 0006 (the estate of record, tokens tied to people) on a database that 0005's code filled, on real
SQLite and PostgreSQL.

The upgrade keeps what the service did before: every version accepted, each estate's newest version current,
an asset held by the estate whose current version is the newest to list it, and each token's person its
normalised name. The downgrade takes the new columns and table away.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from ringfence.store.db import alembic_config, current_revision, make_engine, session_scope, upgrade
from ringfence.store.estates import asset_holders, current_estate_versions

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BEFORE = "0005_gate_verdicts"

WARD_1 = "apiVersion: ringfence/v1\nestate: ward\nassets:\n  - {id: db-1, kind: vm}\n  - {id: ws-1, kind: endpoint}\n"
WARD_2 = WARD_1 + "  - {id: ws-2, kind: endpoint}\n"
SHADOW = '{"apiVersion": "ringfence/v1", "estate": "shadow", "assets": [{"id": "ws-2", "kind": "endpoint"}]}'


@pytest.fixture
def old_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade(engine, BEFORE)
    versions = sa.table(
        "estate_versions",
        *(sa.column(c) for c in ("name", "sha256", "content", "format", "created_by", "asset_count", "service_count")),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    tokens = sa.table(
        "api_tokens",
        *(sa.column(c) for c in ("name", "role", "token_hash")),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    with engine.begin() as connection:
        for i, (name, text, fmt) in enumerate(
            [("ward", WARD_1, "yaml"), ("ward", WARD_2, "yaml"), ("shadow", SHADOW, "json")]
        ):
            connection.execute(
                versions.insert().values(
                    name=name,
                    sha256=hashlib.sha256(text.encode()).hexdigest(),
                    content=text,
                    format=fmt,
                    created_by="ana",
                    asset_count=2,
                    service_count=0,
                    created_at=T0 + timedelta(minutes=i),
                )
            )
        connection.execute(tokens.insert().values(name=" Admin-1", role="admin", token_hash="h" * 64, created_at=T0))
    try:
        yield engine
    finally:
        engine.dispose()


def test_upgrade_makes_the_newest_versions_of_record_and_gives_each_asset_one_holder(old_engine: Engine) -> None:
    upgrade(old_engine)
    with session_scope(old_engine, readonly=True) as session:
        current = current_estate_versions(session)
        assert {name: v.id for name, v in current.items()} == {"ward": 2, "shadow": 3}
        assert {v.status for v in current.values()} == {"accepted"}
        assert current["ward"].accepted_at == T0 + timedelta(minutes=1)
        holders = asset_holders(session, ["db-1", "ws-1", "ws-2", "nothing"])
    # ws-2 is listed by both current versions: the newest (shadow, uploaded last) held it before, and holds it.
    assert holders == {"db-1": ("ward", 2), "ws-1": ("ward", 2), "ws-2": ("shadow", 3)}
    with old_engine.connect() as connection:
        assert connection.execute(sa.text("SELECT person, issued_by FROM api_tokens")).one() == ("admin-1", None)


def test_downgrade_takes_the_record_away(old_engine: Engine) -> None:
    upgrade(old_engine)
    with old_engine.begin() as connection:
        command.downgrade(alembic_config(connection), BEFORE)
    assert current_revision(old_engine) == BEFORE
    inspector = sa.inspect(old_engine)
    assert "estate_assets" not in inspector.get_table_names()
    assert "status" not in {c["name"] for c in inspector.get_columns("estate_versions")}
    assert "person" not in {c["name"] for c in inspector.get_columns("api_tokens")}
