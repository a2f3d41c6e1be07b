"""One model per wire document: the CLI's ``--json`` and the API's answer are the same JSON, byte for byte.

For each document of ``ringfence.core.documents``, the same question is asked of a real server (HTTP) and of
the CLI (``--json``, on files holding the same text, or on the server's own database); both answers validate
against the one model, and are the very same text (keys, order, number types).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from live_server import RINGFENCE, LiveServer
from ringfence.cli.main import _register, app
from ringfence.core.documents import (
    AuditVerification,
    CheckDocument,
    ConcentrationDocument,
    DrillDocument,
    ImpactDocument,
    PlanDocument,
    RecoveryDocument,
    RolloutStatusDocument,
    SpofDocument,
)

if TYPE_CHECKING:
    from conftest import Samples, Tokens

_register()
runner = CliRunner()

CLINIC_ESTATE = """\
apiVersion: ringfence/v1
estate: clinic
services:
  - {id: ehr, name: Electronic health record, tier: 1, rto: 4h, continuity: Paper notes, requires: [db-1]}
assets:
  - {id: db-1, kind: vm, site: north}
"""
"""An estate without warnings, for ``check``: a warning names its source, the file for the CLI and the upload
for the API, so the ward estate's warnings (rightly) differ."""

SCENARIO = """\
apiVersion: ringfence/v1
scenario: agent-crash
update: {id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 1h, rollback: reinstall}
fault: {affects: "attrs.os=win", probability: 1.0, after: 5m}
seed: 3
"""


@pytest.fixture(scope="module")
def files(
    client: httpx.Client, module_tokens: Tokens, samples: Samples, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The ward estate stored on the server, and the same texts in files for the CLI."""
    response = client.post(
        "/v1/estates", json={"content": samples.ward_estate}, headers=module_tokens.headers(module_tokens.operator)
    )
    assert response.status_code in (200, 201), response.text
    folder = tmp_path_factory.mktemp("wire")
    (folder / "ward.yaml").write_text(samples.ward_estate)
    (folder / "clinic.yaml").write_text(CLINIC_ESTATE)
    (folder / "agent.yaml").write_text(samples.agent_update)
    (folder / "drill.yaml").write_text(SCENARIO)
    return folder


@pytest.fixture
def on_server_database(module_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI commands that read the database read the server's own."""
    monkeypatch.setenv("RINGFENCE_DATABASE_URL", module_server.database_url)


def cli_text(*args: str) -> str:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1, result.stdout  # one document, one line
    assert result.stdout.endswith("\n")
    return result.stdout.rstrip("\n")


M = TypeVar("M", bound=BaseModel)


def same_document(model: type[M], api: httpx.Response, cli: str) -> M:
    """Both validate against ``model``, to equal models, and are the same text."""
    assert api.status_code in (200, 201), api.text
    from_api, from_cli = model.model_validate_json(api.text), model.model_validate_json(cli)
    assert from_api == from_cli
    assert api.text == cli
    return from_api


Ask = Callable[..., httpx.Response]


@pytest.fixture
def get(client: httpx.Client, module_tokens: Tokens, files: Path) -> Ask:
    def ask(path: str, **params: Any) -> httpx.Response:
        return client.get(path, params=params, headers=module_tokens.headers(module_tokens.viewer))

    return ask


@pytest.fixture
def post(client: httpx.Client, module_tokens: Tokens, files: Path) -> Ask:
    def ask(path: str, body: dict[str, Any], *, role: str = "viewer") -> httpx.Response:
        return client.post(path, json=body, headers=module_tokens.headers(getattr(module_tokens, role)))

    return ask


def test_check(post: Ask, files: Path) -> None:
    api = post("/v1/estates/validate", {"content": CLINIC_ESTATE})
    document = same_document(CheckDocument, api, cli_text("check", str(files / "clinic.yaml")))
    assert (document.estate, document.warnings) == ("clinic", [])


def test_impact(get: Ask, files: Path) -> None:
    api = get("/v1/estates/ward/impact", fail=["db-1", "supplier:acme"])
    cli = cli_text("impact", str(files / "ward.yaml"), "--fail", "db-1", "--fail", "supplier:acme")
    assert same_document(ImpactDocument, api, cli).by_tier == {"1": 1, "2": 0, "3": 1, "4": 1}


@pytest.mark.parametrize("tier", [None, 1])
def test_spof(get: Ask, files: Path, tier: int | None) -> None:
    api = get("/v1/estates/ward/spof", **({"tier": tier} if tier else {}))
    cli = cli_text("spof", str(files / "ward.yaml"), *(["--tier", str(tier)] if tier else []))
    assert same_document(SpofDocument, api, cli).spofs


def test_concentration(get: Ask, files: Path) -> None:
    document = same_document(
        ConcentrationDocument,
        get("/v1/estates/ward/concentration"),
        cli_text("concentration", str(files / "ward.yaml")),
    )
    # Shares are floats on both sides, 0.0 included: the text compared above holds "0.0", not "0".
    assert all(isinstance(share, float) for s in document.suppliers for share in s.share_by_tier.values())


def test_recovery(get: Ask, files: Path) -> None:
    api = get("/v1/estates/ward/recover", fail=["site:north"], parallel=1, step_time="2h")
    cli = cli_text("recover", str(files / "ward.yaml"), "--fail", "site:north", "--parallel", "1", "--step-time", "2h")
    document = same_document(RecoveryDocument, api, cli)
    assert document.continuity
    assert document.steps


def test_plan(post: Ask, files: Path, samples: Samples) -> None:
    api = post("/v1/plans", {"estate": "ward", "update": samples.agent_update})
    cli = cli_text("plan", str(files / "ward.yaml"), str(files / "agent.yaml"))
    assert same_document(PlanDocument, api, cli).targets == 5


def test_drill(post: Ask, files: Path) -> None:
    strategies = ["ringfence", "all-at-once"]
    api = post("/v1/drills", {"estate": "ward", "scenario": SCENARIO, "strategies": strategies})
    cli = cli_text(
        "drill", str(files / "ward.yaml"), str(files / "drill.yaml"), "-s", strategies[0], "-s", strategies[1]
    )
    document = same_document(DrillDocument, api, cli)
    assert [r.strategy for r in document.results] == strategies


def test_rollout_status(post: Ask, get: Ask, samples: Samples, on_server_database: None) -> None:
    # Created and not started: the controller leaves it be, so both read the same rollout.
    created = post("/v1/rollouts", {"estate": "ward", "update": samples.agent_update}, role="operator")
    assert created.status_code == 201, created.text
    rollout_id = created.json()["id"]
    document = same_document(
        RolloutStatusDocument, get(f"/v1/rollouts/{rollout_id}"), cli_text("rollout", "status", rollout_id)
    )
    assert (document.id, document.phase) == (rollout_id, "pending")


def test_audit_verification(get: Ask, module_server: LiveServer) -> None:
    api = get("/v1/audit/verify")
    assert api.status_code == 200, api.text
    # In its own process: ``audit verify`` leaves its connection pool to the process's end.
    run = subprocess.run(
        [RINGFENCE, "audit", "verify", "--database", module_server.database_url, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.count("\n") == 1, run.stdout
    cli = run.stdout.rstrip("\n")
    from_api = AuditVerification.model_validate_json(api.text)
    # The same document, last_hash included (the CLI's once lacked it, so a cut-off chain went unseen there).
    assert api.text == cli
    assert json.loads(cli)["last_hash"] == from_api.last_hash
    assert from_api.ok
    assert from_api.entries > 0
