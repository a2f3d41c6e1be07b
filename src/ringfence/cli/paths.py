"""Output paths (``--out``, ``--report``, ``--export``, ``--state``): refused in one sentence, never a traceback.

A command that writes checks its output path before it does its work (a report that cannot be written
should not cost a 200,000-asset drill first), and turns any failure of the write itself (a race, a full
disk) into the same kind of sentence: exit status 2, the flag, the path and why.

Folders that are missing on the way are made, as the writers make them; what cannot be made is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ringfence.core.errors import InputError, Problem


def _refuse(flag: str, path: Path, why: str) -> InputError:
    return InputError([Problem(f"cannot write {path}: {why}", path=(flag,))])


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or the nearest folder above it that exists (the current folder at worst)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path.cwd()


def _check_folder(flag: str, folder: Path, *, target: Path) -> None:
    """Refuse when ``folder`` cannot be made or written in: a file on the way, no permission, a read-only disk.

    Tried, not guessed: the missing folders are made and a file is created in ``folder``, then all of it is
    removed again (permission bits say nothing for root, for ACLs or for a read-only mount).
    """
    found = _nearest_existing(folder)
    if not found.is_dir():
        raise _refuse(flag, target, f"{found} is a file, not a folder")
    missing = [folder, *folder.parents]
    missing = missing[: missing.index(found)] if found in missing else []
    made: list[Path] = []
    try:
        for step in reversed(missing):
            step.mkdir()
            made.append(step)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise _refuse(flag, target, reason(exc)) from None
    finally:
        for step in reversed(made):
            with contextlib.suppress(OSError):
                step.rmdir()


def check_output_file(path: Path | None, flag: str, *, example: str) -> None:
    """Refuse (InputError, exit 2) an output file that cannot be written: a folder, under a file, no permission.

    ``example``: a file name to suggest when ``path`` is a folder (``report.html``).
    """
    if path is None:
        return
    if path.is_dir():
        raise _refuse(flag, path, f"it is a folder; name a file in it, e.g. {flag} {path / example}")
    _check_folder(flag, path.parent, target=path)


def check_output_folder(path: Path | None, flag: str) -> None:
    """Refuse (InputError, exit 2) an output folder that cannot be made or written in: a file, under a file."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise _refuse(flag, path, "it is a file; a folder is needed here")
    _check_folder(flag, path, target=path)


def reason(exc: OSError) -> str:
    """An operating-system error as the end of a sentence: ``no space left on the device``."""
    reasons = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "it is a folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "a file is in the way of a folder",
        errno.ENOENT: "a folder on the way does not exist and cannot be made",
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "the file system is read-only",
    }
    return reasons.get(exc.errno or 0, (exc.strerror or str(exc)).lower())


@contextmanager
def writing(path: Path, flag: str) -> Iterator[None]:
    """Turn a failed write of ``path`` into a sentence naming ``flag`` and the path (exit 2)."""
    try:
        yield
    except OSError as exc:
        raise _refuse(flag, path, reason(exc)) from None


__all__ = ["check_output_file", "check_output_folder", "reason", "writing"]
