"""How the CLI speaks: JSON on stdout for scripts, Rich tables for people, messages on stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from ringfence.core.estate import TIER_NAMES

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (the CLI contract).")]
"""The ``--json`` option of every command that has one."""

TIER_STYLE = {1: "bold white on red", 2: "bold red", 3: "yellow", 4: "cyan", 5: "dim"}

out = Console(highlight=False, soft_wrap=False)
# Messages on stderr never wrap: tools (and editors) read `file:line: field: sentence` one per line.
err = Console(stderr=True, highlight=False, soft_wrap=True)


_held: list[object] = []


def hold_until_exit(*loaded: object) -> None:
    """Keep what a command loaded alive until the process ends, so that :func:`end_process` can end it at once.

    A command that loaded a large estate is done once it has printed. Freeing millions of objects one by one,
    only to exit, cost a sixth of the run of `ringfence impact` on 200,000 assets; the kernel frees them at once.
    """
    _held.extend(loaded)


def end_process(code: int | str | None) -> NoReturn:
    """Exit with ``code`` (as ``sys.exit`` takes it): at once when a command holds a large estate, after flushing
    what it printed; through the interpreter's usual shut-down otherwise."""
    if not _held:
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        err.print(str(code), highlight=False, markup=False)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def emit_json(document: Any) -> None:
    """One JSON document on stdout and nothing else there (the CLI contract)."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def tier_label(tier: int) -> Text:
    name = TIER_NAMES.get(tier, "no service")
    return Text(f"T{tier} {name}" if tier in TIER_NAMES else "none", style=TIER_STYLE.get(tier, ""))


def tier_chip(tier: int) -> Text:
    return Text(f" T{tier} ", style=TIER_STYLE.get(tier, ""))


def warn(message: str) -> None:
    err.print(Text("warning: ", style="yellow") + Text(message))
