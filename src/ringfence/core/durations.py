"""Durations as people write them in estate and update files: ``N`` plus ``s``, ``m``, ``h`` or ``d``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")

LONGEST_DURATION = 365 * 86400
"""One year, in seconds: the longest RTO, bake or timeout ringfence accepts. Anything longer is a typo (an
extra digit, days for minutes), and unbounded values overflow the clocks and dates computed from them."""


def parse_duration(text: object) -> int:
    """``"4h"`` → 14400 seconds. Bare numbers are refused: a unit-less RTO is a mistake waiting to happen.

    Every duration of every file and option is read here, so the bound (:data:`LONGEST_DURATION`) holds for all."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"{text!r} is not a duration; write N followed by s, m, h or d (e.g. 15m, 4h)")
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"'{text}' is not a duration; write N followed by s, m, h or d (e.g. 15m, 4h)")
    digits = match.group(1).lstrip("0") or "0"
    # A year is 8 digits of seconds; more digits than that are too long whatever the unit (and int() of
    # thousands of digits is slow, then refused by Python itself).
    seconds = int(digits) * _UNITS[match.group(2)] if len(digits) <= 9 else LONGEST_DURATION + 1
    if seconds > LONGEST_DURATION:
        written = str(text).strip()
        shown = written if len(written) <= 24 else f"{written[:12]}…{written[-6:]}"
        raise ValueError(
            f"'{shown}' is longer than the longest duration ringfence accepts, {format_duration(LONGEST_DURATION)}"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """The largest whole unit that states ``seconds`` exactly: 14400 → ``4h``, 90 → ``90s``."""
    whole = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def humanize_duration(seconds: float) -> str:
    """A reading for people, not files: ``1h 20m``, ``14 min``, ``45 s``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        hours, minutes = divmod(whole // 60, 60)
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, rest = divmod(whole, 86400)
    hours = rest // 3600
    return f"{days}d {hours}h" if hours else f"{days}d"
