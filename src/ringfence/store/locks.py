"""Session-level advisory locks: a server worker's claims on the rollouts it drives.

A claim is held on a connection of its own, outside any transaction, for as long as the worker drives the
rollout (``ringfence.service.runner``): exactly one worker drives a rollout, and the driver it built stays
with it. It uses a lock namespace of its own, so it never waits on, or blocks, the per-transaction rollout
lock the controller's steps take (:func:`ringfence.store.db.rollout_lock`). On SQLite there is one worker and
every claim is granted.

PostgreSQL's advisory locks are shared by the whole database, schemas included, so a claim's key is made of
the schema and the rollout id: two ringfence installations in two schemas of one database never hold up each
other's rollouts.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ringfence.store.db import lock_key

LOCK_NAMESPACE_ROLLOUT_CLAIM = 0x52460101
"""Advisory-lock namespace of a worker's claim on a rollout (apart from ``ringfence.store.db``'s namespaces)."""


def claim_key(schema: str, rollout_id: str) -> int:
    """The advisory-lock key of a claim on ``rollout_id`` by a worker whose tables are in ``schema``."""
    return lock_key(f"{schema}/{rollout_id}")


class RolloutClaims:
    """One worker's claims on rollouts, on a connection of their own (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_shared = engine.dialect.name == "postgresql"
        self._connection: Connection | None = None
        self._schema = ""
        self._held: set[str] = set()

    def _conn(self) -> Connection:
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            # Session-level locks live as long as this connection: a lost connection loses every claim.
            self._held.clear()
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._schema = str(self._connection.execute(sa.text("SELECT current_schema()")).scalar_one())
        return self._connection

    def _lock(self, function: str, rollout_id: str) -> bool:
        connection = self._conn()
        found = connection.execute(
            sa.text(f"SELECT {function}(:namespace, :key)"),
            {"namespace": LOCK_NAMESPACE_ROLLOUT_CLAIM, "key": claim_key(self._schema, rollout_id)},
        )
        return bool(found.scalar_one())

    def claim(self, rollout_id: str) -> bool:
        """Take the claim on ``rollout_id`` without waiting; False when another worker holds it."""
        if not self.is_shared or rollout_id in self._held:
            return True
        if self._lock("pg_try_advisory_lock", rollout_id):
            self._held.add(rollout_id)
            return True
        return False

    def release(self, rollout_id: str) -> None:
        """Give up the claim on ``rollout_id`` (nothing when it is not held)."""
        if rollout_id not in self._held:
            return
        self._held.discard(rollout_id)
        if self._connection is not None and not self._connection.closed:
            self._lock("pg_advisory_unlock", rollout_id)

    def close(self) -> None:
        """Give up every claim."""
        self._held.clear()
        if self._connection is not None:
            self._connection.close()  # ending the session releases every advisory lock it held
            self._connection = None


__all__ = ["LOCK_NAMESPACE_ROLLOUT_CLAIM", "RolloutClaims", "claim_key"]
