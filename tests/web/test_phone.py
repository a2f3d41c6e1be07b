"""The dashboard on a phone (390 × 844 CSS pixels, an iPhone 12-15): every page it can reach fits the screen.

A demo estate (City General) with a halted rollout and its incident, a rollout awaiting approval over a vendor
hold, a declared incident and a drill's result. The test walks the dashboard the way a person would — every
link and every GET form (with its default choices) from the estate page on — and on each page measures real
element widths in Chromium:

- the page is no wider than the screen (``scrollWidth`` ≤ 390): with JavaScript a table shows each row as a
  card of "heading: value" lines; without, a table too wide scrolls sideways inside its own box;
- no table cell's text box is narrower than a few characters (or than its longest word, when shorter): no
  column squeezed to a letter per line;
- every link, field and button of the navigation and the forms lies on the screen (nothing to pinch for).

Pages are found by walking, and each page the dashboard serves (a GET route, its fragments aside) must have
been reached at least once, so a page added later is measured too — or the test says which one it missed.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import Browser, Page
from starlette.routing import BaseRoute

from ringfence.api.routes.rollouts import bundled_holds
from ringfence.drivers.simulated import SimulatedDriver
from ringfence.files.disk import examples_dir, sample_estate_path
from ringfence.service import incidents as incident_service
from ringfence.service import rollouts as rollout_service
from ringfence.service.drills import scenario_ids
from ringfence.web.routes import router as dashboard

from .conftest import Site, Visitors, shot

pytestmark = [pytest.mark.browser]

PHONE = {"width": 390, "height": 844}
FEW_CHARACTERS = "0000"
"""A cell's text box must be at least this wide in its own font (or as wide as its longest word)."""
PER_KIND = 2
"""Pages visited per route and set of query keys: the second catches what differs between two of a kind."""
MOST_PAGES = 80
MEASURED_SIGNED_OUT = {"/login", "/login/oidc", "/auth/callback"}
"""Pages a signed-in person is sent away from: the sign-in form (measured by its own test), and the identity
provider's way in and back (a redirect, and a page that moves on by itself: tests/web/test_oidc_sign_in.py)."""
MEASURED_AS_ADMIN = {"/notifications"}
"""Pages only an admin reaches (the walk signs in as an approver): measured by tests/web/test_assurance_pages.py."""

# A quick Falcon release on City General: canaries crash at once, so the rollout halts and declares an incident.
FALCON = """
apiVersion: ringfence/v1
update:
  id: falcon-7.16-phone
  product: crowdstrike/falcon
  version: "7.16"
  targets: "software=crowdstrike/falcon"
  strata: [kind, attrs.os, attrs.model, site]
  rings: [1, "5%", "100%"]
  bake: 0s
  rollback: snapshot
"""

MEASURE = """
() => {
  for (const d of document.querySelectorAll('details')) d.open = true;  // what a tap would show
  const ctx = document.createElement('canvas').getContext('2d');
  const visible = e => {
    // Not shown: no box, or inside a box of at most a pixel (what visually-hidden text sits in).
    for (let p = e; p && p !== document.body; p = p.parentElement) {
      const r = p.getBoundingClientRect();
      if ((r.width === 0 && r.height === 0) || (r.width <= 1 && r.height <= 1)) return false;
    }
    return true;
  };
  const inScroller = e => {
    for (let p = e.parentElement; p; p = p.parentElement) {
      if (p === document.body) return false;
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll') return true;
    }
    return false;
  };
  const squeezed = [];
  for (const cell of document.querySelectorAll('th, td')) {
    const text = cell.innerText.trim();
    if (!text || !visible(cell)) continue;
    // Each run of text in its own font (a tier chip is smaller than the cell's text): its longest word, or a
    // few characters when every word is longer, must fit the cell's text box on one line.
    let needed = 0;
    const runs = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let run = runs.nextNode(); run; run = runs.nextNode()) {
      const words = run.textContent.split(/\\s+/).filter(Boolean);
      if (!words.length || !visible(run.parentElement)) continue;
      const f = getComputedStyle(run.parentElement);
      ctx.font = `${f.fontStyle} ${f.fontWeight} ${f.fontSize} ${f.fontFamily}`;
      const longest = Math.max(...words.map(w => ctx.measureText(w).width));
      needed = Math.max(needed, Math.min(longest, ctx.measureText('%FEW%').width));
    }
    const s = getComputedStyle(cell);
    const box = cell.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
    if (box + 1 < needed) {
      const what = `${cell.tagName.toLowerCase()} "${text.slice(0, 40)}"`;
      squeezed.push(`${what}: ${Math.round(box)}px < ${Math.round(needed)}px`);
    }
  }
  const off = [];
  const width = document.documentElement.clientWidth;
  const controls = 'nav a, header a, header button, form input, form select, form textarea, form button, form label';
  for (const e of document.querySelectorAll(controls)) {
    if (!visible(e) || inScroller(e) || e.type === 'hidden') continue;
    const r = e.getBoundingClientRect();
    if (r.left < -1 || r.right > width + 1) {
      const what = `${e.tagName.toLowerCase()} "${(e.innerText || e.name || '').trim().slice(0, 30)}"`;
      off.push(`${what}: ${Math.round(r.left)}..${Math.round(r.right)}px`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, squeezed, off};
}
""".replace("%FEW%", FEW_CHARACTERS)

GET_FORMS = """
() => [...document.querySelectorAll('form')]
  .filter(f => (f.getAttribute('method') || 'get').toLowerCase() === 'get')
  .map(f => { const q = new URLSearchParams(new FormData(f)).toString(); return f.action + (q ? '?' + q : ''); })
"""
"""Each GET form on the page as submitted with its default choices."""


def now() -> datetime:
    return datetime.now(UTC)


def _leaves(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps an included router whole
        yield from _leaves(included.routes) if included is not None else (route,)


def page_routes() -> list[str]:
    """Every page of the dashboard: its GET routes, less the fragments ringfence.js swaps in."""
    paths = set()
    for route in _leaves(dashboard.routes):
        path, methods = getattr(route, "path", ""), getattr(route, "methods", None) or ()
        if "GET" in methods and not path.endswith("/live"):
            paths.add(path)
    assert {"/", "/rollouts/{rollout_id}", "/incidents/{incident_id}"} <= paths, paths
    return sorted(paths)


def pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")


@dataclass
class Measured:
    url: str
    scroll_width: int
    squeezed: list[str]
    off: list[str]


@pytest.fixture(scope="module")
def demo(site: Site) -> list[str]:
    """City General with a halted rollout (and the incident it declared), a rollout over a vendor hold awaiting
    approval, and an incident declared by a person; the pages of those four."""
    engine = site.server.engine
    estate_text = sample_estate_path().read_text(encoding="utf-8")
    created = rollout_service.create_rollout(
        engine,
        estate_text=estate_text,
        estate_source="city-general.yaml",
        update_text=FALCON,
        update_source="falcon.yaml",
        actor="olga",
        at=now(),
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    if rollout_service.status(engine, rollout_id).rollout.state.phase.value == "awaiting_approval":
        rollout_service.approve_rollout(engine, rollout_id, actor="bob", at=now())
    rollout_service.start(engine, rollout_id, actor="olga", at=now())
    canaries = [a.asset_id for a in rollout_service.status(engine, rollout_id).assets if a.ring == 0]
    driver = SimulatedDriver(apply="0s", restore_point="0s", rollback="0s", after="0s", fail=",".join(canaries))
    rollout_service.controller(engine, driver, now).run_until_settled(rollout_id, wait_until=lambda _: time.sleep(0.01))
    assert rollout_service.status(engine, rollout_id).rollout.state.phase.value in ("halted", "rolled_back")

    esxi = (examples_dir() / "city-general" / "updates" / "esxi-7u3.yaml").read_text(encoding="utf-8")
    held = rollout_service.create_rollout(
        engine,
        estate_text=estate_text,
        estate_source="city-general.yaml",
        update_text=esxi,
        update_source="esxi-7u3.yaml",
        actor="olga",
        at=now(),
        holds=bundled_holds(),
        override_hold="CAB-812: the prod-a hosts run no partner NIC drivers; the vendor's i40en fix is installed",
    )
    assert held.rollout is not None
    declared = incident_service.declare(
        engine, fail=["supplier:advanced"], actor="olga", at=now(), title="Advanced outage", estate_name=site.estate
    )
    at_halt = incident_service.of_rollout(engine, rollout_id)
    assert at_halt is not None
    return [
        f"/rollouts/{rollout_id}",
        f"/rollouts/{held.rollout.id}",
        f"/incidents/{at_halt.id}",
        f"/incidents/{declared.id}",
    ]


def measure(page: Page, url: str, screenshots: Path, name: str) -> Measured:
    page.goto(url)
    found: dict[str, Any] = page.evaluate(MEASURE)
    shot(page, screenshots, name)
    return Measured(url, found["scrollWidth"], found["squeezed"], found["off"])


def problems_of(measured: list[Measured]) -> str:
    problems = [
        f"{m.url}: {m.scroll_width}px wide"
        + "".join(f"\n    squeezed {s}" for s in m.squeezed)
        + "".join(f"\n    off screen {o}" for o in m.off)
        for m in measured
        if m.scroll_width > PHONE["width"] or m.squeezed or m.off
    ]
    return f"{len(problems)} of {len(measured)} pages do not fit 390 px:\n" + "\n".join(problems) if problems else ""


def walk(page: Page, origin: str, start: list[str], screenshots: Path) -> list[Measured]:
    """Every page reachable from ``start`` by links and GET forms, up to PER_KIND of each kind."""
    routes = [(path, pattern(path)) for path in page_routes()]
    seen: set[str] = set()
    per_kind: dict[tuple[str, frozenset[str]], int] = {}
    queue = deque(start)
    measured: list[Measured] = []
    while queue and len(measured) < MOST_PAGES:
        url = queue.popleft()
        parts = urlsplit(url if "://" in url else origin + url)
        if f"{parts.scheme}://{parts.netloc}" != origin:
            continue
        key_url = parts.path + ("?" + parts.query if parts.query else "")
        route = next((path for path, p in routes if p.match(parts.path)), None)
        if key_url in seen or route is None:
            continue
        seen.add(key_url)
        kind = (route, frozenset(k for k, _ in parse_qsl(parts.query)))
        if per_kind.get(kind, 0) >= PER_KIND:
            continue
        answer = page.request.get(origin + key_url)
        if not answer.headers.get("content-type", "").startswith("text/html"):
            continue
        per_kind[kind] = per_kind.get(kind, 0) + 1
        name = re.sub(r"[^a-z0-9]+", "-", key_url.lower()).strip("-") or "estate"
        measured.append(measure(page, key_url, screenshots, f"phone-{name[:80]}"))
        queue.extend(page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)"))
        queue.extend(page.evaluate(GET_FORMS))
    reached = {path for path, p in routes for m in measured if p.match(urlsplit(m.url).path)}
    missed = [p for p in page_routes() if p not in reached and p not in MEASURED_SIGNED_OUT | MEASURED_AS_ADMIN]
    assert not missed, f"the walk never reached {missed}: link them from a page, or start the walk there"
    return measured


def test_every_page_fits_a_phone(visitors: Visitors, site: Site, demo: list[str], screenshots: Path) -> None:
    page = visitors.sign_in(site.people.alice)
    page.set_viewport_size(PHONE)
    start = ["/", "/rollouts", "/incidents", "/audit", f"/drills?scenario={scenario_ids()[0]}", *demo]
    measured = walk(page, site.server.url, start, screenshots)
    assert not problems_of(measured), problems_of(measured)
    # With JavaScript, a table's rows are cards of "heading: value" lines (ringfence.js labels the cells).
    page.goto(demo[0])
    labelled = page.locator("table.rings.cards tbody td[data-label='Progress']")
    assert labelled.count() >= 1
    # A live part swapped in later (the rollout awaiting approval refreshes itself) is labelled too.
    page.goto(demo[1])
    page.locator("#live").evaluate("live => live.setAttribute('data-old', '')")
    page.locator("#live:not([data-old])").wait_for(timeout=15_000)
    assert page.locator("#live table.rings.cards tbody td[data-label='Progress']").count() >= 1


def test_without_javascript_wide_tables_scroll_in_their_own_box(
    visitors: Visitors, site: Site, demo: list[str], screenshots: Path
) -> None:
    page = visitors.sign_in(site.people.alice, javascript=False)
    page.set_viewport_size(PHONE)
    urls = ["/", "/rollouts", "/incidents", "/audit", f"/drills?scenario={scenario_ids()[0]}", *demo]
    measured = [measure(page, url, screenshots, f"phone-no-js-{i}") for i, url in enumerate(urls)]
    assert not problems_of(measured), problems_of(measured)
    page.goto(demo[0])
    rings = page.locator("table.rings")
    assert rings.evaluate("t => getComputedStyle(t).overflowX") == "auto"
    assert rings.evaluate("t => t.classList.contains('cards')") is False


def test_signing_in_fits_a_phone(browser: Browser, site: Site, screenshots: Path) -> None:
    context = browser.new_context(base_url=site.server.url, viewport=PHONE)
    try:
        page = context.new_page()
        page.goto("/login")
        found = page.evaluate(MEASURE)
        shot(page, screenshots, "phone-login")
        assert found["scrollWidth"] <= PHONE["width"]
        assert not found["off"], found["off"]
    finally:
        context.close()
