"""``GET /metrics`` on a real server, parsed as Prometheus reads it: rollouts by phase, gate verdicts,
heartbeat lag and request counts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ringfence.core.gates import GateOutcome, RingVerdict
from ringfence.store.audit import append_audit
from ringfence.store.db import make_engine, session_scope
from ringfence.store.estates import add_estate_version
from ringfence.store.observations import add_observations
from ringfence.store.records import Observation, ObservationKind
from ringfence.store.rollouts import create_rollout
from ringfence.store.verdicts import add_gate_verdict

if TYPE_CHECKING:
    from conftest import LiveServer, Samples, Tokens


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def wait_for(client: httpx.Client, secret: str, rollout_id: str, phase: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/rollouts/{rollout_id}", headers={"Authorization": f"Bearer {secret}"}).json()
        if status["phase"] == phase:
            return
        time.sleep(0.05)
    raise AssertionError(f"rollout {rollout_id} never reached {phase}")


def started(client: httpx.Client, tokens: Tokens, update: str) -> str:
    operator = tokens.headers(tokens.operator)
    created = client.post("/v1/rollouts", json={"estate": "ward", "update": update}, headers=operator)
    assert created.status_code == 201, created.text
    rollout_id = str(created.json()["id"])
    assert client.post(f"/v1/rollouts/{rollout_id}/start", headers=operator).status_code == 200
    return rollout_id


def test_metrics_without_a_token(
    client: httpx.Client, module_server: LiveServer, module_tokens: Tokens, samples: Samples
) -> None:
    operator = module_tokens.headers(module_tokens.operator)
    client.post("/v1/estates", json={"content": samples.ward_estate}, headers=operator)
    done = started(client, module_tokens, samples.agent_update)
    wait_for(client, module_tokens.viewer, done, "completed")
    baking = started(client, module_tokens, samples.agent_update.replace("bake: 0s", "bake: 1h"))
    wait_for(client, module_tokens.viewer, baking, "baking")
    client.get("/v1/rollouts")  # a 401, counted like any request

    # Heartbeats as agents send them: app-1 (a target of the baking rollout) 100 s ago, db-1 (in no
    # rollout) 5 s ago.
    now = datetime.now(UTC)
    engine = make_engine(module_server.database_url)
    try:
        with session_scope(engine) as session:
            add_observations(
                session,
                [
                    Observation("app-1", now - timedelta(seconds=100), ObservationKind.HEARTBEAT, "healthy"),
                    Observation("db-1", now - timedelta(seconds=5), ObservationKind.HEARTBEAT, "healthy"),
                ],
            )
    finally:
        engine.dispose()

    metrics = scrape(client)
    elapsed = (datetime.now(UTC) - now).total_seconds() + 1
    assert metrics[("ringfence_rollouts", (("phase", "completed"),))] == 1
    assert metrics[("ringfence_rollouts", (("phase", "baking"),))] == 1
    assert metrics[("ringfence_rollouts", (("phase", "halted"),))] == 0
    # Ring 0 and ring 1 of the completed rollout passed their gates; nothing else was judged yet.
    assert metrics[("ringfence_gate_verdicts_total", (("outcome", "passed"),))] == 2
    assert metrics[("ringfence_gate_verdicts_total", (("outcome", "failed"),))] == 0
    assert 5 <= metrics[("ringfence_heartbeat_lag_seconds", ())] <= 5 + elapsed
    assert 100 <= metrics[("ringfence_rollout_heartbeat_lag_max_seconds", ())] <= 100 + elapsed

    status_route = (("method", "GET"), ("route", "/v1/rollouts/{rollout_id}"), ("status", "200"))
    assert metrics[("ringfence_http_requests_total", status_route)] >= 2
    refused = (("method", "GET"), ("route", "/v1/rollouts"), ("status", "401"))
    assert metrics[("ringfence_http_requests_total", refused)] == 1
    timed = (("le", "+Inf"), ("method", "GET"), ("route", "/v1/rollouts/{rollout_id}"))
    assert metrics[("ringfence_http_request_duration_seconds_bucket", timed)] >= 2

    # Counters only grow: a second scrape counts the same verdicts once.
    again = scrape(client)
    assert again[("ringfence_gate_verdicts_total", (("outcome", "passed"),))] == 2


def test_unmatched_paths_share_one_label(client: httpx.Client) -> None:
    assert client.get("/v1/no/such/thing/123").status_code == 404
    assert client.get("/v1/no/such/thing/456").status_code == 404
    metrics = scrape(client)
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert metrics[("ringfence_http_requests_total", unmatched)] >= 2
    assert not any("123" in dict(labels).get("route", "") for _, labels in metrics)


def test_verdicts_are_counted_by_the_outcome_stored_never_by_their_words(live_server: str, db_url: str) -> None:
    at = datetime.now(UTC)
    engine = make_engine(db_url)
    try:
        with session_scope(engine) as session:
            version = add_estate_version(
                session, name="e", content="x", format="yaml", created_by="ana", asset_count=1, service_count=1, at=at
            )
            rollout = create_rollout(
                session,
                estate_version_id=version.id,
                update_id="u",
                update_doc={},
                plan={},
                created_by="ana",
                needs_approval=False,
                at=at,
            )
            # What the gate decided, worded as a reader of sentences would get wrong, or could not read at all.
            for ring, outcome, sentence in [
                (0, GateOutcome.failed, "ring 0 passed: 4 of 4 strata passed"),
                (1, GateOutcome.failed, "la porte a dit non"),
                (2, GateOutcome.inconclusive, "ring 2 passed: 1 of 1 stratum passed"),
                (3, GateOutcome.error, ""),
            ]:
                add_gate_verdict(session, rollout.id, RingVerdict(ring, outcome, (), sentence), at=at)
            # A transition out of judging that reads like a verdict, with no verdict stored: not one.
            append_audit(
                session,
                actor="controller",
                action="rollout.transition",
                subject=f"rollout:{rollout.id}",
                detail={
                    "from": "judging",
                    "to": "applying",
                    "ring": 1,
                    "reason": "ring 0 passed: 1 of 1",
                    "version": 2,
                },
                at=at,
            )
    finally:
        engine.dispose()

    with httpx.Client(base_url=live_server, timeout=60) as http:
        metrics = scrape(http)
    counted = {o: metrics[("ringfence_gate_verdicts_total", (("outcome", o.value),))] for o in GateOutcome}
    assert counted == {
        GateOutcome.passed: 0,
        GateOutcome.failed: 2,
        GateOutcome.inconclusive: 1,
        GateOutcome.error: 1,
    }
