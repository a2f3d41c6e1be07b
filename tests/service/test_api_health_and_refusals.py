"""``GET /v1/health`` reports the controller loop, and a rollout its driver cannot carry through is refused
with 422 (nothing stored, nothing moved). A real server (``tests/live_server.py``: the loop started by the
app's lifespan) on a real database (SQLite and PostgreSQL), spoken to over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from live_server import LiveServer, Tokens, make_tokens, running_server
from ringfence.drivers.agent import NO_RESTORE_POINTS
from ringfence.service.runner import ControllerLoop
from ringfence.store.db import session_scope
from ringfence.store.tables import RolloutRow

ESTATE = """\
apiVersion: ringfence/v1
estate: small
assets:
  - {id: app-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
"""


def update_text(rollback: str) -> str:
    return (
        "apiVersion: ringfence/v1\n"
        "update:\n"
        "  id: agent-2\n"
        "  product: acme/agent\n"
        '  version: "2"\n'
        "  rings: [1, '100%']\n"
        "  bake: 0s\n"
        f"  rollback: {rollback}\n"
    )


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def server(db_url: str) -> Iterator[LiveServer]:
    with running_server(db_url, controller_interval=0.05) as server:
        yield server


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture
def tokens(server: LiveServer) -> Tokens:
    return make_tokens(server.database_url)


def loop_of(server: LiveServer) -> ControllerLoop:
    loop = server.app.state.controller_loop
    assert isinstance(loop, ControllerLoop)
    return loop


def wait_until(what: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.02)


def wait_for_a_turn(loop: ControllerLoop) -> None:
    wait_until(lambda: loop.stats.last_turn_at is not None)


# ------------------------------------------------------------------------------------------ health


def test_health_is_ok_while_the_loop_turns_and_503_once_it_stopped(server: LiveServer, client: httpx.Client) -> None:
    loop = loop_of(server)
    wait_for_a_turn(loop)
    answer = client.get("/v1/health")  # no token
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["controller"]["running"] is True
    assert datetime.fromisoformat(body["controller"]["last_turn_at"]) <= datetime.now(UTC)
    assert (body["controller"]["errors"], body["controller"]["last_error"]) == (0, None)

    loop.stop()
    answer = client.get("/v1/health")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert (problem["status"], problem["detail"]) == (503, "the controller loop has stopped")
    assert problem["controller"]["running"] is False


def test_health_is_503_when_no_turn_completes_and_names_why(server: LiveServer, client: httpx.Client) -> None:
    loop = loop_of(server)
    wait_for_a_turn(loop)
    engine = server.engine
    with engine.begin() as connection:  # the rollouts cannot be read any more: every turn fails
        connection.execute(sa.text("ALTER TABLE rollouts RENAME TO rollouts_away"))
    try:
        errors = loop.stats.errors
        wait_until(lambda: loop.stats.failed_turns >= 3)
        assert client.get("/v1/health").status_code == 200  # a few failed turns are not yet an outage
        clock = Clock()
        clock.at = (loop.stats.last_turn_at or clock.at) + timedelta(seconds=95)
        loop.clock = clock  # 95 s later, as far as the loop can tell
        answer = client.get("/v1/health")
        assert answer.status_code == 503
        problem = answer.json()
        assert problem["detail"].startswith("no controller turn for 95 s (one is expected at least every 30 s); ")
        assert problem["controller"]["running"] is True
        assert problem["controller"]["errors"] > errors
        assert problem["controller"]["last_error"].startswith("a turn: ")
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE rollouts_away RENAME TO rollouts"))
    wait_until(lambda: loop.stats.failed_turns == 0)
    assert client.get("/v1/health").status_code == 200


def test_health_without_the_loop_says_so_and_is_ok(db_url: str) -> None:
    with running_server(db_url, controller=False) as server:
        answer = httpx.get(f"{server.url}/v1/health", timeout=60)
    assert answer.status_code == 200
    assert answer.json()["controller"] is None


# ------------------------------------------------------------------------------------------ refusals


def test_creating_a_rollout_the_driver_cannot_carry_through_is_422_and_stores_nothing(
    client: httpx.Client, tokens: Tokens
) -> None:
    operator = tokens.headers(tokens.operator)
    assert client.post("/v1/estates", json={"content": ESTATE}, headers=operator).status_code in (200, 201)
    answer = client.post(
        "/v1/rollouts",
        json={"estate": "small", "update": update_text("snapshot"), "driver": "agent"},
        headers=operator,
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    [error] = problem["errors"]
    assert (error["field"], error["line"], error["source"]) == ("update.rollback", 8, "update")
    assert error["message"] == f"{NO_RESTORE_POINTS} (the update says rollback: snapshot)"
    assert client.get("/v1/rollouts", headers=operator).json()["rollouts"] == []

    created = client.post(
        "/v1/rollouts",
        json={"estate": "small", "update": update_text("reinstall"), "driver": "agent"},
        headers=operator,
    )
    assert created.status_code == 201, created.text


def test_starting_a_stored_rollout_its_driver_cannot_carry_through_is_422_and_moves_nothing(
    server: LiveServer, client: httpx.Client, tokens: Tokens
) -> None:
    operator = tokens.headers(tokens.operator)
    assert client.post("/v1/estates", json={"content": ESTATE}, headers=operator).status_code in (200, 201)
    created = client.post(
        "/v1/rollouts",
        json={"estate": "small", "update": update_text("reinstall"), "driver": "agent"},
        headers=operator,
    )
    assert created.status_code == 201, created.text
    rollout = created.json()["id"]
    # As a rollout stored before create refused such updates would be.
    with session_scope(server.engine) as session:
        row = session.get(RolloutRow, rollout)
        assert row is not None
        row.update_doc = {**row.update_doc, "rollback": "snapshot"}
    answer = client.post(f"/v1/rollouts/{rollout}/start", headers=operator)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        f"rollout {rollout}: update.rollback: {NO_RESTORE_POINTS} (the update says rollback: snapshot)"
    )
    status = client.get(f"/v1/rollouts/{rollout}", headers=operator).json()
    assert (status["phase"], status["version"]) == ("pending", created.json()["version"])
