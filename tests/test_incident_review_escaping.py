"""The Markdown incident review renders to no element that came from a value (issue #12, item 6).

Every value a person or a file puts in the review (title, estate name, who declared it, notes, the close
reason, service names, continuity plans and contacts, the rollout's update, release and halt reason) is set to
hostile Markdown and HTML; the review is rendered with markdown-it-py with raw HTML on and GitHub's tables,
and the HTML must hold only the elements the template writes, every hostile text shown as text.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.incident import add_note, close_incident, mark_restored
from ringfence.core.incident_declaration import declare_incident
from ringfence.core.incident_review import IncidentReview, RolloutCause, review_incident
from ringfence.files.incident_review import markdown_code, markdown_text, render_review_markdown

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)

HOSTILE = {
    "script": "<script>alert(1)</script>",
    "img": '<img src=x onerror="alert(2)">',
    "link": "[click](javascript:alert(3))",
    "autolink": "<javascript:alert(4)>",
    "pipes": "a | b | c || d",
    "backticks": "`` x ` <b>bold</b> ``",
    "entity": "&lt;iframe src=//evil&gt; &#60;svg onload=alert(5)&#62;",
    "image": "![x](https://evil.example/x.png)",
    "newline": "line one\n\n<div>block html</div>\n# heading\n| x | y |",
    "emphasis": "**strong** _em_ ~~gone~~ \\",
}
"""Hostile values; each kind goes into several fields."""

ESTATE = """\
apiVersion: ringfence/v1
estate: ward
services:
  - id: epr
    name: {name}
    tier: 1
    rto: 4h
    continuity: {plan}
    contacts: [{contact}]
    requires: [app-1]
assets:
  - {{id: app-1, kind: vm, requires: [db-1]}}
  - {{id: db-1, kind: vm}}
"""

ALLOWED = {
    "h1": set(),
    "h2": set(),
    "p": set(),
    "ul": set(),
    "ol": set(),
    "li": set(),
    "strong": set(),
    "em": set(),
    "code": set(),
    "blockquote": set(),
    "table": set(),
    "thead": set(),
    "tbody": set(),
    "tr": set(),
    "th": {"style"},
    "td": {"style"},
}
"""The elements (and their attributes) the template itself writes; nothing else may appear."""

ALL = " ".join(HOSTILE.values())


class Elements(HTMLParser):
    """Every element with its attributes, the text of each code element, table rows as cell counts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text = ""
        self.codes: list[str] = []
        self.rows: list[int] = []
        self._in_code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))
        if tag == "code":
            self._in_code = True
            self.codes.append("")
        elif tag == "tr":
            self.rows.append(0)
        elif tag in ("td", "th"):
            self.rows[-1] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self._in_code = False

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._in_code:
            self.codes[-1] += data


def hostile_review() -> IncidentReview:
    estate = ESTATE.format(
        name=_yaml(HOSTILE["script"] + " " + HOSTILE["pipes"]),
        plan=_yaml(HOSTILE["img"] + " " + HOSTILE["link"]),
        contact=_yaml(HOSTILE["backticks"] + " " + HOSTILE["pipes"]),
    )
    graph = compile_estate(parse_estate_text(estate, "ward.yaml"))
    incident = declare_incident(
        graph, graph.resolve_failures(["asset:db-1"]), incident_id="inc-000001", at=T0,
        actor=HOSTILE["img"], title=HOSTILE["script"] + " " + HOSTILE["autolink"] + " " + HOSTILE["emphasis"],
    )  # fmt: skip
    incident = add_note(incident, HOSTILE["newline"] + " " + HOSTILE["pipes"], T0 + timedelta(minutes=5), actor="bob")
    incident = mark_restored(incident, "db-1", T0 + timedelta(hours=1), actor=HOSTILE["link"])
    incident = close_incident(
        incident, T0 + timedelta(hours=6), actor=HOSTILE["backticks"], reason=HOSTILE["entity"] + HOSTILE["image"]
    )
    # The estate name and the failed references are validated where they come in; the review must not rely on it.
    incident = dataclasses.replace(incident, estate=HOSTILE["backticks"] + HOSTILE["script"])
    cause = RolloutCause(
        "r-000001", update=HOSTILE["backticks"], release="acme/epr@`1.0`<b>", halt_reason=HOSTILE["newline"]
    )
    return review_incident(incident, T0 + timedelta(days=1), cause=cause)


def _yaml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def rendered(markdown: str) -> Elements:
    # Raw HTML on (the CommonMark default) and GitHub's tables and strikethrough: the most a renderer would allow.
    html = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser


def test_the_markdown_review_renders_no_element_from_its_values() -> None:
    review = hostile_review()
    parsed = rendered(render_review_markdown(review))

    for tag, attrs in parsed.elements:
        assert tag in ALLOWED, f"<{tag} {attrs}> in the rendered review"
        assert {name for name, _ in attrs} <= ALLOWED[tag], f"<{tag} {attrs}> in the rendered review"
    # Every code span is an id the template put there, none is a value that broke out of its span.
    assert set(parsed.codes) <= {"inc-000001", "asset:db-1", "r-000001", "db-1", "app-1", "epr"}, parsed.codes
    # Each hostile value is shown as the text it is.
    text = " ".join(parsed.text.split())
    for value in (
        HOSTILE["script"],
        HOSTILE["img"],
        HOSTILE["link"],
        HOSTILE["autolink"],
        HOSTILE["pipes"],
        HOSTILE["backticks"],
        HOSTILE["entity"],
        HOSTILE["image"],
        HOSTILE["emphasis"],
        " ".join(HOSTILE["newline"].split()),
        "acme/epr@`1.0`<b>",
    ):
        assert value in text, value


def test_every_table_row_keeps_its_columns() -> None:
    review = hostile_review()
    parsed = rendered(render_review_markdown(review))
    # Pipes and line breaks in values split no cell and end no row: each table, header included, keeps its width.
    impact, restore_times, timeline, continuity = (
        [5] * (1 + len(review.impact)),
        [6] * (1 + len(review.clocks)),
        [4] * (1 + len(review.timeline)),
        [5] * (1 + len(review.incident.continuity)),
    )
    assert parsed.rows == impact + restore_times + timeline + continuity


@pytest.mark.parametrize("value", [*HOSTILE.values(), "1. not a list", "- not a list either", "+ nor this"])
def test_a_value_is_text_wherever_it_stands(value: str) -> None:
    """A value alone on a line, in a quote, or in a table cell renders as itself, inside one element."""
    for markdown in (markdown_text(value), f"> {markdown_text(value)}", f"| |\n| --- |\n| {markdown_text(value)} |"):
        parsed = rendered(markdown)
        assert " ".join(parsed.text.split()) == " ".join(value.split()), markdown
        assert {tag for tag, _ in parsed.elements} <= {"p", "blockquote", "table", "thead", "tbody", "tr", "th", "td"}
        assert parsed.rows in ([], [1, 1])
    code = rendered(markdown_code(value))
    assert " ".join(code.text.split()) == " ".join(value.split())
    assert code.codes == []  # not plain enough for a code span: shown as text instead
