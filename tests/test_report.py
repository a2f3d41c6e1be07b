"""The HTML drill report: well-formed, self-contained, escaped, and its charts draw the drill's real numbers.

The charts are read back, not trusted: each polyline's points are turned into (time, count) with the plot
frame written on its ``<svg>``, and compared with the drill's timeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path

import pytest

from ringfence.core.drills import DrillReport, StrategyResult, TimelinePoint, run_drill
from ringfence.core.errors import InputError
from ringfence.core.graph import compile_estate
from ringfence.core.impact import ServiceDown
from ringfence.core.update import parse_scenario_text
from ringfence.files.disk import read_estate, read_with, sample_estate_path
from ringfence.files.report import compare_sentence, render_drill_reports, write_drill_report

WHEN = datetime(2025, 3, 12, 14, 5, tzinfo=UTC)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
TIER_NAMES = {1: "life-critical", 2: "urgent care", 3: "routine care", 4: "business support"}

SCENARIO = """
apiVersion: ringfence/v1
scenario: falcon-291
description: "A content update <script>alert('x')</script> crashes Windows & more."
update:
  id: falcon-291
  product: crowdstrike/falcon
  version: "7.15"
  bake: 30m
  rollback: none
fault:
  affects: "attrs.os=windows-10"
  after: 1m
seed: 3
"""


# --- a small DOM from the standard library's parser ---------------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    nodes: list[Element | str] = field(default_factory=list)
    """Child elements and text, in document order."""

    def walk(self) -> Iterator[Element]:
        yield self
        for node in self.nodes:
            if isinstance(node, Element):
                yield from node.walk()

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        return [e for e in self.walk() if e.tag == tag and all(e.attrs.get(k) == v for k, v in attrs.items())]

    def all_text(self) -> str:
        return "".join(n if isinstance(n, str) else n.all_text() for n in self.nodes)


class TreeBuilder(HTMLParser):
    """Builds the element tree and fails on any end tag that does not close the element open."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]
        self.doctype: str | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].nodes.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].nodes.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].nodes.append(data)


def parse(html: str) -> Element:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    assert builder.doctype is not None
    assert builder.doctype.lower() == "doctype html"
    assert [e.tag for e in builder.stack] == ["#document"], "elements left open"
    return builder.root


# --- drills to report on ----------------------------------------------------------------------------------


def _ids(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}-{i:04d}" for i in range(n))


def _services(counts: dict[int, int]) -> tuple[ServiceDown, ...]:
    return tuple(ServiceDown(f"svc-t{tier}-{i}", tier) for tier, n in counts.items() for i in range(n))


def _tiers(t1: int = 0, t2: int = 0, t3: int = 0, t4: int = 0) -> dict[int, int]:
    return {1: t1, 2: t2, 3: t3, 4: t4}


def constructed_report() -> DrillReport:
    scenario = parse_scenario_text(SCENARIO, "falcon.yaml")
    ringfence = StrategyResult(
        strategy="ringfence",
        exposed=_ids("pc", 24),
        failed=_ids("pc", 1),
        services_down=(),
        halted_at_ring=0,
        detected_after=60.0,
        data_lost=(),
        rings=4,
        duration=1500.0,
        halt_reason="ring 0 failed: 1 of 1 canary crashed 1 min after install <b>(p=0.01)</b>",
        timeline=(
            TimelinePoint(0.0, 24, 0, _tiers()),
            TimelinePoint(120.0, 24, 1, _tiers()),
            TimelinePoint(1500.0, 24, 1, _tiers()),
        ),
        outcome="halted",
    )
    everything = StrategyResult(
        strategy="all-at-once",
        exposed=_ids("pc", 2040),
        failed=_ids("pc", 2038),
        services_down=_services({1: 5, 2: 4, 3: 3, 4: 3}),
        halted_at_ring=None,
        detected_after=None,
        data_lost=(),
        rings=1,
        duration=600.0,
        halt_reason=None,
        timeline=(
            TimelinePoint(0.0, 2040, 0, _tiers()),
            TimelinePoint(60.0, 2040, 1700, _tiers(3, 2, 1, 1)),
            TimelinePoint(120.0, 2040, 2038, _tiers(5, 4, 3, 3)),
        ),
        outcome="completed",
    )
    batches = StrategyResult(
        strategy="batches",
        exposed=_ids("pc", 205),
        failed=_ids("pc", 197),
        services_down=_services({1: 2, 4: 1}),
        halted_at_ring=1,
        detected_after=540.0,
        data_lost=("pc-0007", "pc-0009"),
        rings=3,
        duration=1200.0,
        halt_reason="batch 1 failed: 1 of 205 updated assets failed (pc-0000)",
        timeline=(
            TimelinePoint(0.0, 1, 0, _tiers()),
            TimelinePoint(600.0, 205, 0, _tiers()),
            TimelinePoint(660.0, 205, 1, _tiers()),
            TimelinePoint(660.0, 205, 120, _tiers(1)),
            TimelinePoint(1260.0, 205, 197, _tiers(2, 0, 0, 1)),
        ),
        outcome="halted",
    )
    return DrillReport(scenario=scenario, targets=2040, affected=2038, results=(ringfence, everything, batches))


@pytest.fixture(scope="module")
def constructed() -> DrillReport:
    return constructed_report()


@pytest.fixture(scope="module")
def constructed_html(constructed: DrillReport) -> str:
    return render_drill_reports([constructed], estate_name="City <General>", generated_at=WHEN)


@pytest.fixture(scope="module")
def real_drill() -> DrillReport:
    graph = compile_estate(read_estate(sample_estate_path()))
    scenario = read_with(sample_estate_path().parent / "scenarios" / "vsphere-7u3.yaml", parse_scenario_text)
    return run_drill(graph, scenario)


# --- reading the charts back -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plot:
    left: float
    top: float
    width: float
    height: float
    x_max: float
    y_max: float

    @classmethod
    def of(cls, svg: Element) -> Plot:
        left, top, width, height = (float(v) for v in svg.attrs["data-plot"].split())
        return cls(left, top, width, height, float(svg.attrs["data-x-max"]), float(svg.attrs["data-y-max"]))

    def data(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.left) / self.width * self.x_max, (self.top + self.height - y) / self.height * self.y_max


def charts(root: Element, kind: str) -> list[Element]:
    return [svg for svg in root.find_all("svg") if svg.attrs.get("data-chart") == kind]


def line_of(svg: Element, strategy: str) -> list[tuple[float, float]]:
    """The polyline of ``strategy`` in data units (seconds, count)."""
    (line,) = [p for p in svg.find_all("polyline") if p.attrs["data-strategy"] == strategy]
    plot = Plot.of(svg)
    points = [tuple(float(v) for v in pair.split(",")) for pair in line.attrs["points"].split()]
    return [plot.data(x, y) for x, y in points]


def value_after(line: Sequence[tuple[float, float]], at: float, tolerance: float) -> float:
    """What a step line says the count is just after moment ``at``: its last vertex at or before ``at``."""
    candidates = [v for t, v in line if t <= at + tolerance]
    assert candidates, f"the line starts after {at}"
    return candidates[-1]


def assert_line_draws(svg: Element, result: StrategyResult, series: str) -> None:
    line = line_of(svg, result.strategy)
    plot = Plot.of(svg)
    tolerance = plot.x_max / plot.width * 0.02  # a hundredth of a unit, the precision coordinates are written with
    count_tolerance = plot.y_max / plot.height * 0.02
    # Steps only: every segment is horizontal or vertical, and time never runs backwards.
    for (t0, v0), (t1, v1) in pairwise(line):
        assert abs(t0 - t1) <= tolerance or abs(v0 - v1) <= count_tolerance
        assert t1 >= t0 - tolerance
    assert abs(line[0][0]) <= tolerance
    assert abs(line[0][1]) <= count_tolerance  # nothing exposed or failed before the rollout starts
    for point in result.timeline:
        # Several points at one moment: the last is where the count settles.
        last_at_moment = [p for p in result.timeline if p.at == point.at][-1]
        expected = last_at_moment.exposed if series == "exposed" else last_at_moment.failed
        assert round(value_after(line, point.at, tolerance)) == expected, (result.strategy, series, point)
    # Between changes the count holds: halfway to the next change it is still the earlier one.
    for before, after in pairwise(result.timeline):
        if after.at > before.at:
            expected = before.exposed if series == "exposed" else before.failed
            assert round(value_after(line, (before.at + after.at) / 2, 0.0)) == expected
    final = result.timeline[-1].exposed if series == "exposed" else result.timeline[-1].failed
    assert round(line[-1][1]) == final
    assert line[-1][0] >= max(result.duration, result.timeline[-1].at) - tolerance


def table_row(root: Element, strategy: str) -> dict[str, str]:
    (row,) = [tr for tr in root.find_all("tr") if tr.attrs.get("data-strategy") == strategy]
    return {
        td.attrs["data-field"]: " ".join(td.all_text().split()) for td in row.find_all("td") if "data-field" in td.attrs
    }


# --- the tests ---------------------------------------------------------------------------------------------


def test_the_report_is_well_formed_html(constructed_html: str) -> None:
    root = parse(constructed_html)
    (html,) = root.find_all("html")
    assert html.attrs["lang"]
    assert root.find_all("title")[0].all_text().startswith("Drill report")
    assert root.find_all("style"), "the CSS is inline"


def test_the_report_is_self_contained(constructed_html: str) -> None:
    root = parse(constructed_html)
    assert "http://" not in constructed_html
    assert "https://" not in constructed_html
    assert not root.find_all("script")
    assert not root.find_all("link")
    assert not root.find_all("img")
    assert not root.find_all("iframe")
    for element in root.walk():
        for name in ("src", "href", "xlink:href", "action", "srcset", "data"):
            value = element.attrs.get(name)
            if value is not None:
                assert value.startswith("#"), f"<{element.tag} {name}={value!r}> points outside the document"
    assert "@import" not in constructed_html
    assert re.findall(r"url\(\s*([^)]*)\)", constructed_html), "the tier patterns are referenced"
    assert all(ref.startswith("#") for ref in re.findall(r"url\(\s*([^)]*)\)", constructed_html))


def test_user_text_is_escaped(constructed_html: str) -> None:
    root = parse(constructed_html)
    assert "<script>" not in constructed_html
    assert "&lt;script&gt;alert(" in constructed_html
    assert "Windows &amp; more" in constructed_html
    assert "City &lt;General&gt;" in constructed_html
    assert "<b>(p=0.01)</b>" not in constructed_html
    assert not root.find_all("b")
    (reason,) = [q for q in root.find_all("blockquote") if q.attrs.get("data-strategy") == "ringfence"]
    assert "<b>(p=0.01)</b>" in reason.all_text()  # shown as the text it is


def test_a_strategy_name_is_escaped_inside_the_charts(constructed: DrillReport) -> None:
    odd = replace(constructed.results[2], strategy="<i>odd</i> & co")
    report = DrillReport(constructed.scenario, constructed.targets, constructed.affected, (*constructed.results, odd))
    html = render_drill_reports([report], estate_name="", generated_at=WHEN)
    root = parse(html)
    assert not root.find_all("i")
    (svg,) = charts(root, "exposed")
    assert_line_draws(svg, odd, "exposed")
    assert any(t.all_text() == "<i>odd</i> & co 205" for t in svg.find_all("text"))


def test_the_table_holds_each_strategys_numbers(constructed: DrillReport, constructed_html: str) -> None:
    root = parse(constructed_html)
    for result in constructed.results:
        row = table_row(root, result.strategy)
        assert row["exposed"] == f"{len(result.exposed):,}"
        assert row["failed"] == f"{len(result.failed):,}"
        assert row["data-lost"].split()[0] == str(len(result.data_lost))
        for asset in result.data_lost:
            assert asset in row["data-lost"]
        for service in result.services_down:
            assert service.id in row["services-down"]
        for tier in {s.tier for s in result.services_down}:
            n = sum(1 for s in result.services_down if s.tier == tier)
            assert f"T{tier} {n} {TIER_NAMES[tier]}:" in row["services-down"]
        if not result.services_down:
            assert row["services-down"] == "none"
    assert table_row(root, "ringfence")["halted-at"] == "ring 0 (1st of 4)"
    assert table_row(root, "ringfence")["detected-after"] == "1 min"
    assert table_row(root, "batches")["detected-after"] == "9 min"
    assert table_row(root, "all-at-once")["detected-after"] == "never"
    assert table_row(root, "all-at-once")["halted-at"] == "did not stop"


def test_the_summary_compares_ringfence_with_the_worst(constructed: DrillReport, constructed_html: str) -> None:
    sentence = compare_sentence(constructed)
    assert sentence == (
        "ringfence: 1 asset failed, no service down; "
        "all-at-once: 2,038 assets failed, 15 services down including 5 life-critical"
    )
    root = parse(constructed_html)
    (summary,) = [s for s in root.find_all("section") if s.attrs.get("class") == "summary"]
    assert sentence in " ".join(summary.all_text().split())


def test_the_worst_is_judged_by_harm_to_patients_first(constructed: DrillReport) -> None:
    ringfence, everything, batches = constructed.results
    # batches loses data and takes down more life-critical services than a variant of all-at-once that fails more.
    milder = replace(everything, services_down=_services({1: 1, 4: 9}))
    worse_batches = replace(batches, services_down=_services({1: 2}))
    report = DrillReport(constructed.scenario, 2040, 2038, (ringfence, milder, worse_batches))
    assert compare_sentence(report) == (
        "ringfence: 1 asset failed, no service down; "
        "batches: 197 assets failed, 2 life-critical services down, data lost on 2 assets"
    )


def test_the_time_charts_draw_the_timelines(constructed: DrillReport, constructed_html: str) -> None:
    root = parse(constructed_html)
    for series in ("exposed", "failed"):
        (svg,) = charts(root, series)
        assert svg.attrs["role"] == "img"
        assert svg.find_all("title")
        assert svg.find_all("desc")
        assert {p.attrs["data-strategy"] for p in svg.find_all("polyline")} == {r.strategy for r in constructed.results}
        for result in constructed.results:
            assert_line_draws(svg, result, series)
    exposed, failed = charts(root, "exposed")[0], charts(root, "failed")[0]
    assert Plot.of(exposed) == Plot.of(failed), "the two time charts share their axes"


def test_the_time_chart_would_catch_a_wrong_line(constructed: DrillReport, constructed_html: str) -> None:
    """The read-back is strict enough to fail: the ringfence line is not the batches timeline."""
    root = parse(constructed_html)
    (svg,) = charts(root, "failed")
    impostor = replace(constructed.results[2], strategy="ringfence")
    with pytest.raises(AssertionError):
        assert_line_draws(svg, impostor, "failed")


def test_the_services_chart_draws_each_tier(constructed: DrillReport, constructed_html: str) -> None:
    root = parse(constructed_html)
    (svg,) = charts(root, "services")
    plot = Plot.of(svg)
    desc = " ".join(svg.find_all("desc")[0].all_text().split())
    bars = svg.find_all("rect", **{"class": "bar"})
    assert len(bars) == 4 * len(constructed.results)
    for result in constructed.results:
        for tier in (1, 2, 3, 4):
            expected = sum(1 for s in result.services_down if s.tier == tier)
            (bar,) = [
                b for b in bars if b.attrs["data-strategy"] == result.strategy and b.attrs["data-tier"] == str(tier)
            ]
            assert int(bar.attrs["data-count"]) == expected
            assert round(float(bar.attrs["height"]) / plot.height * plot.y_max) == expected
            assert bar.attrs["fill"].startswith("url(#"), "a pattern, not colour alone"
        listed = ", ".join(
            f"{sum(1 for s in result.services_down if s.tier == t)} {TIER_NAMES[t]}" for t in (1, 2, 3, 4)
        )
        assert f"{result.strategy}: {listed}" in desc
    labels = {t.all_text() for t in svg.find_all("text")}
    assert {"T1", "T2", "T3", "T4"} <= labels
    assert {f"T{t} {name}" for t, name in TIER_NAMES.items()} <= labels


def test_several_drills_make_one_document(constructed: DrillReport) -> None:
    second = DrillReport(constructed.scenario, constructed.targets, constructed.affected, constructed.results[:2])
    root = parse(render_drill_reports([constructed, second], estate_name="city", generated_at=WHEN))
    sections = [s for s in root.find_all("section") if s.attrs.get("class") == "drill"]
    assert len(sections) == 2
    assert len({s.attrs["id"] for s in sections}) == 2
    assert len(charts(root, "exposed")) == 2
    assert len(charts(root, "services")) == 2
    ids = [e.attrs["id"] for e in root.walk() if "id" in e.attrs]
    assert len(ids) == len(set(ids)), "element ids are unique across drills"
    for anchor in (a.attrs["href"] for a in root.find_all("a")):
        assert anchor[1:] in ids


def test_no_drill_is_refused() -> None:
    with pytest.raises(InputError, match="at least one drill"):
        render_drill_reports([], estate_name="city", generated_at=WHEN)


def test_write_drill_report_writes_the_document(constructed: DrillReport, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    write_drill_report(constructed, target, estate_name="city", generated_at=WHEN)
    text = target.read_text(encoding="utf-8")
    assert text == render_drill_reports([constructed], estate_name="city", generated_at=WHEN)
    assert "12 March 2025, 14:05 UTC" in text
    assert [p.name for p in target.parent.iterdir()] == ["report.html"], "no temporary file left behind"
    write_drill_report([constructed, constructed], target)
    assert len(charts(parse(target.read_text(encoding="utf-8")), "services")) == 2


def test_a_real_drill_reports_what_happened(real_drill: DrillReport, tmp_path: Path) -> None:
    target = tmp_path / "drill.html"
    write_drill_report([real_drill], target, estate_name="city-general", generated_at=WHEN)
    html = target.read_text(encoding="utf-8")
    root = parse(html)
    assert "http://" not in html
    assert "https://" not in html
    assert not root.find_all("script")
    assert "vsphere-7u3" in html
    for result in real_drill.results:
        row = table_row(root, result.strategy)
        assert row["exposed"] == f"{len(result.exposed):,}"
        assert row["failed"] == f"{len(result.failed):,}"
        for series in ("exposed", "failed"):
            (svg,) = charts(root, series)
            assert_line_draws(svg, result, series)
    ringfence = next(r for r in real_drill.results if r.strategy == "ringfence")
    assert ringfence.halt_reason is not None
    (reason,) = [q for q in root.find_all("blockquote") if q.attrs.get("data-strategy") == "ringfence"]
    assert " ".join(reason.all_text().split()) == " ".join(ringfence.halt_reason.split())
    assert compare_sentence(real_drill) in " ".join(root.all_text().split())
