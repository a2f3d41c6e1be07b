"""``ringfence db backup FILE`` and ``ringfence db restore FILE``: ringfence's own state, copied out and back.

SQLite through its online backup API (consistent while the server runs); PostgreSQL through pg_dump and
pg_restore (``ringfence.service.backup`` says what each refuses, and docs/operations.md the procedure). Both
are written to the audit log as the person at the console.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ringfence.cli.database import ActorOpt, DatabaseOpt, cli_actor
from ringfence.cli.output import JsonOpt, emit_json, out

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ringfence.service.backup import BackupDone

# Declared here, not imported from ringfence.cli.service, which registers these commands (no import cycle).
db_app = typer.Typer(help="The database: migrations, backup and restore.", no_args_is_help=True)
"""Where these commands are declared; ``ringfence.cli.service`` adds them to its ``db`` group."""
FileArg = Annotated[Path, typer.Argument(help="The backup file.", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace what is there (an existing file; a database in use).")]


@db_app.command("backup")
def db_backup(
    file: FileArg,
    database: DatabaseOpt = None,
    force: ForceOpt = False,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back ringfence's database up into FILE (SQLite: online backup; PostgreSQL: pg_dump). Audited."""
    from ringfence.service.backup import backup

    done, label = _on_database(database, lambda engine: backup(engine, file, actor=cli_actor(actor), force=force))
    _report(done, f"Backed up {label} (revision {done.revision}) into {done.path}", as_json)


@db_app.command("restore")
def db_restore(
    file: FileArg,
    database: DatabaseOpt = None,
    force: ForceOpt = False,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore ringfence's database from FILE; refuses a database that holds anything unless --force, and a
    backup from a newer ringfence. Stop the server and workers first. Audited."""
    from ringfence.service.backup import restore

    done, label = _on_database(database, lambda engine: restore(engine, file, actor=cli_actor(actor), force=force))
    _report(done, f"Restored {label} from {done.path} (revision {done.revision}, migrated to this version)", as_json)


def _on_database(database: str | None, act: Callable[[Engine], BackupDone]) -> tuple[BackupDone, str]:
    """What ``act`` did on the database of ``--database``, and that database's name as people read it. Not through
    ``cli.database.database()``, which migrates first: a backup copies the schema as it is, and a restore brings its
    own and migrates after."""
    from ringfence.cli.home import database_label
    from ringfence.store.db import make_engine

    engine = make_engine(database)
    try:
        return act(engine), database_label(engine.url.render_as_string(hide_password=False))
    finally:
        engine.dispose()


def _report(done: BackupDone, sentence: str, as_json: bool) -> None:
    if as_json:
        emit_json({"file": str(done.path), "bytes": done.size, "sha256": done.sha256, "revision": done.revision})
        return
    out.print(f"{sentence}; {done.size} bytes, sha256 {done.sha256}.", markup=False, highlight=False, soft_wrap=True)


__all__ = ["db_backup", "db_restore"]
