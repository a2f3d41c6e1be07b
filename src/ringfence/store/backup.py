"""What ``ringfence db backup`` / ``db restore`` need of the database itself (``ringfence.service.backup`` does the
rest): SQLite's online backup API, the schema revision a backup holds, what a database holds, and how libpq's
tools reach a PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from ringfence.core.errors import InputError, Problem
from ringfence.store.db import alembic_config
from ringfence.store.tables import Base


def known_revisions() -> tuple[str, ...]:
    """Every schema revision this ringfence knows, newest first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return tuple(s.revision for s in scripts.walk_revisions())


def rows_held(engine: Engine) -> str:
    """What ringfence's tables hold, as "N rows in T, …" (empty when nothing): a restore would replace it."""
    present = set(sa.inspect(engine).get_table_names())
    held = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name not in present:
                continue
            found = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            if found:
                held.append(f"{found} rows in {table.name}")
    return ", ".join(held[:4]) + (f" and {len(held) - 4} more tables" if len(held) > 4 else "")


def sqlite_file(engine: Engine) -> Path:
    name = engine.url.database
    if not name or name == ":memory:":
        raise InputError("an in-memory SQLite database cannot be backed up or restored")
    return Path(name)


def sqlite_backup(source: Path, target: Path, *, replace: bool = True) -> None:
    """Copy the SQLite database ``source`` into ``target`` with the online backup API.

    ``replace``: write a temporary file beside ``target`` and rename it into place (a new backup file); else
    copy into ``target`` itself, under its own write lock, so a reader never sees half of it (a restore).
    """
    try:
        reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError([Problem(f"{source}: cannot be read as SQLite ({exc})", path=("FILE",))]) from None
    try:
        if replace:
            partial = target.with_name(f".{target.name}.partial")
            try:
                with contextlib.closing(sqlite3.connect(partial)) as writer:
                    reader.backup(writer)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)  # a copy that failed half way leaves nothing beside the target
        else:
            with contextlib.closing(sqlite3.connect(target, timeout=30)) as writer:
                reader.backup(writer)
    except sqlite3.DatabaseError as exc:
        raise InputError([Problem(f"{source}: not a SQLite database ({exc})", path=("FILE",))]) from None
    finally:
        reader.close()


def sqlite_revision(path: Path) -> str | None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            found = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None  # not SQLite at all, or no ringfence schema in it: said by the caller
    return str(found[0]) if found else None


def libpq(engine: Engine) -> tuple[str, dict[str, str], str]:
    """The database as libpq's tools take it: a URI without the password, the environment with it in
    ``PGPASSWORD``, and ringfence's schema."""
    url = engine.url
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    with engine.connect() as connection:
        schema = str(connection.execute(sa.text("SELECT current_schema()")).scalar_one())
    return plain.render_as_string(hide_password=False), env, schema


__all__ = ["known_revisions", "libpq", "rows_held", "sqlite_backup", "sqlite_file", "sqlite_revision"]
