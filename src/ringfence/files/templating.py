"""The one way ringfence makes a Jinja environment, for every page and document it renders from a template.

Reports, downtime packs, incident reviews and the dashboard all render text that came from estate files,
drills and people: it is text, never markup, so HTML is autoescaped, and a name a template uses but the
caller did not pass is an error (``StrictUndefined``), not an empty cell on a printed page. Every
environment has the same filters for the small things (:data:`COMMON_FILTERS`); a caller adds its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from ringfence.core.durations import humanize_duration


def printed_time(when: datetime) -> str:
    """A time as a printed page states it: ``04 August 2022, 09:30 UTC`` (no zone named if it has none)."""
    zone = when.tzname()
    text = when.strftime("%d %B %Y, %H:%M")
    return f"{text} {zone}" if zone else text


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else humanize_duration(seconds)


COMMON_FILTERS: Mapping[str, Callable[..., str]] = {
    "thousands": lambda n: f"{n:,}",
    "duration": _duration,
    "printed": printed_time,
}
"""``thousands`` (``1,204``), ``duration`` (:func:`~ringfence.core.durations.humanize_duration`, ``—`` for
none) and ``printed`` (:func:`printed_time`)."""


def template_environment(
    *,
    package: str = "ringfence",
    folder: str = "templates",
    html: bool = True,
    keep_trailing_newline: bool = True,
    filters: Mapping[str, Callable[..., Any]] | None = None,
) -> Environment:
    """An environment over ``package``'s ``folder`` of templates, with :data:`COMMON_FILTERS` and ``filters``.

    ``html`` turns autoescaping on: every value is text, never markup. A Markdown template (``html=False``)
    escapes its own cells. Blocks are trimmed, so a template's ``{% if %}`` lines leave no blank lines.
    """
    env = Environment(
        loader=PackageLoader(package, folder),
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=keep_trailing_newline,
    )
    env.filters.update(COMMON_FILTERS)
    env.filters.update(filters or {})
    return env


__all__ = ["COMMON_FILTERS", "printed_time", "template_environment"]
