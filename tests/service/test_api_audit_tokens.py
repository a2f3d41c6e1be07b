"""``/v1/tokens`` and ``/v1/audit`` on a real server: tokens by admins only, writes audited by token name,
and a tampered audit log found out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import sqlalchemy as sa

from ringfence.store.db import make_engine

if TYPE_CHECKING:
    from conftest import Samples, Tokens


def test_an_admin_creates_lists_and_revokes_tokens(
    client: httpx.Client, module_tokens: Tokens, samples: Samples
) -> None:
    admin = module_tokens.headers(module_tokens.admin)
    client.post("/v1/estates", json={"content": samples.ward_estate}, headers=admin)
    created = client.post("/v1/tokens", json={"name": "night-shift", "role": "operator"}, headers=admin)
    assert created.status_code == 201, created.text
    issued = created.json()
    assert issued["role"] == "operator"
    assert issued["token"].startswith("rf_")
    fresh = {"Authorization": f"Bearer {issued['token']}"}
    assert client.get("/v1/estates", headers=fresh).status_code == 200

    listed = client.get("/v1/tokens", headers=admin).json()["tokens"]
    mine = [t for t in listed if t["id"] == issued["id"]]
    assert mine == [{"id": issued["id"], "name": "night-shift", "role": "operator", "asset": None}]
    assert all("token" not in t for t in listed)

    agent = client.post("/v1/tokens", json={"name": "agent ws-1", "role": "agent", "asset": "ws-1"}, headers=admin)
    assert agent.status_code == 201
    assert agent.json()["asset"] == "ws-1"

    revoked = client.delete(f"/v1/tokens/{issued['id']}", headers=admin)
    assert revoked.status_code == 204
    assert client.get("/v1/estates", headers=fresh).status_code == 401
    assert issued["id"] not in [t["id"] for t in client.get("/v1/tokens", headers=admin).json()["tokens"]]

    entries = client.get("/v1/audit", params={"limit": 1000}, headers=admin).json()["entries"]
    about = [e for e in entries if e["subject"] == f"token:{issued['id']}"]
    assert [(e["action"], e["actor"]) for e in about] == [("token.create", "ann-admin"), ("token.revoke", "ann-admin")]
    assert about[0]["detail"] == {"name": "night-shift", "role": "operator", "asset": None}


def test_an_agent_token_must_name_an_asset_a_stored_estate_has(
    client: httpx.Client, module_tokens: Tokens, samples: Samples
) -> None:
    admin = module_tokens.headers(module_tokens.admin)
    estate = samples.ward_estate.replace("estate: ward", "estate: ward-agents").replace("ws-2", "ws-agent-7")
    assert client.post("/v1/estates", json={"content": estate}, headers=admin).status_code == 201
    before = client.get("/v1/tokens", headers=admin).json()["tokens"]

    typo = client.post("/v1/tokens", json={"name": "agent", "role": "agent", "asset": "ws-agnet-7"}, headers=admin)
    assert typo.status_code == 422, typo.text
    problem = typo.json()["errors"][0]
    assert problem["field"] == "asset"
    assert "ws-agnet-7" in problem["message"]
    assert '"force": true' in problem["message"]
    assert client.get("/v1/tokens", headers=admin).json()["tokens"] == before

    right = client.post("/v1/tokens", json={"name": "agent", "role": "agent", "asset": "ws-agent-7"}, headers=admin)
    assert right.status_code == 201, right.text
    forced = client.post(
        "/v1/tokens", json={"name": "agent", "role": "agent", "asset": "not-yet-built", "force": True}, headers=admin
    )
    assert forced.status_code == 201, forced.text
    assert forced.json()["asset"] == "not-yet-built"


def test_tokens_are_for_admins(client: httpx.Client, module_tokens: Tokens) -> None:
    body = {"name": "sneaky", "role": "admin"}
    assert client.post("/v1/tokens", json=body).status_code == 401
    for secret in (module_tokens.viewer, module_tokens.operator, module_tokens.approver):
        assert client.post("/v1/tokens", json=body, headers=module_tokens.headers(secret)).status_code == 403
        assert client.get("/v1/tokens", headers=module_tokens.headers(secret)).status_code == 403
        assert client.delete("/v1/tokens/1", headers=module_tokens.headers(secret)).status_code == 403


def test_bad_token_requests(client: httpx.Client, module_tokens: Tokens) -> None:
    admin = module_tokens.headers(module_tokens.admin)
    role = client.post("/v1/tokens", json={"name": "x", "role": "king"}, headers=admin)
    assert role.status_code == 422
    assert role.json()["errors"][0]["field"] == "role"
    asset = client.post("/v1/tokens", json={"name": "x", "role": "agent"}, headers=admin)
    assert asset.status_code == 422
    assert asset.json()["errors"][0]["field"] == "asset"
    blank = client.post("/v1/tokens", json={"name": "", "role": "viewer"}, headers=admin)
    assert blank.json()["errors"][0]["field"] == "name"
    assert client.delete("/v1/tokens/999999", headers=admin).status_code == 404


def test_writes_are_audited_with_the_token_name(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> None:
    viewer = module_tokens.headers(module_tokens.viewer)
    before = client.get("/v1/audit", params={"limit": 1000}, headers=viewer).json()["last_seq"]
    estate = samples.ward_named("ward-audited")
    client.post("/v1/estates", json={"content": estate}, headers=module_tokens.headers(module_tokens.operator))
    since = client.get("/v1/audit", params={"after": before}, headers=viewer).json()
    assert [(e["action"], e["actor"], e["subject"]) for e in since["entries"]] == [
        ("estate.upload", "olga-operator", "estate:ward-audited")
    ]
    assert since["last_seq"] == since["entries"][0]["seq"]
    assert since["entries"][0]["prev_hash"] != since["entries"][0]["hash"]
    nothing = client.get("/v1/audit", params={"after": since["last_seq"]}, headers=viewer).json()
    assert nothing == {"entries": [], "last_seq": since["last_seq"]}
    page = client.get("/v1/audit", params={"limit": 1}, headers=viewer).json()
    assert [e["seq"] for e in page["entries"]] == [1]
    assert client.get("/v1/audit", params={"limit": 0}, headers=viewer).status_code == 422
    assert client.get("/v1/audit").status_code == 401


def test_verify_finds_a_tampered_entry(live_server: str, tokens: Tokens, samples: Samples) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as http:
        operator = tokens.headers(tokens.operator)
        http.post("/v1/estates", json={"content": samples.ward_estate}, headers=operator)
        http.post("/v1/tokens", json={"name": "temp", "role": "viewer"}, headers=tokens.headers(tokens.admin))
        intact = http.get("/v1/audit/verify", headers=tokens.headers(tokens.viewer)).json()
        assert intact["ok"] is True
        assert intact["entries"] == 2
        assert intact["first_bad_seq"] is None

        engine = make_engine(tokens.database_url)
        try:
            with engine.begin() as connection:
                connection.execute(sa.text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1"))
        finally:
            engine.dispose()
        tampered = http.get("/v1/audit/verify", headers=tokens.headers(tokens.viewer)).json()
        assert tampered["ok"] is False
        assert tampered["first_bad_seq"] == 1
        assert tampered["reason"]
