"""Help that speaks the user's language, not Python's: ``--out PATH``, ``ESTATE_FILE``, ``--json`` alone.

Typer (0.2x) writes each parameter's Python annotation into ``--help``: ``--json <bool>``, ``--service
<list[str]>``, ``Usage: ... {estate_file}``. A person reading help wants what a Unix manual shows: a flag
alone, an option with the kind of value it takes (``PATH``, ``INTEGER``, ``TEXT``), an argument by its name
in capitals (``[NAME]`` when it may be left out, ``...`` when it repeats).

Typer gives no setting for this, and no hook to choose the class of the parameters it builds, so
:func:`plain_help` goes once over the finished command tree and gives each Typer parameter a subclass
that shows it that way (and gives each command's description one line a paragraph, see :func:`reflow`).
Parsing, defaults and validation are untouched: only what help and usage print.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperOption

if TYPE_CHECKING:
    from typer._click.core import Command

# Typer's names for value types (what it prints as ``<int>``), as Click and Unix manuals write them.
_VALUE_NAMES = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "NUMBER",
    "float range": "NUMBER",
    "path": "PATH",
    "file": "FILE",
    "directory": "FOLDER",
    "datetime": "TIME",
    "UUID": "UUID",
}


def value_name(typer_label: str) -> str:
    """``<list[str]>`` → ``TEXT``, ``<int range>`` → ``INTEGER``, ``<a|b>`` → ``[a|b]``: the kind of value alone."""
    label = typer_label.strip("<>")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]  # a repeatable option says so in its help, as Click's options do
    if "|" in label:
        return f"[{label}]"
    return _VALUE_NAMES.get(label, label.upper())


class PlainOption(TyperOption):
    """An option shown as ``--out PATH``, or as ``--json`` alone when it is a flag."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        shown = value_name(self.display_type(ctx))
        return f"{shown}..." if self.nargs != 1 else shown


class PlainArgument(TyperArgument):
    """An argument shown as ``ESTATE_FILE`` (``[NAME]`` when optional, ``ITEMS...`` when it repeats)."""

    @property
    def display_name_raw(self) -> str:
        return (self.metavar or self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        return [f"{name}..." if self.nargs != 1 else name]


def reflow(text: str) -> str:
    """A docstring's paragraphs each on one line, for the terminal to wrap at its own width.

    Typer's Rich help keeps a docstring's line breaks, so a paragraph written at 120 columns broke at odd
    places on an 80-column screen ("...(exit status 130); run" / "the command again..."). A paragraph
    with a list or an indented block in it is left as written.
    """
    paragraphs = []
    for paragraph in text.strip().split("\n\n"):
        lines = paragraph.splitlines()
        if any(line[:1].isspace() or line.lstrip().startswith(("- ", "* ")) for line in lines[1:]):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def plain_help(command: Command) -> None:
    """Show every parameter of ``command`` and of the commands under it plainly (see the module docstring)."""
    if command.help:
        command.help = reflow(command.help)
    params = list(command.params)
    # Click makes --help per command on first use, so make it now to give it the plain class too.
    help_option = command.get_help_option(typer.Context(command))
    if help_option is not None:
        params.append(help_option)
    for param in params:
        # Only Typer's own classes are swapped: the subclasses add no state, only how help shows them.
        if type(param) is TyperOption:
            param.__class__ = PlainOption
        elif type(param) is TyperArgument:
            param.__class__ = PlainArgument
    # Typer's groups are not click.Group (Typer 0.2x has its own), but both keep their commands by name.
    for sub in dict(getattr(command, "commands", None) or {}).values():
        plain_help(sub)


__all__ = ["PlainArgument", "PlainOption", "plain_help", "reflow", "value_name"]
