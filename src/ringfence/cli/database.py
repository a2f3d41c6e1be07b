"""How a CLI command reaches the state it keeps: the database, and the name of the person acting.

State lives in the database (``RINGFENCE_DATABASE_URL``, default a SQLite file in the per-user home that
:mod:`ringfence.cli.home` chooses); every command migrates it to the newest schema first, and a command that
writes says on stderr which database it wrote to.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="RINGFENCE_DATABASE_URL",
        help="Database URL; default: SQLite in the per-user home ($RINGFENCE_HOME, else ~/.local/share/ringfence).",
        show_default=False,
    ),
]
"""The database a command works on (the same option on every command that opens one)."""
ActorOpt = Annotated[
    str | None,
    typer.Option(
        "--actor",
        help="Who is acting, recorded in the audit log as cli:NAME; default: $RINGFENCE_ACTOR, else your login name.",
        show_default=False,
    ),
]
"""Who a service command acts as, for the audit log (read by :func:`cli_actor`)."""


@contextmanager
def database(*, writes: bool) -> Iterator[Engine]:
    """The database, migrated to the newest schema; its connections are closed when the command ends.

    ``writes``: the command changes what is stored, so it names the database (a person with two homes, or a
    forgotten ``RINGFENCE_DATABASE_URL``, sees at once where the change went).
    """
    from ringfence.cli.home import announce_database
    from ringfence.service.schema import upgrade_audited
    from ringfence.store.db import make_engine

    engine = make_engine()
    try:
        # A migration of a database in use is an admin action, audited as the person at the console.
        upgrade_audited(engine, cli_actor(None))
        if writes:
            announce_database(engine.url.render_as_string(hide_password=False))
        yield engine
    finally:
        engine.dispose()


def resolve_actor(actor: str | None) -> str:
    """Who is acting: ``--actor`` when given, else ``$RINGFENCE_ACTOR``, else the login name (``cli`` if none)."""
    if actor and actor.strip():
        return actor.strip()
    try:
        return os.environ.get("RINGFENCE_ACTOR") or getpass.getuser()
    except OSError:
        return "cli"


def cli_actor(actor: str | None) -> str:
    """The audit log's actor for an admin action taken at the console: ``cli:`` and who is acting."""
    return f"cli:{resolve_actor(actor)}"


__all__ = ["cli_actor", "database", "resolve_actor"]
