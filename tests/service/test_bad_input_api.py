"""Bad input answers a 4xx problem naming what is wrong, never a 500, on SQLite and PostgreSQL (issue 12, 2–3).

Each case here answered a 500 before its fix (on one database or both), and some left the service broken after:

- a restore step (or a duration) too long for a date: declaring stored it, and from then on every list of
  incidents was a 500, for everyone, until the row was removed by hand. Numbers are bounded where they are read,
  clocks clamp what is still too far ahead (:func:`ringfence.core.incident.later`), and an incident stored
  in a form that cannot be read is listed as unreadable beside the others;
- a text nested a thousand deep (``[[[[…``) in an uploaded estate, update or drill scenario: any viewer could send
  one to be checked or planned, and exhaust the parser's stack;
- integers past the database's (2^63 on SQLite, 2^31 for PostgreSQL's INTEGER) in paths, queries and bodies;
- NUL characters and names longer than their column (PostgreSQL refuses both);
- a heartbeat dated year 1 (no time zone can move it to UTC, no timeout can be taken from it).

Like every service test, this speaks HTTP to a real server; the poisoned rows are written through the store, as an
older version or a hand-made repair would have written them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from live_server import LiveServer, Tokens
from ringfence.api.schemas import LARGEST_SEQUENCE
from ringfence.core.incident import DownItem, EventKind, Incident, IncidentEvent, ItemKind
from ringfence.store.db import session_scope
from ringfence.store.incidents import add_incident
from ringfence.store.tables import IncidentRow

RINGFENCE = shutil.which("ringfence", path=os.path.dirname(sys.executable)) or "ringfence"

ESTATE = """\
apiVersion: ringfence/v1
estate: bad-input
services:
  - {id: ehr, name: Electronic health record, tier: 1, rto: 4h, continuity: Paper notes, requires: [db-1]}
assets:
  - {id: db-1, kind: vm, site: north, software: [{product: pg/postgres, version: "15"}]}
  - {id: app-1, kind: vm, site: north, software: [{product: acme/agent, version: "1"}]}
"""
UPDATE = """\
apiVersion: ringfence/v1
update: {id: agent-2, product: acme/agent, version: "2", rings: [1], bake: 0s}
"""
DEEP = "[" * 1000 + "]" * 1000
"""A JSON value nested a thousand deep: well formed, and deeper than Python's recursion limit."""
BEYOND_SQLITE = 2**70
BEYOND_POSTGRES_INTEGER = 2**40


def problem(response: httpx.Response, status: int = 422, field: str | None = None) -> dict[str, Any]:
    """The problem document of a refusal: the status given, problem+json, and the field named when one is."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if field is not None:
        named = [e.get("field") for e in body.get("errors", [])]
        assert field in named or field in body["detail"], f"{field!r} not named in {body}"
    return body


@pytest.fixture(scope="module")
def estate(client: httpx.Client, module_tokens: Tokens) -> dict[str, Any]:
    """The module's estate, uploaded once, with its version id."""
    uploaded = client.post("/v1/estates", json={"content": ESTATE}, headers=module_tokens.headers(module_tokens.admin))
    assert uploaded.status_code == 201, uploaded.text
    return {"name": "bad-input", "version": uploaded.json()["version"]["id"]}


# ------------------------------------------------------------------------------------------- item 2: numbers


def test_a_duration_longer_than_a_year_is_refused_at_upload(client: httpx.Client, module_tokens: Tokens) -> None:
    text = ESTATE.replace("estate: bad-input", "estate: bad-rto").replace("rto: 4h", "rto: 3000000d")
    answer = client.post("/v1/estates", json={"content": text}, headers=module_tokens.headers(module_tokens.admin))
    assert "longest duration" in problem(answer, field="services[0].rto")["detail"]


def test_a_restore_step_too_long_is_refused_and_the_list_stays_up(
    client: httpx.Client, module_tokens: Tokens, estate: dict[str, Any]
) -> None:
    operator = module_tokens.headers(module_tokens.operator)
    for step in (10**15, 366 * 86400, 2**31):
        declared = client.post(
            "/v1/incidents",
            json={"estate": estate["name"], "fail": ["asset:db-1"], "step_seconds": step},
            headers=operator,
        )
        problem(declared, field="step_seconds")
    assert client.get("/v1/incidents", headers=operator).status_code == 200
    # A year is the bound: a step of a year is accepted, and its clocks read.
    year = client.post(
        "/v1/incidents",
        json={"estate": estate["name"], "fail": ["asset:db-1"], "step_seconds": 365 * 86400},
        headers=operator,
    )
    assert year.status_code == 201, year.text
    assert client.get(f"/v1/incidents/{year.json()['id']}", headers=operator).status_code == 200


def _poisoned_incident(incident_id: str, version_id: int) -> Incident:
    """An incident as no bounded ringfence declares it: an RTO of 10^30 s and the longest step an INTEGER holds."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Incident(
        id=incident_id,
        title="Poisoned by an older version",
        estate="bad-input",
        failed=("asset:db-1",),
        declared_at=at,
        declared_by="someone",
        items=(
            DownItem("db-1", ItemKind.ASSET, "db-1", 1),
            DownItem("ehr", ItemKind.SERVICE, "Electronic health record", 2, tier=1, rto=10**30, needs=("db-1",)),
        ),
        continuity=(),
        events=(IncidentEvent(at, EventKind.DECLARED, "someone", "declared by hand"),),
        step_seconds=2**31 - 1,
        estate_version_id=version_id,
    )


def test_a_poisoned_incident_never_takes_the_list_down(
    client: httpx.Client, module_server: LiveServer, module_tokens: Tokens, estate: dict[str, Any]
) -> None:
    viewer = module_tokens.headers(module_tokens.viewer)
    healthy = client.post(
        "/v1/incidents",
        json={"estate": estate["name"], "fail": ["asset:app-1"], "title": "Healthy"},
        headers=module_tokens.headers(module_tokens.operator),
    )
    assert healthy.status_code == 201, healthy.text
    # Written through the store, as a version without the bounds (or a repair by hand) would have written them:
    # one with numbers no date can hold, one whose snapshot lost its items.
    with session_scope(module_server.engine) as session:
        add_incident(session, _poisoned_incident("inc-900001", estate["version"]))
        add_incident(session, _poisoned_incident("inc-900002", estate["version"]))
        session.execute(
            sa.update(IncidentRow).where(IncidentRow.id == "inc-900002").values(snapshot={"estate": "bad-input"})
        )

    listed = client.get("/v1/incidents", headers=viewer)
    assert listed.status_code == 200, listed.text
    by_id = {i["id"]: i for i in listed.json()["incidents"]}
    assert by_id[healthy.json()["id"]]["unreadable"] is None
    # Too far ahead for a date: its clocks read as "not before the end of time", it is not breached.
    far = by_id["inc-900001"]
    assert far["unreadable"] is None
    assert far["services_down"] == 1
    assert far["breached"] == []
    shown = client.get("/v1/incidents/inc-900001", headers=viewer)
    assert shown.status_code == 200, shown.text
    assert shown.json()["clocks"][0]["deadline"].startswith("9999-12-31")
    for path in (
        "/v1/incidents/inc-900001/review",
        "/v1/incidents/inc-900001/review?format=markdown",
        "/incidents/inc-900001",
    ):
        assert client.get(path, headers=viewer).status_code == 200, path
    # The one that cannot be read is listed, marked, with what its row still says.
    broken = by_id["inc-900002"]
    assert broken["title"] == "Poisoned by an older version"
    assert "items" in broken["unreadable"]
    assert "inc-900002" in problem(client.get("/v1/incidents/inc-900002", headers=viewer), 409)["detail"]
    # The dashboard's list too, for everyone.
    page = client.get("/incidents", headers=viewer)
    assert page.status_code == 200, page.text[:500]
    assert "inc-900001" in page.text
    assert "unreadable" in page.text
    assert healthy.json()["id"] in page.text
    # And the console's table, which a person reads at 80 columns.
    env = {**os.environ, "RINGFENCE_DATABASE_URL": module_server.database_url, "COLUMNS": "200"}
    table = subprocess.run(
        [RINGFENCE, "incident", "list"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert table.returncode == 0, table.stderr
    broken_row = next(line for line in table.stdout.splitlines() if "inc-900002" in line)
    assert "unreadable:" in broken_row


# ------------------------------------------------------------------------------------ item 3: deep nesting


def test_texts_nested_a_thousand_deep_are_refused_for_a_viewer(
    client: httpx.Client, module_tokens: Tokens, estate: dict[str, Any]
) -> None:
    viewer = module_tokens.headers(module_tokens.viewer)
    deep_estate = '{"apiVersion": "ringfence/v1", "estate": "deep", "assets": ' + DEEP + "}"
    checked = client.post("/v1/estates/validate", json={"content": deep_estate}, headers=viewer)
    assert "body: not valid JSON: lists and mappings nested too deeply" in problem(checked)["detail"]
    deep_update = '{"apiVersion": "ringfence/v1", "update": ' + DEEP + "}"
    planned = client.post("/v1/plans", json={"estate": estate["name"], "update": deep_update}, headers=viewer)
    assert "update: not valid JSON: lists and mappings nested too deeply" in problem(planned)["detail"]
    deep_scenario = '{"apiVersion": "ringfence/v1", "scenario": ' + DEEP + "}"
    drilled = client.post("/v1/drills", json={"estate": estate["name"], "scenario": deep_scenario}, headers=viewer)
    assert "scenario: not valid JSON: lists and mappings nested too deeply" in problem(drilled)["detail"]
    uploaded = client.post(
        "/v1/estates", json={"content": deep_estate}, headers=module_tokens.headers(module_tokens.operator)
    )
    problem(uploaded)


# ---------------------------------------------------------------------------------------- item 3: integers


@pytest.mark.parametrize("number", [BEYOND_SQLITE, BEYOND_POSTGRES_INTEGER, -BEYOND_SQLITE])
def test_integers_past_the_database_are_refused(
    client: httpx.Client, module_tokens: Tokens, estate: dict[str, Any], number: int
) -> None:
    viewer = module_tokens.headers(module_tokens.viewer)
    name = estate["name"]
    for path in (f"/v1/estates/{name}", f"/v1/estates/{name}/spof", f"/v1/estates/{name}/concentration"):
        problem(client.get(path, params={"version": number}, headers=viewer), field="query.version")
    problem(client.get(f"/v1/estates/{name}/versions/{number}/content", headers=viewer), field="path.version_id")
    problem(
        client.post("/v1/plans", json={"estate": name, "version": number, "update": UPDATE}, headers=viewer),
        field="version",
    )
    declared = client.post(
        "/v1/incidents",
        json={"estate": name, "version": number, "fail": ["asset:db-1"]},
        headers=module_tokens.headers(module_tokens.operator),
    )
    problem(declared, field="version")
    problem(client.get(f"/v1/estates/{name}/recover", params={"fail": "db-1", "parallel": number}, headers=viewer))


@pytest.mark.parametrize("number", [BEYOND_SQLITE, BEYOND_POSTGRES_INTEGER])
def test_integers_past_the_database_are_refused_by_audit_and_tokens(
    client: httpx.Client, module_tokens: Tokens, number: int
) -> None:
    """Bounded by their types (a sequence number fits 63 bits, a record id 31): refused naming the parameter."""
    answer = client.get("/v1/audit", params={"after": number}, headers=module_tokens.headers(module_tokens.viewer))
    if number > LARGEST_SEQUENCE:
        problem(answer, field="query.after")
    else:
        assert answer.status_code == 200, answer.text
    revoked = client.delete(f"/v1/tokens/{number}", headers=module_tokens.headers(module_tokens.admin))
    problem(revoked, field="path.token_id")
    events = client.get(
        "/v1/rollouts/r-000001/events", params={"after": 2**70}, headers=module_tokens.headers(module_tokens.viewer)
    )
    problem(events, field="query.after")


# ----------------------------------------------------------------------------- item 3: NUL and long texts


@pytest.mark.parametrize(
    "path",
    [
        "/v1/estates/bad%00input",
        "/v1/estates/bad%00input/spof",
        "/v1/rollouts/r-0%001",
        "/v1/rollouts/r-0%001/events",
        "/v1/incidents/inc%00",
        "/v1/agents/db%001/directive",
        "/v1/estates/" + "a" * 5000,
        "/v1/rollouts/" + "r" * 5000,
        "/v1/incidents/" + "i" * 5000,
    ],
)
def test_names_with_nul_or_too_long_in_a_path_are_refused(
    client: httpx.Client, module_tokens: Tokens, path: str
) -> None:
    answer = client.get(path, headers=module_tokens.headers(module_tokens.admin))
    body = problem(answer)
    assert body["errors"][0]["field"].startswith("path.")


def test_texts_with_nul_in_a_body_are_refused_naming_the_field(
    client: httpx.Client, module_tokens: Tokens, estate: dict[str, Any]
) -> None:
    operator = module_tokens.headers(module_tokens.operator)
    declared = client.post(
        "/v1/incidents", json={"estate": estate["name"], "fail": ["asset:db-1"], "title": "a\x00b"}, headers=operator
    )
    problem(declared, field="title")
    incident = client.post("/v1/incidents", json={"estate": estate["name"], "fail": ["asset:db-1"]}, headers=operator)
    assert incident.status_code == 201, incident.text
    noted = client.post(f"/v1/incidents/{incident.json()['id']}/notes", json={"text": "a\x00b"}, headers=operator)
    problem(noted, field="text")
    token = client.post(
        "/v1/tokens", json={"name": "nul\x00name", "role": "viewer"}, headers=module_tokens.headers(module_tokens.admin)
    )
    problem(token, field="name")
    planned = client.post(
        "/v1/plans", json={"estate": estate["name"], "update": UPDATE, "override_hold": "\x00"}, headers=operator
    )
    problem(planned, field="override_hold")


def test_an_estate_whose_name_holds_nul_or_is_too_long_is_refused(client: httpx.Client, module_tokens: Tokens) -> None:
    admin = module_tokens.headers(module_tokens.admin)
    # A JSON escape puts the NUL in the estate's name, not in the text (which the API checks itself).
    as_json = '{"apiVersion": "ringfence/v1", "estate": "nul\\u0000name"}'
    assert (
        "control characters"
        in problem(client.post("/v1/estates", json={"content": as_json}, headers=admin), field="estate")["detail"]
    )
    as_yaml = 'apiVersion: ringfence/v1\nestate: "nul\\0name"\n'
    problem(client.post("/v1/estates", json={"content": as_yaml}, headers=admin), field="estate")
    too_long = "apiVersion: ringfence/v1\nestate: " + "e" * 201 + "\n"
    problem(client.post("/v1/estates", json={"content": too_long}, headers=admin), field="estate")
    long_id = ESTATE.replace("estate: bad-input", "estate: long-id").replace("app-1", "a" * 201)
    problem(client.post("/v1/estates", json={"content": long_id}, headers=admin), field="assets[1].id")


def test_heartbeats_with_nul_are_refused(client: httpx.Client, module_tokens: Tokens) -> None:
    operator = module_tokens.headers(module_tokens.operator)
    beat = client.post("/v1/heartbeats", json=[{"asset": "db\x001", "status": "ok"}], headers=operator)
    problem(beat, field="[0].asset")
    detail = client.post(
        "/v1/heartbeats", json=[{"asset": "db-1", "status": "failed", "detail": "\x00"}], headers=operator
    )
    problem(detail, field="[0].detail")


# ------------------------------------------------------------------------------------ item 3: heartbeats


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z"])
def test_a_heartbeat_dated_before_2000_is_refused(client: httpx.Client, module_tokens: Tokens, at: str) -> None:
    operator = module_tokens.headers(module_tokens.operator)  # a proxy reporting for its agents
    beat = client.post("/v1/heartbeats", json=[{"asset": "db-1", "status": "ok", "at": at}], headers=operator)
    assert "clock is wrong" in problem(beat, field="[0].at")["detail"]


# ------------------------------------------------------------------------------------------ the dashboard


def test_the_dashboard_refuses_nul_in_an_incident_id_or_form(
    client: httpx.Client, module_server: LiveServer, module_tokens: Tokens, estate: dict[str, Any]
) -> None:
    signed_in = {"Cookie": f"ringfence_token={module_tokens.operator}", "Origin": module_server.url}
    for path in ("/incidents/inc%00", "/incidents/inc%00/live", "/incidents/" + "i" * 5000):
        page = client.get(path, headers=signed_in)
        assert page.status_code == 404, page.text[:300]
        assert page.headers["content-type"].startswith("text/html")
    declared = client.post(
        "/incidents", data={"estate": estate["name"], "fail": "asset:db-1", "title": "a\x00b"}, headers=signed_in
    )
    assert declared.status_code == 422, declared.text[:300]
    assert "cannot hold a NUL character" in declared.text


# ---------------------------------------------------------------------------------- item 2: counts in files


def test_counts_and_ids_in_files_are_bounded(
    client: httpx.Client, module_tokens: Tokens, estate: dict[str, Any]
) -> None:
    operator = module_tokens.headers(module_tokens.operator)
    huge_any = ESTATE.replace("estate: bad-input", "estate: huge-any").replace(
        "requires: [db-1]", 'requires: [{any: 99999999999999999999999, where: "kind=vm"}]'
    )
    refused = problem(
        client.post("/v1/estates", json={"content": huge_any}, headers=operator), field="services[0].requires[0].any"
    )
    assert "10000000" in refused["detail"]
    huge_ring = UPDATE.replace("rings: [1]", "rings: [99999999999999999999999]")
    planned = client.post("/v1/plans", json={"estate": estate["name"], "update": huge_ring}, headers=operator)
    assert "a ring is at most 10,000,000 assets" in problem(planned, field="update.rings[0]")["detail"]
    long_update = UPDATE.replace("id: agent-2", "id: " + "u" * 201)
    created = client.post("/v1/rollouts", json={"estate": estate["name"], "update": long_update}, headers=operator)
    problem(created, field="update.id")
