"""The dashboard's assurance page, a supplier's assessments on its page, and the admins' notifications page, on a
real server and database, read over HTTP and in Chromium at a phone's width.

Expected findings come from the core's ``assess`` on the same files (``ringfence assess``'s evaluation), never
from the pages' own code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html import unescape
from pathlib import Path

import httpx
import pytest

from ringfence.core.assurance import Severity, assess, parse_assurance_text, parse_policy_text
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.words import count
from ringfence.files.disk import examples_dir, sample_estate_path
from ringfence.service.assurance import store_assurance
from ringfence.service.estates import CompiledEstates, upload_estate
from ringfence.service.tokens import issue_token
from ringfence.store.db import session_scope
from ringfence.store.notifications import claim_due, enqueue_delivery, record_attempt

from .conftest import Site, Visitors
from .test_phone import PHONE, measure, problems_of

AS_OF = date(2026, 12, 1)
SAMPLE_ASSURANCE = examples_dir() / "city-general" / "assurance.yaml"


@pytest.fixture(scope="module")
def assured(site: Site) -> str:
    """The sample's assurance file stored for the sample estate, as ``ringfence estate assurance`` does."""
    engine = site.server.engine
    loaded = CompiledEstates(size=1).get(engine, site.estate)
    store_assurance(engine, loaded, SAMPLE_ASSURANCE.read_text(encoding="utf-8"), actor="olga", at=datetime.now(UTC))
    return site.estate


@pytest.fixture(scope="module")
def admin(site: Site) -> str:
    return issue_token(site.server.engine, name="ann", role="admin").secret


def signed_in(site: Site, token: str) -> httpx.Client:
    return httpx.Client(base_url=site.server.url, cookies={"ringfence_token": token}, timeout=60)


@pytest.fixture
def vera(site: Site) -> Iterator[httpx.Client]:
    with signed_in(site, site.people.vera) as client:
        yield client


def expected_report(as_of: date = AS_OF):  # type: ignore[no-untyped-def]
    estate = parse_estate_text(sample_estate_path().read_text(encoding="utf-8"))
    assurance = parse_assurance_text(SAMPLE_ASSURANCE.read_text(encoding="utf-8"), estate)
    policy = parse_policy_text((examples_dir() / "policy-acute.yaml").read_text(encoding="utf-8"))
    return assess(estate, compile_estate(estate), assurance, policy, as_of)


def test_the_assurance_page_shows_the_findings_by_tier_and_supplier_and_the_calendar(
    vera: httpx.Client, assured: str
) -> None:
    answer = vera.get("/assurance", params={"estate": assured, "as_of": AS_OF.isoformat()})
    assert answer.status_code == 200, answer.text
    html = answer.text
    report = expected_report()
    assert 'data-breached="true"' in html
    said = f"{count(len(report.breaches), 'breach', 'breaches')}, {count(len(report.warnings), 'warning')}"
    assert said in html
    # Every finding of the evaluation, in its tier's table, breaches marked.
    for tier in (1, 2, 3, 4):
        mine = [f for f in report.findings if f.tier == tier]
        table = re.search(rf'<table class="findings" id="findings-{tier}">(.*?)</table>', html, re.S)
        if not mine:
            assert table is None
            continue
        assert table is not None
        rows = re.findall(r'<tr data-breach="(true|false)" data-subject="([^"]+)"', table.group(1))
        expected = [("true" if f.severity is Severity.BREACH else "false", f.subject) for f in mine]
        assert rows == expected
    # By supplier: K2 has no exit plan (a breach), Medisoft's DSPT expired.
    suppliers = dict(re.findall(r'<tr data-supplier="([^"]+)">.*?<td class="num">(.*?)</td>', html, re.S))
    for supplier in ("k2", "medisoft"):
        breaches = sum(1 for f in report.breaches if f.subject == f"supplier:{supplier}")
        assert breaches >= 1
        assert f">{breaches}<" in suppliers[supplier]
    # The calendar: the three things run out are marked expired with their day; Sectra's DSPT runs out soon.
    days = re.findall(r'<li data-day="([^"]+)" data-expired="(true|false)">(.*?)</li>', html, re.S)
    expired = {(day, re.search(r"<code>([^<]+)</code>", text).group(1)) for day, flag, text in days if flag == "true"}  # type: ignore[union-attr]
    assert expired == {
        ("2026-06-30", "supplier:medisoft"),
        ("2026-09-03", "service:lims"),
        ("2026-09-11", "supplier:advanced"),
    }
    assert any(day == "2026-12-18" and flag == "false" and "soon" in text for day, flag, text in days)
    assert [d for d, _, _ in days] == sorted(d for d, _, _ in days)
    months = re.findall(r'<ul class="calendar" data-month="([^"]+)">', html)
    assert months[:2] == ["June 2026", "September 2026"]
    assert months[-1] == "November 2027"  # a year ahead of 2026-12-01, no further


WARD = """\
apiVersion: ringfence/v1
estate: ward-unassured
suppliers:
  - {id: acme, name: Acme Ltd}
services:
  - {id: ehr, name: Electronic health record, tier: 1, requires: [db-9]}
assets:
  - {id: db-9, kind: vm, site: north, supplier: acme}
"""


def test_the_page_says_when_no_assurance_is_stored_and_refuses_a_bad_day(site: Site, vera: httpx.Client) -> None:
    upload_estate(site.server.engine, WARD, actor="olga", at=datetime.now(UTC))
    html = vera.get("/assurance", params={"estate": "ward-unassured"}).text
    assert 'id="no-assurance"' in html
    assert "the bundled policy for an acute trust" in html
    assert 'data-subject="supplier:acme"' in html  # no evidence: its assessments are missing
    assert vera.get("/assurance", params={"estate": "no-such-estate"}).status_code == 404
    bad = vera.get("/assurance", params={"as_of": "2026-02-30"})
    assert bad.status_code == 422
    assert "as_of: &#39;2026-02-30&#39; is not a day of the calendar" in bad.text


def test_a_suppliers_page_shows_its_assessments_their_status_and_what_its_loss_takes_down(
    vera: httpx.Client, assured: str
) -> None:
    today = datetime.now(UTC).date()
    page = vera.get(f"/estates/{assured}/suppliers/medisoft").text
    assert '<section id="impact"' in page  # what its loss takes down, as before
    statuses = dict(re.findall(r'<tr data-kind="([^"]+)" data-status="([^"]+)">', page))
    assert statuses["dspt"] == ("expired" if today > date(2026, 6, 30) else statuses["dspt"])
    k2 = vera.get(f"/estates/{assured}/suppliers/k2").text
    assert '<dd id="exit-plan">none recorded</dd>' in k2
    assert 'data-subject="supplier:k2"' in k2
    assert "exit plan: missing" in unescape(k2)
    cerner = vera.get(f"/estates/{assured}/suppliers/cerner").text
    links = re.findall(r'<a href="([^"]+)" rel="noopener noreferrer">', cerner)
    assert links == []  # the sample's evidence is file paths: shown as text, never made links
    assert "<code>evidence/cerner/dspt-2026.pdf</code>" in cerner


def test_notifications_are_an_admins_page_showing_failures(site: Site, admin: str, vera: httpx.Client) -> None:
    engine = site.server.engine
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for key, channel in (("test-web:1", "teams-ops"), ("test-web:2", "oncall-mail")):
            enqueue_delivery(
                session,
                event_key=key,
                event="ring_failed",
                channel=channel,
                subject="rollout:r-000001",
                title=f"ringfence: ring failed — rollout r-000001 ({channel})",
                body="…",
                urgent=True,
                at=now,
            )
    with session_scope(engine) as session:
        claimed = {d.channel: d.id for d in claim_due(session, now=now, lease=timedelta(minutes=5))}
    with session_scope(engine) as session:
        record_attempt(session, claimed["teams-ops"], error="Connection refused", at=now, retry_at=None)
        record_attempt(session, claimed["oncall-mail"], error=None, at=now, retry_at=None)
    assert vera.get("/notifications").status_code == 403
    assert 'href="/notifications"' not in vera.get("/").text
    with signed_in(site, admin) as ann:
        assert 'href="/notifications"' in ann.get("/").text
        html = ann.get("/notifications").text
        failing = ann.get("/notifications", params={"status": "gave_up"}).text
        assert ann.get("/notifications", params={"status": "lost"}).status_code == 422
    rows = dict(
        re.findall(
            r'<tr data-delivery="\d+" data-status="([^"]+)" data-event="ring_failed"><td>[^<]*</td>\s*'
            r'<th scope="row">ringfence: ring failed — rollout r-000001 \(([^)]+)\)',
            html,
        )
    )
    assert rows == {"gave_up": "teams-ops", "sent": "oncall-mail"}
    assert "Connection refused" in html
    assert 'id="no-notifier"' in html  # this test server runs none
    assert "oncall-mail)" not in failing
    assert "teams-ops)" in failing


@pytest.mark.browser
def test_the_assurance_and_notifications_pages_fit_a_phone(
    visitors: Visitors, site: Site, assured: str, admin: str, screenshots: Path
) -> None:
    page = visitors.sign_in(admin)
    page.set_viewport_size(PHONE)
    urls = [
        f"/assurance?estate={assured}&as_of={AS_OF.isoformat()}",
        f"/estates/{assured}/suppliers/k2",
        f"/estates/{assured}/suppliers/cerner",
        "/notifications",
    ]
    measured = [measure(page, url, screenshots, f"phone-assurance-{i}") for i, url in enumerate(urls)]
    assert not problems_of(measured), problems_of(measured)
    # The nav reaches both pages on a phone.
    page.goto("/")
    page.get_by_role("link", name="Assurance").click()
    page.wait_for_url(re.compile(r"/assurance$"))
    assert page.locator("#by-tier").count() == 1
