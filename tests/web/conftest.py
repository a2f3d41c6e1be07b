"""Fixtures for the dashboard tests: a real uvicorn server, real Chromium (Playwright), people with roles.

Chromium is Debian's (``/usr/bin/chromium``); Playwright's own browser downloads are never used. Without it
the browser tests skip, unless ``RINGFENCE_REQUIRE_SERVICES=1`` (as in CI), where they fail.

The server runs in a thread of the test process on a socket bound to a free port, with the rollout
controller switched off: the tests move rollouts themselves, through the same service use cases (and the
simulated driver), so what the page shows is decided by the test, not by timing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser
from sqlalchemy.engine import Engine

from ringfence.api.app import Settings, create_app
from ringfence.files import sample_estate_path
from ringfence.service.estates import upload_estate
from ringfence.service.tokens import issue_token
from ringfence.store.db import make_engine, upgrade

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


@dataclass(frozen=True)
class LiveServer:
    url: str
    engine: Engine
    database_url: str


@contextmanager
def serve(database_url: str) -> Iterator[LiveServer]:
    """A real uvicorn server on 127.0.0.1 (a free port) over ``database_url``, migrated, controller off."""
    engine = make_engine(database_url)
    upgrade(engine)
    app = create_app(Settings(database_url=database_url, controller=False), engine=engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, ws="none", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", engine, database_url)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        engine.dispose()


def upload_sample_estate(engine: Engine) -> str:
    """Store the bundled sample estate (City General) the way the API does; returns its name."""
    path = sample_estate_path()
    stored = upload_estate(engine, path.read_text(encoding="utf-8"), actor="estate-team", at=datetime.now(UTC))
    return stored.version.name


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
