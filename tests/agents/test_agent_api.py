"""The agent endpoints over HTTP (the app in process): who may ask and report, and what comes back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine

from ringfence.drivers.agent import AgentDriver
from ringfence.service import rollouts
from ringfence.service.tokens import issue_token
from ringfence.store.db import session_scope
from ringfence.store.observations import list_observations
from ringfence.store.records import ObservationKind

from .conftest import AppServer, create_agent_rollout


@pytest.fixture
def engine(app_server: AppServer) -> Engine:
    return app_server.engine


@pytest.fixture
def client(app_server: AppServer) -> httpx.Client:
    return app_server.client


def _token(engine: Engine, name: str, role: str, asset: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(engine, name=name, role=role, asset_id=asset).secret}"}


def test_the_open_ring_is_told_to_install_and_the_rest_to_wait(app_server: AppServer) -> None:
    engine, client = app_server.engine, app_server.client
    rollout_id = create_agent_rollout(engine, 3)
    proxy = _token(engine, "vendor-proxy", "operator")
    app_server.outlive_the_snapshot()  # a wait may come from a worker's snapshot for a second
    pending = client.get("/v1/agents/lat-01/directive", headers=proxy).json()
    assert (pending["action"], pending["reason"]) == (
        "wait",
        f"ring 0 of rollout {rollout_id} is open; the controller is about to start this asset",
    )
    # One controller step records ring 0's installs as started: now the canaries are told to install.
    rollouts.controller(engine, AgentDriver(engine=engine), lambda: datetime.now(UTC)).step(rollout_id)
    app_server.outlive_the_snapshot()
    answers = {a: client.get(f"/v1/agents/{a}/directive", headers=proxy) for a in ("lat-01", "lat-02")}
    install = answers["lat-01"]
    assert install.status_code == 200
    assert install.json() == {
        "action": "install",
        "asset": "lat-01",
        "reason": f"ring 0 of rollout {rollout_id} is open: install acme/agent 2.0",
        "retry_after": 0,
        "rollout": rollout_id,
        "product": "acme/agent",
        "version": "2.0",
        "ring": 0,
    }
    assert install.headers["cache-control"] == "no-store"
    wait = answers["lat-02"]
    assert wait.json()["action"] == "wait"
    assert wait.json()["reason"] == "ring 1 opens after ring 0 passes its gate; ring 0 is installing"
    assert wait.headers["cache-control"] == "private, max-age=5"
    assert wait.headers["retry-after"] == "5"
    idle = client.get("/v1/agents/printer-9/directive", headers=proxy).json()
    assert (idle["action"], idle["retry_after"], "rollout" in idle) == ("wait", 30, False)


def test_an_agent_token_speaks_only_for_its_own_asset(engine: Engine, client: httpx.Client) -> None:
    create_agent_rollout(engine, 2)
    agent = _token(engine, "agent-lat-01", "agent", "lat-01")
    assert client.get("/v1/agents/lat-01/directive", headers=agent).status_code == 200
    other = client.get("/v1/agents/lat-02/directive", headers=agent)
    assert other.status_code == 403
    assert other.headers["content-type"] == "application/problem+json"
    assert "speaks for 'lat-01', not 'lat-02'" in other.json()["detail"]
    viewer = _token(engine, "ward-viewer", "viewer")
    assert client.get("/v1/agents/lat-01/directive", headers=viewer).status_code == 403
    assert client.get("/v1/agents/lat-01/directive").status_code == 401
    wrong = client.get("/v1/agents/lat-01/directive", headers={"Authorization": "Bearer rf_not-a-token"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "the token is unknown or revoked"

    now = datetime.now(UTC).isoformat()
    mixed = [{"asset": "lat-01", "status": "ok", "at": now}, {"asset": "lat-02", "status": "ok", "at": now}]
    refused = client.post("/v1/heartbeats", json=mixed, headers=agent)
    assert refused.status_code == 403
    assert "nothing of it was stored" in refused.json()["detail"]
    with session_scope(engine, readonly=True) as session:
        assert list_observations(session, since=datetime.now(UTC) - timedelta(hours=1)) == []


def test_heartbeats_and_results_are_stored(engine: Engine, client: httpx.Client) -> None:
    rollout_id = create_agent_rollout(engine, 2)
    agent = _token(engine, "agent-srv-01", "agent", "srv-01")
    at = datetime.now(UTC).replace(microsecond=0)
    batch = [
        {"asset": "srv-01", "status": "ok", "at": at.isoformat(), "rollout": rollout_id},
        {
            "asset": "srv-01",
            "status": "failed",
            "signal": "crashed",
            "detail": "acme service exited 3",
            "rollout": rollout_id,
            "result": {"operation": "install", "status": "succeeded", "detail": "installed 2.0"},
        },
    ]
    stored = client.post("/v1/heartbeats", json=batch, headers=agent)
    assert stored.status_code == 200
    assert stored.json() == {"heartbeats": 2, "results": 1}
    with session_scope(engine, readonly=True) as session:
        found = list_observations(session, since=at - timedelta(minutes=1))
    kinds = sorted((o.kind.value, o.status, o.rollout_id) for o in found)
    assert kinds == [
        ("heartbeat", "failed", None),
        ("heartbeat", "ok", None),
        ("install_result", "succeeded", rollout_id),
    ]
    crash = next(o for o in found if o.kind is ObservationKind.HEARTBEAT and o.status == "failed")
    assert crash.detail == {"signal": "crashed", "detail": "acme service exited 3", "rollout": rollout_id}
    result = next(o for o in found if o.kind is ObservationKind.INSTALL_RESULT)
    assert result.detail == {"detail": "installed 2.0", "source": "agent", "reported_by": "agent-srv-01"}


def test_bad_batches_are_refused_with_field_paths(engine: Engine, client: httpx.Client) -> None:
    proxy = _token(engine, "vendor-proxy", "operator")
    batch = [
        {"asset": "lat-01", "status": "ok"},
        {"asset": "lat-02", "status": "sleeping"},
        {"asset": "lat-03", "status": "ok", "at": "2024-11-23T12:00:00"},
    ]
    refused = client.post("/v1/heartbeats", json=batch, headers=proxy)
    assert refused.status_code == 422
    fields = [e["field"] for e in refused.json()["errors"]]
    assert fields == ["[1].status", "[2].at"]
    unknown = client.post("/v1/heartbeats", json=[{"asset": "lat-01", "status": "ok", "rollout": "r-9"}], headers=proxy)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "[0].rollout"
    assert unknown.json()["errors"][0]["message"] == "there is no rollout 'r-9'"


def test_the_openapi_document_describes_the_agent_endpoints(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    directive = paths["/v1/agents/{asset}/directive"]["get"]
    assert directive["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DirectiveOut"
    }
    assert "post" in paths["/v1/heartbeats"]


def test_the_fast_lane_and_the_route_give_the_same_answer(app_server: AppServer) -> None:
    engine, client = app_server.engine, app_server.client
    rollout_id = create_agent_rollout(engine, 3)
    rollouts.controller(engine, AgentDriver(engine=engine), lambda: datetime.now(UTC)).step(rollout_id)
    secret = issue_token(engine, name="vendor-proxy", role="operator").secret
    app_server.outlive_the_snapshot()
    for asset in ("lat-01", "lat-02", "printer-9"):
        # A bearer token the worker knows is answered before routing; a cookie always goes through the route.
        fast = client.get(f"/v1/agents/{asset}/directive", headers={"Authorization": f"Bearer {secret}"})
        routed = client.get(f"/v1/agents/{asset}/directive", headers={"Cookie": f"ringfence_token={secret}"})
        assert (fast.status_code, routed.status_code) == (200, 200)
        assert fast.json() == routed.json()
        for header in ("cache-control", "retry-after", "content-type"):
            assert fast.headers[header] == routed.headers[header]
    # Both are counted under the route's template by the metrics middleware.
    metrics = client.get("/metrics").text
    assert 'route="/v1/agents/{asset}/directive"' in metrics
    assert 'route="unmatched"' not in metrics
