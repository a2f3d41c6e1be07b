"""The supplier concentration chart, drawn as inline SVG in the drill report's style.

Drawn with the drill report's pieces (``ringfence.files.svg``), so tiers look the same as there: a colour, a
fill pattern and a ``T1``–``T4`` label, so the chart never says anything by colour alone. Every piece of text
is escaped; the chart has a ``<title>``, a ``<desc>`` with its numbers, and the page shows the data as a table.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from ringfence.core.estate import TIER_NAMES
from ringfence.core.impact import TIERS, SupplierConcentration
from ringfence.files.svg import chart_open, line, num, services_by_tier, text, tier_bar, tier_patterns, tier_swatch

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
    return services_by_tier(supplier.services_down)


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
        *chart_open("concentration", title, desc, width=_WIDTH, height=height, kind="concentration", css="chart wide"),
        *tier_patterns("concentration"),
    ]
    x = _LABEL
    for tier in TIERS:
        parts.append(tier_swatch("concentration", tier, x, 14))
        parts.append(f'<text x="{num(x + 19)}" y="19">T{tier} {escape(TIER_NAMES[tier])}</text>')
        x += 160
    for index, supplier in enumerate(rows):
        y = _TOP + _ROW * index
        parts.append(text(_LABEL - 8, y + 13, supplier.id, anchor="end", css="row-label"))
        counts = tier_counts(supplier)
        left = _LABEL
        for tier in TIERS:
            if not counts[tier]:
                continue
            count = counts[tier]
            width = plot * count / peak
            tooltip = f"{supplier.id}: {count} {TIER_NAMES[tier]} service{'s' if count != 1 else ''} down"
            parts.append(
                tier_bar(
                    "concentration",
                    tier,
                    count,
                    owner=("supplier", supplier.id),
                    box=(left, y, width, _BAR),
                    tooltip=tooltip,
                )
            )
            left += width
        tiers = " ".join(f"T{t}×{counts[t]}" for t in TIERS if counts[t])
        total = len(supplier.services_down)
        parts.append(
            f'<text class="bar-value" x="{num(left + 6)}" y="{num(y + 13)}">'
            f"{total} service{'s' if total != 1 else ''} ({tiers})</text>"
        )
    if not rows:
        parts.append(f'<text x="{num(_LABEL)}" y="{num(_TOP + 13)}">No single supplier takes a service down.</text>')
    axis_y = _TOP + _ROW * max(1, len(rows))
    parts.append(line("axis", _LABEL, _TOP - 4, _LABEL, axis_y))
    parts.append("</svg>")
    return Markup("\n".join(parts))
