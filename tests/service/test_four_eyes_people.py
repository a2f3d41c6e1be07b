"""Approval is tied to a person, not a free-form token name (issue 12, item 1), through the real API.

People are compared by their normalised names (NFKC, case-folded, format characters dropped, stripped) and by
who issued whose token: an admin who mints a token for themselves under another name cannot approve their own
change with it, nor approve a change made with a token they minted. Tokens made on the CLI (``Tokens.issue``
here, as ``ringfence token create`` does) have no issuer: CLI access to the database is the root of trust.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from ringfence.service.people import person_of

if TYPE_CHECKING:
    from conftest import Samples
    from live_server import Tokens


def _mint(http: httpx.Client, tokens: Tokens, by: str, name: str, role: str) -> str:
    """A token minted through ``POST /v1/tokens`` by the admin token ``by``: its secret."""
    response = http.post("/v1/tokens", json={"name": name, "role": role}, headers=tokens.headers(by))
    assert response.status_code == 201, response.text
    secret: str = response.json()["token"]
    return secret


def _awaiting(http: httpx.Client, tokens: Tokens, creator: str, samples: Samples) -> str:
    """A rollout created by ``creator`` that needs a second person (db-1 alone takes down a tier 1 service)."""
    created = http.post(
        "/v1/rollouts", json={"estate": "ward", "update": samples.db_update}, headers=tokens.headers(creator)
    )
    assert created.status_code == 201, created.text
    assert created.json()["phase"] == "awaiting_approval"
    rollout_id: str = created.json()["id"]
    return rollout_id


def _approve(http: httpx.Client, tokens: Tokens, rollout_id: str, secret: str) -> httpx.Response:
    return http.post(f"/v1/rollouts/{rollout_id}/approve", headers=tokens.headers(secret))


@pytest.mark.parametrize(
    ("a", "b"),
    [("Admin-1", "admin-1"), ("admin-1 ", "ADMIN-1"), ("ａｄｍｉｎ-1", "admin-1"), ("admin\u200b-1", "admin-1")],
)
def test_one_person_however_the_name_is_written(a: str, b: str) -> None:
    assert person_of(a) == person_of(b)


def test_an_admin_cannot_approve_their_own_rollout_with_a_token_they_mint(
    live_server: str, tokens: Tokens, samples: Samples
) -> None:
    admin_1 = tokens.issue("admin-1", "admin")  # on the CLI: no issuer
    with httpx.Client(base_url=live_server, timeout=60) as http:
        assert http.post(
            "/v1/estates", json={"content": samples.ward_estate}, headers=tokens.headers(admin_1)
        ).is_success
        rollout_id = _awaiting(http, tokens, admin_1, samples)

        # The same name written otherwise, on a token made on the CLI (no issuer to give it away).
        spelled = tokens.issue("ADMIN-1 ", "approver")
        assert _approve(http, tokens, rollout_id, spelled).status_code == 403

        # The review's case: an approver token named "Admin-1" for "admin-1"'s rollout.
        same_name = _mint(http, tokens, admin_1, "Admin-1", "approver")
        refused = _approve(http, tokens, rollout_id, same_name)
        assert refused.status_code == 403, refused.text
        assert "same person" in refused.json()["detail"]

        # Another name, but minted by admin-1: still admin-1 approving.
        other_name = _mint(http, tokens, admin_1, "night-approver", "approver")
        refused = _approve(http, tokens, rollout_id, other_name)
        assert refused.status_code == 403, refused.text
        assert "issued by 'admin-1'" in refused.json()["detail"]

        # Through a chain: admin-1 mints an admin, who mints the approver.
        deputy = _mint(http, tokens, admin_1, "deputy", "admin")
        chained = _mint(http, tokens, deputy, "weekend-approver", "approver")
        assert _approve(http, tokens, rollout_id, chained).status_code == 403

        phase = http.get(f"/v1/rollouts/{rollout_id}", headers=tokens.headers(tokens.viewer)).json()["phase"]
        assert phase == "awaiting_approval"

        # Someone else (a token made on the CLI) may.
        approved = _approve(http, tokens, rollout_id, tokens.approver)
        assert approved.status_code == 200, approved.text
        assert approved.json()["approved_by"] == "ada-approver"


def test_an_admin_cannot_approve_a_rollout_made_with_a_token_they_minted(
    live_server: str, tokens: Tokens, samples: Samples
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as http:
        assert http.post(
            "/v1/estates", json={"content": samples.ward_estate}, headers=tokens.headers(tokens.operator)
        ).is_success
        # ann-admin mints an operator token under another name and creates the change with it.
        alias = _mint(http, tokens, tokens.admin, "carol", "operator")
        rollout_id = _awaiting(http, tokens, alias, samples)
        refused = _approve(http, tokens, rollout_id, tokens.admin)
        assert refused.status_code == 403, refused.text
        assert "issued by 'ann-admin'" in refused.json()["detail"]
        # An approver whose token another admin minted is a second person.
        other_admin = tokens.issue("zed-admin", "admin")
        approver = _mint(http, tokens, other_admin, "dan-approver", "approver")
        assert _approve(http, tokens, rollout_id, approver).status_code == 200


def test_an_estate_proposal_is_approved_by_another_person_only(
    live_server: str, tokens: Tokens, samples: Samples
) -> None:
    admin_1 = tokens.issue("admin-1", "admin")
    with httpx.Client(base_url=live_server, timeout=60) as http:
        assert http.post(
            "/v1/estates", json={"content": samples.ward_estate}, headers=tokens.headers(admin_1)
        ).is_success
        weaker = samples.ward_estate.replace("tier: 1, rto: 4h", "tier: 4, rto: 4h")
        proposed = http.post("/v1/estates", json={"content": weaker}, headers=tokens.headers(admin_1)).json()
        version = proposed["version"]["id"]
        url = f"/v1/estates/ward/versions/{version}/approve"
        for secret in (
            admin_1,
            _mint(http, tokens, admin_1, "Admin-1", "approver"),
            _mint(http, tokens, admin_1, "someone-else", "approver"),
        ):
            refused = http.post(url, headers=tokens.headers(secret))
            assert refused.status_code == 403, refused.text
        assert http.post(url, headers=tokens.headers(tokens.approver)).status_code == 200
