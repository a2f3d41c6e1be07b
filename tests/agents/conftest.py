"""Fixtures for the agent side: a small estate in three strata, an update for agents, real servers.

Two kinds of server, both from ``tests/live_server.py``: ``ringfence serve`` in a subprocess on a reserved
port of 127.0.0.1 (so it can be stopped and started again under running agents), with its controller loop
on and the agent driver's timeouts short; and the app on uvicorn in a thread of this process, controller
off, on a clock the test steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from live_server import ServerProcess, SteppedClock, running_server
from ringfence.service import rollouts

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
        server.close()


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
    clock: SteppedClock
    """What the worker's caches measure age by (the token cache, the directive snapshot)."""
    snapshot_ttl: float
    """How old the worker's directive snapshot may be for an answer (``DirectiveBoard.ttl``)."""

    def outlive_the_snapshot(self) -> None:
        """Step the clock past the snapshot's lifetime: the next directive reflects the database as it is now.

        Instead of sleeping it out. A snapshot read before this call is then too old to answer from; one read
        after it (the server's refresher thread keeps reading) was read after whatever the test just wrote.
        """
        self.clock.advance(self.snapshot_ttl * 1.5)


@pytest.fixture
def app_server(tmp_path: Path) -> Iterator[AppServer]:
    """The app on uvicorn in a thread of this process (controller off), over a fresh SQLite file."""
    clock = SteppedClock()
    with (
        running_server(f"sqlite:///{tmp_path / 'ringfence.db'}", controller=False, monotonic=clock) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield AppServer(server.engine, client, clock, server.app.state.directive_board.ttl)
