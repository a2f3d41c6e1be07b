"""The ``ringfence`` command line (Typer + Rich).

Exit status, as the CLI contract says: 0 success; 1 the command ran and found the problem the user asked
about (a failed check, a refused transition); 2 bad input, with a message on stderr naming file, line, field.
"""

from __future__ import annotations

import sys

import typer

from ringfence.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError, RingfenceError

app = typer.Typer(
    name="ringfence",
    help="Resilience control plane for critical IT estates: blast radius, safe rollouts, drills, recovery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)


def _register() -> None:
    # Each command module adds its commands to `app`; heavy imports stay inside the commands.
    from ringfence.cli import (  # noqa: F401
        agent,
        analysis,
        continuity,
        demo,
        drills,
        estates,
        incidents,
        plans,
        recover,
        rollouts,
        service,
    )


def main() -> None:
    _register()
    try:
        app()
    except InputError as exc:
        _fail(str(exc), 2)
    except (NotFoundError, PermissionDeniedError) as exc:
        _fail(str(exc), 2)
    except ConflictError as exc:
        _fail(str(exc), 1)
    except RingfenceError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: str, status: int) -> None:
    from rich.markup import escape

    from ringfence.cli.output import err

    for line in message.splitlines() or [message]:
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True)
    sys.exit(status)
