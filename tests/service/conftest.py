"""Fixtures for the service tests: a REAL uvicorn server running ``create_app``, and tokens of each role.

- ``live_server(db_url)``: the base URL of a fresh server (one per test) on SQLite and on PostgreSQL;
- ``module_server``: one server per test module (and database), for modules whose tests do not step on
  each other (they use their own estate names and rollouts); ``module_tokens`` and ``client`` go with it;
- ``tokens``: a token of each role (two approvers, for the two-person rule) on ``live_server``'s database.

The server and the tokens come from ``tests/live_server.py`` (shared with tests/incidents and tests/web):
a real uvicorn server in a thread of the test process, the controller loop on (every 0.1 s) unless a test
says otherwise. Tests speak HTTP to it (httpx), never to its objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from live_server import LiveServer, Tokens, make_tokens, running_server
from pg_schemas import isolated_postgres_schema, postgres_base_url

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


def ward_named(name: str, text: str = WARD_ESTATE) -> str:
    """The ward estate as estate ``name``, its assets renamed to be its own (``db-1`` → ``db-1.NAME``).

    An asset id belongs to at most one estate of record: a copy under another name holding the same assets
    would take them from ``ward``, a move that waits for a second person's approval (docs/rollouts.md)."""
    renamed = text.replace("estate: ward", f"estate: {name}", 1)
    return re.sub(r"\b(?:db|app|ws|esx)-\d\b", lambda found: f"{found.group(0)}.{name}", renamed)


@dataclass(frozen=True)
class Samples:
    ward_estate: str = WARD_ESTATE
    agent_update: str = AGENT_UPDATE
    db_update: str = DB_UPDATE
    held_update: str = HELD_UPDATE

    @staticmethod
    def ward_named(name: str) -> str:
        """See :func:`ward_named`."""
        return ward_named(name)


@pytest.fixture(scope="session")
def samples() -> Samples:
    """Estate and update texts the service tests share."""
    return Samples()
