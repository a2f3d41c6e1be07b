"""``/v1/drills`` on a real server: the bundled scenarios, and a drill answering the CLI's document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from typer.testing import CliRunner

from ringfence.cli.main import _register, app
from ringfence.files.disk import examples_dir, read_text, sample_estate_path

if TYPE_CHECKING:
    from conftest import Samples, Tokens

_register()
runner = CliRunner()

SCENARIO = """\
apiVersion: ringfence/v1
scenario: agent-crash
update: {id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 1h, rollback: reinstall}
fault: {affects: "attrs.os=win", probability: 1.0, after: 5m}
seed: 3
"""


@pytest.fixture(scope="module")
def city(client: httpx.Client, module_tokens: Tokens) -> str:
    """The bundled sample estate, stored; its name."""
    response = client.post(
        "/v1/estates",
        json={"content": read_text(sample_estate_path())},
        headers=module_tokens.headers(module_tokens.operator),
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["version"]["name"])


def test_bundled_scenarios_are_listed(client: httpx.Client, module_tokens: Tokens) -> None:
    response = client.get("/v1/drills/scenarios", headers=module_tokens.headers(module_tokens.viewer))
    assert response.status_code == 200
    scenarios = response.json()["scenarios"]
    on_disk = sorted(examples_dir().glob("*/scenarios/*.yaml"))
    assert len(scenarios) == len(on_disk) >= 3
    crowdstrike = next(s for s in scenarios if s["id"] == "crowdstrike-2024")
    assert crowdstrike["release"] == "crowdstrike/falcon@7.15-cf291"
    assert crowdstrike["content"] == read_text(examples_dir() / crowdstrike["file"])
    assert [s["id"] for s in scenarios] == sorted(s["id"] for s in scenarios)


def test_a_bundled_drill(client: httpx.Client, module_tokens: Tokens, city: str) -> None:
    response = client.post(
        "/v1/drills",
        json={"estate": city, "bundled": "vsphere-7u3"},
        headers=module_tokens.headers(module_tokens.viewer),
    )
    assert response.status_code == 200, response.text
    assert response.json()["scenario"] == "vsphere-7u3"
    by_strategy = {r["strategy"]: r for r in response.json()["results"]}
    assert set(by_strategy) == {"ringfence", "all-at-once", "batches"}
    assert by_strategy["ringfence"]["failed"] < by_strategy["all-at-once"]["failed"]


def test_a_drill_from_text_with_chosen_strategies(
    client: httpx.Client, module_tokens: Tokens, tmp_path: Path, samples: Samples
) -> None:
    estate = samples.ward_estate
    client.post("/v1/estates", json={"content": estate}, headers=module_tokens.headers(module_tokens.operator))
    response = client.post(
        "/v1/drills",
        json={"estate": "ward", "scenario": SCENARIO, "strategies": ["ringfence", "all-at-once"]},
        headers=module_tokens.headers(module_tokens.viewer),
    )
    assert response.status_code == 200, response.text
    (tmp_path / "ward.yaml").write_text(estate)
    (tmp_path / "drill.yaml").write_text(SCENARIO)
    files = [str(tmp_path / "ward.yaml"), str(tmp_path / "drill.yaml")]
    result = runner.invoke(app, ["drill", *files, "-s", "ringfence", "-s", "all-at-once", "--json"])
    assert result.exit_code == 0, result.output
    document = response.json()
    assert document == json.loads(result.stdout)
    assert document["scenario"] == "agent-crash"
    assert [r["strategy"] for r in document["results"]] == ["ringfence", "all-at-once"]
    all_at_once = document["results"][1]
    assert all_at_once["failed_assets"] == ["ws-1", "ws-2"]


def test_drill_refusals(client: httpx.Client, module_tokens: Tokens, city: str) -> None:
    viewer = module_tokens.headers(module_tokens.viewer)
    both = client.post("/v1/drills", json={"estate": city, "bundled": "x", "scenario": SCENARIO}, headers=viewer)
    assert both.status_code == 422
    neither = client.post("/v1/drills", json={"estate": city}, headers=viewer)
    assert neither.status_code == 422
    assert "exactly one" in neither.json()["detail"]
    unknown = client.post("/v1/drills", json={"estate": city, "bundled": "meteor-strike"}, headers=viewer)
    assert unknown.status_code == 404
    assert "crowdstrike-2024" in unknown.json()["detail"]
    broken = SCENARIO.replace("after: 5m", "after: soon")
    bad = client.post("/v1/drills", json={"estate": city, "scenario": broken}, headers=viewer)
    assert bad.status_code == 422
    error = bad.json()["errors"][0]
    assert (error["field"], error["line"], error["source"]) == ("fault.after", 4, "scenario")
    strategy = client.post(
        "/v1/drills", json={"estate": city, "bundled": "vsphere-7u3", "strategies": ["yolo"]}, headers=viewer
    )
    assert strategy.json()["errors"][0]["field"] == "strategies[0]"
    assert client.post("/v1/drills", json={"estate": city, "bundled": "vsphere-7u3"}).status_code == 401
