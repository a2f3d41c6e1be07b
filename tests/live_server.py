"""A REAL uvicorn server running ``create_app`` for tests, and API tokens of each role.

One module, imported by the conftests of tests/service, tests/incidents and tests/web (``tests/`` is on
``sys.path`` because the root conftest lives there), so there is one way to start a test server:

- ``running_server(database_url, **settings)``: a server in a thread of the test process, on a socket bound
  to a free port of 127.0.0.1, over ``database_url`` (migrated as the app starts), for as long as the block
  runs. The controller loop runs every 0.1 s unless ``controller=False`` (tests that move rollouts
  themselves, so what a page shows is decided by the test, not by timing);
- ``make_tokens(database_url)``: a token of each role, created the way ``ringfence token create`` does,
  straight in the database (the first admin token cannot come from the API).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from sqlalchemy.engine import Engine

from ringfence.api.app import Settings, create_app
from ringfence.service.tokens import Role, issue_token
from ringfence.store.db import make_engine

CONTROLLER_INTERVAL = 0.1


@dataclass(frozen=True)
class LiveServer:
    url: str
    """``http://127.0.0.1:PORT``."""
    database_url: str
    engine: Engine
    """The server's own engine: tests that set the scene through the service use cases share its pool."""
    app: Any = None
    """The app itself, for tests of what the server runs beside its routes (its controller loop)."""


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
    # `started` is set once the lifespan start-up (the migration included) has finished.
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the test server on {database_url} did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", database_url, app.state.engine, app)
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
    """A token of each role (two approvers, for the two-person rule) on a database a server has migrated."""
    tokens = Tokens(database_url)
    tokens.viewer = tokens.issue("vic-viewer", Role.VIEWER)
    tokens.operator = tokens.issue("olga-operator", Role.OPERATOR)
    tokens.approver = tokens.issue("ada-approver", Role.APPROVER)
    tokens.second_approver = tokens.issue("bo-approver", Role.APPROVER)
    tokens.admin = tokens.issue("ann-admin", Role.ADMIN)
    return tokens
