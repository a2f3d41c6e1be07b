"""The estate of record (issue 12, item 1): a rollout's targets and approval are judged on the current version of
record, a version that weakens it waits for a second person, and agents act only for rollouts on it.

The walk-arounds the review found, each tried through the real API (a uvicorn server, SQLite and PostgreSQL):
a new version of the real estate with the tier 1 service at tier 4, a "shadow" estate holding the same assets
with no critical service, and a rollout planned on either. The agent side and the CLI's text path are tried on
the service's use cases over a real database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy.engine import Engine

from ringfence.core.errors import ConflictError
from ringfence.core.estate import parse_estate_text
from ringfence.core.rollout.state import AssetState
from ringfence.drivers.agent import AgentDriver
from ringfence.service import rollouts
from ringfence.service.agents import DirectiveBoard
from ringfence.service.estates import diff_estates, estate_version, upload_estate
from ringfence.store.db import session_scope
from ringfence.store.rollouts import list_rollout_assets

if TYPE_CHECKING:
    from conftest import Samples
    from live_server import Tokens

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _headers(tokens: Tokens, secret: str) -> dict[str, str]:
    return tokens.headers(secret)


def _upload(http: httpx.Client, tokens: Tokens, text: str, secret: str | None = None) -> httpx.Response:
    return http.post("/v1/estates", json={"content": text}, headers=_headers(tokens, secret or tokens.operator))


def test_a_version_that_lowers_a_tier_is_proposed_and_rollouts_are_judged_on_the_current_one(
    live_server: str, tokens: Tokens, samples: Samples
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as http:
        first = _upload(http, tokens, samples.ward_estate)
        assert first.status_code == 201, first.text
        assert first.json()["current"] is True
        assert first.json()["proposed"] is False

        # The walk-around: the EHR (db-1's only service) at tier 4, so a database update needs nobody else.
        weaker = samples.ward_estate.replace("tier: 1, rto: 4h", "tier: 4, rto: 4h")
        proposed = _upload(http, tokens, weaker)
        assert proposed.status_code == 201, proposed.text
        body = proposed.json()
        assert body["proposed"] is True
        assert body["current"] is False
        assert body["version"]["status"] == "proposed"
        assert body["diff"]["tiers_lowered"] == [{"service": "ehr", "was": 1, "now": 4}]
        assert body["diff"]["changes"] == ["service 'ehr' goes from tier 1 to tier 4 (less critical)"]
        proposal_id = body["version"]["id"]

        viewer = _headers(tokens, tokens.viewer)
        detail = http.get("/v1/estates/ward", headers=viewer).json()
        assert detail["version"]["id"] == first.json()["version"]["id"]  # still the estate of record

        # A rollout on the estate is judged on the current version: db-1 is still tier 1, so it waits for approval.
        operator = _headers(tokens, tokens.operator)
        created = http.post("/v1/rollouts", json={"estate": "ward", "update": samples.db_update}, headers=operator)
        assert created.status_code == 201, created.text
        assert created.json()["phase"] == "awaiting_approval"

        # Naming the proposal is refused, with what differs.
        on_proposal = http.post(
            "/v1/rollouts",
            json={"estate": "ward", "version": proposal_id, "update": samples.db_update},
            headers=operator,
        )
        assert on_proposal.status_code == 409, on_proposal.text
        assert "proposed" in on_proposal.json()["detail"]
        assert "service 'ehr' goes from tier 1 to tier 4" in on_proposal.json()["detail"]

        listed = http.get("/v1/estates/ward/proposals", headers=viewer).json()["proposals"]
        assert [(p["version"]["id"], p["diff"]["changes"]) for p in listed] == [
            (proposal_id, ["service 'ehr' goes from tier 1 to tier 4 (less critical)"])
        ]

        # Its uploader cannot approve it (an approver token of theirs under another spelling neither); another can.
        own = tokens.issue("Olga-Operator ", "approver")
        refused = http.post(f"/v1/estates/ward/versions/{proposal_id}/approve", headers=_headers(tokens, own))
        assert refused.status_code == 403, refused.text
        approved = http.post(
            f"/v1/estates/ward/versions/{proposal_id}/approve", headers=_headers(tokens, tokens.approver)
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["version"]["status"] == "accepted"
        assert approved.json()["version"]["decided_by"] == "ada-approver"
        assert http.get("/v1/estates/ward", headers=viewer).json()["version"]["id"] == proposal_id
        again = http.post(f"/v1/estates/ward/versions/{proposal_id}/approve", headers=_headers(tokens, tokens.approver))
        assert again.status_code == 409

        actions = [e["action"] for e in http.get("/v1/audit", headers=_headers(tokens, tokens.admin)).json()["entries"]]
        assert "estate.propose" in actions
        assert "estate.approve" in actions


def test_a_shadow_estate_cannot_take_assets_or_plan_a_rollout_on_them(
    live_server: str, tokens: Tokens, samples: Samples
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as http:
        assert _upload(http, tokens, samples.ward_estate).status_code == 201
        # Same asset ids, another name, no service at all: everything looks tier 5.
        head, _, assets = samples.ward_estate.partition("services:")
        shadow = head.replace("estate: ward", "estate: shadow") + "assets:" + assets.partition("assets:")[2]
        response = _upload(http, tokens, shadow)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["proposed"] is True
        moved = {m["asset"]: m["from_estate"] for m in body["diff"]["assets_moved"]}
        assert moved["db-1"] == "ward"
        assert len(moved) == 7
        shadow_id = body["version"]["id"]

        operator = _headers(tokens, tokens.operator)
        by_name = http.post("/v1/rollouts", json={"estate": "shadow", "update": samples.db_update}, headers=operator)
        assert by_name.status_code == 404, by_name.text  # no current version of record
        by_version = http.post(
            "/v1/rollouts",
            json={"estate": "shadow", "version": shadow_id, "update": samples.db_update},
            headers=operator,
        )
        assert by_version.status_code == 409, by_version.text
        assert "asset 'db-1' moves from estate 'ward'" in by_version.json()["detail"]
        rollouts_now = http.get("/v1/rollouts", headers=operator).json()["rollouts"]
        assert rollouts_now == []

        # Rejected by a second person, it never becomes current.
        rejected = http.post(
            f"/v1/estates/shadow/versions/{shadow_id}/reject", headers=_headers(tokens, tokens.approver)
        )
        assert rejected.status_code == 200
        assert rejected.json()["status"] == "rejected"
        assert http.get("/v1/estates/shadow/proposals", headers=operator).json()["proposals"] == []


def test_removing_a_service_or_loosening_a_requirement_is_proposed(
    live_server: str, tokens: Tokens, samples: Samples
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as http:
        assert _upload(http, tokens, samples.ward_estate).status_code == 201
        loosened = samples.ward_estate.replace("requires: [{any: 1, of: [app-1, app-2]}]", "requires: []").replace(
            '  - {id: lab, name: Lab results, tier: 4, requires: [{any: 2, where: "attrs.os=solaris"}]}\n', ""
        )
        body = _upload(http, tokens, loosened).json()
        assert body["proposed"] is True, body
        assert body["diff"]["services_removed"] == ["lab"]
        assert body["diff"]["requirements_removed"] == [
            {"owner": "service 'rota'", "requirement": "any 1 of [app-1, app-2]"}
        ]
        # Strengthening (a new tier 1 service, a stricter group) is current at once.
        stronger = samples.ward_estate.replace(
            "requires: [{any: 1, of: [app-1, app-2]}]", "requires: [{any: 2, of: [app-1, app-2]}]"
        )
        accepted = _upload(http, tokens, stronger).json()
        assert accepted["proposed"] is False
        assert accepted["current"] is True


def test_diff_keeps_requirements_that_are_at_least_as_strict() -> None:
    base = """\
apiVersion: ringfence/v1
estate: e
services:
  - {id: s, tier: 2, requires: [a, {any: 1, of: [b, c, d]}, {any: 2, where: "kind=vm"}]}
assets:
  - {id: a, kind: vm}
  - {id: b, kind: vm}
  - {id: c, kind: vm}
  - {id: d, kind: vm}
"""
    old = parse_estate_text(base)
    same = diff_estates(old, parse_estate_text(base.replace("[b, c, d]", "[d, b]")), {})
    assert not same.is_weaker  # any 1 of a subset is stricter
    looser = diff_estates(old, parse_estate_text(base.replace("{any: 2, where", "{any: 1, where")), {})
    assert [r.requirement for r in looser.requirements_removed] == ["any 2 where kind=vm"]
    hard = diff_estates(old, parse_estate_text(base.replace("{any: 1, of: [b, c, d]}", "b")), {})
    assert not hard.is_weaker


def test_a_rollout_from_a_text_is_planned_on_the_estate_of_record_only(db_engine: Engine, samples: Samples) -> None:
    # The CLI's path (`rollout create ESTATE UPDATE` with a database): the text is recorded as an upload is.
    def create(text: str) -> rollouts.CreatedRollout:
        return rollouts.create_rollout(
            db_engine,
            estate_text=text,
            estate_source="ward.yaml",
            update_text=samples.agent_update,
            update_source="update.yaml",
            actor="olga",
            at=T0,
        )

    first = create(samples.ward_estate)  # a first upload is of record
    assert first.rollout is not None
    weaker = samples.ward_estate.replace("tier: 1, rto: 4h", "tier: 4, rto: 4h")
    with pytest.raises(ConflictError) as refused:
        create(weaker)
    assert "proposed, awaiting a second person" in str(refused.value)
    assert estate_version(db_engine, "ward").id == first.rollout.estate_version_id  # unchanged
    shadow = samples.ward_estate.replace("estate: ward", "estate: shadow")
    with pytest.raises(ConflictError, match="moves from estate 'ward'"):
        create(shadow)
    # A dry run plans on any text, stores nothing.
    dry = rollouts.create_rollout(
        db_engine,
        estate_text=shadow,
        estate_source="shadow.yaml",
        update_text=samples.agent_update,
        update_source="update.yaml",
        actor="olga",
        at=T0,
        dry_run=True,
    )
    assert dry.rollout is None


AGENT_ESTATE = """\
apiVersion: ringfence/v1
estate: agents
services:
  - {id: desk, tier: 4, requires: [{any: 1, where: "kind=endpoint"}]}
assets:
  - {id: lat-01, kind: endpoint, site: city, attrs: {os: w11}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: lat-02, kind: endpoint, site: city, attrs: {os: w11}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: srv-01, kind: vm, site: city, attrs: {os: w2019}, software: [{product: acme/agent, version: "1.0"}]}
  - {id: srv-02, kind: vm, site: city, attrs: {os: w2019}, software: [{product: acme/agent, version: "1.0"}]}
"""
AGENT_UPDATE = """\
apiVersion: ringfence/v1
update: {id: acme-2, product: acme/agent, version: "2.0", rings: [1, "100%"], bake: 1m, rollback: reinstall}
"""


def test_agents_are_told_to_act_only_for_rollouts_on_the_estate_of_record(db_engine: Engine) -> None:
    created = rollouts.create_rollout(
        db_engine,
        estate_text=AGENT_ESTATE,
        estate_source="agents.yaml",
        update_text=AGENT_UPDATE,
        update_source="update.yaml",
        actor="olga",
        at=T0,
        driver="agent",
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    rollouts.start(db_engine, rollout_id, actor="olga", at=T0)

    class Clock:
        def __call__(self) -> datetime:
            return T0 + timedelta(seconds=1)

    driver = AgentDriver(engine=db_engine, heartbeat_timeout="30s", clock=Clock())
    rollouts.controller(db_engine, driver, Clock()).step(rollout_id)
    with session_scope(db_engine, readonly=True) as session:
        canaries = sorted(
            a.asset_id for a in list_rollout_assets(session, rollout_id) if a.state is AssetState.APPLYING
        )
    assert canaries
    board = DirectiveBoard(db_engine, ttl=0, max_age=0)
    assert {board.directive(a, T0).action.value for a in canaries} == {"install"}

    # A new version becomes the estate of record (it weakens nothing: one more service); the rollout was judged
    # on the old one, so its agents wait rather than act on a plan the estate of record did not approve.
    stronger = AGENT_ESTATE.replace("assets:", "  - {id: files, tier: 2, requires: [srv-01]}\nassets:")
    stored = upload_estate(db_engine, stronger, actor="olga", at=T0 + timedelta(seconds=2))
    assert not stored.is_proposed
    told = {a: board.directive(a, T0) for a in canaries}
    assert {d.action.value for d in told.values()} == {"wait"}, told
    # Still this rollout's targets (so that a rollback started now is answered): told why they wait.
    assert all("re-plan the rollout" in d.reason for d in told.values()), told


def test_the_dashboard_says_a_weaker_upload_is_proposed_not_stored_as_current(
    live_server: str, tokens: Tokens, samples: Samples
) -> None:
    with httpx.Client(
        base_url=live_server, cookies={"ringfence_token": tokens.operator}, headers={"Origin": live_server}, timeout=60
    ) as page:

        def store(text: str) -> httpx.Response:
            return page.post(
                "/estates/upload", files={"estate_file": ("ward.yaml", text.encode())}, data={"action": "store"}
            )

        assert store(samples.ward_estate).status_code == 303
        weaker = samples.ward_estate.replace("tier: 1, rto: 4h", "tier: 4, rto: 4h")
        answer = store(weaker)
        assert answer.status_code == 202, answer.text
        assert 'id="upload-proposed"' in answer.text
        assert "awaiting a second person" in answer.text
        assert "service &#39;ehr&#39; goes from tier 1 to tier 4 (less critical)" in answer.text
        assert "Stored as version" not in answer.text


def test_the_cli_proposes_lists_and_approves_with_a_second_person(tmp_path: Path, samples: Samples) -> None:
    ringfence = shutil.which("ringfence", path=os.path.dirname(sys.executable))
    assert ringfence is not None
    env = {**os.environ, "RINGFENCE_DATABASE_URL": f"sqlite:///{tmp_path / 'rf.db'}", "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ringfence, *args], capture_output=True, text=True, env=env, timeout=300, check=False)

    (tmp_path / "ward.yaml").write_text(samples.ward_estate, encoding="utf-8")
    (tmp_path / "weaker.yaml").write_text(
        samples.ward_estate.replace("tier: 1, rto: 4h", "tier: 4, rto: 4h"), encoding="utf-8"
    )
    assert run("estate", "upload", str(tmp_path / "ward.yaml"), "--actor", "olga").returncode == 0
    proposed = run("estate", "upload", str(tmp_path / "weaker.yaml"), "--actor", "olga", "--json")
    assert proposed.returncode == 0, proposed.stderr
    document = json.loads(proposed.stdout)
    assert document["status"] == "proposed"
    assert document["changes"] == ["service 'ehr' goes from tier 1 to tier 4 (less critical)"]
    version = str(document["version"])

    listed = run("estate", "proposals", "ward")
    assert "service 'ehr' goes from tier 1 to tier 4" in listed.stdout
    own = run("estate", "approve", "ward", version, "--actor", "Olga")
    assert own.returncode != 0
    assert "cannot also approve" in own.stderr
    approved = run("estate", "approve", "ward", version, "--actor", "bo")
    assert approved.returncode == 0, approved.stderr
    assert "now current" in approved.stdout
    assert json.loads(run("estate", "list", "--json").stdout)["estates"][0]["current"] == int(version)
