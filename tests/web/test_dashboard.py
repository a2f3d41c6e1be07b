"""The dashboard in real Chromium against a real server: each page navigated, screenshotted and read.

Rollouts are moved by the test through the service use cases and the simulated driver (the server's own
controller is off), so each page is checked against a state the test knows.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect

from ringfence.core.drills import run_drill
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.impact import advice_for, find_single_points_of_failure
from ringfence.core.update import parse_scenario_text
from ringfence.drivers.simulated import SimulatedDriver
from ringfence.files.disk import examples_dir, read_with, sample_estate_path
from ringfence.files.report import compare_sentence
from ringfence.service import incidents as incident_service
from ringfence.service import rollouts as rollout_service
from ringfence.store.audit import list_audit
from ringfence.store.db import session_scope

from .conftest import Site, Visitors, accept_dialogs, issue_people, serve, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SMALL_ESTATE = """
apiVersion: ringfence/v1
estate: small
services:
  - {id: web, name: Web front door, tier: 1, requires: [{any: 1, of: [app-1, app-2]}]}
assets:
  - {id: app-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-3, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-1, kind: endpoint, attrs: {os: win}, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-2, kind: endpoint, attrs: {os: win}, software: [{product: acme/agent, version: "1"}]}
"""
SNAPSHOT_UPDATE = """
apiVersion: ringfence/v1
update: {id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 0s, rollback: snapshot}
"""
NO_ROLLBACK_UPDATE = """
apiVersion: ringfence/v1
update: {id: agent-3, product: acme/agent, version: "3", rings: [1, "100%"], bake: 0s, rollback: none}
"""
ALL_ASSETS = "app-1,app-2,app-3,ws-1,ws-2"


# ------------------------------------------------------------------------------------------ helpers


def now() -> datetime:
    return datetime.now(UTC)


def create(site: Site, update: str, *, actor: str, require_approval: bool = False) -> str:
    created = rollout_service.create_rollout(
        site.server.engine,
        estate_text=SMALL_ESTATE,
        estate_source="small.yaml",
        update_text=update,
        update_source="update.yaml",
        actor=actor,
        at=now(),
        require_approval=require_approval,
    )
    assert created.rollout is not None
    return created.rollout.id


def run_until_settled(site: Site, rollout_id: str, *, fail: str, silent: str = "") -> None:
    """Drive the rollout with the simulated driver (instant operations) until it waits for a person."""
    driver = SimulatedDriver(apply="0s", restore_point="0s", rollback="0s", after="0s", fail=fail, silent=silent)
    controller = rollout_service.controller(site.server.engine, driver, now)
    controller.run_until_settled(rollout_id, wait_until=lambda _: time.sleep(0.01))


def phase_of(site: Site, rollout_id: str) -> str:
    return rollout_service.status(site.server.engine, rollout_id).rollout.state.phase.value


# ------------------------------------------------------------------------------------------ signing in


def test_signing_in_with_a_token_and_out_again(browser: Browser, site: Site, screenshots: Path) -> None:
    context = browser.new_context(base_url=site.server.url, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto("/rollouts")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Frollouts$"))
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("API token").fill("rf_not-a-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("That token is unknown or has been revoked.")
        shot(page, screenshots, "login-refused")

        page.get_by_label("API token").fill(site.people.agent)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("Agent tokens")

        page.get_by_label("API token").fill(site.people.vera)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/rollouts$"))  # back where the sign-in began
        expect(page.locator(".caller-name")).to_have_text("vera")
        cookie = next(c for c in context.cookies() if c["name"] == "ringfence_token")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["value"] == site.people.vera
        assert cookie["expires"] == -1  # a session cookie: closing the browser signs out

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/login$"))
        assert not [c for c in context.cookies() if c["name"] == "ringfence_token"]
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    finally:
        context.close()


# ------------------------------------------------------------------------------------------ the estate


def test_estate_overview_shows_tiers_spofs_and_supplier_concentration(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    page = visitors.sign_in(site.people.vera)
    page.goto(f"/?estate={site.estate}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Estate: city-general")

    # Services by tier: the tier is a chip with its number and the tier's name in words.
    tier_one = page.locator("#tier-1")
    expect(tier_one).to_contain_text("T1")
    expect(tier_one).to_contain_text("life-critical")
    expect(tier_one).to_contain_text("5 services")
    rows = page.locator("table.services[data-tier='1'] tbody tr")
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.service)")) == [
        "ed",
        "epr",
        "eprescribing",
        "lims",
        "maternity",
    ]
    epr = page.locator("tr[data-service='epr']")
    expect(epr).to_contain_text("Electronic patient record (Millennium)")
    expect(page.locator("table.services[data-tier='4'] tr[data-service='email']")).to_be_visible()
    expect(page.locator("#tier-4")).to_contain_text("business support")

    # Single points of failure, worst first, each with its advice, as ringfence.core.impact computes them.
    graph = compile_estate(parse_estate_text(sample_estate_path().read_text(encoding="utf-8")))
    expected = find_single_points_of_failure(graph)
    spof_rows = page.locator("table.spofs tbody tr")
    expect(spof_rows).to_have_count(len(expected))
    assert spof_rows.evaluate_all("rows => rows.map(r => r.dataset.spof)") == [s.ref for s in expected]
    pstore = next(s for s in expected if s.ref == "asset:pstore-city")
    row = page.locator("tr[data-spof='asset:pstore-city']")
    expect(row).to_contain_text("T1 life-critical")
    expect(row.locator(".advice")).to_have_text(advice_for(graph, pstore))
    for service in pstore.services:
        expect(row).to_contain_text(service.id)

    # Supplier concentration: an SVG chart whose bars carry the counts, and the table behind it.
    chart = page.locator("svg[data-chart='concentration']")
    expect(chart).to_be_visible()
    cisco = chart.locator("rect.bar[data-supplier='cisco']")
    assert sum(int(c) for c in cisco.evaluate_all("bars => bars.map(b => b.dataset.count)")) == 18
    expect(chart.locator("text.bar-value", has_text="18 services")).to_have_text("18 services (T1×5 T2×5 T3×3 T4×5)")
    page.get_by_text("The numbers behind the chart").click()
    expect(page.locator("table.suppliers tr[data-supplier='crowdstrike'] td.num")).to_have_text("16")
    shot(page, screenshots, "estate-overview")


# ------------------------------------------------------------------------------------------ rollouts


def test_a_halted_rollout_shows_its_rings_strata_and_the_gate_verdict(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    rollout_id = create(site, NO_ROLLBACK_UPDATE, actor="olga")
    rollout_service.start(site.server.engine, rollout_id, actor="olga", at=now())
    run_until_settled(site, rollout_id, fail=ALL_ASSETS)
    status = rollout_service.status(site.server.engine, rollout_id).rollout.state
    assert status.phase.value == "halted"
    assert status.halt_reason is not None

    page = visitors.sign_in(site.people.olga)
    page.goto("/rollouts")
    listed = page.locator(f"tr[data-rollout='{rollout_id}']")
    expect(listed.locator(".phase")).to_have_text("halted")
    listed.get_by_role("link", name=rollout_id).click()

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Rollout {rollout_id}")
    expect(page.locator("#live .phase-line .phase")).to_have_text("halted")
    expect(page.locator(".halt-reason")).to_have_text(status.halt_reason)
    assert status.halt_reason.startswith("ring 0 failed")
    # The verdict sentence is in the decisions table too, as the controller's reason for halting.
    halting = page.locator("table.verdicts tbody tr", has_text="→ halted")
    expect(halting.locator(".verdict-sentence")).to_have_text(status.halt_reason)
    expect(halting).to_contain_text("controller")

    # Rings: ring 0 was installed (and its canaries crashed after), the later rings were never reached.
    found = rollout_service.status(site.server.engine, rollout_id)
    ring0, *later = found.rings
    assert later
    assert ring0.states == {"applied": ring0.assets}
    expect(page.locator("table.rings tbody tr")).to_have_count(len(found.rings))
    expect(page.locator("tr[data-ring='0']")).to_contain_text(f"{ring0.assets} of {ring0.assets} updated")
    expect(page.locator("tr[data-ring='0']")).to_contain_text(f"applied {ring0.assets}")
    for ring in later:
        expect(page.locator(f"tr[data-ring='{ring.index}']")).to_contain_text(f"0 of {ring.assets} updated")
        expect(page.locator(f"tr[data-ring='{ring.index}']")).to_contain_text(f"skipped {ring.assets}")

    # Per-stratum health: each crashed canary counted in its stratum; the gate's sentence for each stratum
    # is the one that halted the rollout (not judged again on a halted rollout, whose rest is skipped).
    strata = page.locator("table.strata-health tbody tr")
    expect(strata).to_have_count(len(ring0.strata))
    failed_cells = page.locator("table.strata-health [data-field='failed']").all_inner_texts()
    assert sum(int(t) for t in failed_cells) == ring0.assets
    expect(page.locator("table.strata-health .outcome")).to_have_count(0)
    for stratum in ring0.strata:
        expect(page.locator(".halt-reason")).to_contain_text(f"stratum {stratum}: 1 of 1 updated crashed")

    # The canaries that crashed are named, still installed: nothing can roll them back.
    crashed = sorted(a.asset_id for a in found.assets if a.ring == 0)
    rows = page.locator("table.failed-assets tbody tr")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.asset)") == crashed
    for asset in crashed:
        row = page.locator(f"table.failed-assets tr[data-asset='{asset}']")
        expect(row.locator("[data-field='what']")).to_contain_text("crashed")
        expect(row.locator("[data-field='now']")).to_have_text("applied")
    incident = incident_service.of_rollout(site.server.engine, rollout_id)
    assert incident is not None
    expect(page.locator(".incident-link a")).to_have_attribute("href", f"/incidents/{incident.id}")
    expect(page.locator(".incident-link .incident-status")).to_have_text("open")

    # A halted rollout whose update says rollback: none offers no button (abort is for running ones).
    expect(page.locator("#live .actions")).to_have_count(0)
    shot(page, screenshots, "rollout-halted")


def test_missing_telemetry_pauses_and_the_page_shows_each_stratums_gate(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    rollout_id = create(site, SNAPSHOT_UPDATE, actor="olga")
    rollout_service.start(site.server.engine, rollout_id, actor="olga", at=now())
    run_until_settled(site, rollout_id, fail="", silent=ALL_ASSETS)
    state = rollout_service.status(site.server.engine, rollout_id).rollout.state
    assert (state.phase.value, state.paused_from and state.paused_from.value) == ("paused", "judging")
    ring0 = rollout_service.status(site.server.engine, rollout_id).rings[0]

    page = visitors.sign_in(site.people.olga)
    page.goto(f"/rollouts/{rollout_id}")
    expect(page.locator("#live .phase-line")).to_contain_text("paused (paused while judging)")
    # The live gate: no canary reported, so every stratum is inconclusive (missing telemetry is never a pass).
    expect(page.locator(".gate-sentence")).to_contain_text("Gate on ring 0 now: ring 0 inconclusive")
    for stratum in ring0.strata:
        row = page.locator(f"tr[data-stratum='{stratum}']")
        expect(row.locator(".outcome")).to_have_text("inconclusive")
        expect(row.locator("[data-field='gate']")).to_contain_text(f"stratum {stratum}: ")
        expect(row.locator("[data-field='no-report']")).to_have_text("1")  # the canary, installed, has not reported
    pausing = page.locator("table.verdicts tbody tr", has_text="→ paused").first
    expect(pausing.locator(".verdict-sentence")).to_contain_text("inconclusive")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.get_by_role("button", name="Abort")).to_be_visible()
    shot(page, screenshots, "rollout-paused-inconclusive")


def test_approve_is_hidden_from_the_creator_and_offered_to_another_approver(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    rollout_id = create(site, SNAPSHOT_UPDATE, actor="alice", require_approval=True)

    creator = visitors.sign_in(site.people.alice)
    creator.goto(f"/rollouts/{rollout_id}")
    expect(creator.locator("#live .phase")).to_have_text("awaiting approval")
    expect(creator.get_by_role("button", name="Approve")).to_have_count(0)
    expect(creator.locator(".approval-note")).to_contain_text("someone else with the approver role")

    viewer = visitors.sign_in(site.people.vera)
    viewer.goto(f"/rollouts/{rollout_id}")
    expect(viewer.locator("#live .phase")).to_have_text("awaiting approval")
    expect(viewer.locator("#live form.action-form")).to_have_count(0)

    approver = visitors.sign_in(site.people.bob)
    approver.goto(f"/rollouts/{rollout_id}")
    questions: list[str] = []
    accept_dialogs(approver, questions)
    shot(approver, screenshots, "rollout-awaiting-approval")
    approver.get_by_role("button", name="Approve").click()
    expect(approver.locator("#live .phase-line .phase")).to_have_text("pending")
    expect(approver.locator("#live .done")).to_have_text(f"Rollout {rollout_id} approved by bob.")
    expect(approver.locator("#live .phase-line")).to_contain_text("approved by bob")
    assert questions == [f"Approve rollout {rollout_id} as bob?"]
    found = rollout_service.status(site.server.engine, rollout_id).rollout
    assert (found.state.phase.value, found.approved_by) == ("pending", "bob")
    # Still the same page: the fragment was swapped in, and it offers the next step.
    expect(approver).to_have_url(re.compile(rf"/rollouts/{rollout_id}$"))
    expect(approver.get_by_role("button", name="Start")).to_be_visible()


def test_clicking_abort_halts_a_running_rollout(visitors: Visitors, site: Site, screenshots: Path) -> None:
    rollout_id = create(site, SNAPSHOT_UPDATE, actor="olga")
    rollout_service.start(site.server.engine, rollout_id, actor="olga", at=now())
    assert phase_of(site, rollout_id) == "taking_restore_points"

    viewer = visitors.sign_in(site.people.vera)
    viewer.goto(f"/rollouts/{rollout_id}")
    expect(viewer.locator("#live .phase-line .phase")).to_have_text("taking restore points")
    expect(viewer.get_by_role("button", name="Abort")).to_have_count(0)

    page = visitors.sign_in(site.people.olga)
    page.goto(f"/rollouts/{rollout_id}")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    questions: list[str] = []
    accept_dialogs(page, questions)
    page.get_by_label("Reason to abort (optional)").fill("vendor advisory")
    page.get_by_role("button", name="Abort").click()
    expect(page.locator("#live .phase-line .phase")).to_have_text("halted")
    expect(page.locator(".halt-reason")).to_have_text("aborted by olga: vendor advisory")
    assert questions == [f"Abort rollout {rollout_id}? It halts at once."]
    assert phase_of(site, rollout_id) == "halted"
    # Halted and rollback by snapshot: the operator is now offered the rollback.
    expect(page.get_by_role("button", name="Roll back")).to_be_visible()
    shot(page, screenshots, "rollout-aborted")

    # The viewer's open page catches up by itself (the fragment refreshes every few seconds).
    expect(viewer.locator("#live .phase-line .phase")).to_have_text("halted", timeout=12_000)


def test_a_refused_action_says_why_and_changes_nothing(visitors: Visitors, site: Site) -> None:
    rollout_id = create(site, SNAPSHOT_UPDATE, actor="olga")
    rollout_service.start(site.server.engine, rollout_id, actor="olga", at=now())
    page = visitors.sign_in(site.people.olga)
    page.goto(f"/rollouts/{rollout_id}")
    accept_dialogs(page, [])
    # Someone else pauses it while the page is open: "Resume" is not offered yet, but "Pause" still is.
    rollout_service.pause(site.server.engine, rollout_id, actor="alice", at=now(), why="change freeze")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#live .alert")).to_contain_text(f"rollout {rollout_id} is paused")
    expect(page.locator("#live .phase-line .phase")).to_have_text("paused")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()


def test_the_dashboard_works_without_javascript(visitors: Visitors, site: Site, screenshots: Path) -> None:
    rollout_id = create(site, SNAPSHOT_UPDATE, actor="olga")
    rollout_service.start(site.server.engine, rollout_id, actor="olga", at=now())
    page = visitors.sign_in(site.people.olga, javascript=False)
    page.goto(f"/rollouts/{rollout_id}")
    page.get_by_role("button", name="Pause").click()  # a plain form post, then a redirect back
    expect(page).to_have_url(re.compile(rf"/rollouts/{rollout_id}$"))
    expect(page.locator("#live .phase-line .phase")).to_have_text("paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#live .phase-line .phase")).to_have_text("taking restore points")
    assert phase_of(site, rollout_id) == "taking_restore_points"
    shot(page, screenshots, "rollout-no-javascript")


def colours(page: Page, classes: str) -> tuple[str, str, str]:
    """The computed background, border and text colour of a badge with ``classes``, drawn with the page's CSS."""
    found = page.evaluate(
        """classes => {
            const badge = document.createElement("span");
            badge.className = classes;
            document.body.appendChild(badge);
            const style = getComputedStyle(badge);
            const found = [style.backgroundColor, style.borderTopColor, style.color];
            badge.remove();
            return found;
        }""",
        classes,
    )
    return (str(found[0]), str(found[1]), str(found[2]))


def test_a_rolled_back_rollout_names_its_failed_assets_and_links_its_resolved_incident(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    rollout_id = create(site, SNAPSHOT_UPDATE, actor="olga")
    rollout_service.start(site.server.engine, rollout_id, actor="olga", at=now())
    run_until_settled(site, rollout_id, fail=ALL_ASSETS)
    found = rollout_service.status(site.server.engine, rollout_id)
    state = found.rollout.state
    assert state.phase.value == "rolled_back"
    assert state.halt_reason
    # The canaries crashed (every asset is faulty) and were restored; nothing later was reached.
    canaries = sorted(a.asset_id for a in found.assets if a.ring == 0)
    assert canaries
    assert {a.state.value for a in found.assets if a.ring == 0} == {"rolled_back"}
    incident = incident_service.of_rollout(site.server.engine, rollout_id)
    assert incident is not None
    assert sorted(ref.removeprefix("asset:") for ref in incident.failed) == canaries
    assert incident.status.value == "closed"

    page = visitors.sign_in(site.people.vera)
    page.goto(f"/rollouts/{rollout_id}")
    badge = page.locator("#live .phase-line .phase")
    expect(badge).to_have_text("rolled back")
    expect(badge).to_have_attribute("data-phase", "rolled_back")
    # Rolled back is neutral: not the success colours, which only a completed rollout wears.
    rolled_back = colours(page, "phase phase-rolled_back")
    completed = colours(page, "phase phase-completed")
    plain = colours(page, "phase")
    assert badge.evaluate("b => getComputedStyle(b).backgroundColor") == rolled_back[0]
    assert rolled_back[0] != completed[0]
    assert rolled_back[2] != completed[2]
    assert rolled_back[0] == plain[0]  # the plain badge's ground
    expect(page.locator(".halt-reason")).to_have_text(state.halt_reason)

    # Each failed asset named, with what failed and where it stands now.
    rows = page.locator("table.failed-assets tbody tr")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.asset)") == canaries
    for asset in canaries:
        row = page.locator(f"table.failed-assets tr[data-asset='{asset}']")
        expect(row.locator("[data-field='what']")).to_contain_text("crashed")
        expect(row.locator("[data-field='what']")).to_contain_text("after install")
        expect(row.locator("[data-field='now']")).to_contain_text("rolled back")
        expect(row.locator("[data-field='now']")).to_contain_text("restored from verified restore point")
    expect(page.locator("table.rings tr[data-ring='1'] th")).to_have_text("ring 1")
    expect(page.locator("table.rings tr[data-ring='0'] th")).to_have_text(re.compile(r"^(canary|ring 0)$"))
    shot(page, screenshots, "rollout-rolled-back")

    # The incident declared at the halt, linked, resolved by the rollback.
    link = page.locator(".incident-link")
    expect(link.locator(".incident-status")).to_have_text("closed")
    link.get_by_role("link", name=incident.id).click()
    expect(page).to_have_url(re.compile(rf"/incidents/{incident.id}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Incident {incident.id}")
    expect(page.locator("#live [data-status]")).to_have_text("closed")
    closing = page.locator("table.timeline tr[data-kind='closed']")
    expect(closing).to_contain_text(f"rolled back by rollout {rollout_id}: every updated asset restored")
    expect(page.locator(f".meta a[href='/rollouts/{rollout_id}']")).to_be_visible()

    # The list of rollouts wears the same neutral badge.
    page.goto("/rollouts")
    listed = page.locator(f"tr[data-rollout='{rollout_id}'] .phase")
    expect(listed).to_have_text("rolled back")
    assert listed.evaluate("b => getComputedStyle(b).backgroundColor") == rolled_back[0]


def test_a_failed_rollback_names_who_needs_a_person_and_its_incident_stays_open(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    rollout_id = create(site, SNAPSHOT_UPDATE, actor="olga")
    rollout_service.start(site.server.engine, rollout_id, actor="olga", at=now())
    driver = SimulatedDriver(
        apply="0s", restore_point="0s", rollback="0s", after="0s", fail=ALL_ASSETS, rollback_failures=ALL_ASSETS
    )
    rollout_service.controller(site.server.engine, driver, now).run_until_settled(
        rollout_id, wait_until=lambda _: time.sleep(0.01)
    )
    found = rollout_service.status(site.server.engine, rollout_id)
    assert found.rollout.state.phase.value == "failed"
    stuck = sorted(a.asset_id for a in found.assets if a.state.value == "rollback_failed")
    assert stuck
    incident = incident_service.of_rollout(site.server.engine, rollout_id)
    assert incident is not None

    page = visitors.sign_in(site.people.olga)
    page.goto(f"/rollouts/{rollout_id}")
    expect(page.locator("#live .phase-line .phase")).to_have_text("failed")
    for asset in stuck:
        row = page.locator(f"table.failed-assets tr[data-asset='{asset}']")
        expect(row.locator("[data-field='what']")).to_contain_text("crashed")
        expect(row.locator("[data-field='now']")).to_contain_text("rollback failed")
        expect(row.locator("[data-field='now']")).to_contain_text("the rollback did not complete")
    expect(page.locator(".incident-link .incident-status")).to_have_text("open")
    shot(page, screenshots, "rollout-rollback-failed")
    page.locator(".incident-link").get_by_role("link", name=incident.id).click()
    expect(page.locator("#live [data-status]")).to_have_text("open")
    note = page.locator("table.timeline tr[data-kind='note']")
    expect(note).to_contain_text(f"rollout {rollout_id} ended failed")
    for asset in stuck:
        expect(note).to_contain_text(f"{asset} (rollback failed: the rollback did not complete)")


# ------------------------------------------------------------------------------------------ drills


def test_running_a_bundled_drill_shows_the_table_and_the_charts(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    page = visitors.sign_in(site.people.vera)
    page.get_by_role("link", name="Drills").click()
    page.get_by_label("Scenario").select_option("vsphere-7u3")
    page.get_by_label("on estate").select_option(site.estate)
    page.get_by_role("button", name="Run the drill").click()

    graph = compile_estate(parse_estate_text(sample_estate_path().read_text(encoding="utf-8")))
    scenario = read_with(examples_dir() / "city-general" / "scenarios" / "vsphere-7u3.yaml", parse_scenario_text)
    report = run_drill(graph, scenario)
    expect(page.locator(".drill-summary")).to_have_text(f"{compare_sentence(report)}.")
    rows = page.locator("table.strategies tbody tr")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.strategy)") == [r.strategy for r in report.results]
    for result in report.results:
        row = page.locator(f"table.strategies tr[data-strategy='{result.strategy}']")
        expect(row.locator("[data-field='exposed']")).to_have_text(f"{len(result.exposed):,}")
        expect(row.locator("[data-field='failed']")).to_have_text(f"{len(result.failed):,}")
    ours = next(r for r in report.results if r.strategy == "ringfence")
    if ours.halt_reason:
        expect(page.locator(".ringfence-reason")).to_have_text(ours.halt_reason)
    for chart in ("exposed", "failed", "services"):
        expect(page.locator(f"svg[data-chart='{chart}']")).to_be_visible()
    bars = page.locator("svg[data-chart='services'] rect.bar")
    expect(bars).to_have_count(4 * len(report.results))
    shot(page, screenshots, "drill-vsphere")


def test_an_unknown_scenario_is_refused_in_words(visitors: Visitors, site: Site) -> None:
    page = visitors.sign_in(site.people.vera)
    response = page.goto("/drills?scenario=../../etc/passwd")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("there is no bundled drill scenario '../../etc/passwd'")


# ------------------------------------------------------------------------------------------ audit log


def test_the_audit_log_lists_entries_and_verifies_the_chain(visitors: Visitors, site: Site, screenshots: Path) -> None:
    rollout_id = create(site, SNAPSHOT_UPDATE, actor="olga")
    rollout_service.start(site.server.engine, rollout_id, actor="olga", at=now())
    with session_scope(site.server.engine, readonly=True) as session:
        entries = list_audit(session)
    page = visitors.sign_in(site.people.vera)
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator(".chain-ok")).to_contain_text(f"Chain verified: {len(entries)} entries")
    expect(page.locator(".chain-ok")).to_contain_text(entries[-1].hash)
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(min(len(entries), 100))
    newest = rows.first
    expect(newest).to_have_attribute("data-seq", str(entries[-1].seq))
    expect(newest).to_contain_text("rollout.transition")
    expect(newest).to_contain_text("olga")
    shot(page, screenshots, "audit-log")

    page.goto(f"/audit?subject=rollout:{rollout_id}")
    expect(page.locator("table.audit tbody tr")).to_have_count(2)  # created, started
    expect(page.locator("table.audit tbody tr").last).to_contain_text("rollout.create")


def test_a_tampered_audit_log_is_shown_as_broken(browser: Browser, tmp_path: Path, screenshots: Path) -> None:
    with serve(f"sqlite:///{tmp_path / 'tampered.db'}") as server:
        people = issue_people(server.engine)
        own = Site(server, people, "")
        rollout_id = create(own, SNAPSHOT_UPDATE, actor="olga")
        rollout_service.start(server.engine, rollout_id, actor="olga", at=now())
        with server.engine.begin() as connection:  # someone edits the log behind ringfence's back
            connection.execute(sa.text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
        with Visitors(browser, own) as visitors:
            page = visitors.sign_in(people.vera)
            page.goto("/audit")
            broken = page.locator(".chain-broken")
            expect(broken).to_contain_text("Chain broken at entry 2: entry 2 was changed after it was written")
            expect(page.locator(".chain-ok")).to_have_count(0)
            expect(page.locator("tr[data-seq='2']")).to_have_class("untrusted")
            expect(page.locator("tr[data-seq='1']")).not_to_have_class("untrusted")
            expect(page.locator("tr[data-seq='2']")).to_contain_text("mallory")
            shot(page, screenshots, "audit-log-tampered")


@pytest.mark.postgres
def test_the_rollout_pages_on_postgresql(browser: Browser, postgres_url: str, screenshots: Path) -> None:
    with serve(postgres_url) as server:
        people = issue_people(server.engine)
        own = Site(server, people, "")
        rollout_id = create(own, NO_ROLLBACK_UPDATE, actor="olga")
        rollout_service.start(server.engine, rollout_id, actor="olga", at=now())
        run_until_settled(own, rollout_id, fail=ALL_ASSETS)
        halt_reason = rollout_service.status(server.engine, rollout_id).rollout.state.halt_reason
        assert halt_reason
        with Visitors(browser, own) as visitors:
            page = visitors.sign_in(people.olga)
            expect(page.get_by_role("heading", level=1)).to_have_text("Estate: small")
            expect(page.locator("tr[data-service='web']")).to_contain_text("Web front door")
            page.get_by_role("link", name="Rollouts").click()
            page.get_by_role("link", name=rollout_id).click()
            expect(page.locator("#live .phase-line .phase")).to_have_text("halted")
            expect(page.locator(".halt-reason")).to_have_text(halt_reason)
            page.get_by_role("link", name="Audit log").click()
            expect(page.locator(".chain-ok")).to_contain_text("Chain verified")
            shot(page, screenshots, "audit-log-postgresql")
        foreign = [url for url in visitors.requested if not url.startswith(server.url)]
        assert not foreign
