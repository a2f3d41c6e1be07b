"""The rollout and drill commands, end to end on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ringfence.cli.main import _register, app
from ringfence.core.errors import ConflictError, InputError, PermissionDeniedError
from ringfence.files.disk import sample_estate_path

_register()
runner = CliRunner()

ESTATE = """
apiVersion: ringfence/v1
estate: small
services:
  - {id: web, name: Web, tier: 1, requires: [{any: 1, of: [app-1, app-2]}]}
assets:
  - {id: app-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-3, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-1, kind: endpoint, attrs: {os: win}, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-2, kind: endpoint, attrs: {os: win}, software: [{product: acme/agent, version: "1"}]}
"""
UPDATE = """
apiVersion: ringfence/v1
update: {id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 0s, rollback: snapshot}
"""
FAST = ["-o", "apply=0s", "-o", "restore_point=0s", "-o", "rollback=0s", "--poll-interval", "0.01"]


@pytest.fixture
def files(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.setenv("RINGFENCE_DATABASE_URL", db_url)
    estate, update, world = tmp_path / "estate.yaml", tmp_path / "update.yaml", tmp_path / "world.json"
    estate.write_text(ESTATE)
    update.write_text(UPDATE)
    return estate, update, world


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def refused(*args: str) -> BaseException | None:
    """The error a command raised (``ringfence.cli.main.main`` turns it into the exit status)."""
    return runner.invoke(app, list(args)).exception


def test_create_start_status_and_log(files: tuple[Path, Path, Path]) -> None:
    estate, update, world = files
    code, output = invoke("rollout", "create", str(estate), str(update), "--actor", "alice", "--json")
    assert code == 0, output
    created = json.loads(output)
    assert created["phase"] == "pending"
    rollout = created["id"]
    code, output = invoke("rollout", "start", rollout, "-o", f"world={world}", *FAST, "--actor", "alice")
    assert code == 0, output
    assert f"Rollout {rollout} is completed" in output
    code, output = invoke("rollout", "status", rollout, "--json")
    status = json.loads(output)
    assert status["phase"] == "completed"
    assert sorted(a["state"] for a in status["assets"]) == ["applied"] * 5
    code, output = invoke("rollout", "log", rollout, "--json")
    entries = json.loads(output)["entries"]
    transitions = [e["detail"]["to"] for e in entries if e["action"] == "rollout.transition"]
    assert transitions[0] == "taking_restore_points"
    assert transitions[-1] == "completed"
    assert entries[0]["action"] == "rollout.create"
    code, output = invoke("rollout", "status", rollout)
    assert "completed" in output


def test_a_bad_canary_halts_rolls_back_and_exits_1(files: tuple[Path, Path, Path]) -> None:
    estate, update, world = files
    _, output = invoke("rollout", "create", str(estate), str(update), "--json")
    rollout = json.loads(output)["id"]
    fail = ["-o", "fail=app-1,app-2,app-3,ws-1,ws-2", "-o", "after=0s"]
    code, output = invoke("rollout", "start", rollout, "-o", f"world={world}", *FAST, *fail)
    assert code == 1
    assert "rolled_back" in output
    status = json.loads(invoke("rollout", "status", rollout, "--json")[1])
    assert status["halt_reason"].startswith("ring 0 failed")


def test_people_pause_resume_abort_and_roll_back(files: tuple[Path, Path, Path]) -> None:
    estate, update, world = files
    rollout = json.loads(invoke("rollout", "create", str(estate), str(update), "--json")[1])["id"]
    assert isinstance(refused("rollout", "pause", rollout), ConflictError)  # not running yet
    assert invoke("rollout", "start", rollout, "--once", "-o", f"world={world}", *FAST)[0] == 0
    assert invoke("rollout", "pause", rollout, "--reason", "change freeze")[0] == 0
    assert json.loads(invoke("rollout", "status", rollout, "--json")[1])["phase"] == "paused"
    assert invoke("rollout", "resume", rollout)[0] == 0
    assert invoke("rollout", "abort", rollout, "--reason", "vendor advisory")[0] == 0
    assert invoke("rollout", "rollback", rollout)[0] == 0
    code, _ = invoke("rollout", "start", rollout, "-o", f"world={world}", *FAST)
    assert json.loads(invoke("rollout", "status", rollout, "--json")[1])["phase"] == "rolled_back"
    assert code == 1
    reasons = [e["detail"].get("reason") for e in json.loads(invoke("rollout", "log", rollout, "--json")[1])["entries"]]
    assert any(r and r.endswith("change freeze") for r in reasons)


def test_approval_needs_a_second_person(files: tuple[Path, Path, Path]) -> None:
    estate, update, _ = files
    _, output = invoke(
        "rollout", "create", str(estate), str(update), "--require-approval", "--actor", "alice", "--json"
    )
    rollout = json.loads(output)["id"]
    assert json.loads(output)["phase"] == "awaiting_approval"
    assert isinstance(refused("rollout", "start", rollout), ConflictError)
    assert isinstance(refused("rollout", "approve", rollout, "--actor", "alice"), PermissionDeniedError)
    assert invoke("rollout", "approve", rollout, "--actor", "bob")[0] == 0
    status = json.loads(invoke("rollout", "status", rollout, "--json")[1])
    assert (status["phase"], status["approved_by"]) == ("pending", "bob")


def test_dry_run_stores_nothing_and_unknown_drivers_are_named(files: tuple[Path, Path, Path]) -> None:
    estate, update, _ = files
    code, output = invoke("rollout", "create", str(estate), str(update), "--dry-run", "--json")
    assert code == 0
    assert json.loads(output)["id"] is None
    error = refused("rollout", "create", str(estate), str(update), "--driver", "teleport")
    assert isinstance(error, InputError)
    assert "no driver 'teleport'" in str(error)


def test_drill_json_follows_the_contract() -> None:
    scenario = sample_estate_path().parent / "scenarios" / "vsphere-7u3.yaml"
    code, output = invoke("drill", str(sample_estate_path()), str(scenario), "--json")
    assert code == 0, output
    document = json.loads(output)
    assert document["scenario"] == "vsphere-7u3"
    assert [r["strategy"] for r in document["results"]] == ["ringfence", "all-at-once", "batches"]
    ringfence = document["results"][0]
    assert ringfence["services_down"] == []
    assert ringfence["halted_at_ring"] == 0
    assert ringfence["data_lost"] == 0
    code, output = invoke("drill", str(sample_estate_path()), str(scenario))
    assert code == 0
    assert "ringfence" in output
    assert "all-at-once" in output


def test_rollout_list_sorts_json_by_id_shows_the_newest_first_and_filters_by_phase(
    files: tuple[Path, Path, Path],
) -> None:
    estate, update, world = files
    code, output = invoke("rollout", "list", "--json")
    assert (code, json.loads(output)) == (0, {"rollouts": []})
    assert invoke("rollout", "list")[0] == 0
    created = json.loads(invoke("rollout", "create", str(estate), str(update), "--actor", "alice", "--json")[1])
    first = created["id"]
    second = json.loads(invoke("rollout", "create", str(estate), str(update), "--actor", "bob", "--json")[1])["id"]
    assert invoke("rollout", "start", second, "--once", "-o", f"world={world}", *FAST)[0] == 0

    code, output = invoke("rollout", "list", "--json")
    assert code == 0
    listed = json.loads(output)["rollouts"]
    assert [r["id"] for r in listed] == sorted([first, second])
    mine = listed[[r["id"] for r in listed].index(first)]
    assert {k: mine[k] for k in ("update", "strategy", "driver", "phase", "ring", "ring_name", "created_by")} == {
        "update": "agent-2",
        "strategy": "ringfence",
        "driver": "simulated",
        "phase": "pending",
        "ring": 0,
        "ring_name": "canary",
        "created_by": "alice",
    }
    assert mine["rings"] == len(created["rings"])
    assert mine["created_at"] <= mine["updated_at"]
    started = json.loads(invoke("rollout", "status", second, "--json")[1])["phase"]
    assert started != "pending"

    code, output = invoke("rollout", "list", "--json", "--phase", "pending")
    assert [r["id"] for r in json.loads(output)["rollouts"]] == [first]
    code, output = invoke("rollout", "list", "--json", "--phase", "pending", "--phase", started)
    assert [r["id"] for r in json.loads(output)["rollouts"]] == sorted([first, second])
    code, output = invoke("rollout", "list", "--phase", "completed")
    assert code == 0
    assert "No rollouts in phase completed." in output
    code, output = invoke("rollout", "list")
    assert output.index(second) < output.index(first)  # the newest first


def test_rollout_list_refuses_an_unknown_phase_naming_the_phases(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "untouched.db"
    monkeypatch.setenv("RINGFENCE_DATABASE_URL", f"sqlite:///{database}")
    refused = cli("rollout", "list", "--phase", "finished", "--json")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "--phase: 'finished' is not a rollout phase; the phases are: pending, awaiting_approval," in refused.stderr
    assert "completed" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not database.exists()  # refused before the database was opened


@pytest.mark.parametrize("interval", ["nan", "-1", "3601", "inf"])
def test_an_absurd_poll_interval_is_refused_before_anything_moves(
    files: tuple[Path, Path, Path], interval: str
) -> None:
    estate, update, _ = files
    rollout = json.loads(invoke("rollout", "create", str(estate), str(update), "--json")[1])["id"]
    error = refused("rollout", "start", rollout, "--poll-interval", interval)
    assert isinstance(error, InputError)
    assert "--poll-interval" in str(error)
    assert json.loads(invoke("rollout", "status", rollout, "--json")[1])["phase"] == "pending"
