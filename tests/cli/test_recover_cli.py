"""``ringfence recover`` end to end: the installed console script, run as a user would, on the sample estate.

Expected values are hand-checked against src/ringfence/examples/city-general/estate.yaml (see
tests/cases/recovery/advanced-2022-*.yaml for the working).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ringfence.files.disk import sample_estate_path

SAMPLE = str(sample_estate_path())
STEPS = [
    {"step": 1, "restore": ["adastra", "carenotes"]},
    {"step": 2, "restore": ["community-records", "nhs111"]},
]
EVIDENCE = "Evidence of the restore order given interdependencies (DSPT B5.a)"


def ringfence(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("ringfence", path=os.path.dirname(sys.executable))
    assert script is not None, f"the ringfence console script is not installed next to {sys.executable}"
    # Wide, so that Rich does not wrap messages in the middle of what the tests look for.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def recover_json(*args: str) -> dict[str, Any]:
    result = ringfence("recover", SAMPLE, *args, "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)  # one JSON document and nothing else
    return document


def order(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The restore order alone: each step's number and items."""
    return [{"step": s["step"], "restore": s["restore"]} for s in document["steps"]]


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_json_has_the_contract_keys_and_values() -> None:
    document = recover_json("--fail", "supplier:advanced")
    assert document["failed"] == ["supplier:advanced"]
    assert order(document) == STEPS
    # Without --assurance every step is the --step-time estimate, and says so.
    assert {(s["seconds"], s["basis"], tuple(s["measured"])) for s in document["steps"]} == {(3600, "estimate", ())}
    continuity = document["continuity"]
    assert [{key: c[key] for key in ("service", "tier", "rto")} for c in continuity] == [
        {"service": "nhs111", "tier": 2, "rto": 7200},
        {"service": "community-records", "tier": 3, "rto": 86400},
    ]
    assert continuity[0]["plan"].startswith("Paper triage forms and a manual call log")
    assert continuity[1]["plan"].startswith("Paper caseload lists printed weekly")
    assert document["rto_at_risk"] == []


def test_several_failures_are_listed_sorted() -> None:
    document = recover_json("--fail", "carenotes", "-f", "asset:adastra")
    assert document["failed"] == ["asset:adastra", "carenotes"]
    assert order(document) == STEPS


def test_parallel_caps_each_step_and_takes_the_most_critical_first() -> None:
    document = recover_json("--fail", "supplier:advanced", "--parallel", "1")
    assert order(document) == [
        {"step": 1, "restore": ["adastra"]},
        {"step": 2, "restore": ["nhs111"]},
        {"step": 3, "restore": ["carenotes"]},
        {"step": 4, "restore": ["community-records"]},
    ]
    assert document["parallel"] == 1


def test_step_time_sets_the_rtos_at_risk() -> None:
    document = recover_json("--fail", "supplier:advanced", "--step-time", "61m")
    assert document["step_seconds"] == 3660
    # nhs111 is back after 2 steps: 7320 s, over its 2h.
    assert document["rto_at_risk"] == [
        {"service": "nhs111", "tier": 2, "rto": 7200, "restored_by": 7320, "basis": "estimate"}
    ]


def test_export_writes_the_evidence_with_every_step(tmp_path: Path) -> None:
    export = tmp_path / "evidence" / "recovery.md"
    export.parent.mkdir()
    result = ringfence("recover", SAMPLE, "--fail", "supplier:advanced", "--export", str(export), "--json")
    assert result.returncode == 0, result.stderr
    assert order(json.loads(result.stdout)) == STEPS
    text = export.read_text()
    assert EVIDENCE in text
    assert "1. `adastra`, `carenotes`" in text
    assert "2. `community-records`, `nhs111`" in text
    assert "supplier:advanced" in text
    assert "Paper triage forms and a manual call log" in text


def test_human_output_names_plans_and_steps(tmp_path: Path) -> None:
    export = tmp_path / "recovery.md"
    result = ringfence("recover", SAMPLE, "--fail", "supplier:advanced", "--export", str(export))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "DSPT B5.a" in out
    assert "NHS 111 and out-of-hours triage (Adastra)" in out
    assert "adastra, carenotes" in out
    assert "community-records, nhs111" in out
    assert f"Evidence written to {export}" in one_line(out)
    assert export.exists()


@pytest.mark.parametrize(
    ("args", "option", "value"),
    [
        (["--fail", "supplier:nobody"], "--fail", "supplier:nobody"),
        (["--fail", "rack:r1"], "--fail", "rack:r1"),
        (["--fail", "supplier:advanced", "--parallel", "0"], "--parallel", None),
        (["--fail", "supplier:advanced", "--step-time", "x"], "--step-time", "'x'"),
        ([], "--fail", None),
    ],
    ids=["unknown-supplier", "unknown-form", "parallel-0", "step-time-x", "no-fail"],
)
def test_bad_input_exits_2_naming_the_option(args: list[str], option: str, value: str | None) -> None:
    result = ringfence("recover", SAMPLE, *args, "--json")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    message = one_line(result.stderr)
    assert option in message
    if value is not None:
        assert value in message


def test_missing_estate_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    result = ringfence("recover", str(missing), "--fail", "a", "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "nowhere.yaml" in one_line(result.stderr)
