"""How the dashboard protects itself, spoken to in plain HTTP against the real server (no browser needed):
sign-in redirects, cross-site form posts refused, roles enforced on the server, headers that keep
everything local, and our own small script and styles."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from ringfence.files.svg import TIER_STYLES
from ringfence.service import rollouts as rollout_service
from ringfence.web import rendering

from .conftest import Site

ESTATE = """
apiVersion: ringfence/v1
estate: tiny
assets:
  - {id: app-1, kind: vm, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, software: [{product: acme/agent, version: "1"}]}
"""
UPDATE = """
apiVersion: ringfence/v1
update: {id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 0s, rollback: snapshot}
"""


def running_rollout(site: Site) -> str:
    engine = site.server.engine
    at = datetime.now(UTC)
    created = rollout_service.create_rollout(
        engine,
        estate_text=ESTATE,
        estate_source="tiny.yaml",
        update_text=UPDATE,
        update_source="update.yaml",
        actor="olga",
        at=at,
    )
    assert created.rollout is not None
    rollout_service.start(engine, created.rollout.id, actor="olga", at=at)
    return created.rollout.id


def phase(site: Site, rollout_id: str) -> str:
    return rollout_service.status(site.server.engine, rollout_id).rollout.state.phase.value


@pytest.fixture
def client(site: Site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.server.url, follow_redirects=False, timeout=30) as found:
        yield found


def as_person(client: httpx.Client, token: str) -> httpx.Client:
    client.cookies.set("ringfence_token", token)
    return client


def test_pages_send_strangers_to_sign_in_and_fragments_ask_for_a_navigation(client: httpx.Client) -> None:
    for path, back in (("/", "%2F"), ("/rollouts", "%2Frollouts"), ("/audit?page=2", "%2Faudit%3Fpage%3D2")):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={back}"
    fragment = client.get("/rollouts/r-000001/live", headers={"HX-Request": "true"})
    assert fragment.status_code == 401
    assert fragment.headers["hx-redirect"] == "/login?next=%2Frollouts%2Fr-000001%2Flive"


def test_sign_in_goes_back_only_to_this_site(client: httpx.Client, site: Site) -> None:
    page = client.get("/login", params={"next": "//evil.example/steal"})
    assert '<input type="hidden" name="next" value="/">' in page.text
    origin = {"Origin": site.server.url}
    answer = client.post("/login", data={"token": site.people.vera, "next": "https://evil.example/"}, headers=origin)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"ringfence_token={site.people.vera};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Max-Age" not in cookie
    assert "expires" not in cookie.lower()


def test_a_sign_in_posted_from_another_site_is_refused(client: httpx.Client, site: Site) -> None:
    answer = client.post("/login", data={"token": site.people.vera}, headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
    assert "sent from https://evil.example" in answer.text


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "did not say which page sent this form"),
        ({"Origin": "null"}, "did not say which page sent this form"),
        ({"Origin": "https://evil.example"}, "sent from https://evil.example"),
        ({"Referer": "https://evil.example/page"}, "sent from https://evil.example/page"),
        ({"Origin": "{own}", "Sec-Fetch-Site": "cross-site"}, "sent from another site (cross-site)"),
    ],
)
def test_a_form_posted_from_another_site_changes_nothing(
    client: httpx.Client, site: Site, headers: dict[str, str], why: str
) -> None:
    rollout_id = running_rollout(site)
    own = {k: v.replace("{own}", site.server.url) for k, v in headers.items()}
    answer = as_person(client, site.people.olga).post(f"/rollouts/{rollout_id}/abort", headers=own, data={})
    assert answer.status_code == 403
    assert why in answer.text
    assert phase(site, rollout_id) == "taking_restore_points"


def test_the_same_form_from_this_site_works_by_origin_or_by_referer(client: httpx.Client, site: Site) -> None:
    rollout_id = running_rollout(site)
    person = as_person(client, site.people.olga)
    paused = person.post(f"/rollouts/{rollout_id}/pause", headers={"Origin": site.server.url}, data={"reason": "x"})
    assert paused.status_code == 303
    assert paused.headers["location"] == f"/rollouts/{rollout_id}"
    assert phase(site, rollout_id) == "paused"
    resumed = person.post(f"/rollouts/{rollout_id}/resume", headers={"Referer": f"{site.server.url}/rollouts"})
    assert resumed.status_code == 303
    assert phase(site, rollout_id) == "taking_restore_points"


def test_roles_are_checked_on_the_server_not_only_by_hiding_buttons(client: httpx.Client, site: Site) -> None:
    rollout_id = running_rollout(site)
    own = {"Origin": site.server.url}
    viewer = as_person(client, site.people.vera)
    page = viewer.post(f"/rollouts/{rollout_id}/abort", headers=own)
    assert page.status_code == 403
    assert "'vera' is a viewer; this needs the operator role or higher" in html.unescape(page.text)
    fragment = viewer.post(f"/rollouts/{rollout_id}/abort", headers={**own, "HX-Request": "true"})
    assert fragment.status_code == 403
    assert fragment.text.lstrip().startswith('<section id="live"')
    assert 'role="alert"' in fragment.text
    assert phase(site, rollout_id) == "taking_restore_points"
    unknown = viewer.post(f"/rollouts/{rollout_id}/delete", headers=own)
    assert unknown.status_code == 404


def test_an_agent_token_does_not_open_the_dashboard(client: httpx.Client, site: Site) -> None:
    page = as_person(client, site.people.agent).get("/rollouts")
    assert page.status_code == 403
    assert "'agent-ws-1' is an agent token; the dashboard is for people" in html.unescape(page.text)


def test_every_page_loads_only_from_this_server(client: httpx.Client, site: Site) -> None:
    person = as_person(client, site.people.vera)
    for path in ("/", "/rollouts", "/drills", "/audit", "/login"):
        page = person.get(path)
        assert page.status_code == 200, path
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        # Every src/href is a path on this server (or a fragment); no scheme, no other host.
        for url in re.findall(r'(?:src|href)="([^"]*)"', page.text):
            assert url.startswith(("/", "#")), f"{path} refers to {url}"
            assert not url.startswith("//"), f"{path} refers to {url}"
        assert "<script>" not in page.text  # no inline script: the policy would block it anyway


def test_our_script_is_small_and_our_own_and_the_styles_match_the_report(client: httpx.Client) -> None:
    script = client.get("/static/ringfence.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert len(script.text.splitlines()) < 80
    assert "http" not in script.text.replace("HX-Request", "")  # fetches only the URLs the page names
    for attribute in ("hx-get", "hx-trigger", "hx-swap", "hx-post", "hx-confirm", "hx-target", "HX-Redirect"):
        assert attribute in script.text
    css = client.get("/static/ringfence.css").text
    for tier, style in TIER_STYLES.items():
        assert f"--t{tier}: {style.colour};" in css  # a tier looks the same in the dashboard and in the report


def test_the_live_fragment_is_the_section_the_script_swaps(client: httpx.Client, site: Site) -> None:
    rollout_id = running_rollout(site)
    fragment = as_person(client, site.people.vera).get(f"/rollouts/{rollout_id}/live", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    text = fragment.text.lstrip()
    assert text.startswith('<section id="live"')
    assert f'hx-get="/rollouts/{rollout_id}/live"' in text
    assert f'hx-trigger="every {rendering.REFRESH_SECONDS}s"' in text
    assert 'hx-swap="outerHTML"' in text
    assert "<html" not in text


def test_a_nul_in_any_form_field_is_refused_naming_the_field_and_changes_nothing(
    client: httpx.Client, site: Site
) -> None:
    """PostgreSQL cannot store a NUL: a form carrying one is refused by the dashboard, as a page naming the field,
    before anything is written (it was the database's error, answered as JSON, before)."""
    rollout_id = running_rollout(site)
    person = as_person(client, site.people.olga)
    answer = person.post(
        f"/rollouts/{rollout_id}/pause", headers={"Origin": site.server.url}, data={"reason": "night\x00shift"}
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("text/html")
    assert "the field 'reason' cannot hold a NUL character" in html.unescape(answer.text)
    assert phase(site, rollout_id) == "taking_restore_points"
