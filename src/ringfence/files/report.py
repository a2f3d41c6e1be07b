"""The drill report: one self-contained HTML document comparing strategies, for people who sign off changes.

It has to open where it is needed: offline, printed, in a hospital's locked-down browser. So the document
carries everything itself — inline CSS, charts drawn here as inline SVG, no script, no font, no image and
no address of anything outside it. The template (``templates/drill_report.html.j2``) is rendered with
autoescaping on; the SVG is built here, and every piece of text put into it goes through :func:`escape`.

Charts say what they show without colour: strategies differ by colour, dash pattern and a label at the
end of each line; impact tiers by colour, fill pattern and a ``T1``–``T4`` label under each bar. Every
chart has a ``<title>``, a ``<desc>`` stating its numbers, and the data behind it in a table.

The plot frame of each chart is written on its ``<svg>`` (``data-plot``, ``data-x-max``, ``data-y-max``) so
the drawn coordinates can be read back into the drill's numbers — which the tests do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from ringfence.core.drills import DrillReport, StrategyResult, TimelinePoint
from ringfence.core.durations import humanize_duration
from ringfence.core.errors import InputError
from ringfence.core.estate import TIER_NAMES
from ringfence.core.impact import TIERS
from ringfence.files.disk import write_text_atomic

TEMPLATE = "drill_report.html.j2"
RINGFENCE = "ringfence"

Series = Literal["exposed", "failed"]


@dataclass(frozen=True)
class SeriesStyle:
    """How one strategy is drawn: never by colour alone."""

    colour: str
    dash: str
    """An SVG ``stroke-dasharray``; empty for a solid line."""
    pattern_name: str
    """The dash pattern in words, for the legend's text."""
    swatch: Literal["solid", "dash", "dot"]
    """The nearest CSS border style, for the swatches in the page's text."""


@dataclass(frozen=True)
class TierStyle:
    colour: str
    pattern: str
    """The SVG path drawn in white over the colour, one tile of the fill pattern ("" for a plain fill)."""
    pattern_name: str


# Okabe–Ito hues, darkened until each has at least 4.5:1 contrast on white, so lines and labels stay legible.
STRATEGY_STYLES: dict[str, SeriesStyle] = {
    "ringfence": SeriesStyle("#0a5a96", "", "solid line", "solid"),
    "all-at-once": SeriesStyle("#b03a0e", "9 4", "dashed line", "dash"),
    "batches": SeriesStyle("#6a3d9a", "2 3", "dotted line", "dot"),
}
_SPARE_STYLES = (
    SeriesStyle("#00705a", "12 3 2 3", "dash-dot line", "dash"),
    SeriesStyle("#7a5a00", "4 2", "short-dashed line", "dash"),
    SeriesStyle("#444444", "1 2", "fine dotted line", "dot"),
)

TIER_STYLES: dict[int, TierStyle] = {
    1: TierStyle("#8c1c13", "M0 0L6 6M6 0L0 6", "cross-hatched"),
    2: TierStyle("#b4530e", "M0 6L6 0M-1 1L1 -1M5 7L7 5", "diagonal stripes"),
    3: TierStyle("#7d6a00", "M1.5 1.5h1v1h-1zM4.5 4.5h1v1h-1z", "dotted"),
    4: TierStyle("#4f6272", "", "plain"),
}

# Chart geometry in SVG user units; the CSS scales the whole drawing to the page width.
_WIDTH = 680.0
_TIME_PLOT = (64.0, 18.0, 470.0, 190.0)  # left, top, width, height — the right margin holds the line labels
_TIME_HEIGHT = 258.0
_BAR_PLOT = (64.0, 44.0, 596.0, 170.0)
_BAR_HEIGHT = 268.0
_LABEL_GAP = 13.0
_TIME_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


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
            f'data-plot="{_n(self.left)} {_n(self.top)} {_n(self.width)} {_n(self.height)}" '
            f'data-x-max="{_n(self.x_max)}" data-y-max="{_n(self.y_max)}"'
        )


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True)
class TierGroup:
    tier: int
    name: str
    services: tuple[str, ...]


@dataclass(frozen=True)
class StrategyRow:
    strategy: str
    style: SeriesStyle
    rings: int
    exposed: int
    failed: int
    services_down: tuple[TierGroup, ...]
    stopped_at: str
    detected_after: str
    data_lost: tuple[str, ...]
    outcome: str
    duration: str
    halt_reason: str | None


@dataclass(frozen=True)
class TimelineRow:
    """One line of the table behind the time chart: what changed, when, for which strategy."""

    at: str
    strategy: str
    exposed: int
    failed: int
    services_down: str


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    caption: str
    svg: Markup


@dataclass(frozen=True)
class DrillView:
    anchor: str
    scenario: str
    description: str | None
    summary: str
    update: tuple[Fact, ...]
    fault: tuple[Fact, ...]
    targets: int
    affected: int
    rows: tuple[StrategyRow, ...]
    ringfence_reason: str | None
    """Why ringfence stopped (the gate's verdict), or what happened when it did not stop."""
    other_reasons: tuple[Fact, ...]
    timeline_charts: tuple[Chart, ...]
    services_chart: Chart
    timeline_rows: tuple[TimelineRow, ...]


@dataclass(frozen=True)
class Legend:
    strategy: str
    style: SeriesStyle


def render_drill_reports(reports: Sequence[DrillReport], *, estate_name: str, generated_at: datetime) -> str:
    """One HTML document for one or more drills, in the order given. ``estate_name`` may be empty."""
    if not reports:
        raise InputError("a drill report needs at least one drill, and none was given")
    drills = tuple(drill_view(index, report) for index, report in enumerate(reports))
    strategies: list[str] = []
    for report in reports:
        strategies.extend(r.strategy for r in report.results if r.strategy not in strategies)
    template = _environment().get_template(TEMPLATE)
    return template.render(
        estate_name=estate_name,
        generated_at=_timestamp(generated_at),
        drills=drills,
        legend=tuple(Legend(name, style_of(name, strategies)) for name in strategies),
        tiers=tuple((tier, TIER_NAMES[tier], TIER_STYLES[tier]) for tier in TIERS),
    )


def write_drill_report(
    reports: DrillReport | Sequence[DrillReport],
    path: Path | str,
    *,
    estate_name: str = "",
    generated_at: datetime | None = None,
) -> None:
    """Render the report and write it whole or not at all (a half-written report is worse than none)."""
    drills = (reports,) if isinstance(reports, DrillReport) else tuple(reports)
    when = generated_at if generated_at is not None else datetime.now(UTC)
    write_text_atomic(path, render_drill_reports(drills, estate_name=estate_name, generated_at=when))


def style_of(strategy: str, order: Sequence[str] = ()) -> SeriesStyle:
    """The known strategies keep their look in every report; others take spare styles in order of appearance."""
    known = STRATEGY_STYLES.get(strategy)
    if known is not None:
        return known
    others = [s for s in order if s not in STRATEGY_STYLES]
    position = others.index(strategy) if strategy in others else 0
    return _SPARE_STYLES[position % len(_SPARE_STYLES)]


def compare_sentence(report: DrillReport) -> str:
    """ringfence's outcome against the worst other strategy's, in one sentence with the numbers.

    "Worst" ranks what hurts patients first: life-critical services down, then urgent care, then data
    lost, then other services down, then assets failed and exposed.
    """
    results = report.results
    ringfence = next((r for r in results if r.strategy == RINGFENCE), None)
    others = [r for r in results if r.strategy != RINGFENCE]
    if ringfence is None:
        return "; ".join(outcome_phrase(r) for r in results)
    if not others:
        return outcome_phrase(ringfence)
    worst = max(others, key=_harm)
    return f"{outcome_phrase(ringfence)}; {outcome_phrase(worst)}"


def outcome_phrase(result: StrategyResult) -> str:
    """``all-at-once: 2,032 assets failed, 15 services down including 4 life-critical``."""
    parts = [f"{_count(len(result.failed), 'asset')} failed"]
    down = result.services_down
    if not down:
        parts.append("no service down")
    else:
        most = min(s.tier for s in down)
        worst_tier = sum(1 for s in down if s.tier == most)
        name = _tier_name(most)
        if worst_tier == len(down):
            parts.append(f"{_count(len(down), f'{name} service')} down")
        else:
            parts.append(f"{_count(len(down), 'service')} down including {worst_tier:,} {name}")
    if result.data_lost:
        parts.append(f"data lost on {_count(len(result.data_lost), 'asset')}")
    return f"{result.strategy}: {', '.join(parts)}"


def _harm(result: StrategyResult) -> tuple[int, ...]:
    tiers = _by_tier(result)
    return (
        tiers[1],
        tiers[2],
        len(result.data_lost),
        sum(tiers.values()),
        len(result.failed),
        len(result.exposed),
    )


def _by_tier(result: StrategyResult) -> dict[int, int]:
    counts = dict.fromkeys(TIERS, 0)
    for service in result.services_down:
        counts[service.tier] = counts.get(service.tier, 0) + 1
    return counts


# --- the page -----------------------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("ringfence", "templates"),
        autoescape=True,  # every value from a file or a drill is text, never markup
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


def _timestamp(when: datetime) -> str:
    zone = when.tzname()
    text = when.strftime("%d %B %Y, %H:%M")
    return f"{text} {zone}" if zone else text


def drill_view(index: int, report: DrillReport) -> DrillView:
    scenario = report.scenario
    update = scenario.update
    fault = scenario.fault
    order = [r.strategy for r in report.results]
    anchor = f"drill-{index + 1}-{scenario.scenario}"
    end = _time_end(report.results)
    ringfence = next((r for r in report.results if r.strategy == RINGFENCE), None)
    return DrillView(
        anchor=anchor,
        scenario=scenario.scenario,
        description=scenario.description.strip() if scenario.description else None,
        summary=compare_sentence(report),
        update=(
            Fact("update", update.id),
            Fact("release", update.release),
            Fact("targets", update.target_selector),
            Fact("strata", ", ".join(update.strata)),
            Fact("rings", ", ".join(str(step) for step in update.rings)),
            Fact("bake", humanize_duration(update.bake)),
            Fact("rollback", update.rollback),
            *((Fact("about", update.description.strip()),) if update.description else ()),
        ),
        fault=(
            Fact("affects", fault.affects),
            Fact("probability", f"{fault.probability:.0%}"),
            Fact("fails after", humanize_duration(fault.after)),
            Fact("signal", fault.signal.replace("_", " ")),
            Fact(
                "rollback without a restore point",
                "loses the asset's data" if fault.rollback_loses_data else "keeps the asset's data",
            ),
            Fact("seed", str(scenario.seed)),
        ),
        targets=report.targets,
        affected=report.affected,
        rows=tuple(_row(r, order) for r in report.results),
        ringfence_reason=_ringfence_reason(ringfence),
        other_reasons=tuple(
            Fact(r.strategy, r.halt_reason) for r in report.results if r is not ringfence and r.halt_reason
        ),
        timeline_charts=(
            _timeline_chart(anchor, report, "exposed", end, order),
            _timeline_chart(anchor, report, "failed", end, order),
        ),
        services_chart=_services_chart(anchor, report, order),
        timeline_rows=tuple(_timeline_rows(report.results)),
    )


def _row(result: StrategyResult, order: Sequence[str]) -> StrategyRow:
    groups = tuple(
        TierGroup(tier, _tier_name(tier), tuple(s.id for s in result.services_down if s.tier == tier))
        for tier in sorted({s.tier for s in result.services_down})
    )
    if result.halted_at_ring is not None:
        stopped = f"ring {result.halted_at_ring} ({_ordinal(result.halted_at_ring + 1)} of {result.rings})"
    else:
        stopped = "did not stop"
    if result.detected_after is not None:
        detected = humanize_duration(result.detected_after)
    elif result.failed:
        detected = "never"
    else:
        detected = "nothing failed"
    return StrategyRow(
        strategy=result.strategy,
        style=style_of(result.strategy, order),
        rings=result.rings,
        exposed=len(result.exposed),
        failed=len(result.failed),
        services_down=groups,
        stopped_at=stopped,
        detected_after=detected,
        data_lost=result.data_lost,
        outcome=result.outcome.replace("_", " ") if result.outcome else "",
        duration=humanize_duration(result.duration),
        halt_reason=result.halt_reason,
    )


def _ringfence_reason(result: StrategyResult | None) -> str | None:
    if result is None:
        return None
    if result.halt_reason:
        return result.halt_reason
    ended = result.outcome.replace("_", " ") if result.outcome else "ended"
    if result.failed:
        return f"ringfence did not stop although {_count(len(result.failed), 'asset')} failed; the rollout {ended}."
    return f"ringfence did not stop: no gate found a failure, and the rollout {ended}."


def _timeline_rows(results: Sequence[StrategyResult]) -> list[TimelineRow]:
    rows: list[TimelineRow] = []
    for result in results:
        for point in result.timeline:
            tiers = ", ".join(f"T{t} ×{n}" for t, n in sorted(point.services_down_by_tier.items()) if n)
            rows.append(TimelineRow(_clock(point.at), result.strategy, point.exposed, point.failed, tiers or "none"))
    return rows


# --- charts -------------------------------------------------------------------------------------------------


def _time_end(results: Sequence[StrategyResult]) -> float:
    """Where the shared time axis ends: when the last strategy's last change happened."""
    end = 0.0
    for result in results:
        end = max(end, result.duration, *(p.at for p in result.timeline))
    return end


def time_frame(report: DrillReport) -> Frame:
    """The one frame both time charts of a drill share, so exposure and failure compare by eye."""
    end = _time_end(report.results)
    peak = max((max(p.exposed, p.failed) for r in report.results for p in r.timeline), default=0)
    # The axis ends where the simulation did; ticks fall on round times within it.
    x_max = end if end > 0 else 3600.0
    left, top, width, height = _TIME_PLOT
    return Frame(left, top, width, height, float(x_max), float(_nice_ceiling(peak)))


def step_points(timeline: Sequence[TimelinePoint], series: Series, end: float) -> list[tuple[float, int]]:
    """The step line through a timeline, in data units: 0 before the rollout, each change at its moment.

    A count holds until the next change, so each point is reached by a horizontal then a vertical move; the
    line runs on to ``end`` at the last count.
    """
    points: list[tuple[float, int]] = [(0.0, 0)]
    value = 0
    for point in timeline:
        new = point.exposed if series == "exposed" else point.failed
        points.append((point.at, value))
        points.append((point.at, new))
        value = new
    points.append((max(end, points[-1][0]), value))
    return [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]


def _timeline_chart(anchor: str, report: DrillReport, series: Series, end: float, order: Sequence[str]) -> Chart:
    frame = time_frame(report)
    chart_id = f"{anchor}-{series}"
    what = "exposed to the update" if series == "exposed" else "failed"
    title = f"Assets {what} over time, {report.scenario.scenario}"
    finals = []
    lines = []
    labels: list[tuple[float, str, SeriesStyle]] = []
    for result in report.results:
        style = style_of(result.strategy, order)
        points = step_points(result.timeline, series, end)
        final = points[-1][1]
        finals.append(f"{result.strategy} {final:,}")
        coords = " ".join(f"{_n(frame.x(t))},{_n(frame.y(v))}" for t, v in points)
        dash = f' stroke-dasharray="{style.dash}"' if style.dash else ""
        lines.append(
            f'<polyline class="series" data-strategy="{escape(result.strategy)}" data-series="{series}" '
            f'points="{coords}" fill="none" stroke="{style.colour}" stroke-width="2.5"{dash} '
            f'stroke-linejoin="round"/>'
        )
        labels.append((frame.y(final), f"{result.strategy} {final:,}", style))
    desc = (
        f"Step lines, one per strategy, of the number of assets {what} against simulated time since the rollout "
        f"started (0 to {_clock(frame.x_max)} hours). At the end: {'; '.join(finals)}."
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {_n(_WIDTH)} {_n(_TIME_HEIGHT)}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" {frame.attributes()} data-chart="{series}">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
        *_time_axes(frame, f"assets {series}"),
        *lines,
        *_end_labels(frame, labels),
        "</svg>",
    ]
    caption = (
        f"Assets {what}, per strategy, over simulated time. Both time charts of this drill share their axes; "
        "the number at the end of each line is its final count."
    )
    return Chart(chart_id, title, caption, Markup("\n".join(parts)))


def _time_axes(frame: Frame, y_title: str) -> list[str]:
    out = ['<g class="axes">']
    y_step = _nice_step(frame.y_max)
    tick = 0.0
    while tick <= frame.y_max + 1e-9:
        y = frame.y(tick)
        out.append(_line("grid", frame.left, y, frame.right, y))
        out.append(_text(frame.left - 6, y + 4, f"{int(tick):,}", anchor="end"))
        tick += y_step
    x_step = next((s for s in _TIME_STEPS if frame.x_max / s <= 6), _TIME_STEPS[-1])
    while frame.x_max / x_step > 6:  # a drill of weeks: keep doubling rather than crowd the axis
        x_step *= 2
    tick = 0.0
    while tick <= frame.x_max + 1e-9:
        x = frame.x(tick)
        out.append(_line("tick", x, frame.bottom, x, frame.bottom + 5))
        out.append(_text(x, frame.bottom + 18, _clock(tick), anchor="middle"))
        tick += x_step
    out.append(_line("axis", frame.left, frame.bottom, frame.right, frame.bottom))
    out.append(_line("axis", frame.left, frame.top, frame.left, frame.bottom))
    x_title = "hours since the rollout started (h:mm)"
    out.append(_text(frame.left + frame.width / 2, frame.bottom + 38, x_title, anchor="middle"))
    middle = frame.top + frame.height / 2
    out.append(
        f'<text class="axis-title" x="14" y="{_n(middle)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_n(middle)})">{escape(y_title)}</text>'
    )
    out.append("</g>")
    return out


def _end_labels(frame: Frame, labels: list[tuple[float, str, SeriesStyle]]) -> list[str]:
    """Name each line where it ends; lines ending at the same count get their labels spread apart."""
    ordered = sorted(labels, key=lambda item: item[0])
    placed: list[float] = []
    for y, _, _ in ordered:
        placed.append(max(y, placed[-1] + _LABEL_GAP) if placed else y)
    overflow = placed[-1] - (frame.bottom + 4) if placed else 0.0
    if overflow > 0:  # pushed below the plot: shift the stack up, keeping the gaps
        placed = [p - overflow for p in placed]
    out = []
    for (y, text, style), at in zip(ordered, placed, strict=True):
        x = frame.right + 6
        dash = f' stroke-dasharray="{style.dash}"' if style.dash else ""
        out.append(
            f'<line x1="{_n(frame.right)}" y1="{_n(y)}" x2="{_n(x + 16)}" y2="{_n(at)}" '
            f'stroke="{style.colour}" stroke-width="2.5"{dash}/>'
        )
        out.append(
            f'<text class="line-label" x="{_n(x + 20)}" y="{_n(at + 4)}" fill="{style.colour}">{escape(text)}</text>'
        )
    return out


def services_frame(report: DrillReport) -> Frame:
    peak = max((n for r in report.results for n in _by_tier(r).values()), default=0)
    left, top, width, height = _BAR_PLOT
    return Frame(left, top, width, height, float(max(1, len(report.results))), float(_nice_ceiling(peak)))


def _services_chart(anchor: str, report: DrillReport, order: Sequence[str]) -> Chart:
    """Services down at some moment of the drill, per strategy, one bar per tier (counts, not shares)."""
    frame = services_frame(report)
    chart_id = f"{anchor}-services"
    title = f"Services down by impact tier, {report.scenario.scenario}"
    group_width = frame.width / frame.x_max
    bar = min(34.0, group_width * 0.8 / len(TIERS))
    parts = [
        f'<svg class="chart" viewBox="0 0 {_n(_WIDTH)} {_n(_BAR_HEIGHT)}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" {frame.attributes()} data-chart="services">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
    ]
    summaries = []
    for result in report.results:
        tiers = _by_tier(result)
        listed = ", ".join(f"{tiers[t]:,} {TIER_NAMES[t]}" for t in TIERS)
        summaries.append(f"{result.strategy}: {listed}")
    desc = (
        "Grouped bars: for each strategy, the number of services down at some moment of the drill in each "
        f"impact tier, T1 life-critical to T4 business support. {'; '.join(summaries)}."
    )
    parts.append(f'<desc id="{chart_id}-desc">{escape(desc)}</desc>')
    parts.append("<defs>")
    for tier in TIERS:
        style = TIER_STYLES[tier]
        tile = (
            f'<path d="{style.pattern}" stroke="#ffffff" stroke-width="1.3" fill="#ffffff"/>' if style.pattern else ""
        )
        parts.append(
            f'<pattern id="{chart_id}-t{tier}" patternUnits="userSpaceOnUse" width="6" height="6">'
            f'<rect width="6" height="6" fill="{style.colour}"/>{tile}</pattern>'
        )
    parts.append("</defs>")
    parts.extend(_tier_legend(chart_id))
    parts.append('<g class="axes">')
    y_step = _nice_step(frame.y_max)
    tick = 0.0
    while tick <= frame.y_max + 1e-9:
        y = frame.y(tick)
        parts.append(_line("grid", frame.left, y, frame.right, y))
        parts.append(_text(frame.left - 6, y + 4, f"{int(tick):,}", anchor="end"))
        tick += y_step
    middle = frame.top + frame.height / 2
    parts.append(
        f'<text class="axis-title" x="14" y="{_n(middle)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_n(middle)})">services down</text>'
    )
    parts.append("</g>")
    for index, result in enumerate(report.results):
        tiers = _by_tier(result)
        group_left = frame.left + group_width * index
        first = group_left + (group_width - bar * len(TIERS)) / 2
        for position, tier in enumerate(TIERS):
            count = tiers[tier]
            x = first + bar * position
            top = frame.y(count)
            name = TIER_NAMES[tier]
            parts.append(
                f'<rect class="bar" data-strategy="{escape(result.strategy)}" data-tier="{tier}" data-count="{count}" '
                f'x="{_n(x + 2)}" y="{_n(top)}" width="{_n(bar - 4)}" height="{_n(frame.bottom - top)}" '
                f'fill="url(#{chart_id}-t{tier})" stroke="{TIER_STYLES[tier].colour}" stroke-width="1">'
                f"<title>{escape(result.strategy)}: {count:,} {escape(name)} service{'s' if count != 1 else ''} "
                "down</title></rect>"
            )
            parts.append(_text(x + bar / 2, top - 5, f"{count:,}", anchor="middle", css="bar-value"))
            parts.append(_text(x + bar / 2, frame.bottom + 14, f"T{tier}", anchor="middle", css="bar-tier"))
        parts.append(
            _text(group_left + group_width / 2, frame.bottom + 34, result.strategy, anchor="middle", css="group-label")
        )
    parts.append(_line("axis", frame.left, frame.bottom, frame.right, frame.bottom))
    parts.append("</svg>")
    caption = (
        "Services down at some moment of the drill, counted per impact tier, for each strategy. "
        "Tiers are told apart by colour, fill pattern and the T1–T4 label under each bar."
    )
    return Chart(chart_id, title, caption, Markup("\n".join(parts)))


def _tier_legend(chart_id: str) -> list[str]:
    out = ['<g class="legend">']
    x = 64.0
    for tier in TIERS:
        out.append(
            f'<rect x="{_n(x)}" y="8" width="16" height="16" fill="url(#{chart_id}-t{tier})" '
            f'stroke="{TIER_STYLES[tier].colour}"/>'
        )
        out.append(_text(x + 22, 21, f"T{tier} {TIER_NAMES[tier]}"))
        x += 150
    out.append("</g>")
    return out


# --- small helpers ------------------------------------------------------------------------------------------


def _line(css: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="{css}" x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}"/>'


def _tier_name(tier: int) -> str:
    return TIER_NAMES.get(tier, f"tier {tier}")


def _text(x: float, y: float, content: str, *, anchor: str = "start", css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f'<text{klass} x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}">{escape(content)}</text>'


def _n(value: float) -> str:
    """A coordinate to 1/100 of a unit: exact enough to read counts back, short enough to keep the file small."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _nice_step(span: float, ticks: int = 5) -> float:
    """A 1, 2 or 5 × 10ⁿ step (whole numbers: these axes count things) giving about ``ticks`` intervals."""
    raw = max(span, 1.0) / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for mantissa in (1, 2, 5, 10):
        step = mantissa * magnitude
        if step >= raw:
            return float(max(1, round(step)))
    return float(10 * magnitude)


def _nice_ceiling(peak: float) -> int:
    """The top of a count axis: the first step at or above ``peak`` (at least 1, so an all-zero chart draws)."""
    step = _nice_step(peak)
    return max(1, math.ceil(max(peak, 1) / step) * int(step))


def _clock(seconds: float) -> str:
    """Simulated time as hours and minutes: ``0:45``, ``14:45``, ``48:00``."""
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


__all__ = [
    "STRATEGY_STYLES",
    "TIER_STYLES",
    "Frame",
    "compare_sentence",
    "outcome_phrase",
    "render_drill_reports",
    "services_frame",
    "step_points",
    "time_frame",
    "write_drill_report",
]
