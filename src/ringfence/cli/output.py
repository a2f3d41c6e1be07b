"""How the CLI speaks: JSON on stdout for scripts, Rich tables for people, messages on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from ringfence.documents import by_tier_json  # noqa: F401 - re-exported for the CLI's modules
from ringfence.estate import TIER_NAMES

TIER_STYLE = {1: "bold white on red", 2: "bold red", 3: "yellow", 4: "cyan", 5: "dim"}

out = Console(highlight=False, soft_wrap=False)
# Messages on stderr never wrap: tools (and editors) read `file:line: field: sentence` one per line.
err = Console(stderr=True, highlight=False, soft_wrap=True)


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
