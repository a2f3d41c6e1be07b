"""``/v1/incidents`` over HTTP against a real uvicorn server, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import WARD

pytestmark = pytest.mark.slow


def _headers(tokens: Any, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {getattr(tokens, role)}"}


def test_an_incident_over_the_api(live_server: str, tokens: Any) -> None:
    operator, viewer = _headers(tokens, "operator"), _headers(tokens, "viewer")
    with httpx.Client(base_url=live_server, timeout=60) as http:
        uploaded = http.post("/v1/estates", json={"content": WARD}, headers=operator)
        assert uploaded.status_code == 201, uploaded.text

        body = {"estate": "ward", "fail": ["asset:sql-epr-1"], "title": "EPR database lost"}
        assert http.post("/v1/incidents", json=body).status_code == 401
        assert http.post("/v1/incidents", json=body, headers=viewer).status_code == 403
        declared = http.post("/v1/incidents", json=body, headers=operator)
        assert declared.status_code == 201, declared.text
        doc = declared.json()
        incident_id = doc["id"]
        assert (doc["declared_by"], doc["title"], doc["estate"]) == ("olga-operator", "EPR database lost", "ward")
        assert [s["step"] for s in doc["steps"]] == [1, 2, 3, 4]
        assert doc["continuity"][0]["plan"].startswith("Paper notes from the ward downtime box")

        refused = http.post(f"/v1/incidents/{incident_id}/restore", json={"items": ["epr"]}, headers=operator)
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert (
            refused.json()["detail"]
            == "cannot mark epr restored: it needs any 1 of [epr-app-1, epr-app-2] up, and 0 are"
        )

        restored = http.post(
            f"/v1/incidents/{incident_id}/restore", json={"items": ["sql-epr-1", "epr-app-1"]}, headers=operator
        )
        assert restored.status_code == 200, restored.text
        assert restored.json()["steps"][1]["restored"] == ["epr-app-1"]

        noted = http.post(f"/v1/incidents/{incident_id}/notes", json={"text": "paper notes in use"}, headers=operator)
        assert noted.json()["timeline"][-1]["text"] == "paper notes in use"

        not_yet = http.post(f"/v1/incidents/{incident_id}/close", json={}, headers=operator)
        assert not_yet.status_code == 409
        assert "3 items are still down (epr-app-2, epr, pharmacy)" in not_yet.json()["detail"]
        closed = http.post(
            f"/v1/incidents/{incident_id}/close", json={"reason": "supplier owns it now"}, headers=operator
        )
        assert closed.json()["status"] == "closed"

        got = http.get(f"/v1/incidents/{incident_id}", headers=viewer)
        assert got.json()["closed_at"] is not None
        listed = http.get("/v1/incidents", params={"status": "closed"}, headers=viewer).json()["incidents"]
        assert [(i["id"], i["items_restored"], i["items_down"]) for i in listed] == [(incident_id, 2, 5)]
        assert http.get("/v1/incidents", params={"status": "open"}, headers=viewer).json()["incidents"] == []

        page = http.get(f"/v1/incidents/{incident_id}/review", headers=viewer)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "Post-incident review: EPR database lost" in page.text
        markdown = http.get(f"/v1/incidents/{incident_id}/review", params={"format": "markdown"}, headers=viewer)
        assert markdown.headers["content-type"].startswith("text/markdown")
        # Closed within seconds: nothing restored in time to count, nothing breached yet.
        assert "| T2 urgent care | 1 | 0 | 0 | Pharmacy stock (`pharmacy`) |" in markdown.text

        audit = http.get("/v1/audit", params={"limit": 1000}, headers=viewer)
        assert audit.status_code == 200
        entries = [e for e in audit.json()["entries"] if e["subject"] == f"incident:{incident_id}"]
        assert [(e["action"], e["actor"]) for e in entries] == [
            ("incident.declare", "olga-operator"),
            ("incident.restore", "olga-operator"),
            ("incident.note", "olga-operator"),
            ("incident.close", "olga-operator"),
        ]


def test_bad_requests_are_problems_with_fields(live_server: str, tokens: Any) -> None:
    operator = _headers(tokens, "operator")
    with httpx.Client(base_url=live_server, timeout=60) as http:
        assert http.post("/v1/estates", json={"content": WARD}, headers=operator).status_code == 201
        unknown_ref = http.post("/v1/incidents", json={"estate": "ward", "fail": ["asset:nope"]}, headers=operator)
        assert unknown_ref.status_code == 422
        assert "failure 'asset:nope' names no asset of estate 'ward'" in unknown_ref.json()["detail"]
        no_fail = http.post("/v1/incidents", json={"estate": "ward", "fail": []}, headers=operator)
        assert no_fail.status_code == 422
        assert no_fail.json()["errors"][0]["field"] == "fail"
        no_estate = http.post("/v1/incidents", json={"estate": "clinic", "fail": ["x"]}, headers=operator)
        assert no_estate.status_code == 404
        missing = http.get("/v1/incidents/inc-000404", headers=operator)
        assert missing.status_code == 404
        assert missing.json()["detail"] == "incident inc-000404 does not exist"
