"""Analysis on a stored estate answers the very documents of the CLI contract (``--json``), on a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from typer.testing import CliRunner

from ringfence.cli.main import _register, app

if TYPE_CHECKING:
    from conftest import Samples, Tokens

_register()
runner = CliRunner()


def cli_json(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def ward(
    client: httpx.Client, module_tokens: Tokens, samples: Samples, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The ward estate, stored on the server and written to a file for the CLI."""
    response = client.post(
        "/v1/estates", json={"content": samples.ward_estate}, headers=module_tokens.headers(module_tokens.operator)
    )
    assert response.status_code in (200, 201), response.text
    path = tmp_path_factory.mktemp("ward") / "ward.yaml"
    path.write_text(samples.ward_estate)
    return path


def get(client: httpx.Client, tokens: Tokens, path: str, **params: Any) -> httpx.Response:
    return client.get(path, params=params, headers=tokens.headers(tokens.viewer))


def test_impact_is_the_cli_document(client: httpx.Client, module_tokens: Tokens, ward: Path) -> None:
    response = get(client, module_tokens, "/v1/estates/ward/impact", fail=["db-1", "supplier:acme"])
    assert response.status_code == 200, response.text
    document = response.json()
    assert document == cli_json("impact", str(ward), "--fail", "db-1", "--fail", "supplier:acme")
    assert [s["id"] for s in document["services_down"]] == ["ehr", "lab", "rota"]
    assert document["by_tier"] == {"1": 1, "2": 0, "3": 1, "4": 1}


def test_spof_is_the_cli_document(client: httpx.Client, module_tokens: Tokens, ward: Path) -> None:
    every = get(client, module_tokens, "/v1/estates/ward/spof").json()
    assert every == cli_json("spof", str(ward))
    assert every["spofs"][0] == {"ref": "asset:db-1", "services": ["ehr"], "worst_tier": 1}
    critical = get(client, module_tokens, "/v1/estates/ward/spof", tier=1).json()
    assert critical == cli_json("spof", str(ward), "--tier", "1")
    assert {s["worst_tier"] for s in critical["spofs"]} == {1}
    assert len(critical["spofs"]) < len(every["spofs"])


def test_concentration_is_the_cli_document(client: httpx.Client, module_tokens: Tokens, ward: Path) -> None:
    document = get(client, module_tokens, "/v1/estates/ward/concentration").json()
    assert document == cli_json("concentration", str(ward))
    acme = next(s for s in document["suppliers"] if s["id"] == "acme")
    assert acme["services_down"] == ["lab", "rota"]


def test_recover_is_the_cli_document(client: httpx.Client, module_tokens: Tokens, ward: Path) -> None:
    response = get(client, module_tokens, "/v1/estates/ward/recover", fail=["site:north"], parallel=1, step_time="2h")
    assert response.status_code == 200, response.text
    document = response.json()
    expected = cli_json("recover", str(ward), "--fail", "site:north", "--parallel", "1", "--step-time", "2h")
    assert document == expected
    assert document["step_seconds"] == 7200
    assert all(len(step["restore"]) == 1 for step in document["steps"])
    assert document["continuity"][0]["service"] == "ehr"


def test_an_older_version_is_analysed_when_asked(
    client: httpx.Client, module_tokens: Tokens, samples: Samples, ward: Path
) -> None:
    # v2 of a copy of the estate makes db-1 redundant: the EHR no longer rests on it alone.
    base = samples.ward_named("ward-history")
    v1 = client.post(
        "/v1/estates", json={"content": base}, headers=module_tokens.headers(module_tokens.operator)
    ).json()["version"]["id"]
    redundant = base.replace(
        "requires: [db-1.ward-history]", "requires: [{any: 1, of: [db-1.ward-history, app-3.ward-history]}]"
    )
    v2 = client.post(
        "/v1/estates", json={"content": redundant}, headers=module_tokens.headers(module_tokens.operator)
    ).json()["version"]["id"]
    # Hard db-1 loosened to any one of two: a second person makes v2 the estate of record.
    approved = client.post(
        f"/v1/estates/ward-history/versions/{v2}/approve", headers=module_tokens.headers(module_tokens.approver)
    )
    assert approved.status_code == 200, approved.text
    now = get(client, module_tokens, "/v1/estates/ward-history/impact", fail="db-1.ward-history").json()
    then = get(client, module_tokens, "/v1/estates/ward-history/impact", fail="db-1.ward-history", version=v1).json()
    assert [s["id"] for s in now["services_down"]] == ["lab"]
    assert [s["id"] for s in then["services_down"]] == ["ehr", "lab"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/estates/ward/impact", {"fail": "asset:nothing"}, "fail"),
        ("/v1/estates/ward/impact", {"fail": "colour:red"}, "fail"),
        ("/v1/estates/ward/impact", {}, "query.fail"),
        ("/v1/estates/ward/recover", {"fail": "db-1", "step_time": "soon"}, "step_time"),
        ("/v1/estates/ward/recover", {"fail": "db-1", "parallel": 0}, "query.parallel"),
        ("/v1/estates/ward/spof", {"tier": 7}, "query.tier"),
        ("/v1/estates/ward/spof", {"version": "latest"}, "query.version"),
    ],
)
def test_bad_questions_name_the_parameter(
    client: httpx.Client, module_tokens: Tokens, ward: Path, path: str, params: dict[str, Any], field: str
) -> None:
    response = get(client, module_tokens, path, **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_unknown_estates_and_versions_are_404(client: httpx.Client, module_tokens: Tokens, ward: Path) -> None:
    assert get(client, module_tokens, "/v1/estates/nowhere/spof").status_code == 404
    assert get(client, module_tokens, "/v1/estates/ward/spof", version=999999).status_code == 404


def test_analysis_needs_a_token(client: httpx.Client, ward: Path) -> None:
    assert client.get("/v1/estates/ward/concentration").status_code == 401
