"""``/v1/estates`` on a real server: upload (JSON and raw YAML), check, versions, content, and refusals."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import httpx
import pytest

from ringfence.core.estate import load_document_text
from ringfence.files.disk import dump_document

if TYPE_CHECKING:
    from conftest import Samples, Tokens

YAML = {"Content-Type": "application/yaml"}


def auth(tokens: Tokens, secret: str, **extra: str) -> dict[str, str]:
    return {**tokens.headers(secret), **extra}


def renamed(text: str, name: str) -> str:
    """The estate text under another name, with assets of its own (each test keeps to its own estates on the
    module's server; an asset belongs to one estate of record)."""
    renamed = text.replace("estate: ward", f"estate: {name}", 1)
    return re.sub(r"\b(?:db|app|ws|esx)-\d\b", lambda found: f"{found.group(0)}.{name}", renamed)


def test_upload_json_body_then_read_it_back(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> None:
    text = renamed(samples.ward_estate, "ward-json")
    response = client.post(
        "/v1/estates", json={"content": text, "name": "ward-json"}, headers=auth(module_tokens, module_tokens.operator)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    assert body["current"] is True
    version = body["version"]
    assert version["name"] == "ward-json"
    assert version["format"] == "yaml"
    assert version["created_by"] == "olga-operator"
    assert (version["assets"], version["services"]) == (7, 3)
    assert body["check"] == {
        "ok": True,
        "assets": 7,
        "services": 3,
        "suppliers": 1,
        "estate": "ward-json",
        "warnings": body["check"]["warnings"],
    }
    # The where-group that matches nothing is a warning with its line, not an error.
    lab = [w for w in body["warnings"] if "attrs.os=solaris" in w["message"]]
    assert lab == [
        {
            "field": "services[2].requires",
            "line": 8,
            "source": "body",
            "message": lab[0]["message"],
            "detail": f"body:8: services[2].requires: {lab[0]['message']}",
        }
    ]

    viewer = auth(module_tokens, module_tokens.viewer)
    content = client.get(f"/v1/estates/ward-json/versions/{version['id']}/content", headers=viewer)
    assert content.status_code == 200
    assert content.text == text
    assert content.headers["content-type"].startswith("application/yaml")

    detail = client.get("/v1/estates/ward-json", headers=viewer).json()
    assert detail["version"]["id"] == version["id"]
    assert detail["current"] is True
    assert detail["services_by_tier"] == {"1": 1, "3": 1, "4": 1}
    assert detail["assets_by_kind"] == {"endpoint": 2, "host": 1, "vm": 4}
    assert detail["sites"] == ["north", "south"]
    assert any("solaris" in w["message"] for w in detail["warnings"])


def test_raw_yaml_upload_and_same_text_is_the_same_version(
    client: httpx.Client, module_tokens: Tokens, samples: Samples
) -> None:
    text = renamed(samples.ward_estate, "ward-raw")
    operator = auth(module_tokens, module_tokens.operator, **YAML)
    first = client.post("/v1/estates", content=text.encode(), headers=operator)
    assert first.status_code == 201, first.text
    again = client.post("/v1/estates", content=text.encode(), headers=operator)
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["version"]["id"] == first.json()["version"]["id"]
    versions = client.get("/v1/estates/ward-raw/versions", headers=operator).json()["versions"]
    assert len(versions) == 1


def test_json_content_is_stored_as_json(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> None:
    document = load_document_text(renamed(samples.ward_estate, "ward-as-json"), "ward")
    text = dump_document(document, as_json=True)
    response = client.post(
        "/v1/estates",
        json={"content": text, "format": "json"},
        headers=auth(module_tokens, module_tokens.operator),
    )
    assert response.status_code == 201, response.text
    version = response.json()["version"]
    assert version["format"] == "json"
    content = client.get(
        f"/v1/estates/ward-as-json/versions/{version['id']}/content", headers=auth(module_tokens, module_tokens.viewer)
    )
    assert content.headers["content-type"].startswith("application/json")
    assert json.loads(content.text) == document


def test_a_bad_upload_stores_nothing_and_the_good_version_stays_current(
    client: httpx.Client, module_tokens: Tokens, samples: Samples
) -> None:
    good = renamed(samples.ward_estate, "ward-kept")
    operator = auth(module_tokens, module_tokens.operator)
    kept = client.post("/v1/estates", json={"content": good}, headers=operator).json()["version"]

    # Two mistakes in fields, each reported with its field and line.
    bad = good.replace("kind: endpoint, site: north", "kind: laptop, site: north").replace(
        "{id: app-3.ward-kept, kind: vm,", "{id: app-3.ward-kept, colour: red, kind: vm,"
    )
    response = client.post("/v1/estates", json={"content": bad}, headers=operator)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 422
    located = sorted((e["field"], e["line"], e["source"]) for e in problem["errors"])
    assert located == [("assets[3].colour", 13, "body"), ("assets[4].kind", 14, "body")]
    assert "laptop" in problem["detail"]

    # A reference to nothing: found once the fields hold, with its line too.
    dangling = client.post(
        "/v1/estates",
        json={"content": good.replace("requires: [db-1.ward-kept]", "requires: [db-9]")},
        headers=operator,
    )
    assert dangling.status_code == 422
    assert [(e["field"], e["line"]) for e in dangling.json()["errors"]] == [("services[0].requires[0]", 6)]
    assert "db-9" in dangling.json()["detail"]

    viewer = auth(module_tokens, module_tokens.viewer)
    versions = client.get("/v1/estates/ward-kept/versions", headers=viewer).json()["versions"]
    assert [v["id"] for v in versions] == [kept["id"]]
    assert client.get("/v1/estates/ward-kept", headers=viewer).json()["version"]["id"] == kept["id"]


def test_a_new_good_version_becomes_current_and_old_ones_stay_readable(
    client: httpx.Client, module_tokens: Tokens, samples: Samples
) -> None:
    first_text = renamed(samples.ward_estate, "ward-v")
    second_text = first_text.replace("rto: 4h", "rto: 2h")
    operator = auth(module_tokens, module_tokens.operator)
    first = client.post("/v1/estates", json={"content": first_text}, headers=operator).json()["version"]
    second = client.post("/v1/estates", json={"content": second_text}, headers=operator).json()["version"]
    assert second["id"] > first["id"]
    viewer = auth(module_tokens, module_tokens.viewer)
    listed = {e["name"]: e for e in client.get("/v1/estates", headers=viewer).json()["estates"]}
    assert listed["ward-v"]["latest"]["id"] == second["id"]
    assert listed["ward-v"]["versions"] == 2
    old = client.get("/v1/estates/ward-v", params={"version": first["id"]}, headers=viewer).json()
    assert old["version"]["id"] == first["id"]
    assert old["current"] is False
    # Re-uploading the old text answers the old version; it does not become current again.
    again = client.post("/v1/estates", json={"content": first_text}, headers=operator)
    assert again.status_code == 200
    assert again.json()["current"] is False


def test_validate_checks_without_storing(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> None:
    text = renamed(samples.ward_estate, "ward-validate-only")
    viewer = auth(module_tokens, module_tokens.viewer)
    response = client.post("/v1/estates/validate", json={"content": text}, headers=viewer)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True
    assert response.json()["estate"] == "ward-validate-only"
    assert client.get("/v1/estates/ward-validate-only", headers=viewer).status_code == 404

    bad = b"apiVersion: ringfence/v1\nestate: x\nassets: 3\n"
    raw = client.post("/v1/estates/validate", content=bad, headers={**viewer, **YAML})
    assert raw.status_code == 422
    assert raw.json()["errors"][0]["field"] == "assets"
    assert raw.json()["errors"][0]["line"] == 3


def test_upload_refusals(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> None:
    text = renamed(samples.ward_estate, "ward-refused")
    assert client.post("/v1/estates", json={"content": text}).status_code == 401
    wrong = client.post("/v1/estates", json={"content": text}, headers={"Authorization": "Bearer rf_nope"})
    assert wrong.status_code == 401
    viewer = client.post("/v1/estates", json={"content": text}, headers=auth(module_tokens, module_tokens.viewer))
    assert viewer.status_code == 403
    assert "operator" in viewer.json()["detail"]

    operator = auth(module_tokens, module_tokens.operator)
    missing = client.post("/v1/estates", json={"name": "x"}, headers=operator)
    assert missing.status_code == 422
    assert [e["field"] for e in missing.json()["errors"]] == ["content"]
    extra = client.post("/v1/estates", json={"content": text, "colour": "red"}, headers=operator)
    assert [e["field"] for e in extra.json()["errors"]] == ["colour"]
    misnamed = client.post("/v1/estates", json={"content": text, "name": "other"}, headers=operator)
    assert misnamed.status_code == 422
    assert misnamed.json()["errors"][0]["field"] == "name"
    not_json = client.post("/v1/estates", json={"content": text, "format": "json"}, headers=operator)
    assert not_json.status_code == 422
    xml = client.post("/v1/estates", content=b"<estate/>", headers={**operator, "Content-Type": "application/xml"})
    assert xml.status_code == 415
    for refused in (missing, extra, misnamed, not_json, xml):
        assert refused.headers["content-type"].startswith("application/problem+json")
    viewer_headers = auth(module_tokens, module_tokens.viewer)
    assert client.get("/v1/estates/ward-refused", headers=viewer_headers).status_code == 404


def test_not_found(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> None:
    operator = auth(module_tokens, module_tokens.operator)
    one = client.post("/v1/estates", json={"content": renamed(samples.ward_estate, "ward-a")}, headers=operator)
    client.post("/v1/estates", json={"content": renamed(samples.ward_estate, "ward-b")}, headers=operator)
    a_version = one.json()["version"]["id"]
    for path in (
        "/v1/estates/nowhere",
        "/v1/estates/nowhere/versions",
        f"/v1/estates/ward-b/versions/{a_version}/content",  # a version of another estate
        "/v1/estates/ward-a/versions/999999/content",
    ):
        response = client.get(path, headers=operator)
        assert response.status_code == 404, path
        assert response.json()["status"] == 404


@pytest.mark.parametrize("path", ["/v1/estates", "/v1/estates/ward/versions"])
def test_reads_need_a_token(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
