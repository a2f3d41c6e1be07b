"""Alembic migrations of ringfence's store. Run them with ``ringfence.store.db.upgrade`` (no alembic.ini)."""
