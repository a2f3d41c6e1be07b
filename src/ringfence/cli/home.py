"""Where the command line keeps its state: one home per user, whatever folder a command runs in.

A token made in one folder must be known to a server started in another, so the default database cannot
live in the current folder. The home is ``$RINGFENCE_HOME`` when set, else ``ringfence`` in the XDG data
home (``$XDG_DATA_HOME``, default ``~/.local/share``). ``--database`` or ``RINGFENCE_DATABASE_URL`` still
name another database.

:func:`settle_home` puts the chosen home in the environment, where the store (``ringfence.store.db``),
the Ansible driver's artifacts and the server's worker processes all read it: one decision, made once.
"""

from __future__ import annotations

import os
from pathlib import Path

from ringfence.store.home import HOME_ENV, user_home

DATABASE_URL_ENV = "RINGFENCE_DATABASE_URL"


def settle_home() -> Path:
    """Choose the home once for this process and its children (``RINGFENCE_HOME`` in the environment)."""
    home = user_home(os.environ)
    os.environ[HOME_ENV] = str(home)
    return home


def database_label(url: str) -> str:
    """A database as a person should see it: a SQLite file by its path, any other URL without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)


def announce_database(url: str) -> None:
    """Say on stderr which database a command wrote to (stdout stays one JSON document under ``--json``)."""
    from ringfence.cli.output import err

    err.print(f"database: {database_label(url)}", highlight=False, markup=False)


__all__ = ["announce_database", "database_label", "settle_home"]
