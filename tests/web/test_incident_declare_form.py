"""The Declare form takes one failure per line, so a ``where:`` selector (whose terms are joined by commas) can
be entered; and a closed incident's page shows its clocks frozen at the close. Real Chromium, real server,
the sample estate (its hosts carry ``attrs.cluster``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ringfence.service import incidents as incident_service

from .conftest import Site, Visitors, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SELECTOR = "where:kind=host,attrs.cluster=prod-a"


def test_a_where_selector_with_commas_is_one_failure_per_line(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    page = visitors.sign_in(site.people.olga)
    page.goto("/incidents")
    form = page.locator("form.declare-form")
    # The form says a line is one failure and that `where:` selectors are allowed.
    expect(form.locator("#declare-fail-help")).to_contain_text("One failure per line")
    expect(form.locator("#declare-fail-help")).to_contain_text("where:kind=host,attrs.cluster=prod-a")

    # Two failures typed on one line the old way: refused with the fix, what was typed kept.
    form.get_by_label("Estate").select_option(site.estate)
    form.get_by_label("What failed").fill(f"{SELECTOR} supplier:advanced")
    form.get_by_role("button", name="Declare the incident").click()
    expect(page.locator("#declare-error")).to_contain_text("put one failure on each line")
    expect(page.locator("form.declare-form").get_by_label("What failed")).to_have_value(f"{SELECTOR} supplier:advanced")

    form = page.locator("form.declare-form")
    form.get_by_label("Estate").select_option(site.estate)
    form.get_by_label("What failed").fill(f"{SELECTOR}\n\n  supplier:advanced  \n{SELECTOR}\n")
    form.get_by_label("Title (optional)").fill("prod-a hosts and Advanced lost")
    form.get_by_role("button", name="Declare the incident").click()
    expect(page).to_have_url(re.compile(r"/incidents/inc-\d{6}$"))
    shot(page, screenshots, "incident-declared-with-where")
    declared = incident_service.get(site.server.engine, page.url.rsplit("/", 1)[1])
    # The selector whole (its comma kept), blank lines and a repeat dropped, spaces around a line trimmed.
    assert sorted(declared.failed) == ["supplier:advanced", SELECTOR]
    expect(page.locator(".meta")).to_contain_text(SELECTOR)


def test_a_closed_incident_page_shows_clocks_frozen_at_the_close(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    engine = site.server.engine
    declared = incident_service.declare(
        engine, fail=["supplier:advanced"], actor="olga", at=datetime.now(UTC), estate_name=site.estate
    )
    clocked = [c for c in incident_service.incident_document(declared, datetime.now(UTC)).clocks if c.rto]
    assert clocked, "the sample's Advanced outage takes down services with an RTO"
    incident_service.close(engine, declared.id, actor="olga", at=datetime.now(UTC), reason="moved to the supplier")

    page = visitors.sign_in(site.people.olga)
    page.goto(f"/incidents/{declared.id}")
    rows = page.locator("table.clocks tbody tr")
    expect(rows.first).to_have_attribute("data-clock", "not_restored_at_close")
    statuses = rows.evaluate_all("rows => rows.map(r => r.dataset.clock)")
    assert set(statuses) == {"not_restored_at_close"}
    clocks = page.locator("table.clocks").inner_text()
    assert "not restored at close" in clocks
    for live in ("on track", "at risk", " left ·", "to restore", "expected back"):
        assert live not in clocks
    # Closed: the page is not refreshed, and nothing more can be recorded.
    expect(page.locator("#live")).not_to_have_attribute("hx-trigger", re.compile(".+"))
    shot(page, screenshots, "incident-closed-frozen")
