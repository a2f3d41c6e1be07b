"""The ``ringfence`` command line (Typer + Rich).

Exit status, as the CLI contract says: 0 success; 1 the command ran and found the problem the user asked
about (a failed check, a refused transition); 2 bad input, with a message on stderr naming file, line, field.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Annotated

import typer
import typer.main

from ringfence.core.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError, RingfenceError

app = typer.Typer(
    name="ringfence",
    help="Resilience control plane for critical IT estates: blast radius, safe rollouts, drills, recovery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)


COMMAND_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "agent": "agent",
        "assess": "assurance",
        "check": "analysis",
        "impact": "analysis",
        "spof": "analysis",
        "concentration": "analysis",
        "diff": "diff",
        "continuity": "continuity",
        "demo": "demo",
        "drill": "drills",
        "generate": "estates",
        "import": "estates",
        "estate": "upload",
        "incident": "incidents",
        "plan": "plans",
        "recover": "recover",
        "rollout": "rollouts",
        "serve": "service",
        "worker": "worker",
        "db": "service",
        "token": "service",
        "audit": "service",
        "notifications": "notifications",
    }
)
"""Each top-level command and the module of ``ringfence.cli`` that adds it to ``app``."""

# Registration order is the order `ringfence --help` lists its panels and commands in.
_MODULES = (
    "agent",
    "analysis",
    "assurance",
    "diff",
    "continuity",
    "demo",
    "drills",
    "estates",
    "upload",
    "incidents",
    "plans",
    "recover",
    "rollouts",
    "service",
    "worker",
    "notifications",
)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("ringfence")
        except PackageNotFoundError:  # run from a source tree that was never installed
            found = "unknown (not installed)"
        typer.echo(f"ringfence {found}")
        raise typer.Exit(0)


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print ringfence's version and exit."),
    ] = False,
) -> None:
    # A callback keeps `app` a group even when one command is registered: Typer would otherwise run that
    # lone command as the whole program, and `ringfence agent ...` would read "agent" as its argument.
    pass


def _register(argv: Sequence[str] | None = None) -> None:
    """Add commands to ``app``: only the module of the command ``argv`` names, or every module.

    Each module imports what its commands need at its top (``analysis`` pulls in numpy and pydantic), so
    importing all of them costs every command their start-up. ``ringfence agent`` runs on thousands of
    machines and restarts with them: it should load the agent and nothing else. Help, no command, and an
    unknown command (Typer suggests the near ones) need every command, so all are registered then
    (``ringfence --help agent`` too: help comes first).
    """
    # The root takes no option but --help and --version, so a command, when there is one, comes first.
    if argv and argv[0] == "--version":
        return  # the version needs no command
    module = COMMAND_MODULES.get(argv[0]) if argv else None
    for name in (module,) if module is not None else _MODULES:
        importlib.import_module(f"ringfence.cli.{name}")


def main() -> None:
    from ringfence.cli.helptext import plain_help
    from ringfence.cli.home import settle_home
    from ringfence.cli.output import end_process

    settle_home()
    _register(sys.argv[1:])
    code: int | str | None = 0
    try:
        command = typer.main.get_command(app)
        plain_help(command)
        command()
    except SystemExit as exc:
        code = exc.code
    except InputError as exc:
        code = _fail(str(exc), 2)
    except (NotFoundError, PermissionDeniedError) as exc:
        code = _fail(str(exc), 2)
    except ConflictError as exc:
        code = _fail(str(exc), 1)
    except RingfenceError as exc:
        code = _fail(str(exc), 1)
    except KeyboardInterrupt:
        code = _fail("interrupted", 130)
    except OSError as exc:
        # A file the command reads or writes failed in a way no command foresaw (each names its own paths
        # first): still one sentence and exit 2, not a traceback. Other OS errors (a port in use) have no
        # file, and are the program's failure, not the input's.
        if exc.filename is None:
            raise
        from ringfence.cli.paths import reason

        code = _fail(f"{exc.filename}: {reason(exc)}", 2)
    end_process(code)


def _fail(message: str, status: int) -> int:
    from rich.markup import escape

    from ringfence.cli.output import err

    for line in message.splitlines() or [message]:
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True)
    return status
