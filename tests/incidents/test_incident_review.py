"""The post-incident review as rendered: HTML that parses and Markdown, with the numbers of a fixed incident."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser

from ringfence.core.graph import EstateGraph
from ringfence.core.incident import add_note, close_incident, mark_restored
from ringfence.core.incident_declaration import declare_incident
from ringfence.core.incident_review import IncidentReview, RolloutCause, review_incident
from ringfence.files.incident_review import render_review_html, render_review_markdown

from .conftest import T0

HOUR = timedelta(hours=1)


def closed_review(ward: EstateGraph) -> IncidentReview:
    """EPR back in 2h (RTO 4h, met), pharmacy in 2h 30m (RTO 1h, missed), epr-app-2 never."""
    incident = declare_incident(
        ward, ward.resolve_failures(["asset:sql-epr-1"]), incident_id="inc-000042", at=T0, actor="controller",
        rollout_id="r-000003", title="Database patch took the EPR down",
    )  # fmt: skip
    incident = add_note(incident, "Acme | on the phone", T0 + timedelta(minutes=5), actor="bob")
    incident = mark_restored(incident, ["sql-epr-1", "epr-app-1"], T0 + HOUR, actor="bob")
    incident = mark_restored(incident, "epr", T0 + 2 * HOUR, actor="bob")
    incident = mark_restored(incident, "pharmacy", T0 + 2 * HOUR + timedelta(minutes=30), actor="bob")
    incident = close_incident(incident, T0 + 3 * HOUR, actor="carol", reason="epr-app-2 rebuilt next week")
    cause = RolloutCause("r-000003", "sql-patch", "ms/sql@2022", "ring 0 failed: sql-epr-1 failed to install")
    return review_incident(incident, T0 + 24 * HOUR, cause=cause)


class Rows(HTMLParser):
    """Table rows as lists of cell texts, and every id; fails on mismatched tags."""

    VOID = frozenset({"meta"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.rows: list[list[str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(v for k, v in attrs if k == "id" and v)
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        opened = self.stack.pop()
        assert opened == tag, f"<{opened}> closed by </{tag}>"

    def handle_data(self, data: str) -> None:
        if self.rows and self.rows[-1] and any(t in ("td", "th") for t in self.stack):
            self.rows[-1][-1] += data

    def table(self) -> list[list[str]]:
        return [[" ".join(cell.split()) for cell in row] for row in self.rows]


def test_the_html_review_has_the_numbers(ward: EstateGraph) -> None:
    parser = Rows()
    parser.feed(render_review_html(closed_review(ward)))
    parser.close()
    assert parser.stack == []
    assert {"summary", "facts", "cause", "impact", "restore-times", "timeline", "continuity", "closing"} <= parser.ids
    rows = parser.table()
    assert ["T1 life-critical", "1", "1", "0", "Patient record (epr)"] in rows
    assert ["T2 urgent care", "1", "0", "1", "Pharmacy stock (pharmacy)"] in rows
    epr = next(r for r in rows if r[0] == "Patient record (epr)")
    assert epr[1:5] == ["T1", "4h", "2022-08-04 09:00:00 UTC", "2h"]
    assert epr[5] == "met"
    pharmacy = next(r for r in rows if r[0] == "Pharmacy stock (pharmacy)")
    assert pharmacy[3:5] == ["2022-08-04 09:30:00 UTC", "2h 30m"]
    assert pharmacy[5] == "missed: pharmacy (tier 2): restored after 2h 30m, past its RTO of 1h"
    timeline = [r for r in rows if r and r[0].startswith("2022-08-04")]
    # The breach at 08:00 comes after what was recorded at 08:00.
    assert [r[1] for r in timeline] == ["declared", "note", "restored", "breached", "restored", "restored", "closed"]


def test_the_markdown_review_has_the_numbers_and_escapes_cells(ward: EstateGraph) -> None:
    text = render_review_markdown(closed_review(ward))
    assert text.startswith("# Post-incident review: Database patch took the EPR down\n")
    assert (
        "**Caused by:** rollout `r-000003` of update `sql-patch` (`ms/sql@2022`); it halted because: ring 0 failed"
        in text
    )
    assert "| T2 urgent care | 1 | 0 | 1 | Pharmacy stock (`pharmacy`) |" in text
    assert "| Patient record (`epr`) | T1 | 4h | 2022-08-04 09:00:00 UTC | 2h | met |" in text
    assert "| 2022-08-04 07:05:00 UTC | note | bob | Acme \\| on the phone |" in text
    assert "| 2022-08-04 08:00:00 UTC | **breached** | ringfence |" in text
    assert "- **Closed:** closed with 1 item still down: epr-app-2 rebuilt next week (carol)" in text
    assert "1. `sql-epr-1` ✓\n" in text
    assert "2. `epr-app-1` ✓, `epr-app-2`\n" in text
    assert "> asset:sql-epr-1 took down 2 services (1 of tier 1, 1 of tier 2) and 3 assets for 3h;" in text
