"""A closed incident's clocks stop at the close: a service never restored is "not restored at close" in the
API document, the incident list, the review (HTML and Markdown) and the dashboard's page model — never a
live "on track", "at risk" or "1h 59m left" read off the wall clock days later."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from ringfence.core.graph import EstateGraph
from ringfence.core.incident import Incident, close_incident, mark_restored
from ringfence.core.incident_declaration import declare_incident
from ringfence.core.incident_review import review_incident
from ringfence.files.incident_review import render_review_html, render_review_markdown
from ringfence.service.incidents import incident_document, incident_summary
from ringfence.web.views.incidents import _countdown

from .conftest import T0, run_cli
from .test_incident_review import Rows

HOUR = timedelta(hours=1)
LIVE_WORDS = ("on track", "on_track", "at risk", "at_risk", " left")


def closed_with_services_down(ward: EstateGraph) -> Incident:
    """Closed 1h 30m in with nothing but the database back: epr (RTO 4h) had 2h 30m left, pharmacy (RTO 1h)
    was 30 min past its deadline."""
    incident = declare_incident(
        ward, ward.resolve_failures(["asset:sql-epr-1"]), incident_id="inc-000007", at=T0, actor="olga"
    )
    incident = mark_restored(incident, "sql-epr-1", T0 + HOUR, actor="bob")
    return close_incident(incident, T0 + 90 * timedelta(minutes=1), actor="carol", reason="handed to the supplier")


def test_the_document_and_the_list_freeze_at_the_close(ward: EstateGraph) -> None:
    closed = closed_with_services_down(ward)
    doc = incident_document(closed, T0 + 48 * HOUR)
    assert doc.as_of == T0 + 90 * timedelta(minutes=1)
    assert [(c.service, c.status, c.remaining, c.estimated, c.expected_at) for c in doc.clocks] == [
        ("epr", "not_restored_at_close", 9000, None, None),
        ("pharmacy", "not_restored_at_close", -1800, None, None),
    ]
    assert doc.warnings == [
        "epr (tier 1): not restored at close, 2h 30m before its RTO of 4h ran out",
        "pharmacy (tier 2): not restored at close, 30 min past its RTO of 1h",
    ]
    # The same, asked a year later: nothing about a closed incident runs on the wall clock.
    assert incident_document(closed, T0 + 365 * 24 * HOUR).clocks == doc.clocks
    summary = incident_summary(closed, T0 + 48 * HOUR)
    assert (summary.at_risk, summary.breached, summary.not_restored_at_close) == (
        [],
        ["pharmacy"],
        ["epr", "pharmacy"],
    )


def test_the_page_says_not_restored_at_close_with_no_countdown(ward: EstateGraph) -> None:
    doc = incident_document(closed_with_services_down(ward), T0 + 48 * HOUR)
    epr, pharmacy = doc.clocks
    assert _countdown(epr.status, epr.remaining, epr.estimated, epr.time_to_restore) == (
        "not restored at close · 2h 30m of its RTO was left"
    )
    assert _countdown(pharmacy.status, pharmacy.remaining, pharmacy.estimated, pharmacy.time_to_restore) == (
        "not restored at close · 30 min past its RTO"
    )


def test_the_review_never_says_on_track_for_a_service_never_restored(ward: EstateGraph) -> None:
    review = review_incident(closed_with_services_down(ward), T0 + 48 * HOUR)
    assert review.summary.endswith(
        "0 of 2 services with an RTO were restored within it; RTO breached: pharmacy; "
        "not restored at close: epr, pharmacy; 4 items still down"
    )
    assert [(t.tier, t.met, t.breached, t.not_restored) for t in review.impact if t.services] == [
        (1, 0, 0, 1),
        (2, 0, 1, 1),
    ]
    markdown = render_review_markdown(review)
    assert (
        "| Patient record (`epr`) | T1 | 4h | — | — | **not restored at close**, 2h 30m before its RTO of 4h ran out |"
        in (markdown)
    )
    assert "**not restored at close**, 30 min past its RTO of 1h |" in markdown
    parser = Rows()
    parser.feed(render_review_html(review))
    parser.close()
    rows = parser.table()
    clocks = [r for r in rows if len(r) == 6 and r[0] in ("Patient record (epr)", "Pharmacy stock (pharmacy)")]
    assert [r[5] for r in clocks] == [
        "not restored at close, 2h 30m before its RTO of 4h ran out",
        "not restored at close, 30 min past its RTO of 1h",
    ]
    for document in (markdown, render_review_html(review)):
        section = document[document.index("against RTO") :]
        assert not any(word in section.split("Timeline")[0] for word in LIVE_WORDS)


def test_incident_show_of_a_closed_incident_has_no_live_clock(ward_file: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'ringfence.db'}"
    declared = run_cli("incident", "declare", "--estate", ward_file, "--fail", "asset:sql-epr-1", database_url=database)
    assert declared.returncode == 0, declared.stderr
    closed = run_cli("incident", "close", "inc-000001", "--reason", "handed over", database_url=database)
    assert closed.returncode == 0, closed.stderr
    shown = run_cli("incident", "show", "inc-000001", database_url=database, columns=160)
    assert shown.returncode == 0, shown.stderr
    assert "CLOSED" in shown.stdout
    assert shown.stdout.count("not restored at close") >= 4  # two clocks, two warnings
    for live in ("AT RISK", "to restore", "left ·", "on track"):
        assert live not in shown.stdout
    listed = json.loads(run_cli("incident", "list", "--json", database_url=database).stdout)
    (summary,) = listed["incidents"]
    assert (summary["at_risk"], summary["not_restored_at_close"]) == ([], ["epr", "pharmacy"])
