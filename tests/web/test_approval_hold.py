"""An approver reads the vendor hold a rollout overrides — the vendor's reason and the justification recorded
when it was created — before approving: in the API (``GET /v1/rollouts/{id}/approval``) and on its page."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from ringfence.files.disk import examples_dir

from .conftest import Site, Visitors, accept_dialogs, shot

HELD_RELEASE = "vmware/esxi@7.0.3"
JUSTIFICATION = "CAB-812: the prod-a hosts run no partner NIC drivers; the vendor's i40en fix is installed"


def esxi_update() -> str:
    """The City General ESXi 7.0 U3 upgrade, whose release the bundled holds withdraw."""
    return (examples_dir() / "city-general" / "updates" / "esxi-7u3.yaml").read_text(encoding="utf-8")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_over_hold(site: Site, client: httpx.Client) -> str:
    created = client.post(
        "/v1/rollouts",
        json={"estate": site.estate, "update": esxi_update(), "override_hold": JUSTIFICATION},
        headers=bearer(site.people.olga),
    )
    assert created.status_code == 201, created.text
    assert created.json()["phase"] == "awaiting_approval"
    rollout_id: str = created.json()["id"]
    return rollout_id


def test_the_api_tells_an_approver_which_hold_is_overridden_and_why(site: Site) -> None:
    with httpx.Client(base_url=site.server.url) as client:
        rollout_id = create_over_hold(site, client)
        answer = client.get(f"/v1/rollouts/{rollout_id}/approval", headers=bearer(site.people.bob))
        assert answer.status_code == 200, answer.text
        found = answer.json()
        assert found["awaiting_approval"] is True
        assert (found["id"], found["created_by"], found["approved_by"]) == (rollout_id, "olga", None)
        hold = found["hold_override"]
        assert hold["release"] == HELD_RELEASE
        assert hold["justification"] == JUSTIFICATION
        assert hold["reason"].startswith("VMware withdrew ESXi 7.0 Update 3")

        approved = client.post(f"/v1/rollouts/{rollout_id}/approve", headers=bearer(site.people.bob))
        assert approved.status_code == 200, approved.text
        after = client.get(f"/v1/rollouts/{rollout_id}/approval", headers=bearer(site.people.vera)).json()
        # Still there once approved: the record of what was approved does not change.
        assert (after["awaiting_approval"], after["approved_by"]) == (False, "bob")
        assert after["hold_override"] == hold

        described = client.get("/openapi.json").json()["paths"]["/v1/rollouts/{rollout_id}/approval"]["get"]
        assert "hold" in described["description"]


def test_a_rollout_without_a_hold_says_so_and_an_unknown_one_is_404(site: Site) -> None:
    falcon = (examples_dir() / "city-general" / "updates" / "falcon-7.16.yaml").read_text(encoding="utf-8")
    with httpx.Client(base_url=site.server.url) as client:
        created = client.post(
            "/v1/rollouts", json={"estate": site.estate, "update": falcon}, headers=bearer(site.people.olga)
        )
        assert created.status_code == 201, created.text
        found = client.get(f"/v1/rollouts/{created.json()['id']}/approval", headers=bearer(site.people.vera))
        assert found.status_code == 200, found.text
        assert found.json()["hold_override"] is None
        missing = client.get("/v1/rollouts/no-such-rollout/approval", headers=bearer(site.people.vera))
        assert missing.status_code == 404, missing.text
        assert client.get(f"/v1/rollouts/{created.json()['id']}/approval").status_code == 401


@pytest.mark.browser
def test_the_rollout_page_shows_the_hold_and_its_justification_above_approve(
    visitors: Visitors, site: Site, screenshots: Path
) -> None:
    with httpx.Client(base_url=site.server.url) as client:
        rollout_id = create_over_hold(site, client)

    approver = visitors.sign_in(site.people.bob)
    # The list already says which rollout waits for approval over a hold.
    approver.goto("/rollouts")
    listed = approver.locator(f"tr[data-rollout='{rollout_id}']")
    expect(listed).to_contain_text("awaiting approval")
    expect(listed.locator(".held-release")).to_have_text(f"despite the vendor hold on {HELD_RELEASE}")
    approver.goto(f"/rollouts/{rollout_id}")
    held = approver.locator("#live .held")
    expect(held).to_contain_text(HELD_RELEASE)
    expect(held.locator(".hold-reason")).to_contain_text("VMware withdrew ESXi 7.0 Update 3")
    expect(held.locator(".hold-justification")).to_have_text(JUSTIFICATION)
    expect(held).to_contain_text("Why olga planned it anyway")
    approve = approver.get_by_role("button", name="Approve")
    # Read before the button is reached: the hold comes first on the page.
    held_box, approve_box = held.bounding_box(), approve.bounding_box()
    assert held_box is not None
    assert approve_box is not None
    assert held_box["y"] + held_box["height"] <= approve_box["y"]
    shot(approver, screenshots, "rollout-approval-over-a-hold")

    questions: list[str] = []
    accept_dialogs(approver, questions)
    approve.click()
    expect(approver.locator("#live .phase-line")).to_contain_text("approved by bob")
    assert questions == [
        f"Approve rollout {rollout_id} as bob? It goes ahead despite the vendor hold on {HELD_RELEASE}."
    ]
    # The page keeps saying what was approved.
    expect(approver.locator("#live .held .hold-justification")).to_have_text(JUSTIFICATION)
    expect(approver).to_have_url(re.compile(rf"/rollouts/{rollout_id}$"))

    creator = visitors.sign_in(site.people.olga)
    creator.goto(f"/rollouts/{rollout_id}")
    expect(creator.locator("#live .held .hold-reason")).to_contain_text("VMware withdrew")
