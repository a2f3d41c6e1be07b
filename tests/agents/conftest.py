"""Fixtures for the agent side: a small estate in three strata, an update for agents, a real server process.

The server is ``ringfence serve`` in a subprocess on a free port of 127.0.0.1 (so it can be stopped and
started again under running agents), with its controller loop on and the agent driver's timeouts short.
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
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import Engine

from ringfence.api.app import Settings, create_app
from ringfence.service import rollouts
from ringfence.store.db import make_engine, upgrade

RINGFENCE = str(Path(sys.executable).with_name("ringfence"))

STRATA = {
    # prefix: (kind, os, model)
    "lat": ("endpoint", "windows-11", "latitude-5440"),
    "opt": ("endpoint", "windows-11", "optiplex-7010"),
    "srv": ("vm", "windows-2019", "vmware-7"),
}


def estate_text(per_stratum: int) -> str:
    """An estate of ``3 * per_stratum`` assets running acme/agent 1.0, in the three strata of ``STRATA``."""
    lines = [
        "apiVersion: ringfence/v1",
        "estate: agents-test",
        "services:",
        '  - {id: desk, name: Service desk, tier: 4, requires: [{any: 1, where: "kind=endpoint"}]}',
        '  - {id: files, name: File shares, tier: 4, requires: [{any: 1, where: "kind=vm"}]}',
        "assets:",
    ]
    for prefix, (kind, os_name, model) in STRATA.items():
        for n in range(1, per_stratum + 1):
            lines.append(
                f"  - {{id: {prefix}-{n:02d}, kind: {kind}, site: city, attrs: {{os: {os_name}, model: {model}}}, "
                'software: [{product: acme/agent, version: "1.0"}]}'
            )
    return "\n".join(lines) + "\n"


def asset_ids(per_stratum: int) -> list[str]:
    return [f"{prefix}-{n:02d}" for prefix in STRATA for n in range(1, per_stratum + 1)]


UPDATE = """apiVersion: ringfence/v1
update:
  id: acme-agent-2
  product: acme/agent
  version: "2.0"
  rings: [1, "50%", "100%"]
  bake: {bake}
  rollback: reinstall
"""


def create_agent_rollout(
    engine: object, per_stratum: int, *, bake: str = "1m", start: bool = True, at: datetime | None = None
) -> str:
    """A rollout of acme/agent 2.0 on the ``agent`` driver (started unless ``start`` is False); its id."""
    at = at or datetime.now(UTC)
    created = rollouts.create_rollout(
        engine,  # type: ignore[arg-type]
        estate_text=estate_text(per_stratum),
        estate_source="agents-test.yaml",
        update_text=UPDATE.format(bake=bake),
        update_source="acme-agent-2.yaml",
        actor="alice",
        at=at,
        driver="agent",
    )
    assert created.rollout is not None
    if start:
        rollouts.start(engine, created.rollout.id, actor="alice", at=at)  # type: ignore[arg-type]
    return created.rollout.id


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """``ringfence serve`` in a subprocess; ``start`` and ``stop`` may be called again (a restart)."""

    database_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


@contextmanager
def server_over(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A not yet started server over ``database_url``, heartbeats lost after 4 s; stopped afterwards."""
    server = ServerProcess(
        database_url=database_url,
        log_path=tmp_path / "server.log",
        env={"RINGFENCE_AGENT_HEARTBEAT_TIMEOUT": "4s", "RINGFENCE_HOME": str(tmp_path / "home")},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """A not yet started server over a fresh SQLite file."""
    with server_over(f"sqlite:///{tmp_path / 'ringfence.db'}", tmp_path) as server:
        yield server


@pytest.fixture
def any_server_process(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A not yet started server, once over SQLite and once over PostgreSQL (``db_url``)."""
    with server_over(db_url, tmp_path) as server:
        yield server


@dataclass(frozen=True)
class AppServer:
    engine: Engine
    client: httpx.Client


@pytest.fixture
def app_server(tmp_path: Path) -> Iterator[AppServer]:
    """The app on uvicorn in a thread of this process (controller off), over a fresh SQLite file."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ringfence.db'}")
    upgrade(engine)
    app = create_app(Settings(controller=False, migrate=False), engine=engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the test server stopped while starting"
        assert time.monotonic() < deadline, "the test server did not start within 30 s"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield AppServer(engine, client)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        engine.dispose()
