"""Where ringfence keeps its state for this user: one home whatever folder a command runs in.

Light on purpose (standard library only): the command line settles the home before it knows whether the
command will open the database at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HOME_ENV = "RINGFENCE_HOME"


def user_home(environ: Mapping[str, str]) -> Path:
    """Where ringfence keeps its state for this user, whatever folder it runs in (a token made in one folder
    must be known to a server started in another): ``$RINGFENCE_HOME``, else ``ringfence`` in the XDG data
    home (``$XDG_DATA_HOME``, default ``~/.local/share``)."""
    given = environ.get(HOME_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    # The XDG base directory spec: an empty or relative XDG_DATA_HOME is invalid and must be ignored.
    data_home = environ.get("XDG_DATA_HOME", "").strip()
    if not data_home or not os.path.isabs(data_home):
        data_home = str(Path.home() / ".local" / "share")
    return Path(data_home) / "ringfence"


__all__ = ["HOME_ENV", "user_home"]
