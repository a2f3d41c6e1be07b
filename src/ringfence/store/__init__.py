"""Persistence: SQLAlchemy tables, Alembic migrations and repository functions (an adapter, not core).

- ``db``: engines (SQLite by default, PostgreSQL via ``RINGFENCE_DATABASE_URL``), ``session_scope``,
  migrations (``upgrade``), and ``rollout_lock``;
- ``tables``: the schema; ``records``: the frozen records the repository returns;
- ``repo``: functions that take a Session, flush and never commit.
"""
