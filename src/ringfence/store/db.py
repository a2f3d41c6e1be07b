"""Where the state lives and how to reach it: engine, transactions, migrations, the per-rollout lock.

SQLite is the zero-set-up default (a file under ``$RINGFENCE_HOME``); PostgreSQL (psycopg 3) is used when
``RINGFENCE_DATABASE_URL`` names one. The service layer owns transactions through :func:`session_scope`;
repository functions only flush.

SQLite transactions: pysqlite's own transaction handling is switched off and ringfence emits the BEGIN
itself. A read-write transaction starts with ``BEGIN IMMEDIATE``, which takes SQLite's single write lock
up front (waiting up to the busy timeout for it), so two writers never interleave and never fail half
way with "database is locked" when one upgrades from reading to writing. A read-only transaction
(``session_scope(engine, readonly=True)``) starts with a plain BEGIN and runs under ``query_only``: it
waits for nobody and cannot write. On PostgreSQL a read-only transaction is ``READ ONLY``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from ringfence.core.errors import ConflictError, InputError
from ringfence.store.home import HOME_ENV, user_home

DATABASE_URL_ENV = "RINGFENCE_DATABASE_URL"
SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the write lock before giving up ("database is locked")."""

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_READONLY = "ringfence_readonly"

# Keys of PostgreSQL advisory locks: (namespace, key) pairs of 32-bit integers. The namespaces keep the
# rollout locks, the audit chain and migrations from ever sharing a key; the key is made of the schema and
# the name of what is locked (:data:`SCOPED_KEY_SQL`), because advisory locks are shared by the whole
# database: two installations in two schemas of one database (or two test workers) must never wait for,
# or be refused by, each other's locks.
LOCK_NAMESPACE_ROLLOUT = 0x52460001
LOCK_NAMESPACE_AUDIT = 0x52460002
LOCK_NAMESPACE_MIGRATIONS = 0x52460003
LOCK_NAMESPACE_ROLLOUT_IDS = 0x52460004
LOCK_NAMESPACE_INCIDENT_IDS = 0x52460010

SCOPED_KEY_SQL = "('x' || left(md5(coalesce(current_schema(), '') || '/' || :name), 8))::bit(32)::int"
"""The key of the lock on ``:name`` in the schema the session's tables are in, computed by PostgreSQL itself
(no round trip to ask for the schema first); :func:`lock_key` computes the same key in Python. A search path
naming no schema that exists yet counts as the schema ``""`` (a NULL key would take no lock at all)."""


def database_url() -> str:
    """The database to use: ``$RINGFENCE_DATABASE_URL``, else a SQLite file in the user's home
    (:func:`user_home`), created when missing."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if url:
        return url
    home = user_home(os.environ).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'ringfence.db'}"


def normalise_url(url: str) -> sa.URL:
    """Parse ``url``, choosing psycopg 3 for PostgreSQL; refuse databases ringfence does not run on."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InputError(
            f"the database URL {url!r} is not a URL (e.g. postgresql://user@host/db or sqlite:///path)"
        ) from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        driver = parsed.get_driver_name() if "+" in parsed.drivername else "psycopg"
        return parsed.set(drivername=f"postgresql+{driver}")
    if backend == "sqlite":
        return parsed
    raise InputError(
        f"the database URL {parsed.render_as_string(hide_password=True)!r} names {backend}; "
        "ringfence keeps its state in SQLite or PostgreSQL"
    )


def make_engine(url: str | None = None) -> Engine:
    """An engine for ``url`` (default :func:`database_url`), set up for ringfence's transactions."""
    parsed = normalise_url(url if url is not None else database_url())
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    engine = sa.create_engine(parsed, pool_pre_ping=True)
    event.listen(engine, "begin", _postgres_readonly)
    return engine


def _sqlite_engine(url: sa.URL) -> Engine:
    # Sessions may move between threads (a web server's pool); each is used by one thread at a time.
    engine = sa.create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from pysqlite so that we choose DEFERRED or IMMEDIATE per transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL: readers never block the writer and the writer never blocks readers.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        readonly = bool(connection.get_execution_options().get(_READONLY))
        # query_only is per connection and outlives the transaction, so set it every time, before BEGIN
        # (an IMMEDIATE transaction cannot begin while it is on).
        connection.exec_driver_sql(f"PRAGMA query_only={1 if readonly else 0}")
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _postgres_readonly(connection: Connection) -> None:
    # psycopg opens the transaction implicitly with the first statement, so this one comes first.
    if connection.get_execution_options().get(_READONLY):
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")


@contextmanager
def session_scope(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back (and re-raise) when it raises.

    Read-write by default; see the module docstring for what that means on SQLite.
    """
    bind = engine.execution_options(**{_READONLY: True}) if readonly else engine
    session = Session(bind=bind, expire_on_commit=False, autoflush=True)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_readonly(session: Session) -> bool:
    """Whether ``session`` was opened by ``session_scope(..., readonly=True)``."""
    return bool(session.connection().get_execution_options().get(_READONLY))


def rollout_lock(session: Session, rollout_id: str) -> None:
    """Hold the lock on ``rollout_id`` until the session's transaction ends: one controller per rollout.

    PostgreSQL: a transaction-scoped advisory lock keyed by the rollout id; another transaction asking
    for the same rollout waits until this one commits or rolls back; other rollouts are not held up.
    SQLite: the read-write transaction already holds the database's single write lock (``BEGIN
    IMMEDIATE``), which serialises every writer, this rollout's included; nothing more to take.
    A read-only session cannot lock.
    """
    if is_readonly(session):
        raise ConflictError(f"rollout {rollout_id} cannot be locked from a read-only transaction")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(scoped_lock("pg_advisory_xact_lock"), {"namespace": LOCK_NAMESPACE_ROLLOUT, "name": rollout_id})


def try_rollout_lock(session: Session, rollout_id: str) -> bool:
    """Like :func:`rollout_lock` but never waits: False when another transaction holds the rollout.

    On SQLite this is always True: the transaction already holds the write lock.
    """
    if is_readonly(session):
        raise ConflictError(f"rollout {rollout_id} cannot be locked from a read-only transaction")
    if session.get_bind().dialect.name != "postgresql":
        return True
    got = session.execute(
        scoped_lock("pg_try_advisory_xact_lock"), {"namespace": LOCK_NAMESPACE_ROLLOUT, "name": rollout_id}
    ).scalar_one()
    return bool(got)


def advisory_lock(session: Session, namespace: int, name: str = "") -> None:
    """Serialise writers of one thing (the audit chain, rollout ids) until the transaction ends.

    A PostgreSQL advisory lock; on SQLite the read-write transaction already serialises all writers.

    Locks are taken in one order — the audit chain's first — so two transactions never wait for each other:
    every transaction that takes one of these locks also writes the audit chain, and one that numbered a
    rollout (its id lock, then the audit lock) while another had audited an estate version and wanted the
    next rollout id (the audit lock, then the id lock) deadlocked. So any other lock takes the audit lock
    before itself (an advisory lock the transaction holds already is granted again at once).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    lock = scoped_lock("pg_advisory_xact_lock")
    if namespace != LOCK_NAMESPACE_AUDIT:
        session.execute(lock, {"namespace": LOCK_NAMESPACE_AUDIT, "name": ""})
    session.execute(lock, {"namespace": namespace, "name": name})


def scoped_lock(function: str) -> sa.TextClause:
    """``SELECT function(:namespace, key)``: an advisory-lock function called on the key of ``:name`` in the
    session's schema (:data:`SCOPED_KEY_SQL`)."""
    return sa.text(f"SELECT {function}(:namespace, {SCOPED_KEY_SQL})")


def lock_key(schema: str, name: str) -> int:
    """The signed 32-bit key PostgreSQL computes for ``name`` in ``schema`` (:data:`SCOPED_KEY_SQL`): the
    first four bytes of the MD5 of ``schema/name``. ``pg_locks`` shows it as an unsigned ``objid``."""
    digest = hashlib.md5(f"{schema}/{name}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini is needed to migrate."""
    config = Config()
    # ConfigParser interpolates '%', which may appear in a path.
    config.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default the newest), in one transaction.

    Safe to call from several processes at once: on PostgreSQL they take turns on an advisory lock,
    on SQLite on the write lock, and whoever comes second finds nothing left to do.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                scoped_lock("pg_advisory_xact_lock"), {"namespace": LOCK_NAMESPACE_MIGRATIONS, "name": ""}
            )
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    with engine.execution_options(**{_READONLY: True}).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision this version of ringfence knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {_MIGRATIONS}")
    return head


__all__ = [
    "DATABASE_URL_ENV",
    "HOME_ENV",
    "SCOPED_KEY_SQL",
    "advisory_lock",
    "alembic_config",
    "current_revision",
    "database_url",
    "head_revision",
    "is_readonly",
    "lock_key",
    "make_engine",
    "normalise_url",
    "rollout_lock",
    "scoped_lock",
    "session_scope",
    "try_rollout_lock",
    "upgrade",
]
