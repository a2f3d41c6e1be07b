"""Fixtures for the dashboard tests: a real uvicorn server, real Chromium (Playwright), people with roles.

Chromium is Debian's (``/usr/bin/chromium``); Playwright's own browser downloads are never used. Without it
the browser tests skip, unless ``RINGFENCE_REQUIRE_SERVICES=1`` (as in CI), where they fail.

The server is ``tests/live_server.py``'s (shared with tests/service and tests/incidents), with the rollout
controller switched off: the tests move rollouts themselves, through the same service use cases (and the
simulated driver), so what the page shows is decided by the test, not by timing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page
from sqlalchemy.engine import Engine

from live_server import LiveServer, running_server
from ringfence.files.disk import sample_estate_path
from ringfence.service.estates import upload_estate
from ringfence.service.tokens import issue_token

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REQUIRE_SERVICES_ENV = "RINGFENCE_REQUIRE_SERVICES"


def upload_sample_estate(engine: Engine) -> str:
    """Store the bundled sample estate (City General) the way the API does; returns its name."""
    path = sample_estate_path()
    stored = upload_estate(engine, path.read_text(encoding="utf-8"), actor="estate-team", at=datetime.now(UTC))
    return stored.version.name


@contextmanager
def serve(database_url: str) -> Iterator[LiveServer]:
    """The dashboard's server over ``database_url``: migrated, the controller off."""
    with running_server(database_url, controller=False) as server:
        yield server


@dataclass(frozen=True)
class People:
    """One token per person: alice and bob approve, olga operates, vera only views, an agent for one asset."""

    alice: str
    bob: str
    olga: str
    vera: str
    agent: str


def issue_people(engine: Engine) -> People:
    return People(
        alice=issue_token(engine, name="alice", role="approver").secret,
        bob=issue_token(engine, name="bob", role="approver").secret,
        olga=issue_token(engine, name="olga", role="operator").secret,
        vera=issue_token(engine, name="vera", role="viewer").secret,
        agent=issue_token(engine, name="agent-ws-1", role="agent", asset_id="ws-1").secret,
    )


@dataclass(frozen=True)
class Site:
    server: LiveServer
    people: People
    estate: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server per test module on a SQLite file, with the sample estate and the people above."""
    url = f"sqlite:///{tmp_path_factory.mktemp('web-db') / 'ringfence.db'}"
    with serve(url) as server:
        estate = upload_sample_estate(server.engine)
        yield Site(server, issue_people(server.engine), estate)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    message = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_SERVICES_ENV}=1 says the browser tests must run")
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser(chromium_executable: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save what each page looked like (under pytest's tmp dir; never committed)."""
    return tmp_path_factory.mktemp("screenshots")


# ------------------------------------------------------------------------------------------ browsing


class Visitors:
    """Fresh browser contexts, each signed in with a token, and every URL any of them requested."""

    def __init__(self, browser: Browser, site: Site) -> None:
        self.browser = browser
        self.site = site
        self.contexts: list[BrowserContext] = []
        self.requested: list[str] = []

    def __enter__(self) -> Visitors:
        return self

    def __exit__(self, *_: object) -> None:
        for context in self.contexts:
            context.close()

    def sign_in(self, token: str, *, javascript: bool = True) -> Page:
        context = self.browser.new_context(
            base_url=self.site.server.url, viewport={"width": 1280, "height": 900}, java_script_enabled=javascript
        )
        self.contexts.append(context)
        page = context.new_page()
        page.on("request", lambda request: self.requested.append(request.url))
        page.goto("/login")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/$"))
        return page


@pytest.fixture
def visitors(browser: Browser, site: Site) -> Iterator[Visitors]:
    with Visitors(browser, site) as found:
        yield found
    # Nothing the dashboard shows comes from anywhere but this server: no CDN, no font service.
    foreign = [url for url in found.requested if not url.startswith(site.server.url)]
    assert not foreign, f"the dashboard loaded {foreign}"


def shot(page: Page, screenshots: Path, name: str) -> Path:
    path = screenshots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{name}.png looks empty"
    return path


def accept_dialogs(page: Page, questions: list[str]) -> None:
    def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
