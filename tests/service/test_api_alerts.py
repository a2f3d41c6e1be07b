"""Alertmanager's webhook on a real server: a firing alert on an updated asset of a running rollout is a failure
observation that halts the ring (the server's own controller loop drives the rollout, simulated driver), and
the route's refusals: the operator role, a malformed body (422 naming the field), a body over the cap (413)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Samples, Tokens

BAKING_UPDATE = """\
apiVersion: ringfence/v1
update: {id: agent-3, product: acme/agent, version: "3", rings: [1, "100%"], bake: 1h, rollback: reinstall,
         timing: {apply: 0s, restore_point: 0s, rollback: 0s}}
"""
"""The acme agents in two rings; the canary bakes for an hour, so only an alert can end its ring early."""


@pytest.fixture(scope="module")
def ward(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> None:
    response = client.post(
        "/v1/estates", json={"content": samples.ward_estate}, headers=module_tokens.headers(module_tokens.operator)
    )
    assert response.status_code in (200, 201), response.text


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """A webhook document as Alertmanager (version 4) sends it."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="AcmeAgentDown"}',
        "status": "firing",
        "receiver": "ringfence",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
    }


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "AcmeAgentDown", **labels},
        "annotations": {"summary": "acme agent not answering"},
        "startsAt": "2026-12-06T03:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "c0ffee",
    }


def status_of(client: httpx.Client, secret: str, rollout_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(
        f"/v1/rollouts/{rollout_id}", headers={"Authorization": f"Bearer {secret}"}
    ).json()
    return answer


def wait_for(client: httpx.Client, secret: str, rollout_id: str, phases: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status = status_of(client, secret, rollout_id)
        if status["phase"] in phases:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"rollout {rollout_id} is still {status['phase']}: {status}")
        time.sleep(0.05)


def test_a_firing_alert_on_the_updated_canary_halts_its_ring(
    client: httpx.Client, module_tokens: Tokens, ward: None
) -> None:
    operator = module_tokens.headers(module_tokens.operator)
    created = client.post("/v1/rollouts", json={"estate": "ward", "update": BAKING_UPDATE}, headers=operator)
    assert created.status_code == 201, created.text
    rollout_id = created.json()["id"]
    assert client.post(f"/v1/rollouts/{rollout_id}/start", headers=operator).status_code == 200
    baking = wait_for(client, module_tokens.viewer, rollout_id, {"baking"})
    canary = next(a["id"] for a in baking["assets"] if a["state"] == "applied")
    waiting = [a["id"] for a in baking["assets"] if a["state"] == "pending"]

    sent = client.post(
        "/v1/alerts/alertmanager",
        json=webhook(
            alert(instance=f"{canary}:9100"),  # the updated canary, named with its exporter's port
            alert(instance=f"{waiting[0]}:9100"),  # not updated yet: not this rollout's failure
            alert(instance="nowhere:9100"),
            alert("resolved", instance=f"{canary}:9100"),
        ),
        headers=operator,
    )
    assert sent.status_code == 200, sent.text
    assert sent.json() == {
        "failures": [{"rollout": rollout_id, "asset": canary, "alert": "AcmeAgentDown"}],
        "resolved": 1,
        "unmatched": 2,
    }
    # The server's controller loop sees the failure at its next step: the ring halts and rolls back, long
    # before its hour of bake is out, whatever the simulated world (where the canary is well) says afterwards.
    ended = wait_for(client, module_tokens.viewer, rollout_id, {"halted", "rolling_back", "rolled_back", "failed"})
    assert ended["phase"] in ("rolling_back", "rolled_back"), ended
    events = client.get(f"/v1/rollouts/{rollout_id}/events", headers=module_tokens.headers(module_tokens.viewer))
    entries = events.json()["entries"]
    halt = next(e for e in entries if e["action"] == "rollout.transition" and e["detail"]["to"] == "halted")
    assert "ring 0 failed" in halt["detail"]["reason"], halt
    assert "failed a service check" in halt["detail"]["reason"], halt
    audited = [e for e in entries if e["action"] == "alert.failure"]
    assert [(e["actor"], e["detail"]) for e in audited] == [
        ("olga-operator", {"assets": [canary], "alerts": ["AcmeAgentDown"]})
    ]
    assert "applied" not in ended["rings"][1]["states"], ended["rings"]  # the ring after it never opened


def test_the_webhook_needs_an_operator_and_a_well_formed_bounded_body(
    client: httpx.Client, module_tokens: Tokens
) -> None:
    body = webhook(alert(instance="app-1"))
    assert client.post("/v1/alerts/alertmanager", json=body).status_code == 401
    viewer = client.post("/v1/alerts/alertmanager", json=body, headers=module_tokens.headers(module_tokens.viewer))
    assert viewer.status_code == 403, viewer.text
    assert "operator" in viewer.json()["detail"]
    agent = client.post(
        "/v1/alerts/alertmanager",
        json=body,
        headers=module_tokens.headers(module_tokens.issue("app-1-agent", "agent", asset="app-1")),
    )
    assert agent.status_code == 403, agent.text
    operator = module_tokens.headers(module_tokens.operator)
    quiet = client.post("/v1/alerts/alertmanager", json=body, headers=operator)
    assert quiet.json() == {"failures": [], "resolved": 0, "unmatched": 1}  # no running rollout updated app-1
    malformed = client.post(
        "/v1/alerts/alertmanager", json={"alerts": [{"status": "burning", "labels": {}}]}, headers=operator
    )
    assert malformed.status_code == 422, malformed.text
    assert malformed.headers["content-type"].startswith("application/problem+json")
    assert "status" in malformed.text
    many = client.post("/v1/alerts/alertmanager", json=webhook(*[alert(instance="x")] * 201), headers=operator)
    assert many.status_code == 422, many.text
    huge = client.post(
        "/v1/alerts/alertmanager",
        json=webhook(alert(instance="app-1", note="x" * 3000), *[alert(instance="y" * 3000)] * 30),
        headers=operator,
    )
    assert huge.status_code == 413, huge.text
