"""A rollout held by its change window says so where people look: ``GET /v1/rollouts/{id}`` and the rollout's page
carry the controller's sentence ("ring 0 waits for its change window until …") and the next opening, and the plan
(``POST /v1/plans``) and the rollout carry the rings' calendar. On a real server, SQLite and PostgreSQL.

The window is made from the test's own clock: one hour on the weekday two days from today in London, so it is
closed now whatever day the test runs, and its opening is known to the minute."""

from __future__ import annotations

import html
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Samples
    from live_server import LiveServer, Tokens

LONDON = ZoneInfo("Europe/London")


def window_two_days_ahead() -> tuple[str, datetime]:
    """``Wed 03:00-04:00`` for the weekday two days from today (London), and its opening, in UTC."""
    day: date = datetime.now(LONDON).date() + timedelta(days=2)
    opens = datetime(day.year, day.month, day.day, 3, 0, tzinfo=LONDON)
    return f"{opens:%a} 03:00-04:00", opens.astimezone(UTC)


def local(at: datetime) -> str:
    """``Wed 9 Dec 2026 03:00 GMT``: how the controller's sentence writes a time (London)."""
    there = at.astimezone(LONDON)
    return f"{there:%a} {there.day} {there:%b %Y} {there:%H:%M} {there.tzname()}"


@pytest.fixture(scope="module")
def estate(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> None:
    stored = client.post(
        "/v1/estates", json={"content": samples.ward_estate}, headers=module_tokens.headers(module_tokens.operator)
    )
    assert stored.status_code in (200, 201), stored.text


def windowed_update(window: str) -> str:
    return f"""\
apiVersion: ringfence/v1
update:
  id: agent-3
  product: acme/agent
  version: "3"
  rings: [1, "100%"]
  bake: 0s
  rollback: snapshot
  timing: {{apply: 0s, restore_point: 0s, rollback: 0s}}
  windows:
    - allow: ["{window}"]
"""


def test_a_closed_window_shows_in_the_rollout_document_the_page_and_the_plan(
    client: httpx.Client, module_server: LiveServer, module_tokens: Tokens, estate: None
) -> None:
    window, opens = window_two_days_ahead()
    update = windowed_update(window)
    operator = module_tokens.headers(module_tokens.operator)

    # The plan: ring 0 can start at the opening, and the rollout is done at the earliest after it.
    planned = client.post("/v1/plans", json={"estate": "ward", "update": update}, headers=operator)
    assert planned.status_code == 200, planned.text
    calendar = planned.json()["calendar"]
    assert calendar["zone"] == "Europe/London"
    assert [r["ring"] for r in calendar["rings"]] == [0, 1]
    assert datetime.fromisoformat(calendar["rings"][0]["starts_at"]) == opens
    assert calendar["rings"][0]["waits_seconds"] > 0
    assert datetime.fromisoformat(calendar["earliest_completion"]) >= opens

    created = client.post("/v1/rollouts", json={"estate": "ward", "update": update}, headers=operator)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert created.json()["waiting"] is None  # pending: it waits for a person, not a window
    started = client.post(f"/v1/rollouts/{rid}/start", headers=operator)
    assert started.status_code == 200, started.text

    status: dict[str, Any] = client.get(f"/v1/rollouts/{rid}", headers=operator).json()
    assert status["phase"] == "taking_restore_points"
    sentence = f"ring 0 waits for its change window until {local(opens)}"
    assert status["waiting"].startswith(sentence), status["waiting"]
    assert f"closed by every target ({window})" in status["waiting"]
    assert datetime.fromisoformat(status["opens_at"]) == opens
    assert [r["ring"] for r in status["calendar"]["rings"]] == [0, 1]
    assert datetime.fromisoformat(status["calendar"]["rings"][0]["starts_at"]) == opens
    # Nothing was started outside the window: no restore point asked for.
    assert {a["state"] for a in status["assets"]} == {"pending"}

    signed_in = {"Cookie": f"ringfence_token={module_tokens.operator}", "Origin": module_server.url}
    for path in (f"/rollouts/{rid}", f"/rollouts/{rid}/live"):
        page = client.get(path, headers=signed_in)
        assert page.status_code == 200, page.text[:300]
        text = page.text
        assert html.escape(sentence) in text, text[:2000]
        assert f"Next opening: <strong>{html.escape(local(opens))}</strong>" in text
        assert 'class="calendar"' in text
        assert f'<td data-field="starts">{html.escape(local(opens))}</td>' in text

    # Once it is over there is nothing to wait for: aborted (halted), the document says no window.
    assert client.post(f"/v1/rollouts/{rid}/abort", headers=operator).status_code == 200
    halted = client.get(f"/v1/rollouts/{rid}", headers=operator).json()
    assert halted["waiting"] is None
    assert halted["opens_at"] is None


def test_a_rollout_without_windows_says_nothing_of_them(
    client: httpx.Client, module_tokens: Tokens, samples: Samples, estate: None
) -> None:
    operator = module_tokens.headers(module_tokens.operator)
    planned = client.post("/v1/plans", json={"estate": "ward", "update": samples.agent_update}, headers=operator)
    assert planned.json()["calendar"] is None
    created = client.post("/v1/rollouts", json={"estate": "ward", "update": samples.agent_update}, headers=operator)
    assert created.status_code == 201, created.text
    document = created.json()
    assert (document["waiting"], document["opens_at"], document["calendar"]) == (None, None, None)
