"""``GET /v1/estates/{name}/diff?from=&to=`` on a real server answers the document of ``ringfence diff --json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from typer.testing import CliRunner

from ringfence.cli.main import _register, app

if TYPE_CHECKING:
    from conftest import Tokens

_register()
runner = CliRunner()

BEFORE = """\
apiVersion: ringfence/v1
estate: diff-ward
services:
  - {id: ehr, tier: 1, requires: [{any: 1, of: [dw-db-1, dw-db-2]}]}
  - {id: rota, tier: 3, requires: [dw-app-1]}
assets:
  - {id: dw-db-1, kind: vm, supplier: acme}
  - {id: dw-db-2, kind: vm}
  - {id: dw-app-1, kind: vm}
"""
AFTER = BEFORE.replace("{any: 1, of: [dw-db-1, dw-db-2]}", "dw-db-1")
"""The EHR left on one database: a tier-1 single point of failure added."""


def _upload(client: httpx.Client, tokens: Tokens, text: str) -> int:
    response = client.post("/v1/estates", json={"content": text}, headers=tokens.headers(tokens.operator))
    assert response.status_code in (200, 201), response.text
    version_id: int = response.json()["version"]["id"]
    return version_id


def _diff(client: httpx.Client, tokens: Tokens, **params: Any) -> httpx.Response:
    return client.get("/v1/estates/diff-ward/diff", params=params, headers=tokens.headers(tokens.viewer))


def test_the_diff_of_two_versions_is_the_cli_document(
    client: httpx.Client, module_tokens: Tokens, tmp_path: Path
) -> None:
    first = _upload(client, module_tokens, BEFORE)
    second = _upload(client, module_tokens, AFTER)
    (tmp_path / "before.yaml").write_text(BEFORE)
    (tmp_path / "after.yaml").write_text(AFTER)

    response = _diff(client, module_tokens, **{"from": first, "to": second})
    assert response.status_code == 200, response.text
    document = response.json()
    cli = runner.invoke(app, ["diff", str(tmp_path / "before.yaml"), str(tmp_path / "after.yaml"), "--json"])
    assert cli.exit_code == 1, cli.output
    assert document == json.loads(cli.stdout)
    assert document["adds_tier_1_single_point"] is True
    assert [p["ref"] for p in document["single_points"]] == ["asset:dw-db-1", "supplier:acme"]

    backwards = _diff(client, module_tokens, **{"from": second, "to": first}).json()
    assert backwards["adds_tier_1_single_point"] is False
    # `to` defaults to the current version, the second (it weakens no requirement: one of two became one).
    assert _diff(client, module_tokens, **{"from": first}).json() == document
    unchanged = _diff(client, module_tokens, **{"from": second}).json()
    assert unchanged["single_points"] == unchanged["services"] == unchanged["assets"] == []


def test_bad_versions_are_problems_not_errors(client: httpx.Client, module_tokens: Tokens) -> None:
    _upload(client, module_tokens, BEFORE)
    missing = _diff(client, module_tokens, **{"from": 999_999})
    assert missing.status_code == 404, missing.text
    assert missing.headers["content-type"].startswith("application/problem+json")
    for params in ({}, {"from": "one"}, {"from": 1, "to": 0}):
        response = _diff(client, module_tokens, **params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
