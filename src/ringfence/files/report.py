"""The drill report: one self-contained HTML document comparing strategies, for people who sign off changes.

It has to open where it is needed: offline, printed, in a hospital's locked-down browser. So the document
carries everything itself — inline CSS, charts drawn here as inline SVG, no script, no font, no image and
no address of anything outside it. The template (``templates/drill_report.html.j2``) is rendered with
autoescaping on; the SVG is built here, and every piece of text put into it goes through :func:`escape`.

Charts say what they show without colour: strategies differ by colour, dash pattern and a label at the
end of each line; impact tiers by colour, fill pattern and a ``T1``–``T4`` label under each bar. Every
chart has a ``<title>``, a ``<desc>`` stating its numbers, and the data behind it in a table. The pieces
they are drawn with (and the dashboard's chart too) are ``ringfence.files.svg``'s.

The plot frame of each chart is written on its ``<svg>`` (``data-plot``, ``data-x-max``, ``data-y-max``) so
the drawn coordinates can be read back into the drill's numbers — which the tests do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from markupsafe import Markup, escape

from ringfence.core.clock import utc_now
from ringfence.core.drills import DrillReport, StrategyResult, TimelinePoint
from ringfence.core.durations import humanize_duration
from ringfence.core.errors import InputError
from ringfence.core.estate import TIER_NAMES
from ringfence.core.impact import TIERS
from ringfence.core.words import count
from ringfence.files.disk import write_text_atomic
from ringfence.files.svg import (
    TIER_STYLES,
    Frame,
    SeriesStyle,
    chart_open,
    count_ticks,
    count_title,
    line,
    nice_ceiling,
    num,
    services_by_tier,
    text,
    tier_bar,
    tier_patterns,
    tier_swatch,
)
from ringfence.files.templating import printed_time, template_environment

TEMPLATE = "drill_report.html.j2"
RINGFENCE = "ringfence"

Series = Literal["exposed", "failed"]


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

# Chart geometry in SVG user units; the CSS scales the whole drawing to the page width.
_WIDTH = 680.0
_TIME_PLOT = (64.0, 18.0, 470.0, 190.0)  # left, top, width, height — the right margin holds the line labels
_TIME_HEIGHT = 258.0
_BAR_PLOT = (64.0, 44.0, 596.0, 170.0)
_BAR_HEIGHT = 268.0
_LABEL_GAP = 13.0
_TIME_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


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
    # Every value from a file or a drill is text, never markup: the environment autoescapes.
    template = template_environment().get_template(TEMPLATE)
    return template.render(
        estate_name=estate_name,
        generated_at=printed_time(generated_at),
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
    when = generated_at if generated_at is not None else utc_now()
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
    parts = [f"{count(len(result.failed), 'asset')} failed"]
    down = result.services_down
    if not down:
        parts.append("no service down")
    else:
        most = min(s.tier for s in down)
        worst_tier = sum(1 for s in down if s.tier == most)
        name = _tier_name(most)
        if worst_tier == len(down):
            parts.append(f"{count(len(down), f'{name} service')} down")
        else:
            parts.append(f"{count(len(down), 'service')} down including {worst_tier:,} {name}")
    if result.data_lost:
        parts.append(f"data lost on {count(len(result.data_lost), 'asset')}")
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
    return services_by_tier(result.services_down)


# --- the page -----------------------------------------------------------------------------------------------


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
        return f"ringfence did not stop although {count(len(result.failed), 'asset')} failed; the rollout {ended}."
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
    return Frame(left, top, width, height, float(x_max), float(nice_ceiling(peak)))


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
        coords = " ".join(f"{num(frame.x(t))},{num(frame.y(v))}" for t, v in points)
        lines.append(
            f'<polyline class="series" data-strategy="{escape(result.strategy)}" data-series="{series}" '
            f'points="{coords}" fill="none" {style.stroke} stroke-linejoin="round"/>'
        )
        labels.append((frame.y(final), f"{result.strategy} {final:,}", style))
    desc = (
        f"Step lines, one per strategy, of the number of assets {what} against simulated time since the rollout "
        f"started (0 to {_clock(frame.x_max)} hours). At the end: {'; '.join(finals)}."
    )
    parts = [
        *chart_open(chart_id, title, desc, width=_WIDTH, height=_TIME_HEIGHT, kind=series, frame=frame.attributes()),
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
    out = ['<g class="axes">', *count_ticks(frame)]
    x_step = next((s for s in _TIME_STEPS if frame.x_max / s <= 6), _TIME_STEPS[-1])
    while frame.x_max / x_step > 6:  # a drill of weeks: keep doubling rather than crowd the axis
        x_step *= 2
    tick = 0.0
    while tick <= frame.x_max + 1e-9:
        x = frame.x(tick)
        out.append(line("tick", x, frame.bottom, x, frame.bottom + 5))
        out.append(text(x, frame.bottom + 18, _clock(tick), anchor="middle"))
        tick += x_step
    out.append(line("axis", frame.left, frame.bottom, frame.right, frame.bottom))
    out.append(line("axis", frame.left, frame.top, frame.left, frame.bottom))
    x_title = "hours since the rollout started (h:mm)"
    out.append(text(frame.left + frame.width / 2, frame.bottom + 38, x_title, anchor="middle"))
    out.append(count_title(frame, y_title))
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
    for (y, label, style), at in zip(ordered, placed, strict=True):
        x = frame.right + 6
        out.append(f'<line x1="{num(frame.right)}" y1="{num(y)}" x2="{num(x + 16)}" y2="{num(at)}" {style.stroke}/>')
        out.append(
            f'<text class="line-label" x="{num(x + 20)}" y="{num(at + 4)}" fill="{style.colour}">{escape(label)}</text>'
        )
    return out


def services_frame(report: DrillReport) -> Frame:
    peak = max((n for r in report.results for n in _by_tier(r).values()), default=0)
    left, top, width, height = _BAR_PLOT
    return Frame(left, top, width, height, float(max(1, len(report.results))), float(nice_ceiling(peak)))


def _services_chart(anchor: str, report: DrillReport, order: Sequence[str]) -> Chart:
    """Services down at some moment of the drill, per strategy, one bar per tier (counts, not shares)."""
    frame = services_frame(report)
    chart_id = f"{anchor}-services"
    title = f"Services down by impact tier, {report.scenario.scenario}"
    group_width = frame.width / frame.x_max
    bar = min(34.0, group_width * 0.8 / len(TIERS))
    summaries = []
    for result in report.results:
        tiers = _by_tier(result)
        listed = ", ".join(f"{tiers[t]:,} {TIER_NAMES[t]}" for t in TIERS)
        summaries.append(f"{result.strategy}: {listed}")
    desc = (
        "Grouped bars: for each strategy, the number of services down at some moment of the drill in each "
        f"impact tier, T1 life-critical to T4 business support. {'; '.join(summaries)}."
    )
    parts = [
        *chart_open(chart_id, title, desc, width=_WIDTH, height=_BAR_HEIGHT, kind="services", frame=frame.attributes()),
        *tier_patterns(chart_id),
        *_tier_legend(chart_id),
        '<g class="axes">',
        *count_ticks(frame),
        count_title(frame, "services down"),
        "</g>",
    ]
    for index, result in enumerate(report.results):
        tiers = _by_tier(result)
        group_left = frame.left + group_width * index
        first = group_left + (group_width - bar * len(TIERS)) / 2
        for position, tier in enumerate(TIERS):
            down = tiers[tier]
            x = first + bar * position
            top = frame.y(down)
            tooltip = f"{result.strategy}: {count(down, f'{TIER_NAMES[tier]} service')} down"
            box = (x + 2, top, bar - 4, frame.bottom - top)
            parts.append(
                tier_bar(
                    chart_id,
                    tier,
                    down,
                    owner=("strategy", result.strategy),
                    box=box,
                    tooltip=tooltip,
                    outline=' stroke-width="1"',
                )
            )
            parts.append(text(x + bar / 2, top - 5, f"{down:,}", anchor="middle", css="bar-value"))
            parts.append(text(x + bar / 2, frame.bottom + 14, f"T{tier}", anchor="middle", css="bar-tier"))
        parts.append(
            text(group_left + group_width / 2, frame.bottom + 34, result.strategy, anchor="middle", css="group-label")
        )
    parts.append(line("axis", frame.left, frame.bottom, frame.right, frame.bottom))
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
        out.append(tier_swatch(chart_id, tier, x, 16))
        out.append(text(x + 22, 21, f"T{tier} {TIER_NAMES[tier]}"))
        x += 150
    out.append("</g>")
    return out


# --- small helpers ------------------------------------------------------------------------------------------


def _tier_name(tier: int) -> str:
    return TIER_NAMES.get(tier, f"tier {tier}")


def _clock(seconds: float) -> str:
    """Simulated time as hours and minutes: ``0:45``, ``14:45``, ``48:00``."""
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


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
