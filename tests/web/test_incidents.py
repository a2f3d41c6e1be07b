"""The incident pages in real Chromium against a real server: declare, read, mark restored, close, review.

The estate is small enough to know every answer by hand (the ward of tests/incidents):

    sql-epr-1 ← epr-app-1, epr-app-2 ← (any 1) epr (T1, 4h) ← pharmacy (T2, 1h)
    rota-app ⇄ rota-db (they need each other) ← rota (T4, no RTO, no plan)

Failing ``asset:sql-epr-1`` takes down 5 items in 4 steps; pharmacy (RTO 1h, 4 steps of 1h) is at risk
from the start, epr (RTO 4h, 3 steps) is on track.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from ringfence.service import incidents as incident_service
from ringfence.service.estates import approve_estate_version, upload_estate
from ringfence.service.people import Actor

from .conftest import Site, Visitors, accept_dialogs, issue_people, serve, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WARD = """\
apiVersion: ringfence/v1
estate: ward
services:
  - id: epr
    name: Patient record
    tier: 1
    rto: 4h
    continuity: Paper notes from the ward downtime box.
    contacts: ["Service desk 01632 960000"]
    requires: [{any: 1, of: [epr-app-1, epr-app-2]}]
  - {id: pharmacy, name: Pharmacy stock, tier: 2, rto: 1h, continuity: Manual stock cards., requires: [epr]}
  - {id: rota, name: Staff rota, tier: 4, requires: [rota-app]}
assets:
  - {id: sql-epr-1, kind: vm, site: city}
  - {id: epr-app-1, kind: vm, site: city, requires: [sql-epr-1]}
  - {id: epr-app-2, kind: vm, site: north, requires: [sql-epr-1]}
  - {id: rota-app, kind: vm, site: north, requires: [rota-db]}
  - {id: rota-db, kind: vm, site: north, requires: [rota-app]}
"""
REFUSED_EPR = "cannot mark epr restored: it needs any 1 of [epr-app-1, epr-app-2] up, and 0 are"


@pytest.fixture(scope="module")
def ward(site: Site) -> str:
    stored = upload_estate(site.server.engine, WARD, actor="estate-team", at=datetime.now(UTC))
    if stored.is_proposed:
        # Its assets are the sample estate's too (the site's): a move a second person approves.
        approve_estate_version(
            site.server.engine, "ward", stored.version.id, actor=Actor("estate-lead"), at=datetime.now(UTC)
        )
    return stored.version.name


def declare(site: Site, ward: str, *refs: str, title: str | None = None) -> str:
    """An incident declared through the service (as the CLI or API would), by olga, now."""
    found = incident_service.declare(
        site.server.engine, fail=list(refs), actor="olga", at=datetime.now(UTC), title=title, estate_name=ward
    )
    return found.id


def open_incident(page: Page, incident_id: str) -> None:
    page.goto(f"/incidents/{incident_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Incident {incident_id}")


# ------------------------------------------------------------------------------------------ declaring


def test_an_operator_declares_an_incident_from_failure_refs(
    visitors: Visitors, site: Site, ward: str, screenshots: Path
) -> None:
    page = visitors.sign_in(site.people.olga)
    page.get_by_role("link", name="Incidents").click()
    expect(page).to_have_url(re.compile(r"/incidents$"))
    expect(page.get_by_role("link", name="Incidents")).to_have_attribute("aria-current", "page")
    form = page.locator("form.declare-form")

    # Nothing named: refused, with the field named, and nothing declared.
    before = len(incident_service.list_incidents(site.server.engine))
    form.get_by_label("Estate").select_option(ward)
    form.get_by_role("button", name="Declare the incident").click()
    expect(page.locator("#declare-error")).to_have_text(
        "fail: say what failed (e.g. supplier:advanced) to declare an incident"
    )
    # A ref the estate does not know: refused with the estate's own sentence; what was typed stays.
    page.locator("form.declare-form").get_by_label("What failed").fill("asset:sql-epr-9")
    page.locator("form.declare-form").get_by_label("Estate").select_option(ward)
    page.locator("form.declare-form").get_by_role("button", name="Declare the incident").click()
    expect(page.locator("#declare-error")).to_contain_text("sql-epr-9")
    expect(page.locator("form.declare-form").get_by_label("What failed")).to_have_value("asset:sql-epr-9")
    page.locator("form.declare-form").get_by_label("Time one restore step takes").fill("soon")
    page.locator("form.declare-form").get_by_role("button", name="Declare the incident").click()
    expect(page.locator("#declare-error")).to_contain_text("step_time:")
    shot(page, screenshots, "incident-declare-refused")
    assert len(incident_service.list_incidents(site.server.engine)) == before

    page.locator("form.declare-form").get_by_label("What failed").fill("asset:sql-epr-1")
    page.locator("form.declare-form").get_by_label("Title (optional)").fill("EPR database lost")
    page.locator("form.declare-form").get_by_label("Time one restore step takes").fill("1h")
    page.locator("form.declare-form").get_by_role("button", name="Declare the incident").click()
    expect(page).to_have_url(re.compile(r"/incidents/inc-\d{6}$"))
    incident_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Incident {incident_id}: EPR database lost")
    declared = incident_service.get(site.server.engine, incident_id)
    assert declared.declared_by == "olga"
    assert declared.failed == ("asset:sql-epr-1",)


def test_the_incident_page_shows_impact_plans_order_clocks_and_timeline(
    visitors: Visitors, site: Site, ward: str, screenshots: Path
) -> None:
    incident_id = declare(site, ward, "asset:sql-epr-1", "asset:rota-db")
    page = visitors.sign_in(site.people.vera)
    open_incident(page, incident_id)
    expect(page.locator(".meta")).to_contain_text("declared")
    expect(page.locator(".meta")).to_contain_text("asset:sql-epr-1")

    # What is down, by clinical tier: a chip with the T-number and the tier's name.
    expect(page.locator(".tier-line[data-tier='1']")).to_contain_text("T1")
    expect(page.locator(".tier-line[data-tier='1']")).to_contain_text("life-critical")
    expect(page.locator(".tier-line[data-tier='1']")).to_contain_text("Patient record")
    expect(page.locator(".tier-line[data-tier='2']")).to_contain_text("Pharmacy stock")
    expect(page.locator(".tier-line[data-tier='4']")).to_contain_text("Staff rota")
    expect(page.locator(".tier-line[data-tier='3']")).to_have_count(0)

    # Continuity plans, most critical first; a service without a plan says so.
    services = page.locator("table.continuity tbody tr")
    assert services.evaluate_all("rows => rows.map(r => r.dataset.service)") == ["epr", "pharmacy", "rota"]
    expect(services.first).to_contain_text("Paper notes from the ward downtime box.")
    expect(services.first).to_contain_text("Service desk 01632 960000")
    expect(services.last).to_contain_text("No plan recorded")

    # Restore steps as declared; the pair that needs each other shares step 1, and the page says they can
    # only be marked restored together.
    steps = page.locator("table.steps tbody tr")
    expect(steps).to_have_count(4)
    first = page.locator("tr[data-step='1']")
    expect(first.locator("li[data-item='sql-epr-1']")).to_have_class("ready")
    expect(first.locator("li[data-item='rota-app'] .together")).to_have_text(
        "needs rota-db, which needs it: mark them restored together"
    )
    expect(first.locator("li[data-item='rota-db'] .together")).to_have_text(
        "needs rota-app, which needs it: mark them restored together"
    )
    expect(page.locator("tr[data-step='2'] li[data-item='epr-app-1']")).to_have_class("waiting")
    expect(page.locator("li[data-item='pharmacy'] .waiting-for")).to_have_text(
        "waits: it needs epr, which is still down"
    )

    # The clocks: pharmacy (1h, four steps away) at risk with its warning; epr on track; rota has no RTO.
    expect(page.locator("table.clocks tr[data-service='pharmacy']")).to_have_attribute("data-clock", "at_risk")
    # Time left and time to restore run down together from the declaration (seconds ago).
    expect(page.locator("table.clocks tr[data-service='pharmacy'] .countdown")).to_contain_text(
        re.compile(r"about (3h 59m|4h) to restore")
    )
    expect(page.locator("table.clocks tr[data-service='epr']")).to_have_attribute("data-clock", "on_track")
    expect(page.locator("table.clocks tr[data-service='rota']")).to_have_attribute("data-clock", "no_rto")
    expect(page.locator(".rto-warning")).to_have_text(
        re.compile(r"^⚠ pharmacy \(tier 2\): RTO of 1h at risk: (59 min|1h) left, about (3h 59m|4h) to restore$")
    )
    # The fragment refreshes itself while the incident is open.
    expect(page.locator("#live")).to_have_attribute("hx-get", f"/incidents/{incident_id}/live")

    # The timeline holds the declaration; a viewer sees no form to change anything.
    expect(page.locator("table.timeline tr[data-kind='declared']")).to_contain_text("olga")
    expect(page.locator("table.timeline tr[data-kind='declared']")).to_contain_text("3 services and 5 assets down")
    expect(page.locator("form")).to_have_count(1)  # sign out
    shot(page, screenshots, "incident")

    # The review, as HTML and as Markdown, through the links (the sign-in cookie is the API's caller).
    page.get_by_role("link", name="Markdown").click()
    expect(page.locator("body")).to_contain_text("# Post-incident review: Loss of asset:rota-db, asset:sql-epr-1")
    expect(page.locator("body")).to_contain_text(f"Incident `{incident_id}` on estate `ward`")
    page.go_back()
    page.get_by_role("link", name="HTML").click()
    expect(page.locator("h1")).to_have_text("Post-incident review: Loss of asset:rota-db, asset:sql-epr-1")
    expect(page.locator("body")).to_contain_text(incident_id)
    shot(page, screenshots, "incident-review")


# ------------------------------------------------------------------------------------------ restoring


def test_mark_restored_is_refused_with_the_reason_then_done(
    visitors: Visitors, site: Site, ward: str, screenshots: Path
) -> None:
    incident_id = declare(site, ward, "asset:sql-epr-1")
    page = visitors.sign_in(site.people.olga)
    open_incident(page, incident_id)

    # epr waits for its application servers: refused, with the reason, in the live section.
    page.get_by_role("button", name="Mark epr restored").click()
    expect(page.locator("#action-error")).to_have_text(REFUSED_EPR)
    shot(page, screenshots, "incident-restore-refused")
    assert incident_service.get(site.server.engine, incident_id).restored == {}

    # The database first, typed in the form; then both application servers together.
    page.get_by_label("Mark restored").fill("sql-epr-1")
    page.locator("form.restore-form").get_by_role("button", name="Mark restored").click()
    expect(page.get_by_role("status")).to_have_text("Restored: sql-epr-1; 4 items still down.")
    expect(page.locator("li[data-item='sql-epr-1']")).to_have_class("restored")
    expect(page.locator("li[data-item='sql-epr-1'] .done-mark")).to_contain_text("✓ restored")
    expect(page.locator("li[data-item='epr-app-1']")).to_have_class("ready")
    page.get_by_label("Mark restored").fill("epr-app-1, epr-app-2")
    page.locator("form.restore-form").get_by_role("button", name="Mark restored").click()
    expect(page.get_by_role("status")).to_have_text("Restored: epr-app-1, epr-app-2; 2 items still down.")
    page.get_by_role("button", name="Mark epr restored").click()
    expect(page.get_by_role("status")).to_have_text("Restored: epr; 1 item still down.")
    expect(page.locator("table.clocks tr[data-service='epr']")).to_have_attribute("data-clock", "met")
    expect(page.locator("table.timeline tr[data-kind='restored']")).to_have_count(3)
    shot(page, screenshots, "incident-restored")

    restored = incident_service.get(site.server.engine, incident_id).restored
    assert sorted(restored) == ["epr", "epr-app-1", "epr-app-2", "sql-epr-1"]


def test_items_that_need_each_other_are_marked_restored_together(visitors: Visitors, site: Site, ward: str) -> None:
    incident_id = declare(site, ward, "asset:rota-db")
    page = visitors.sign_in(site.people.olga)
    open_incident(page, incident_id)
    # Alone, each is refused: it needs the other.
    page.get_by_label("Mark restored").fill("rota-app")
    page.locator("form.restore-form").get_by_role("button", name="Mark restored").click()
    expect(page.locator("#action-error")).to_have_text(
        "cannot mark rota-app restored: it needs rota-db, which is still down"
    )
    page.locator("li[data-item='rota-db']").get_by_role("button", name="Mark rota-app, rota-db restored").click()
    expect(page.get_by_role("status")).to_have_text("Restored: rota-app, rota-db; 1 item still down.")
    expect(page.locator("li[data-item='rota']")).to_have_class("ready")


def test_without_javascript_a_refusal_is_a_page_with_its_reason(visitors: Visitors, site: Site, ward: str) -> None:
    incident_id = declare(site, ward, "asset:sql-epr-1")
    page = visitors.sign_in(site.people.olga, javascript=False)
    open_incident(page, incident_id)
    with page.expect_response(re.compile(r"/restore$")) as answer:
        page.get_by_role("button", name="Mark pharmacy restored").click()
    assert answer.value.status == 409
    expect(page.locator("#action-error")).to_have_text(
        "cannot mark pharmacy restored: it needs epr, which is still down"
    )
    page.get_by_role("button", name="Mark sql-epr-1 restored").click()  # post, redirect, get
    expect(page).to_have_url(re.compile(rf"/incidents/{incident_id}$"))
    expect(page.locator("li[data-item='sql-epr-1']")).to_have_class("restored")


def test_the_live_section_shows_what_others_did(visitors: Visitors, site: Site, ward: str) -> None:
    incident_id = declare(site, ward, "asset:sql-epr-1")
    page = visitors.sign_in(site.people.vera)
    open_incident(page, incident_id)
    expect(page.locator("li[data-item='sql-epr-1']")).to_have_class("ready")
    # Someone else marks the database restored (the CLI, say): the page shows it without a reload.
    incident_service.restore(site.server.engine, incident_id, ["sql-epr-1"], actor="bob", at=datetime.now(UTC))
    expect(page.locator("li[data-item='sql-epr-1']")).to_have_class("restored", timeout=15_000)
    expect(page.locator("table.timeline tr[data-kind='restored']")).to_contain_text("bob")


# ------------------------------------------------------------------------------------------ closing


def test_closing_needs_a_reason_while_items_are_down(
    visitors: Visitors, site: Site, ward: str, screenshots: Path
) -> None:
    incident_id = declare(site, ward, "asset:rota-db")
    page = visitors.sign_in(site.people.olga)
    questions: list[str] = []
    accept_dialogs(page, questions)
    open_incident(page, incident_id)
    page.get_by_role("button", name="Close the incident").click()
    expect(page.locator("#action-error")).to_contain_text(
        f"cannot close incident {incident_id}: 3 items are still down"
    )
    assert questions == [f"Close incident {incident_id}? Its clocks stop and nothing more can be recorded."]

    page.get_by_label("Reason").fill("rota moved to the supplier's hosted service")
    page.get_by_role("button", name="Close the incident").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Incident {incident_id} closed with 3 items still down: rota moved to the supplier's hosted service."
    )
    live = page.locator("#live")
    expect(live.locator("[data-status]")).to_have_text("closed")
    expect(live).not_to_have_attribute("hx-trigger", re.compile(".*"))  # a closed incident stops asking
    expect(page.locator("form.restore-form")).to_have_count(0)
    expect(page.locator("table.timeline tr[data-kind='closed']")).to_contain_text("olga")
    shot(page, screenshots, "incident-closed")


def test_the_list_shows_open_incidents_first_with_their_worst_rto(
    visitors: Visitors, site: Site, ward: str, screenshots: Path
) -> None:
    closed = declare(site, ward, "asset:rota-app", title="Rota down")
    incident_service.close(site.server.engine, closed, actor="olga", at=datetime.now(UTC), reason="test over")
    opened = declare(site, ward, "asset:epr-app-1", "asset:epr-app-2", title="EPR application servers lost")
    page = visitors.sign_in(site.people.vera)
    page.goto("/incidents")
    rows = page.locator("table.incidents tbody tr")
    statuses = rows.evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses == sorted(statuses, key=lambda s: s != "open"), statuses  # open first
    row = page.locator(f"tr[data-incident='{opened}']")
    expect(row).to_contain_text("EPR application servers lost")
    expect(row).to_contain_text("asset:epr-app-1, asset:epr-app-2")
    expect(row).to_contain_text("T1")
    expect(row.locator("[data-clock]")).to_have_attribute("data-clock", "at_risk")  # pharmacy: 3 steps, 1h RTO
    expect(row).to_contain_text("pharmacy")
    expect(row).to_contain_text("0 of 4")
    expect(page.locator(f"tr[data-incident='{closed}'] .incident-status")).to_have_text("closed")
    expect(page.locator("form.declare-form")).to_have_count(0)  # a viewer declares nothing
    shot(page, screenshots, "incidents")
    page.get_by_role("link", name=opened).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(opened)


# ------------------------------------------------------------------------------------------ roles and forgery


def as_person(site: Site, token: str) -> httpx.Client:
    """Plain HTTP with a person's sign-in cookie (no browser: to try what the pages never offer)."""
    return httpx.Client(
        base_url=site.server.url, cookies={"ringfence_token": token}, follow_redirects=False, timeout=30
    )


def test_a_viewer_cannot_write_and_another_site_cannot_post(site: Site, ward: str) -> None:
    incident_id = declare(site, ward, "asset:sql-epr-1")
    origin = {"Origin": site.server.url}
    with as_person(site, site.people.vera) as vera, as_person(site, site.people.olga) as olga:
        viewer = vera.post(f"/incidents/{incident_id}/restore", data={"items": "sql-epr-1"}, headers=origin)
        assert viewer.status_code == 403
        assert "vera" in viewer.text
        declared = vera.post("/incidents", data={"estate": ward, "fail": "asset:sql-epr-1"}, headers=origin)
        assert declared.status_code == 403
        forged = olga.post(
            f"/incidents/{incident_id}/close", data={"reason": "forged"}, headers={"Origin": "https://evil.example"}
        )
        assert forged.status_code == 403
        assert "nothing was changed" in forged.text
        missing = vera.get("/incidents/inc-999999")
        assert missing.status_code == 404
        assert "incident inc-999999 does not exist" in missing.text
    found = incident_service.get(site.server.engine, incident_id)
    assert found.restored == {}
    assert found.status.value == "open"


@pytest.mark.postgres
def test_the_incident_pages_on_postgresql(browser: Browser, postgres_url: str, screenshots: Path) -> None:
    with serve(postgres_url) as server:
        own = Site(server, issue_people(server.engine), "")
        estate = upload_estate(server.engine, WARD, actor="estate-team", at=datetime.now(UTC)).version.name
        with Visitors(browser, own) as visitors:
            page = visitors.sign_in(own.people.olga)
            page.goto("/incidents")
            form = page.locator("form.declare-form")
            form.get_by_label("Estate").select_option(estate)
            form.get_by_label("What failed").fill("asset:sql-epr-1")
            form.get_by_role("button", name="Declare the incident").click()
            expect(page).to_have_url(re.compile(r"/incidents/inc-000001$"))
            page.get_by_role("button", name="Mark epr restored").click()
            expect(page.locator("#action-error")).to_have_text(REFUSED_EPR)
            page.get_by_role("button", name="Mark sql-epr-1 restored").click()
            expect(page.get_by_role("status")).to_have_text("Restored: sql-epr-1; 4 items still down.")
            shot(page, screenshots, "incident-postgresql")
        assert list(incident_service.get(server.engine, "inc-000001").restored) == ["sql-epr-1"]
