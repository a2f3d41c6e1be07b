"""Backing up and restoring ringfence's own state: ``ringfence db backup FILE`` / ``ringfence db restore FILE``.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies the database page by page under SQLite's
own locking, so the copy is consistent even while the server and workers write; it is written beside FILE and
renamed into place, so FILE is never half a backup. PostgreSQL: ``pg_dump --format=custom`` of ringfence's
schema (no owners, no privileges), and ``pg_restore --clean --if-exists`` back; both must be on PATH (the
``postgresql-client`` package, the server's major version or newer). Without them the error says what to run
instead (docs/operations.md has the whole procedure). The password never appears on a command line: it goes to
the tools in ``PGPASSWORD``.

A backup is recorded in the audit log (``database.backup``) before it is taken, so the backup holds the record
of its own making. A restore refuses:

- a database that holds anything (any row in any of ringfence's tables) unless ``force``;
- a backup made by a newer ringfence (a schema revision this one does not know): upgrade ringfence first.
  An older backup is restored and then migrated to this ringfence's schema;
- on PostgreSQL, a backup of another schema than the one this database URL uses (pg_restore puts objects
  back where they were dumped from).

and, once done, appends ``database.restore`` (file, its SHA-256, the backup's revision, whether forced) to the
restored audit log, so the chain continues from the restored history and says it was restored.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from ringfence.core.clock import utc_now
from ringfence.core.errors import ConflictError, InputError, Problem
from ringfence.store.audit import append_audit
from ringfence.store.backup import known_revisions, libpq, rows_held, sqlite_backup, sqlite_file, sqlite_revision
from ringfence.store.db import current_revision, session_scope, upgrade

PG_TOOLS_TIMEOUT = 3600
"""Seconds pg_dump or pg_restore may take before the command gives up on them."""


@dataclass(frozen=True)
class BackupDone:
    """What a backup or restore did: the file, its size and SHA-256, and the schema revision it holds."""

    path: Path
    size: int
    sha256: str
    revision: str | None


def backup(engine: Engine, path: Path, *, actor: str, force: bool = False) -> BackupDone:
    """Back ringfence's database up into ``path`` (see the module docstring)."""
    path = path.expanduser()
    if path.is_dir():
        # Checked first: --force replaces a file, never a folder (and nothing is recorded for a backup not taken).
        raise InputError(
            [
                Problem(
                    f"{path} is a folder; give the backup file's path, e.g. {path / 'ringfence.backup'}", path=("FILE",)
                )
            ]
        )
    if path.exists() and not force:
        raise InputError([Problem(f"{path} exists; give --force to replace it", path=("FILE",))])
    if not path.parent.is_dir():
        raise InputError([Problem(f"{path.parent} is not a directory", path=("FILE",))])
    revision = current_revision(engine)
    if revision is None:
        raise ConflictError("this database holds no ringfence schema yet: there is nothing to back up")
    if engine.dialect.name != "sqlite":
        _tool("pg_dump", "backing up")  # before the audit entry: a backup that cannot be taken is not recorded
    with session_scope(engine) as session:
        append_audit(
            session,
            actor=actor,
            action="database.backup",
            subject="database",
            detail={"file": str(path.resolve()), "revision": revision},
            at=utc_now(),
        )
    if engine.dialect.name == "sqlite":
        sqlite_backup(sqlite_file(engine), path)
    else:
        _pg_dump(engine, path)
    return BackupDone(path, path.stat().st_size, _sha256(path), revision)


def restore(engine: Engine, path: Path, *, actor: str, force: bool = False) -> BackupDone:
    """Restore ringfence's database from the backup ``path`` (see the module docstring)."""
    path = path.expanduser()
    if path.is_dir():
        raise InputError([Problem(f"{path} is a folder, not a backup file", path=("FILE",))])
    if not path.is_file():
        raise InputError([Problem(f"{path}: there is no such backup file", path=("FILE",))])
    revision = sqlite_revision(path) if engine.dialect.name == "sqlite" else _pg_revision(engine, path)
    _check_revision(path, revision)
    if not force:
        held = rows_held(engine)
        if held:
            raise ConflictError(
                f"this database is not empty ({held}); restoring {path} would replace it: give --force to do so"
            )
    if engine.dialect.name == "sqlite":
        engine.dispose()  # no pooled connection may keep reading the pages the restore replaces
        sqlite_backup(path, sqlite_file(engine), replace=False)
    else:
        _pg_restore(engine, path)
    engine.dispose()
    upgrade(engine)  # an older backup comes back at this ringfence's schema
    digest = _sha256(path)
    with session_scope(engine) as session:
        append_audit(
            session,
            actor=actor,
            action="database.restore",
            subject="database",
            detail={"file": str(path.resolve()), "sha256": digest, "revision": revision, "forced": force},
            at=utc_now(),
        )
    return BackupDone(path, path.stat().st_size, digest, revision)


# ------------------------------------------------------------------------------------------------ checks


def _check_revision(path: Path, revision: str | None) -> None:
    if revision is None:
        raise InputError([Problem(f"{path}: not a ringfence backup (it holds no schema revision)", path=("FILE",))])
    if revision not in known_revisions():
        raise ConflictError(
            f"{path} holds schema revision {revision}, which this ringfence does not know (its newest is "
            f"{known_revisions()[0]}): it was made by a newer ringfence; restore it with that version"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ SQLite


# ------------------------------------------------------------------------------------------------ PostgreSQL


def _tool(name: str, doing: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise InputError(
            f"{name} is not on PATH, and {doing} a PostgreSQL database needs it: install the PostgreSQL client "
            f"tools (Debian/Ubuntu: apt install postgresql-client; the server's major version or newer), or run "
            f"it yourself as docs/operations.md shows (pg_dump --format=custom --no-owner --no-privileges "
            f"--schema=SCHEMA --file=FILE)"
        )
    return found


def _run(command: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=PG_TOOLS_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ConflictError(f"{what} did not finish within {PG_TOOLS_TIMEOUT} s") from None
    if done.returncode != 0:
        lines = " ".join(done.stderr.split())[-800:]
        raise ConflictError(f"{what} failed (exit {done.returncode}): {lines}")
    return done.stdout


def _pg_dump(engine: Engine, path: Path) -> None:
    tool = _tool("pg_dump", "backing up")
    uri, env, schema = libpq(engine)
    partial = path.with_name(f".{path.name}.partial")
    command = [tool, "--format=custom", "--no-owner", "--no-privileges", f"--schema={schema}", f"--file={partial}"]
    try:
        _run([*command, f"--dbname={uri}"], env, "pg_dump")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) alembic_version ")


def _pg_revision(engine: Engine, path: Path) -> str | None:
    tool = _tool("pg_restore", "restoring")
    _uri, env, schema = libpq(engine)
    try:
        listing = _run([tool, "--list", str(path)], env, "pg_restore --list")
    except ConflictError as exc:
        raise InputError([Problem(f"{path}: not a pg_dump archive ({exc})", path=("FILE",))]) from None
    dumped = next((m.group(1) for line in listing.splitlines() if (m := _TOC_TABLE.match(line))), None)
    if dumped is None:
        return None
    if dumped != schema:
        raise ConflictError(
            f"{path} is a backup of schema {dumped!r}, and this database URL uses schema {schema!r}: pg_restore "
            f"puts tables back in the schema they came from; use a URL whose search_path is {dumped!r}"
        )
    data = _run(
        [tool, "--data-only", f"--schema={schema}", "--table=alembic_version", "--file=-", str(path)], env, "pg_restore"
    )
    lines = data.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("COPY ") and "alembic_version" in line and index + 1 < len(lines):
            found = lines[index + 1].strip()
            return found if found and found != "\\." else None
    return None


def _pg_restore(engine: Engine, path: Path) -> None:
    tool = _tool("pg_restore", "restoring")
    uri, env, _schema = libpq(engine)
    engine.dispose()
    command = [tool, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction"]
    _run([*command, f"--dbname={uri}", str(path)], env, "pg_restore")


__all__ = ["BackupDone", "backup", "restore"]
