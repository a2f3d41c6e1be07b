"""Persistence: SQLAlchemy tables, Alembic migrations and repository functions (an adapter, not core).

- ``db``: engines (SQLite by default, PostgreSQL via ``RINGFENCE_DATABASE_URL``), ``session_scope``,
  migrations (``upgrade``), and ``rollout_lock``;
- ``tables``: the schema; ``records``: the frozen records the repository functions return;
- one module of repository functions per resource, each taking a Session, flushing and never committing:
  ``estates``, ``rollouts`` (with their targets), ``decisions``, ``observations``, ``incidents``, ``audit``,
  ``verdicts``, ``tokens``, ``driver_state``; ``rows`` holds what they share (numbering, batching, upserts,
  rows into records); ``repo`` re-exports the older callers' names.
"""
