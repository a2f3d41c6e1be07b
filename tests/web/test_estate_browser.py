"""The estate pages in Chromium: uploading a file with a mistake and reading where it is, walking the estate from
a service to an asset to its supplier and back, asking a what-if, paging the single points of failure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.impact import compute_blast_radius
from ringfence.files.disk import sample_estate_path
from ringfence.service.estates import list_estates

from .conftest import Site, Visitors, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MISTAKEN = b"""\
apiVersion: ringfence/v1
estate: ward-typo
services:
  - {id: ehr, name: Electronic health record, tier: 1, requires: [db-1]}
assets:
  - {id: db-1, kind: vm}
  - {id: db-2, kind: virtual-machine}
"""
"""One mistake: line 7, ``assets[1].kind``."""


def test_an_upload_with_a_mistake_shows_file_line_and_field_and_stores_nothing(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    page = visitors.sign_in(site.people.olga)
    page.goto(f"/?estate={site.estate}")
    page.get_by_role("link", name="Upload a new version").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Upload an estate")

    page.get_by_label(re.compile("Estate file")).set_input_files(
        {"name": "ward.yaml", "mimeType": "application/yaml", "buffer": MISTAKEN}
    )
    page.get_by_role("button", name="Check and store").click()

    problems = page.locator("#upload-problems")
    expect(problems).to_contain_text("ward.yaml does not hold: 1 problem, nothing was stored")
    row = problems.locator("tr.problem")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text("ward.yaml")
    expect(row.locator("td").nth(1)).to_have_text("7")
    expect(row.locator("td").nth(2)).to_have_text("assets[1].kind")
    expect(row.locator("td").nth(3)).to_contain_text("'virtual-machine' is not allowed here")
    shot(page, screenshots, "estate-upload-refused")
    assert "ward-typo" not in {e.name for e in list_estates(site.server.engine)}

    # Fixed, it is stored and becomes the estate shown.
    page.get_by_label(re.compile("Estate file")).set_input_files(
        {"name": "ward.yaml", "mimeType": "application/yaml", "buffer": MISTAKEN.replace(b"virtual-machine", b"vm")}
    )
    page.get_by_role("button", name="Check and store").click()
    expect(page.locator("#upload-stored")).to_contain_text("of estate ward-typo, now its current version")
    expect(page.get_by_role("heading", level=1)).to_have_text("Estate: ward-typo")


def test_clicking_from_a_service_to_an_asset_to_its_supplier_and_back(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    page = visitors.sign_in(site.people.vera)
    page.goto(f"/?estate={site.estate}")
    page.locator("tr[data-service='epr']").get_by_role("link", name="epr").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Service epr")
    expect(page.locator("table.requirements")).to_contain_text("any 1 of [epr-app-1, epr-app-2, epr-app-3]")
    shot(page, screenshots, "estate-service")

    page.locator("table.requirements").get_by_role("link", name="epr-app-1").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Asset epr-app-1")
    expect(page.locator("ul.needed-by li[data-node='epr']")).to_be_visible()

    page.locator("table.software td[data-supplier='cerner']").get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Supplier cerner")
    expect(page.locator("ul.assets li[data-asset='epr-app-1']")).to_be_visible()
    shot(page, screenshots, "estate-supplier")

    # Back: from the services its failure takes down to the service page, and to the estate.
    page.locator("#impact table.blast").get_by_role("link", name="epr", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Service epr")
    page.get_by_role("link", name="Estate city-general").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Estate: city-general")


def test_a_what_if_from_boxes_and_a_where_line(visitors: Visitors, site: Site, screenshots: Path) -> None:
    graph = compile_estate(parse_estate_text(sample_estate_path().read_text(encoding="utf-8")))
    radius = compute_blast_radius(graph, ["supplier:crowdstrike", "where:kind=host,site=city"])
    tier_one = sorted(s.id for s in radius.services_down if s.tier == 1)
    assert tier_one

    page = visitors.sign_in(site.people.vera)
    page.goto(f"/?estate={site.estate}")
    page.get_by_role("link", name="What if something fails?").click()
    page.get_by_label("Failures, one a line").fill("where:kind=host,site=city")
    page.get_by_role("checkbox", name="CrowdStrike", exact=True).check()
    page.get_by_role("button", name="Show the blast radius").click()

    t1 = page.locator("#result table.blast tr[data-tier='1']")
    expect(t1.locator("td.num")).to_have_text(str(len(tier_one)))
    assert sorted(t1.locator("[data-service]").evaluate_all("s => s.map(e => e.dataset.service)")) == tier_one
    expect(page.get_by_role("checkbox", name="CrowdStrike", exact=True)).to_be_checked()
    shot(page, screenshots, "estate-whatif")


def test_single_points_of_failure_filtered_and_paged(visitors: Visitors, site: Site, screenshots: Path) -> None:
    page = visitors.sign_in(site.people.vera)
    page.goto(f"/?estate={site.estate}")
    page.get_by_role("link", name="Single points of failure, filtered and paged").click()
    expect(page.locator(".spof-count")).to_contain_text("1–25 on this page")
    page.get_by_role("link", name="Next").click()
    expect(page.locator(".spof-count")).to_contain_text("26–")
    page.get_by_label("Takes down").select_option("1")
    page.get_by_label("What fails").select_option("supplier")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.spofs tbody tr")
    refs = rows.evaluate_all("rows => rows.map(r => r.dataset.spof)")
    assert refs
    assert all(r.startswith("supplier:") for r in refs)
    expect(page).to_have_url(re.compile(r"tier=1&kind=supplier"))
    shot(page, screenshots, "estate-spofs")
