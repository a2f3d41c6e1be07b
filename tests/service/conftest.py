"""Fixtures for the service tests: a REAL uvicorn server running ``create_app``, and tokens of each role.

- ``live_server(db_url)``: the base URL of a fresh server (one per test) on SQLite and on PostgreSQL;
- ``module_server``: one server per test module (and database), for modules whose tests do not step on
  each other (they use their own estate names and rollouts); ``module_tokens`` and ``client`` go with it;
- ``tokens``: a token of each role (two approvers, for the two-person rule) on ``live_server``'s database.

The server runs in a thread of the test process on a socket bound to a free port of 127.0.0.1, with the
controller loop on (every 0.1 s) unless a test says otherwise. Tests speak HTTP to it (httpx), never to
its objects. Tokens are created the way ``ringfence token create`` does, straight in the database: the
first admin token cannot come from the API.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from pg_schemas import isolated_postgres_schema, postgres_base_url
from ringfence.api.app import Settings, create_app
from ringfence.service.tokens import Role, issue_token
from ringfence.store.db import make_engine

CONTROLLER_INTERVAL = 0.1


@dataclass(frozen=True)
class LiveServer:
    url: str
    database_url: str


@contextmanager
def running_server(database_url: str, **settings: Any) -> Iterator[LiveServer]:
    """A real uvicorn server over ``database_url`` (migrated on start), for as long as the block runs."""
    options: dict[str, Any] = {"controller_interval": CONTROLLER_INTERVAL, **settings}
    app = create_app(Settings(database_url=database_url, **options))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no other process can take the port meanwhile
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, ws="none", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn-test")
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the test server on {database_url} did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", database_url)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        app.state.engine.dispose()


@dataclass
class Tokens:
    """Secrets of tokens of each role on one database; ``issue`` makes more (agents, a second admin…)."""

    database_url: str
    viewer: str = ""
    operator: str = ""
    approver: str = ""
    second_approver: str = ""
    admin: str = ""
    names: dict[str, str] = field(default_factory=dict)

    def issue(self, name: str, role: Role | str, asset: str | None = None) -> str:
        engine = make_engine(self.database_url)
        try:
            issued = issue_token(engine, name=name, role=role, asset_id=asset)
        finally:
            engine.dispose()
        self.names[issued.secret] = issued.name
        return issued.secret

    def headers(self, secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}


def make_tokens(database_url: str) -> Tokens:
    tokens = Tokens(database_url)
    tokens.viewer = tokens.issue("vic-viewer", Role.VIEWER)
    tokens.operator = tokens.issue("olga-operator", Role.OPERATOR)
    tokens.approver = tokens.issue("ada-approver", Role.APPROVER)
    tokens.second_approver = tokens.issue("bo-approver", Role.APPROVER)
    tokens.admin = tokens.issue("ann-admin", Role.ADMIN)
    return tokens


# ---------------------------------------------------------------------------------------- one per test


@pytest.fixture
def live_server(db_url: str) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT``) of a real server on a fresh ``db_url`` database."""
    with running_server(db_url) as server:
        yield server.url


@pytest.fixture
def tokens(db_url: str, live_server: str) -> Tokens:
    """A token of each role on ``live_server``'s database (the server has migrated it)."""
    return make_tokens(db_url)


# ---------------------------------------------------------------------------------------- one per module


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database for one test module, once SQLite and once PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('api-db') / 'ringfence.db'}"
        return
    with isolated_postgres_schema(postgres_base_url()) as url:
        yield url


@pytest.fixture(scope="module")
def module_server(module_db_url: str) -> Iterator[LiveServer]:
    with running_server(module_db_url) as server:
        yield server


@pytest.fixture(scope="module")
def module_tokens(module_server: LiveServer) -> Tokens:
    return make_tokens(module_server.database_url)


@pytest.fixture(scope="module")
def client(module_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client on the module's server (no token: tests pass the one they mean)."""
    with httpx.Client(base_url=module_server.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="session")
def server_factory() -> Any:
    """``running_server(database_url, **settings)``: for tests that start (and stop) servers themselves."""
    return running_server


@pytest.fixture(scope="session")
def tokens_factory() -> Any:
    """``make_tokens(database_url)``: a token of each role on a database a server has migrated."""
    return make_tokens


# ---------------------------------------------------------------------------------------------- samples

WARD_ESTATE = """\
apiVersion: ringfence/v1
estate: ward
suppliers:
  - {id: acme, name: Acme Ltd}
services:
  - {id: ehr, name: Electronic health record, tier: 1, rto: 4h, continuity: Paper notes, requires: [db-1]}
  - {id: rota, name: Staff rota, tier: 3, rto: 1d, requires: [{any: 1, of: [app-1, app-2]}]}
  - {id: lab, name: Lab results, tier: 4, requires: [{any: 2, where: "attrs.os=solaris"}]}
assets:
  - {id: db-1, kind: vm, site: north, attrs: {os: linux}, software: [{product: pg/postgres, version: "15"}]}
  - {id: app-1, kind: vm, site: north, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, site: south, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-3, kind: vm, site: south, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-1, kind: endpoint, site: north, attrs: {os: win}, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-2, kind: endpoint, site: south, attrs: {os: win}, software: [{product: acme/agent, version: "1"}]}
  - {id: esx-1, kind: host, site: north, attrs: {os: esxi}, software: [{product: vmware/esxi, version: 7.0.2}]}
"""
"""A small estate: db-1 alone takes down a tier 1 service; the acme agents are redundant or uncritical."""

FAST = "timing: {apply: 0s, restore_point: 0s, rollback: 0s}"

AGENT_UPDATE = f"""\
apiVersion: ringfence/v1
update: {{id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 0s, rollback: snapshot, {FAST}}}
"""
"""Five targets, none of impact tier 1 or 2: no approval needed."""

DB_UPDATE = f"""\
apiVersion: ringfence/v1
update: {{id: pg-16, product: pg/postgres, version: "16", rings: [1], bake: 0s, rollback: snapshot, {FAST}}}
"""
"""One target, db-1, whose loss alone takes the tier 1 EHR down: a second person must approve."""

HELD_UPDATE = """\
apiVersion: ringfence/v1
update: {id: esxi-7u3, product: vmware/esxi, version: 7.0.3, rings: [1], bake: 0s}
"""
"""A release the bundled vendor holds list withdrew."""


@dataclass(frozen=True)
class Samples:
    ward_estate: str = WARD_ESTATE
    agent_update: str = AGENT_UPDATE
    db_update: str = DB_UPDATE
    held_update: str = HELD_UPDATE


@pytest.fixture(scope="session")
def samples() -> Samples:
    """Estate and update texts the service tests share."""
    return Samples()
