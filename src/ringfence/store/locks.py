"""Session-level advisory locks: a server worker's claims on the rollouts it drives.

A claim is held on a connection of its own, outside any transaction, for as long as the worker drives the
rollout (``ringfence.service.runner``): exactly one worker drives a rollout, and the driver it built stays
with it. It uses a lock namespace of its own, so it never waits on, or blocks, the per-transaction rollout
lock the controller's steps take (:func:`ringfence.store.db.rollout_lock`). On SQLite there is one worker and
every claim is granted.

A claim is as alive as its connection: a worker killed (kill -9) closes its socket and PostgreSQL ends its
session at once, releasing its claims, so another worker claims the rollout at its next turn. A worker whose
machine vanishes (power, network) leaves no socket to close: the claim connection asks the server to probe it
with TCP keepalives (:data:`KEEPALIVE_SETTINGS`), so its session ends, and its claims go, within about
:data:`KEEPALIVE_DEAD_AFTER` seconds. The worker itself asks :meth:`RolloutClaims.holds` before each step, so
a worker whose claim connection was lost stops driving before another worker can have taken over.

PostgreSQL's advisory locks are shared by the whole database, schemas included, so a claim's key is made of
the schema and the rollout id (:func:`ringfence.store.db.scoped_lock`, like every lock ringfence takes): two
ringfence installations in two schemas of one database never hold up each other's rollouts.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ringfence.store.db import scoped_lock

LOCK_NAMESPACE_ROLLOUT_CLAIM = 0x52460101
"""Advisory-lock namespace of a worker's claim on a rollout (apart from ``ringfence.store.db``'s namespaces)."""


KEEPALIVE_SETTINGS = (("tcp_keepalives_idle", 10), ("tcp_keepalives_interval", 5), ("tcp_keepalives_count", 3))
"""How the server probes a claim connection that went quiet: after 10 s idle, every 5 s, given up after 3."""
KEEPALIVE_DEAD_AFTER = 10 + 5 * 3
"""Seconds after which the server ends the session of a worker whose machine vanished (TCP connections)."""


class RolloutClaims:
    """One worker's claims on rollouts, on a connection of their own (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_shared = engine.dialect.name == "postgresql"
        self._connection: Connection | None = None
        self._held: set[str] = set()

    def _conn(self) -> Connection:
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            # Session-level locks live as long as this connection: a lost connection loses every claim.
            self._held.clear()
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            for setting, seconds in KEEPALIVE_SETTINGS:
                # Ignored on a Unix-domain socket, where a dead peer is seen at once anyway.
                self._connection.execute(sa.text(f"SET {setting} = {int(seconds)}"))
        return self._connection

    def _lock(self, function: str, rollout_id: str) -> bool:
        connection = self._conn()
        found = connection.execute(
            scoped_lock(function), {"namespace": LOCK_NAMESPACE_ROLLOUT_CLAIM, "name": rollout_id}
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

    def holds(self, rollout_id: str) -> bool:
        """Whether this worker still holds its claim on ``rollout_id``: taken, and its session still alive.

        A session-level lock lasts as long as its session; a session that answers still holds every lock it
        took. One that does not answer (the connection was lost) has lost them all, whatever happens next.
        """
        if not self.is_shared:
            return True
        connection = self._connection
        if rollout_id not in self._held or connection is None or connection.closed or connection.invalidated:
            return False
        try:
            connection.execute(sa.text("SELECT 1")).scalar_one()
        except DBAPIError:
            self._held.clear()
            connection.invalidate()
            return False
        return True

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


__all__ = [
    "KEEPALIVE_DEAD_AFTER",
    "KEEPALIVE_SETTINGS",
    "LOCK_NAMESPACE_ROLLOUT_CLAIM",
    "RolloutClaims",
]
