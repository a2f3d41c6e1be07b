"""The pieces ringfence's charts are drawn with, as inline SVG text: the drill report's charts
(``ringfence.files.report``) and the dashboard's (``ringfence.web.charts``) are built from these, so a tier
looks the same wherever it is drawn.

Impact tiers are told apart by colour, fill pattern and a ``T1``–``T4`` label, never by colour alone. Every
piece of text put into a drawing goes through :func:`escape` here; callers pass plain text. A chart opens
with a ``<title>`` and a ``<desc>`` stating its numbers (:func:`chart_open`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from markupsafe import escape

from ringfence.core.impact import TIERS, ServiceDown


@dataclass(frozen=True)
class TierStyle:
    colour: str
    pattern: str
    """The SVG path drawn in white over the colour, one tile of the fill pattern ("" for a plain fill)."""
    pattern_name: str


TIER_STYLES: dict[int, TierStyle] = {
    1: TierStyle("#8c1c13", "M0 0L6 6M6 0L0 6", "cross-hatched"),
    2: TierStyle("#b4530e", "M0 6L6 0M-1 1L1 -1M5 7L7 5", "diagonal stripes"),
    3: TierStyle("#7d6a00", "M1.5 1.5h1v1h-1zM4.5 4.5h1v1h-1z", "dotted"),
    4: TierStyle("#4f6272", "", "plain"),
}


@dataclass(frozen=True)
class SeriesStyle:
    """How one line series is drawn: never by colour alone."""

    colour: str
    dash: str
    """An SVG ``stroke-dasharray``; empty for a solid line."""
    pattern_name: str
    """The dash pattern in words, for the legend's text."""
    swatch: Literal["solid", "dash", "dot"]
    """The nearest CSS border style, for the swatches in the page's text."""

    @property
    def stroke(self) -> str:
        """The attributes that draw a line in this style."""
        dash = f' stroke-dasharray="{self.dash}"' if self.dash else ""
        return f'stroke="{self.colour}" stroke-width="2.5"{dash}'


@dataclass(frozen=True)
class Frame:
    """A plot area and the data range it shows: data ↦ SVG user units."""

    left: float
    top: float
    width: float
    height: float
    x_max: float
    y_max: float

    def x(self, value: float) -> float:
        return self.left + self.width * value / self.x_max

    def y(self, value: float) -> float:
        return self.top + self.height * (1 - value / self.y_max)

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def right(self) -> float:
        return self.left + self.width

    def attributes(self) -> str:
        """The frame on the ``<svg>``, so a reader (or a test) can turn coordinates back into numbers."""
        return (
            f'data-plot="{num(self.left)} {num(self.top)} {num(self.width)} {num(self.height)}" '
            f'data-x-max="{num(self.x_max)}" data-y-max="{num(self.y_max)}"'
        )


def num(value: float) -> str:
    """A coordinate to 1/100 of a unit: exact enough to read counts back, short enough to keep the file small."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def chart_open(
    chart_id: str, title: str, desc: str, *, width: float, height: float, kind: str, css: str = "chart", frame: str = ""
) -> list[str]:
    """The ``<svg>`` start tag (``data-chart`` is ``kind``; ``frame`` is :meth:`Frame.attributes`, or ''), its
    ``<title>`` and its ``<desc>``, which name the chart to a screen reader."""
    plot = f" {frame}" if frame else ""
    return [
        f'<svg class="{css}" viewBox="0 0 {num(width)} {num(height)}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc"{plot} data-chart="{kind}">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
    ]


def line(css: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="{css}" x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}"/>'


def text(x: float, y: float, content: str, *, anchor: str = "start", css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f'<text{klass} x="{num(x)}" y="{num(y)}" text-anchor="{anchor}">{escape(content)}</text>'


# --- impact tiers -------------------------------------------------------------------------------------------


def services_by_tier(services: Iterable[ServiceDown]) -> dict[int, int]:
    """How many of ``services`` each impact tier has (every tier present, 0 for none)."""
    counts = dict.fromkeys(TIERS, 0)
    for service in services:
        counts[service.tier] = counts.get(service.tier, 0) + 1
    return counts


def tier_patterns(prefix: str) -> list[str]:
    """The fill pattern of each tier, as ``<defs>`` with ids ``{prefix}-t1``…; fill with :func:`tier_fill`."""
    out = ["<defs>"]
    for tier in TIERS:
        style = TIER_STYLES[tier]
        tile = (
            f'<path d="{style.pattern}" stroke="#ffffff" stroke-width="1.3" fill="#ffffff"/>' if style.pattern else ""
        )
        out.append(
            f'<pattern id="{prefix}-t{tier}" patternUnits="userSpaceOnUse" width="6" height="6">'
            f'<rect width="6" height="6" fill="{style.colour}"/>{tile}</pattern>'
        )
    out.append("</defs>")
    return out


def tier_fill(prefix: str, tier: int) -> str:
    """A tier's fill and outline, with the patterns :func:`tier_patterns` defined under ``prefix``."""
    return f'fill="url(#{prefix}-t{tier})" stroke="{TIER_STYLES[tier].colour}"'


def tier_swatch(prefix: str, tier: int, x: float, size: float) -> str:
    """A legend's square for a tier, its top at y=8 (the legend's text is the caller's)."""
    return f'<rect x="{num(x)}" y="8" width="{num(size)}" height="{num(size)}" {tier_fill(prefix, tier)}/>'


def tier_bar(
    prefix: str,
    tier: int,
    count: int,
    *,
    owner: tuple[str, str],
    box: tuple[float, float, float, float],
    tooltip: str,
    outline: str = "",
) -> str:
    """One bar of a tier chart: ``owner`` is what it counts for (``("supplier", "cisco")``: ``data-supplier``),
    ``box`` its x, y, width and height, ``tooltip`` the text a pointer over it shows; ``outline`` extra
    attributes of the stroke (`` stroke-width="1"``)."""
    kind, name = owner
    x, y, width, height = box
    return (
        f'<rect class="bar" data-{kind}="{escape(name)}" data-tier="{tier}" data-count="{count}" '
        f'x="{num(x)}" y="{num(y)}" width="{num(width)}" height="{num(height)}" '
        f"{tier_fill(prefix, tier)}{outline}><title>{escape(tooltip)}</title></rect>"
    )


# --- count axes ---------------------------------------------------------------------------------------------


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1, 2 or 5 × 10ⁿ step (whole numbers: these axes count things) giving about ``ticks`` intervals."""
    raw = max(span, 1.0) / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for mantissa in (1, 2, 5, 10):
        step = mantissa * magnitude
        if step >= raw:
            return float(max(1, round(step)))
    return float(10 * magnitude)


def nice_ceiling(peak: float) -> int:
    """The top of a count axis: the first step at or above ``peak`` (at least 1, so an all-zero chart draws)."""
    step = nice_step(peak)
    return max(1, math.ceil(max(peak, 1) / step) * int(step))


def count_ticks(frame: Frame) -> list[str]:
    """The vertical count axis of ``frame``: a grid line across and a label at each round count."""
    out = []
    y_step = nice_step(frame.y_max)
    tick = 0.0
    while tick <= frame.y_max + 1e-9:
        y = frame.y(tick)
        out.append(line("grid", frame.left, y, frame.right, y))
        out.append(text(frame.left - 6, y + 4, f"{int(tick):,}", anchor="end"))
        tick += y_step
    return out


def count_title(frame: Frame, title: str) -> str:
    """The count axis's title, written upwards at the left edge, beside the middle of ``frame``."""
    middle = frame.top + frame.height / 2
    return (
        f'<text class="axis-title" x="14" y="{num(middle)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {num(middle)})">{escape(title)}</text>'
    )


__all__ = [
    "TIER_STYLES",
    "Frame",
    "SeriesStyle",
    "TierStyle",
    "chart_open",
    "count_ticks",
    "count_title",
    "line",
    "nice_ceiling",
    "nice_step",
    "num",
    "services_by_tier",
    "text",
    "tier_bar",
    "tier_fill",
    "tier_patterns",
    "tier_swatch",
]
