"""Migrating ringfence's own database: an admin action like any other, so it is in the audit chain.

The CLI migrates the database before every command and the server when it starts; a migration that changes the
schema of a database already in use is written to the audit log (who, from which revision, to which), wherever it
ran. Creating the schema of a new database is not: there is nothing in it yet, and its log starts there.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ringfence.core.clock import utc_now
from ringfence.store.audit import append_audit
from ringfence.store.db import current_revision, session_scope, upgrade


def upgrade_audited(engine: Engine, actor: str) -> None:
    """Migrate the database to the newest schema, auditing a migration of a database already in use."""
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    if before is not None and after != before:
        with session_scope(engine) as session:
            append_audit(
                session,
                actor=actor,
                action="database.upgrade",
                subject="database",
                detail={"from": before, "to": after},
                at=utc_now(),
            )


__all__ = ["upgrade_audited"]
