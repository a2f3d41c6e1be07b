"""Small pieces of the sentences ringfence writes for people: counts of things and lists of names.

One helper for each, so a count reads the same in a gate verdict, a plan's reasons, a drill and a report:

* :func:`count` — ``1 service``, ``2 services``, ``1,204 assets``, ``3 strata``;
* :func:`names` — ``a, b, c, d, e and 2 more``: at most ``limit`` names, the rest counted;
* :func:`and_list` — ``a, b and c``: every part, joined as a sentence joins them.
"""

from __future__ import annotations

from collections.abc import Iterable

_IRREGULAR = {"stratum": "strata"}
"""Plurals that adding an ``s`` gets wrong, by the noun's last word."""


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun, singular for exactly one: ``count(2, "failed ring")`` → ``2 failed rings``.

    The number has thousands separators (``1,204 assets``): estates run to thousands of assets. The plural
    is ``plural`` when given, else the noun's last word made plural (``stratum`` → ``strata``, else ``+s``).
    """
    if n == 1:
        return f"1 {noun}"
    if plural is None:
        head, space, last = noun.rpartition(" ")
        plural = head + space + _IRREGULAR.get(last, last + "s")
    return f"{n:,} {plural}"


def names(ids: Iterable[str], limit: int = 5) -> str:
    """``a, b, c`` — the first ``limit`` in the order given, then ``and 2 more`` for the rest."""
    shown = list(ids)
    listed = ", ".join(shown[:limit])
    return listed if len(shown) <= limit else f"{listed} and {len(shown) - limit} more"


def and_list(parts: Iterable[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``: every part (an empty list is the empty string)."""
    listed = list(parts)
    if len(listed) <= 1:
        return "".join(listed)
    return f"{', '.join(listed[:-1])} and {listed[-1]}"


__all__ = ["and_list", "count", "names"]
