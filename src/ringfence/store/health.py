"""Whether the database answers: one cheap query, bounded in time, for ``/v1/health``.

The query reads the database itself, not only the connection: on SQLite a bare ``SELECT 1`` never opens the
file, so an unreadable or vanished file would look healthy. On PostgreSQL the statement carries its own
``statement_timeout``, so a server that accepts the connection but cannot answer fails in ``timeout`` too.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ringfence.store.db import session_scope


def ping_database(engine: Engine, *, timeout: float) -> None:
    """Ask the database one cheap question; the driver's error (OperationalError…) when it cannot answer."""
    with session_scope(engine, readonly=True) as session:
        if session.get_bind().dialect.name == "postgresql":
            # SET LOCAL: only for this transaction; the pooled connection goes back without it.
            session.execute(sa.text(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}"))
            session.execute(sa.text("SELECT 1"))
        else:
            session.execute(sa.text("SELECT count(*) FROM sqlite_master"))


__all__ = ["ping_database"]
