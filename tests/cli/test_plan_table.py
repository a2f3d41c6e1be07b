"""The people's plan: canary waves and the reason for every ring the planner added, readable at 80 columns.

Run as a user's script would (no terminal, so Rich lays out at 80 columns): the EPR of issue 10, whose two
database servers sit alone in two strata and so go in two canary waves.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import CliRunner

ESTATE = """\
apiVersion: ringfence/v1
estate: acute
services:
  - {id: epr, tier: 1, requires: [{any: 1, of: [epr-db-1, epr-db-2]}]}
assets:
  - {id: epr-db-1, kind: vm, site: city, attrs: {os: rhel-8}, software: [{product: acme/agent, version: "1"}]}
  - {id: epr-db-2, kind: vm, site: north, attrs: {os: rhel-8}, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-1, kind: endpoint, site: city, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-2, kind: endpoint, site: city, software: [{product: acme/agent, version: "1"}]}
"""
UPDATE = """\
apiVersion: ringfence/v1
update: {id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 1h}
"""


def test_plan_table_shows_the_waves_and_why_at_80_columns(cli: CliRunner, tmp_path: Path) -> None:
    estate, update = tmp_path / "estate.yaml", tmp_path / "agent-2.yaml"
    estate.write_text(ESTATE, encoding="utf-8")
    update.write_text(UPDATE, encoding="utf-8")
    result = cli("plan", estate, update)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), "\n".join(lines)
    rows = [line for line in lines if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows if row.split("│")[1].strip()] == [
        "canary",
        "canary wave 2 *",
        "ring 2",
    ]
    text = " ".join(line.strip() for line in lines)
    assert "Canary phase: 2 waves" in text
    assert (
        "* added by the planner: canary wave 2: epr-db-2 (stratum vm/rhel-8/-/north) cannot share a ring with "
        "epr-db-1: epr needs 1 of 2 (epr-db-1, epr-db-2) up" in text
    )
    assert "Note: rings[0] (1) adds no ring on this estate" in text
    assert result.stderr == ""  # nothing to warn about: the pair has slack, it only must not go down at once
