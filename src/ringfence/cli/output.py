"""How the CLI speaks: JSON on stdout for scripts, Rich tables for people, messages on stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ringfence.core.estate import TIER_NAMES

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (the CLI contract).")]
"""The ``--json`` option of every command that has one."""

TIER_STYLE = {1: "bold white on red", 2: "bold red", 3: "yellow", 4: "cyan", 5: "dim"}


_NARROWEST = 6
"""A column is never made narrower than this to make room for the others."""


def fit_table(table: Table, console: Console) -> Table:
    """Give the columns of ``table`` that wrap widths that keep every word whole, when the screen allows it.

    Left to itself, Rich narrows a table that is too wide by shrinking its widest columns to equal widths,
    then every column evenly: at 80 columns that cut headers and ids ("expos…", "active-dir/ectory") while
    other columns had room to spare. Here each column that may wrap starts at its longest word (header
    included) and the room left is shared out evenly, no column getting more than it would like; columns
    that do not wrap keep their width. When the longest words cannot all fit side by side, only the longest are cut,
    as little as it takes. A table that fills the width (``expand``) keeps Rich's own layout.
    """
    if table.expand or not table.columns:
        return table
    # Measured without a limit: the widths a column would like, not those the screen allows.
    options = console.options.update_width(1_000_000)
    measured = []
    for column in table.columns:
        cells = [column.header, *column.cells]
        sizes = [Measurement.get(console, options, cell) for cell in cells if cell != ""]
        measured.append((max((m.minimum for m in sizes), default=1), max((m.maximum for m in sizes), default=1)))
    whole = Measurement.get(console, options, table).maximum
    if whole <= console.width:
        return table  # it fits as it is
    overhead = whole - sum(widest for _, widest in measured)
    wraps = [column.width is None and not column.no_wrap for column in table.columns]
    fixed = sum(widest for (_, widest), wrap in zip(measured, wraps, strict=True) if not wrap)
    room = console.width - overhead - fixed
    words = [word if wrap else 0 for (word, _), wrap in zip(measured, wraps, strict=True)]
    if sum(words) > room:
        # Some word must be cut: cut only the longest ones, a character at a time, as little as it takes.
        while sum(words) > room and max(words) > _NARROWEST:
            words[words.index(max(words))] -= 1
        if sum(words) > room:
            return table  # no sensible layout at this width: Rich's own
    # Fill the columns up like water: all rise together from their longest word, each stopping at its natural
    # width, so a short column (a service's name) is whole on one line before a long one (a plan) gets more.
    widest = [w if wrap else 0 for (_, w), wrap in zip(measured, wraps, strict=True)]
    widths = list(words)
    for level in range(1, max(widest) + 1):
        trial = [min(top, max(least, level)) for least, top in zip(words, widest, strict=True)]
        if sum(trial) > room:
            break
        widths = trial
    for index in range(len(widths)):  # what the level leaves over, a column at a time
        more = min(room - sum(widths), widest[index] - widths[index])
        if more > 0:
            widths[index] += more
    for column, width, wrap in zip(table.columns, widths, wraps, strict=True):
        if wrap:
            column.width = width
    return table


class _Out(Console):
    """The console of results: a table printed on its own is fitted to the screen first (:func:`fit_table`)."""

    def print(self, *objects: Any, **options: Any) -> None:
        super().print(*(fit_table(o, self) if isinstance(o, Table) else o for o in objects), **options)


out: Console = _Out(highlight=False, soft_wrap=False)
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
