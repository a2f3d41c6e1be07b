"""The supplier concentration chart, drawn as inline SVG in the drill report's style.

Tiers look the same as in the drill report (``ringfence.files.report.TIER_STYLES``): a colour, a fill pattern and
a ``T1``–``T4`` label, so the chart never says anything by colour alone. Every piece of text goes through
``escape``; the chart has a ``<title>``, a ``<desc>`` with its numbers, and the page shows the data as a table.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from ringfence.core.estate import TIER_NAMES
from ringfence.core.impact import TIERS, SupplierConcentration
from ringfence.files.report import TIER_STYLES

_WIDTH = 900.0
_LABEL = 130.0  # room for the supplier's id left of the bars
_BAR = 18.0
_ROW = 28.0
_TOP = 40.0  # the tier legend sits above the bars
_RIGHT = 260.0  # room for the count written after each bar: "18 services (T1×5 T2×5 T3×3 T4×5)"


def harm_order(found: Sequence[SupplierConcentration]) -> list[SupplierConcentration]:
    """Suppliers that take something down, most harmful first: life-critical services, then urgent, then all."""

    def harm(s: SupplierConcentration) -> tuple[int, int, int, str]:
        counts = tier_counts(s)
        return (-counts[1], -counts[2], -len(s.services_down), s.id)

    return sorted((s for s in found if s.services_down), key=harm)


def tier_counts(supplier: SupplierConcentration) -> dict[int, int]:
    counts = dict.fromkeys(TIERS, 0)
    for service in supplier.services_down:
        counts[service.tier] += 1
    return counts


def concentration_svg(found: Sequence[SupplierConcentration]) -> Markup:
    """Stacked horizontal bars: for each supplier, the services its failure takes down, by tier."""
    rows = harm_order(found)
    peak = max((len(s.services_down) for s in rows), default=1)
    plot = _WIDTH - _LABEL - _RIGHT
    height = _TOP + _ROW * max(1, len(rows)) + 30
    summaries = []
    for s in rows:
        counts = tier_counts(s)
        listed = ", ".join(f"{counts[t]} {TIER_NAMES[t]}" for t in TIERS if counts[t])
        summaries.append(f"{s.id}: {len(s.services_down)} ({listed})")
    title = "Services down if one supplier fails, by impact tier"
    desc = (
        "Stacked bars, one per supplier whose failure takes services down, most harmful first: "
        + ("; ".join(summaries) if summaries else "no supplier's failure takes a service down")
        + "."
    )
    parts = [
        f'<svg class="chart wide" viewBox="0 0 {_n(_WIDTH)} {_n(height)}" role="img" '
        'aria-labelledby="concentration-title concentration-desc" data-chart="concentration">',
        f'<title id="concentration-title">{escape(title)}</title>',
        f'<desc id="concentration-desc">{escape(desc)}</desc>',
        "<defs>",
    ]
    for tier in TIERS:
        style = TIER_STYLES[tier]
        tile = (
            f'<path d="{style.pattern}" stroke="#ffffff" stroke-width="1.3" fill="#ffffff"/>' if style.pattern else ""
        )
        parts.append(
            f'<pattern id="concentration-t{tier}" patternUnits="userSpaceOnUse" width="6" height="6">'
            f'<rect width="6" height="6" fill="{style.colour}"/>{tile}</pattern>'
        )
    parts.append("</defs>")
    x = _LABEL
    for tier in TIERS:
        parts.append(
            f'<rect x="{_n(x)}" y="8" width="14" height="14" fill="url(#concentration-t{tier})" '
            f'stroke="{TIER_STYLES[tier].colour}"/>'
        )
        parts.append(f'<text x="{_n(x + 19)}" y="19">T{tier} {escape(TIER_NAMES[tier])}</text>')
        x += 160
    for index, supplier in enumerate(rows):
        y = _TOP + _ROW * index
        parts.append(
            f'<text class="row-label" x="{_n(_LABEL - 8)}" y="{_n(y + 13)}" text-anchor="end">'
            f"{escape(supplier.id)}</text>"
        )
        counts = tier_counts(supplier)
        left = _LABEL
        for tier in TIERS:
            if not counts[tier]:
                continue
            width = plot * counts[tier] / peak
            parts.append(
                f'<rect class="bar" data-supplier="{escape(supplier.id)}" data-tier="{tier}" '
                f'data-count="{counts[tier]}" x="{_n(left)}" y="{_n(y)}" width="{_n(width)}" height="{_n(_BAR)}" '
                f'fill="url(#concentration-t{tier})" stroke="{TIER_STYLES[tier].colour}">'
                f"<title>{escape(supplier.id)}: {counts[tier]} {escape(TIER_NAMES[tier])} "
                f"service{'s' if counts[tier] != 1 else ''} down</title></rect>"
            )
            left += width
        tiers = " ".join(f"T{t}×{counts[t]}" for t in TIERS if counts[t])
        total = len(supplier.services_down)
        parts.append(
            f'<text class="bar-value" x="{_n(left + 6)}" y="{_n(y + 13)}">'
            f"{total} service{'s' if total != 1 else ''} ({tiers})</text>"
        )
    if not rows:
        parts.append(f'<text x="{_n(_LABEL)}" y="{_n(_TOP + 13)}">No single supplier takes a service down.</text>')
    axis_y = _TOP + _ROW * max(1, len(rows))
    parts.append(f'<line class="axis" x1="{_n(_LABEL)}" y1="{_n(_TOP - 4)}" x2="{_n(_LABEL)}" y2="{_n(axis_y)}"/>')
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _n(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
