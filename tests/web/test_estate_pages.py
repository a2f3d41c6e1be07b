"""The dashboard's estate pages over HTTP, on a real server and database: uploading (and only checking) an estate
file with the CLI's located problems, walking service → requirements → assets → suppliers and back, the what-if
form, and the single points of failure filtered and paged.

Expected answers come from the core (``ringfence.core.impact``) and from the ``ringfence`` command itself, never
from the pages' own code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import httpx
import pytest

from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.impact import compute_blast_radius, find_single_points_of_failure
from ringfence.files.disk import sample_estate_path
from ringfence.service.estates import estate_versions, list_estates, upload_estate

from .conftest import Site

BAD_ESTATE = """\
apiVersion: ringfence/v1
estate: ward-bad
services:
  - id: ehr
    tier: 9
    requires: [db-1]
assets:
  - {id: db-1, kind: spaceship}
"""
"""Two problems, on lines 5 and 8, in two fields."""

WARD = """\
apiVersion: ringfence/v1
estate: ward-upload
suppliers:
  - {id: acme, name: Acme Ltd, contact: 0800 123}
services:
  - {id: ehr, name: Electronic health record, tier: 1, requires: [db-1]}
  - {id: rota, name: Staff rota, tier: 3, requires: [{any: 1, of: [app-1, app-2]}]}
assets:
  - {id: db-1, kind: vm, site: north, software: [{product: acme/db, version: "1"}]}
  - {id: app-1, kind: vm, site: north}
  - {id: app-2, kind: vm, site: south}
"""

RINGFENCE = shutil.which("ringfence", path=os.path.dirname(sys.executable))


@pytest.fixture(scope="module")
def graph() -> EstateGraph:
    return compile_estate(parse_estate_text(sample_estate_path().read_text(encoding="utf-8")))


@pytest.fixture
def as_person(site: Site) -> Iterator[dict[str, httpx.Client]]:
    """An HTTP client per person, signed in with the dashboard's cookie, posting from the dashboard's own pages."""
    people = {"olga": site.people.olga, "vera": site.people.vera}
    clients = {
        name: httpx.Client(
            base_url=site.server.url,
            cookies={"ringfence_token": token},
            headers={"Origin": site.server.url},
            timeout=60,
        )
        for name, token in people.items()
    }
    yield clients
    for client in clients.values():
        client.close()


def post_file(client: httpx.Client, name: str, content: bytes, action: str) -> httpx.Response:
    return client.post("/estates/upload", files={"estate_file": (name, content)}, data={"action": action})


def hrefs(html: str) -> set[str]:
    return {unescape(h) for h in re.findall(r'href="([^"]+)"', html)}


def cli_problems(tmp_path: Path, name: str, text: str) -> list[str]:
    """What ``ringfence check`` prints for a file of that name: one ``file:line: field: sentence`` a line."""
    assert RINGFENCE is not None
    (tmp_path / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "RINGFENCE_HOME": str(tmp_path / "home")}
    run = subprocess.run(
        [RINGFENCE, "check", name], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert run.returncode == 2, run.stderr
    return [line.removeprefix("error: ") for line in run.stderr.splitlines() if line.startswith("error: ")]


# ------------------------------------------------------------------------------------------ uploading


def test_a_file_that_does_not_hold_shows_the_clis_located_problems_and_stores_nothing(
    site: Site, as_person: dict[str, httpx.Client], tmp_path: Path
) -> None:
    expected = cli_problems(tmp_path, "ward.yaml", BAD_ESTATE)
    assert len(expected) == 2
    before = list_estates(site.server.engine)

    answer = post_file(as_person["olga"], "ward.yaml", BAD_ESTATE.encode(), "store")

    assert answer.status_code == 422
    details = [unescape(d) for d in re.findall(r'data-detail="([^"]*)"', answer.text)]
    assert details == expected  # the same sentences, file, line and field as the CLI
    assert [unescape(x) for x in re.findall(r'data-line="(\d*)"', answer.text)] == ["5", "8"]
    assert re.findall(r'data-field="([^"]*)"', answer.text) == ["services[0].tier", "assets[0].kind"]
    assert "ward.yaml does not hold: 2 problems, nothing was stored" in answer.text
    assert list_estates(site.server.engine) == before


def test_a_browser_path_is_cut_to_the_file_name_and_bytes_that_are_not_utf8_are_refused(
    as_person: dict[str, httpx.Client],
) -> None:
    answer = post_file(as_person["olga"], "C:\\Users\\olga\\estate.yaml", b"estate: \xff\xfe", "check")
    assert answer.status_code == 422
    assert re.findall(r'data-detail="([^"]*)"', answer.text) == ["estate.yaml: is not UTF-8 text (byte 8)"]


def test_an_operator_stores_a_new_version_and_the_same_file_again_stores_nothing(
    site: Site, as_person: dict[str, httpx.Client]
) -> None:
    stored = post_file(as_person["olga"], "ward.yaml", WARD.encode(), "store")
    assert stored.status_code == 303
    versions = estate_versions(site.server.engine, "ward-upload")
    assert [v.created_by for v in versions] == ["olga"]
    assert stored.headers["location"] == f"/?estate=ward-upload&stored={versions[0].id}"
    page = as_person["olga"].get(stored.headers["location"])
    assert f"Stored as version {versions[0].id} of estate ward-upload, now its current version." in page.text

    again = post_file(as_person["olga"], "ward.yaml", WARD.encode(), "store")
    assert again.status_code == 303
    assert again.headers["location"].endswith("&again=true")
    assert len(estate_versions(site.server.engine, "ward-upload")) == 1
    assert "was stored before" in as_person["olga"].get(again.headers["location"]).text


def test_a_viewer_may_check_a_file_but_not_store_it(site: Site, as_person: dict[str, httpx.Client]) -> None:
    text = WARD.replace("ward-upload", "ward-viewer")
    checked = post_file(as_person["vera"], "ward.yaml", text.encode(), "check")
    assert checked.status_code == 200
    assert "holds: estate <strong>ward-viewer</strong>, 2 services" in checked.text
    assert 'value="store"' not in checked.text  # the viewer is not offered the store button

    refused = post_file(as_person["vera"], "ward.yaml", text.encode(), "store")
    assert refused.status_code == 403
    assert "storing an estate needs an operator; nothing was stored" in refused.text
    assert "ward-viewer" not in {e.name for e in list_estates(site.server.engine)}


def test_an_upload_from_another_site_or_not_as_a_file_is_refused(site: Site) -> None:
    with httpx.Client(base_url=site.server.url, cookies={"ringfence_token": site.people.olga}, timeout=60) as client:
        forged = post_file(client, "ward.yaml", WARD.replace("ward-upload", "ward-forged").encode(), "store")
        assert forged.status_code == 403  # no Origin: the page says the browser did not say where it came from
        as_text = client.post("/estates/upload", data={"action": "store"}, headers={"Origin": site.server.url})
        assert as_text.status_code == 415
    assert "ward-forged" not in {e.name for e in list_estates(site.server.engine)}


def test_the_upload_form_is_reached_from_the_estate_page(as_person: dict[str, httpx.Client], site: Site) -> None:
    overview = as_person["olga"].get(f"/?estate={site.estate}")
    assert "/estates/upload" in hrefs(overview.text)
    form = as_person["olga"].get("/estates/upload")
    assert form.status_code == 200
    assert 'enctype="multipart/form-data"' in form.text
    assert 'type="file"' in form.text


# ------------------------------------------------------------------------------------------ walking


def test_service_requirements_assets_and_suppliers_link_to_each_other(
    site: Site, as_person: dict[str, httpx.Client], graph: EstateGraph
) -> None:
    client = as_person["vera"]
    estate = graph.estate
    base = f"/estates/{site.estate}"
    overview = client.get(f"/?estate={site.estate}")
    assert f"{base}/services/epr" in hrefs(overview.text)

    service = client.get(f"{base}/services/epr")
    assert service.status_code == 200
    epr = estate.service_by_id["epr"]
    links = hrefs(service.text)
    assert f"/?estate={site.estate}#tier-{epr.tier}" in links  # the way back
    members = [*epr.hard_requirements, *(m for g in epr.any_groups for m in g.of or ())]
    assert len(members) == 6
    for member in members:  # every asset the EPR needs, in a group or alone, is one click away
        assert f"{base}/assets/{member}" in links or f"{base}/services/{member}" in links
    assert "any 1 of [epr-app-1, epr-app-2, epr-app-3]" in service.text

    # Each asset page links its suppliers, and back to what needs it.
    asset_id = "epr-app-1"
    asset = client.get(f"{base}/assets/{asset_id}")
    assert asset.status_code == 200
    asset_links = hrefs(asset.text)
    assert f"{base}/services/epr" in asset_links  # "what needs it" leads back to the service
    suppliers = {s.supplier_id for s in estate.asset_by_id[asset_id].software}
    assert suppliers
    for supplier_id in suppliers:
        assert f"{base}/suppliers/{supplier_id}" in asset_links

    supplier_id = "cerner"  # the EPR's own vendor: a handful of assets, each listed
    assert supplier_id in suppliers
    supplier = client.get(f"{base}/suppliers/{supplier_id}")
    assert supplier.status_code == 200
    supplier_links = hrefs(supplier.text)
    provided = {
        a.id
        for a in estate.assets
        if a.supplier == supplier_id or any(s.supplier_id == supplier_id for s in a.software)
    }
    assert asset_id in provided
    assert set(re.findall(r'<li data-asset="([^"]+)"><a href="[^"]+/assets/\1">', supplier.text)) == provided
    # The services its failure takes down, each a link back to its service page.
    radius = compute_blast_radius(graph, [f"supplier:{supplier_id}"])
    for down in radius.services_down:
        assert f"{base}/services/{down.id}" in supplier_links
    assert f"/?estate={site.estate}#concentration" in supplier_links


def test_an_asset_page_lists_what_its_loss_takes_down(
    site: Site, as_person: dict[str, httpx.Client], graph: EstateGraph
) -> None:
    page = as_person["vera"].get(f"/estates/{site.estate}/assets/pstore-city")
    radius = compute_blast_radius(graph, ["asset:pstore-city"])
    assert radius.services_down
    shown = set(re.findall(r'<span class="member" data-service="([^"]+)"', page.text))
    assert shown == {s.id for s in radius.services_down}


def test_a_name_the_estate_does_not_have_is_a_404_page(site: Site, as_person: dict[str, httpx.Client]) -> None:
    client = as_person["vera"]
    missing = client.get(f"/estates/{site.estate}/assets/no-such-asset")
    assert missing.status_code == 404
    assert "has no asset &#39;no-such-asset&#39;" in missing.text
    assert client.get("/estates/no-such-estate/services/epr").status_code == 404


# ------------------------------------------------------------------------------------------ what if


def services_by_tier(html: str) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for tier, cells in re.findall(r'<tr data-tier="(\d)">(.*?)</tr>', html, re.S):
        found[int(tier)] = set(re.findall(r'data-service="([^"]+)"', cells))
    return found


def test_what_if_shows_the_blast_radius_by_tier_of_boxes_ticked_and_lines_typed(
    site: Site, as_person: dict[str, httpx.Client], graph: EstateGraph
) -> None:
    selector = "where:kind=host,site=city"  # a selector with a comma: one failure a line keeps it whole
    refs = ["supplier:crowdstrike", selector]
    answer = as_person["vera"].get(
        f"/estates/{site.estate}/whatif", params={"fail": "supplier:crowdstrike", "failures": selector}
    )
    assert answer.status_code == 200
    radius = compute_blast_radius(graph, refs)
    expected: dict[int, set[str]] = {}
    for s in radius.services_down:
        expected.setdefault(s.tier, set()).add(s.id)
    assert services_by_tier(answer.text) == expected
    assert f"{len(radius.assets_down):,} assets down" in answer.text
    assert 'value="supplier:crowdstrike" checked' in answer.text  # the box stays ticked
    assert f">{selector}</textarea>" in answer.text


def test_what_if_refuses_a_failure_that_names_nothing_and_keeps_the_form(
    site: Site, as_person: dict[str, httpx.Client]
) -> None:
    answer = as_person["vera"].get(f"/estates/{site.estate}/whatif", params={"failures": "asset:nope\nsite:city"})
    assert answer.status_code == 422
    assert "failure &#39;asset:nope&#39; names no asset of estate &#39;city-general&#39;" in answer.text
    assert ">asset:nope\nsite:city</textarea>" in answer.text
    assert 'id="result"' not in answer.text


# ------------------------------------------------------------------------------------------ spofs


def spof_services(html: str) -> dict[str, list[str]]:
    """Each row's single point of failure and the services it lists as taken down."""
    rows = re.findall(r'<tr data-spof="([^"]+)">.*?<td class="taken">(.*?)</td>', html, re.S)
    return {unescape(ref): sorted(re.findall(r'/services/([^"]+)"', cell)) for ref, cell in rows}


def spof_refs(html: str) -> list[str]:
    return [unescape(r) for r in re.findall(r'<tr data-spof="([^"]+)"', html)]


def test_single_points_of_failure_filter_by_tier_and_kind_and_page(
    site: Site, as_person: dict[str, httpx.Client], graph: EstateGraph
) -> None:
    client = as_person["vera"]
    base = f"/estates/{site.estate}/spofs"
    every = find_single_points_of_failure(graph)
    assert len(every) > 25, "the sample must need more than one page"

    # Unfiltered, paged: 25 a page, in the core's order, with counts and page links.
    first = client.get(base)
    assert spof_refs(first.text) == [s.ref for s in every[:25]]
    assert f"{len(every)} of {len(every)} shown by these filters · 1–25 on this page" in first.text
    assert f"{base}?page=2" in hrefs(first.text)
    second = client.get(base, params={"page": 2})
    assert spof_refs(second.text) == [s.ref for s in every[25:50]]
    assert f'<a href="{base}" rel="prev">Previous</a>' in second.text  # page 1 is the bare address

    # Tier: only what takes down a service of that tier or more critical (as `ringfence spof --tier`).
    tier_one = find_single_points_of_failure(graph, max_tier=1)
    both = client.get(base, params={"tier": 1, "kind": "asset"})
    assets_t1 = [s.ref for s in tier_one if s.ref.startswith("asset:")]
    assert spof_refs(both.text) == assets_t1[:25]
    # ...and each row lists only those services: the tier-2 to tier-4 services it also takes down are cut.
    taken = spof_services(both.text)
    for spof in tier_one:
        if spof.ref in taken:
            assert taken[spof.ref] == sorted(s.id for s in spof.services), spof.ref
    cut = [s for s in every if s.ref in taken and any(d.tier > 1 for d in s.services)]
    assert cut, "the filter must have something to cut"
    assert f"{len(assets_t1)} of {len(every)} shown" in both.text
    for kind in ("asset", "supplier", "software", "site"):
        n = sum(1 for s in tier_one if s.ref.startswith(f"{kind}:"))
        noun = "product" if kind == "software" else kind
        assert f'data-kind="{kind}">{n} {noun}{"s" if n != 1 else ""}</a>' in both.text


@pytest.mark.parametrize(
    ("query", "status", "phrase"),
    [
        ({"kind": "printer"}, 422, "kind: is one of asset, supplier, software, site, not &#39;printer&#39;"),
        ({"tier": "7"}, 422, "tier: is 1 to 4, not 7"),
        ({"page": "two"}, 422, "page: is a whole number, not &#39;two&#39;"),
        ({"page": "999"}, 404, "not 999"),
    ],
)
def test_a_bad_filter_is_a_page_with_a_sentence(
    site: Site, as_person: dict[str, httpx.Client], query: dict[str, str], status: int, phrase: str
) -> None:
    answer = as_person["vera"].get(f"/estates/{site.estate}/spofs", params=query)
    assert answer.status_code == status
    assert phrase in answer.text
    assert "Traceback" not in answer.text


def test_what_if_takes_at_most_so_many_failures_and_says_so(site: Site, as_person: dict[str, httpx.Client]) -> None:
    typed = "\n".join(f"asset:a-{n}" for n in range(201))
    answer = as_person["vera"].get(f"/estates/{site.estate}/whatif", params={"failures": typed})
    assert answer.status_code == 422
    assert "at most 200 failures at once, not 201" in answer.text


LAB = """\
apiVersion: ringfence/v1
estate: ward-lab
services:
  - {id: ehr, tier: 1, requires: [db-lab-1]}
  - {id: lab, tier: 2, requires: [db-lab-1, {any: 2, where: "attrs.os=solaris"}]}
assets:
  - {id: db-lab-1, kind: vm, attrs: {os: linux}}
"""
"""The lab needs two Solaris machines and there are none: it is down before anything fails."""


def test_what_if_shows_services_down_already_apart_from_what_the_failures_take_down(
    site: Site, as_person: dict[str, httpx.Client]
) -> None:
    upload_estate(site.server.engine, LAB, actor="estate-team", at=datetime.now(UTC))
    answer = as_person["vera"].get("/estates/ward-lab/whatif", params={"failures": "asset:db-lab-1"})
    assert answer.status_code == 200
    assert services_by_tier(answer.text) == {1: {"ehr"}}  # the lab was not db-lab-1's doing
    note = re.search(r'<p class="note already-down">(.*?)</p>', answer.text, re.S)
    assert note is not None
    assert "/estates/ward-lab/services/lab" in note.group(1)
    service = as_person["vera"].get("/estates/ward-lab/services/lab")
    assert "This service is down before anything fails" in service.text
