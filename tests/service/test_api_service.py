"""The server as a whole: OpenAPI, the sample estate, the controller loop switched off and taken over by
another server, and several workers on one PostgreSQL database driving each rollout from one claim."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa

from ringfence.service.estates import SAMPLE_ACTOR
from ringfence.service.runner import LOCK_NAMESPACE_ROLLOUT_CLAIM
from ringfence.store.db import lock_key, make_engine

if TYPE_CHECKING:
    from conftest import Samples, Tokens

ROUTES = [
    ("get", "/v1/health"),
    ("get", "/metrics"),
    ("post", "/v1/estates"),
    ("get", "/v1/estates"),
    ("post", "/v1/estates/validate"),
    ("get", "/v1/estates/{name}"),
    ("get", "/v1/estates/{name}/versions"),
    ("get", "/v1/estates/{name}/versions/{version_id}/content"),
    ("get", "/v1/estates/{name}/impact"),
    ("get", "/v1/estates/{name}/spof"),
    ("get", "/v1/estates/{name}/concentration"),
    ("get", "/v1/estates/{name}/recover"),
    ("post", "/v1/plans"),
    ("post", "/v1/rollouts"),
    ("get", "/v1/rollouts"),
    ("get", "/v1/rollouts/{rollout_id}"),
    ("get", "/v1/rollouts/{rollout_id}/events"),
    ("post", "/v1/rollouts/{rollout_id}/approve"),
    ("post", "/v1/rollouts/{rollout_id}/start"),
    ("post", "/v1/rollouts/{rollout_id}/pause"),
    ("post", "/v1/rollouts/{rollout_id}/resume"),
    ("post", "/v1/rollouts/{rollout_id}/abort"),
    ("post", "/v1/rollouts/{rollout_id}/rollback"),
    ("post", "/v1/drills"),
    ("get", "/v1/drills/scenarios"),
    ("get", "/v1/audit"),
    ("get", "/v1/audit/verify"),
    ("post", "/v1/tokens"),
    ("get", "/v1/tokens"),
    ("delete", "/v1/tokens/{token_id}"),
]
# Answers that are not JSON documents (text, or nothing).
NOT_JSON = {"/metrics", "/v1/estates/{name}/versions/{version_id}/content", "/v1/tokens/{token_id}"}


def wait_for(client: httpx.Client, secret: str, rollout_id: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(
            f"/v1/rollouts/{rollout_id}", headers={"Authorization": f"Bearer {secret}"}
        ).json()
        if status["phase"] == phase:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"rollout {rollout_id} is {status['phase']}, not {phase}, after {timeout} s")
        time.sleep(0.05)


def create_and_start(client: httpx.Client, tokens: Tokens, update: str) -> str:
    operator = tokens.headers(tokens.operator)
    created = client.post("/v1/rollouts", json={"estate": "ward", "update": update}, headers=operator)
    assert created.status_code == 201, created.text
    rollout_id = str(created.json()["id"])
    assert client.post(f"/v1/rollouts/{rollout_id}/start", headers=operator).status_code == 200
    return rollout_id


def test_openapi_lists_every_route_with_its_models(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    operations = {(method, path): op for path, item in spec["paths"].items() for method, op in item.items()}
    missing = [route for route in ROUTES if route not in operations]
    assert not missing
    schemas = spec["components"]["schemas"]
    for method, path in ROUTES:
        op = operations[(method, path)]
        if path in NOT_JSON or path == "/v1/health":
            continue
        ok = next(code for code in ("200", "201") if code in op["responses"])
        schema = op["responses"][ok]["content"]["application/json"]["schema"]
        assert schema["$ref"].split("/")[-1] in schemas, (method, path)
    assert operations[("post", "/v1/rollouts")]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RolloutCreate"
    }
    upload = operations[("post", "/v1/estates")]["requestBody"]["content"]
    assert set(upload) == {"application/json", "application/yaml"}
    assert "content" in upload["application/json"]["schema"]["properties"]
    assert set(schemas["RolloutStatusDocument"]["properties"]) >= {"id", "phase", "rings", "assets", "halt_reason"}
    # The explorer at /docs can send a token: every route that takes one declares the bearer scheme; the
    # health check, which takes none, does not.
    assert spec["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["token"]["description"],
    }
    assert {"token": []} in operations[("post", "/v1/rollouts")]["security"]
    assert {"token": []} in operations[("get", "/v1/agents/{asset}/directive")]["security"]
    assert "security" not in operations[("get", "/v1/health")]


def test_the_sample_estate_is_loaded_into_an_empty_database(
    db_url: str, server_factory: Any, tokens_factory: Any
) -> None:
    with server_factory(db_url, sample_estate=True, controller=False) as server:
        tokens = tokens_factory(db_url)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            estates = http.get("/v1/estates", headers=tokens.headers(tokens.viewer)).json()["estates"]
    assert [e["name"] for e in estates] == ["city-general"]
    assert estates[0]["latest"]["created_by"] == SAMPLE_ACTOR
    assert estates[0]["latest"]["assets"] > 1000


def test_a_rollout_left_by_a_server_without_controller_is_driven_by_the_next(
    db_url: str, server_factory: Any, tokens_factory: Any, samples: Samples
) -> None:
    with server_factory(db_url, controller=False) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        tokens = tokens_factory(db_url)
        http.post("/v1/estates", json={"content": samples.ward_estate}, headers=tokens.headers(tokens.operator))
        rollout_id = create_and_start(http, tokens, samples.agent_update)
        time.sleep(1.0)  # ten intervals of a loop that would be running
        status = http.get(f"/v1/rollouts/{rollout_id}", headers=tokens.headers(tokens.viewer)).json()
        assert status["phase"] == "taking_restore_points"
        assert {a["state"] for a in status["assets"]} == {"pending"}
    # The next server has its loop (and asks for the sample estate, which is not loaded over an existing one).
    with server_factory(db_url, sample_estate=True) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        done = wait_for(http, tokens.viewer, rollout_id, "completed")
        assert {a["state"] for a in done["assets"]} == {"applied"}
        estates = http.get("/v1/estates", headers=tokens.headers(tokens.viewer)).json()["estates"]
        assert [e["name"] for e in estates] == ["ward"]


def _claim_holders(database_url: str, rollout_id: str) -> list[int]:
    """Backend pids holding the claim on ``rollout_id`` (advisory locks show their keys as unsigned oids)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            schema = connection.execute(sa.text("SELECT current_schema()")).scalar_one()
            rows = connection.execute(
                sa.text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :ns "
                    "AND objid = :key AND objsubid = 2 AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"ns": LOCK_NAMESPACE_ROLLOUT_CLAIM, "key": lock_key(schema, rollout_id) & 0xFFFFFFFF},
            )
            return [int(pid) for (pid,) in rows]
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_drive_each_rollout_from_one_claim(
    postgres_url: str, server_factory: Any, tokens_factory: Any, samples: Samples
) -> None:
    slow = samples.agent_update.replace("bake: 0s", "bake: 1h")
    with server_factory(postgres_url) as first, server_factory(postgres_url) as second:
        tokens = tokens_factory(postgres_url)
        with httpx.Client(base_url=first.url, timeout=60) as a, httpx.Client(base_url=second.url, timeout=60) as b:
            a.post("/v1/estates", json={"content": samples.ward_estate}, headers=tokens.headers(tokens.operator))
            baking = create_and_start(a, tokens, slow)
            quick = create_and_start(b, tokens, samples.agent_update)
            wait_for(a, tokens.viewer, baking, "baking")
            wait_for(b, tokens.viewer, quick, "completed")
            holders = _claim_holders(postgres_url, baking)
            assert len(holders) == 1  # one worker drives it; the other's try-lock failed
            # Every transition of the quick rollout happened once, in order: no worker stepped on the other.
            events = b.get(f"/v1/rollouts/{quick}/events", headers=tokens.headers(tokens.viewer)).json()["entries"]
            versions = [e["detail"]["version"] for e in events if e["action"] == "rollout.transition"]
            assert versions == list(range(2, len(versions) + 2))
            # Released once it ended (the loop finishes its step after the last transition is visible).
            deadline = time.monotonic() + 10
            while _claim_holders(postgres_url, quick) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _claim_holders(postgres_url, quick) == []
    # With both servers gone, nobody holds it (a claim ends with its worker's connection, which PostgreSQL closes
    # a moment after the server is gone); a new server takes the rollout on and people can still move it.
    deadline = time.monotonic() + 10
    while _claim_holders(postgres_url, baking) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _claim_holders(postgres_url, baking) == []
    with server_factory(postgres_url) as third, httpx.Client(base_url=third.url, timeout=60) as c:
        deadline = time.monotonic() + 30
        while not (holders := _claim_holders(postgres_url, baking)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert holders, "no server took the rollout on"
        operator = tokens.headers(tokens.operator)
        assert c.post(f"/v1/rollouts/{baking}/abort", headers=operator).json()["phase"] == "halted"
        assert c.post(f"/v1/rollouts/{baking}/rollback", headers=operator).status_code == 200
        wait_for(c, tokens.viewer, baking, "rolled_back")
