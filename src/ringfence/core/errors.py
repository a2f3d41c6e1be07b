"""Errors ringfence raises, one tree so callers catch what they mean.

    RingfenceError                      anything ringfence refuses or cannot do
    ├── InputError (ValueError)         bad input: estate, update, scenario, flag, API body   → exit 2, HTTP 422
    │   └── EstateError                 an estate file or document that does not hold
    ├── NotFoundError (LookupError)     a named thing that does not exist                     → exit 2, HTTP 404
    ├── ConflictError                   refused in the current state (a transition, a hold)   → exit 1, HTTP 409
    ├── PermissionDeniedError           the caller's role may not do this                     → exit 2, HTTP 403
    └── DriverError                     an execution driver failed or cannot do what was asked

Messages are sentences that name the value and where it came from, e.g.
``estate.yaml:41: assets[3] 'epr-app-1': requires 'epr-db-9', which is not defined``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class RingfenceError(Exception):
    """Root of every error ringfence raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we can.

    ``path`` is the field path inside the document (``("assets", 3, "requires", 0)``);
    ``line`` is 1-based and filled in by the loader that still has the text.
    """

    message: str
    path: tuple[str | int, ...] = ()
    source: str | None = None
    line: int | None = None

    @property
    def field(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = f"{self.source}:{self.line}: " if self.line else f"{self.source}: "
        elif self.line:
            where = f"line {self.line}: "
        field = self.field
        return f"{where}{field}: {self.message}" if field else f"{where}{self.message}"


def format_path(path: Sequence[str | int]) -> str:
    """``("assets", 3, "requires", 0)`` → ``assets[3].requires[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class InputError(RingfenceError, ValueError):
    """Input that does not hold. Carries every problem found, each with its location."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [str(p) for p in self.problems]
        return "\n".join(lines)


class EstateError(InputError):
    """An estate file or document that does not hold."""


class NotFoundError(RingfenceError, LookupError):
    """A named thing (rollout, estate version, asset) that does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class ConflictError(RingfenceError):
    """Refused in the current state: an illegal transition, a held update, a stale estate."""


class PermissionDeniedError(RingfenceError):
    """The caller's role or identity may not do this."""


class DriverError(RingfenceError):
    """An execution driver failed, or cannot do what was asked ("the command driver cannot take snapshots")."""
