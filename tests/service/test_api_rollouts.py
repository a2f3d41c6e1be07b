"""Plans and rollouts on a real server: the two-person rule, the moves people make, and a rollout driven to
completion by the server's own controller loop (simulated driver)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ringfence.core.documents import plan_document
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.planner import plan_rings
from ringfence.core.update import parse_update_text

if TYPE_CHECKING:
    from conftest import Samples, Tokens


@pytest.fixture(scope="module")
def ward(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> int:
    """The ward estate stored on the module's server; its version id."""
    response = client.post(
        "/v1/estates", json={"content": samples.ward_estate}, headers=module_tokens.headers(module_tokens.operator)
    )
    assert response.status_code in (200, 201), response.text
    return int(response.json()["version"]["id"])


def create(client: httpx.Client, secret: str, update: str, **extra: Any) -> httpx.Response:
    return client.post(
        "/v1/rollouts",
        json={"estate": "ward", "update": update, **extra},
        headers={"Authorization": f"Bearer {secret}"},
    )


def act(client: httpx.Client, secret: str, rollout_id: str, verb: str, reason: str | None = None) -> httpx.Response:
    body = {"reason": reason} if reason is not None else None
    return client.post(f"/v1/rollouts/{rollout_id}/{verb}", json=body, headers={"Authorization": f"Bearer {secret}"})


def wait_for(
    client: httpx.Client, secret: str, rollout_id: str, phases: set[str], timeout: float = 60
) -> dict[str, Any]:
    """Poll the rollout until it reaches one of ``phases`` (the server's controller loop moves it)."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(
            f"/v1/rollouts/{rollout_id}", headers={"Authorization": f"Bearer {secret}"}
        ).json()
        if status["phase"] in phases:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"rollout {rollout_id} is still {status['phase']} after {timeout} s: {status}")
        time.sleep(0.05)


def test_plan_is_the_cli_document_and_stores_nothing(
    client: httpx.Client, module_tokens: Tokens, samples: Samples, ward: int
) -> None:
    response = client.post(
        "/v1/plans",
        json={"estate": "ward", "update": samples.agent_update},
        headers=module_tokens.headers(module_tokens.viewer),
    )
    assert response.status_code == 200, response.text
    graph = compile_estate(parse_estate_text(samples.ward_estate))
    expected = plan_document(plan_rings(graph, parse_update_text(samples.agent_update))).model_dump(mode="json")
    assert response.json() == expected
    assert response.json()["targets"] == 5
    listed = client.get("/v1/rollouts", headers=module_tokens.headers(module_tokens.viewer)).json()["rollouts"]
    assert all(r["update"] != "agent-2" or r["created_by"] != "vic-viewer" for r in listed)


def test_a_held_release_is_refused_unless_overridden(
    client: httpx.Client, module_tokens: Tokens, samples: Samples, ward: int
) -> None:
    viewer = module_tokens.headers(module_tokens.viewer)
    held = client.post("/v1/plans", json={"estate": "ward", "update": samples.held_update}, headers=viewer)
    assert held.status_code == 409
    assert "vmware/esxi@7.0.3" in held.json()["detail"]
    why = "the hosts run no partner NIC drivers"
    planned = client.post(
        "/v1/plans", json={"estate": "ward", "update": samples.held_update, "override_hold": why}, headers=viewer
    )
    assert planned.status_code == 200
    assert planned.json()["hold_override"]["justification"] == why

    # A rollout overriding a hold always needs someone else's approval, whatever its targets.
    created = create(client, module_tokens.operator, samples.held_update, override_hold=why)
    assert created.status_code == 201, created.text
    assert created.json()["phase"] == "awaiting_approval"
    events = client.get(f"/v1/rollouts/{created.json()['id']}/events", headers=viewer).json()["entries"]
    assert [e["action"] for e in events] == ["rollout.hold_override", "rollout.create"] or [
        e["action"] for e in events
    ] == ["rollout.create", "rollout.hold_override"]


def test_a_rollout_runs_to_completion_under_the_servers_controller(
    client: httpx.Client, module_tokens: Tokens, samples: Samples, ward: int
) -> None:
    created = create(client, module_tokens.operator, samples.agent_update)
    assert created.status_code == 201, created.text
    rollout = created.json()
    assert rollout["phase"] == "pending"
    assert rollout["needs_approval"] is False
    assert rollout["created_by"] == "olga-operator"
    assert sorted(a["id"] for a in rollout["assets"]) == ["app-1", "app-2", "app-3", "ws-1", "ws-2"]

    started = act(client, module_tokens.operator, rollout["id"], "start")
    assert started.status_code == 200, started.text
    done = wait_for(client, module_tokens.viewer, rollout["id"], {"completed", "halted", "paused", "failed"})
    assert done["phase"] == "completed", done
    assert [a["state"] for a in done["assets"]] == ["applied"] * 5
    assert [ring["states"] for ring in done["rings"]] == [{"applied": 4}, {"applied": 1}]

    events = client.get(
        f"/v1/rollouts/{rollout['id']}/events", headers=module_tokens.headers(module_tokens.viewer)
    ).json()
    transitions = [e for e in events["entries"] if e["action"] == "rollout.transition"]
    assert transitions[0]["actor"] == "olga-operator"
    assert transitions[0]["detail"]["to"] == "taking_restore_points"
    assert {e["actor"] for e in transitions[1:]} == {"controller"}
    assert transitions[-1]["detail"]["to"] == "completed"
    # Polling with after=seq answers only what came since.
    later = client.get(
        f"/v1/rollouts/{rollout['id']}/events",
        params={"after": transitions[-2]["seq"]},
        headers=module_tokens.headers(module_tokens.viewer),
    ).json()
    assert [e["seq"] for e in later["entries"]] == [transitions[-1]["seq"]]
    assert later["last_seq"] == transitions[-1]["seq"]


def test_two_people_approve_a_rollout_of_critical_assets(
    client: httpx.Client, module_tokens: Tokens, samples: Samples, ward: int
) -> None:
    created = create(client, module_tokens.approver, samples.db_update)
    assert created.status_code == 201, created.text
    rollout = created.json()
    assert rollout["phase"] == "awaiting_approval"
    assert rollout["needs_approval"] is True
    rid = rollout["id"]

    assert act(client, module_tokens.operator, rid, "start").status_code == 409
    own = act(client, module_tokens.approver, rid, "approve")
    assert own.status_code == 403
    assert "cannot also approve" in own.json()["detail"]
    assert act(client, module_tokens.operator, rid, "approve").status_code == 403  # an operator cannot approve

    approved = act(client, module_tokens.second_approver, rid, "approve", reason="change board 12")
    assert approved.status_code == 200, approved.text
    assert approved.json()["phase"] == "pending"
    assert approved.json()["approved_by"] == "bo-approver"
    assert act(client, module_tokens.second_approver, rid, "approve").status_code == 409  # no longer awaiting

    assert act(client, module_tokens.operator, rid, "start").status_code == 200
    done = wait_for(client, module_tokens.viewer, rid, {"completed", "halted", "paused", "failed"})
    assert done["phase"] == "completed"


def test_people_pause_resume_abort_and_roll_back(
    client: httpx.Client, module_tokens: Tokens, samples: Samples, ward: int
) -> None:
    # A long bake keeps the rollout running long enough for people to act on it.
    slow = samples.agent_update.replace("bake: 0s", "bake: 1h")
    rid = create(client, module_tokens.operator, slow).json()["id"]
    operator = module_tokens.operator

    for verb in ("pause", "resume", "abort", "rollback"):
        refused = act(client, operator, rid, verb)
        assert refused.status_code == 409, (verb, refused.text)  # a pending rollout can only be started
        assert refused.headers["content-type"].startswith("application/problem+json")

    act(client, operator, rid, "start")
    baking = wait_for(client, module_tokens.viewer, rid, {"baking"})
    assert baking["ring"] == 0

    paused = act(client, operator, rid, "pause", reason="night shift")
    assert paused.status_code == 200
    assert paused.json()["phase"] == "paused"
    assert paused.json()["paused_from"] == "baking"
    assert act(client, operator, rid, "pause").status_code == 409
    resumed = act(client, operator, rid, "resume")
    assert resumed.json()["phase"] == "baking"

    halted = act(client, operator, rid, "abort", reason="supplier advisory")
    assert halted.json()["phase"] == "halted"
    assert "supplier advisory" in halted.json()["halt_reason"]
    rolled = act(client, operator, rid, "rollback")
    assert rolled.status_code == 200
    done = wait_for(client, module_tokens.viewer, rid, {"rolled_back", "failed"})
    assert done["phase"] == "rolled_back"
    states = {a["id"]: a["state"] for a in done["assets"]}
    assert sorted(set(states.values())) == ["rolled_back", "skipped"]

    entries = client.get(f"/v1/rollouts/{rid}/events", headers=module_tokens.headers(module_tokens.viewer)).json()
    reasons = [e["detail"].get("reason", "") for e in entries["entries"]]
    assert "paused by olga-operator: night shift" in reasons
    assert "aborted by olga-operator: supplier advisory" in reasons


def test_list_and_filter_rollouts(client: httpx.Client, module_tokens: Tokens, samples: Samples, ward: int) -> None:
    rid = create(client, module_tokens.operator, samples.db_update).json()["id"]
    viewer = module_tokens.headers(module_tokens.viewer)
    waiting = client.get("/v1/rollouts", params={"phase": "awaiting_approval"}, headers=viewer).json()["rollouts"]
    assert rid in [r["id"] for r in waiting]
    assert {r["phase"] for r in waiting} == {"awaiting_approval"}
    every = client.get("/v1/rollouts", headers=viewer).json()["rollouts"]
    assert len(every) >= len(waiting)
    assert [r["created_at"] for r in every] == sorted(r["created_at"] for r in every)
    bad = client.get("/v1/rollouts", params={"phase": "sleeping"}, headers=viewer)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.phase[0]"


def test_bad_requests(client: httpx.Client, module_tokens: Tokens, samples: Samples, ward: int) -> None:
    operator = module_tokens.operator
    bad_rings = samples.agent_update.replace('rings: [1, "100%"]', 'rings: [1, "120%"]')
    response = create(client, operator, bad_rings)
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], error["line"], error["source"]) == ("update.rings[1]", 2, "update")

    unknown = create(client, operator, samples.agent_update, driver="teleport")
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "driver"
    assert "teleport" in unknown.json()["detail"]

    strategy = create(client, operator, samples.agent_update, strategy="yolo")
    assert strategy.status_code == 422
    assert strategy.json()["errors"][0]["field"] == "strategy"

    no_update = client.post("/v1/rollouts", json={"estate": "ward"}, headers=module_tokens.headers(operator))
    assert [e["field"] for e in no_update.json()["errors"]] == ["update"]

    reason = act(client, operator, "r-000001", "pause", reason="x" * 5000)
    assert reason.status_code == 422
    assert reason.json()["errors"][0]["field"] == "reason"

    assert create(client, operator, samples.agent_update, estate="nowhere").status_code == 404
    assert client.get("/v1/rollouts/r-999999", headers=module_tokens.headers(operator)).status_code == 404
    assert act(client, operator, "r-999999", "start").status_code == 404
    assert client.get("/v1/rollouts/r-999999/events", headers=module_tokens.headers(operator)).status_code == 404


def test_roles(client: httpx.Client, module_tokens: Tokens, samples: Samples, ward: int) -> None:
    assert client.post("/v1/rollouts", json={"estate": "ward", "update": samples.agent_update}).status_code == 401
    assert create(client, module_tokens.viewer, samples.agent_update).status_code == 403
    assert client.get("/v1/rollouts").status_code == 401
    assert client.post("/v1/plans", json={"estate": "ward", "update": samples.agent_update}).status_code == 401
    rid = create(client, module_tokens.operator, samples.agent_update).json()["id"]
    assert act(client, module_tokens.viewer, rid, "start").status_code == 403
