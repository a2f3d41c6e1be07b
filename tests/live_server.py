"""REAL servers for tests (uvicorn running ``create_app``, or a ``ringfence serve`` process), and API tokens.

One module, imported by the conftests of tests/service, tests/incidents, tests/web and tests/agents
(``tests/`` is on ``sys.path`` because the root conftest lives there), so there is one way to start each
kind of test server, and neither races another process for its port:

- ``running_server(database_url, **settings)``: a server in a thread of the test process, on a socket bound
  to a free port of 127.0.0.1 and handed to uvicorn, over ``database_url`` (migrated as the app starts),
  for as long as the block runs. The controller loop runs every 0.1 s unless ``controller=False`` (tests
  that move rollouts themselves, so what a page shows is decided by the test, not by timing). Pass
  ``monotonic=SteppedClock()`` and the worker's caches (token cache, directive snapshot) age only when the
  test says so: a test steps the clock past a cache's lifetime instead of sleeping it out;
- ``ServerProcess``: ``ringfence serve`` in a subprocess, for tests that kill it (SIGKILL) or restart it
  under running agents. Its port is reserved for as long as the object lives (see :func:`reserve_port`),
  so a restart gets the same URL back;
- ``make_tokens(database_url)``: a token of each role, created the way ``ringfence token create`` does,
  straight in the database (the first admin token cannot come from the API).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy.engine import Engine

from ringfence.api.app import Settings, create_app
from ringfence.service.tokens import Role, issue_token
from ringfence.store.db import make_engine

CONTROLLER_INTERVAL = 0.1
RINGFENCE = str(Path(sys.executable).with_name("ringfence"))
"""The ``ringfence`` command of the test environment."""


class SteppedClock:
    """A monotonic clock that moves only when the test steps it: what a server's caches measure age by.

    Thread-safe enough for its use: a float read by the server's threads, written by the test.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def reserve_port() -> socket.socket:
    """A socket bound (not listening) to a free port of 127.0.0.1, with ``SO_REUSEADDR``; keep it open.

    While it is open no other socket can bind that port unless it too sets ``SO_REUSEADDR`` and nothing
    listens there yet, which is what uvicorn does: so ``ringfence serve --port P`` can listen on it, and
    no other process of the machine is given it meanwhile (unlike a port found free and released, which
    anything may take before the server binds it). Linux semantics; CI runs on Linux.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


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
    sock = reserve_port()  # bound here and handed over: no other process can take the port meanwhile
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
class ServerProcess:
    """``ringfence serve`` in a subprocess; ``start`` and ``stop`` may be called again (a restart, same port).

    ``close`` stops it and gives its port back (the fixtures that make one call it).
    """

    database_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _port: socket.socket = field(default_factory=reserve_port, repr=False)

    @property
    def port(self) -> int:
        return int(self._port.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ, **self.env)
        command = [RINGFENCE, "serve", "--port", str(self.port), "--database", self.database_url]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not answer within {timeout} s: {self.log()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def close(self) -> None:
        self.stop()
        self._port.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


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
