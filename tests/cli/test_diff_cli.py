"""``ringfence diff OLD NEW`` through the real process: exit 1 exactly when the change adds a tier-1 single point
of failure, 0 otherwise, 2 on bad input (file:line:field on stderr); the JSON document; 80 columns of text."""

from __future__ import annotations

import json
from pathlib import Path

from ringfence.files.disk import sample_estate_path

from .conftest import CliRunner

WARD = """\
apiVersion: ringfence/v1
estate: ward
suppliers: [{id: acme}]
services:
  - id: epr
    tier: 1
    requires:
      - {any: 1, of: [db1, db2]}
  - id: lab
    tier: 3
    requires: [app]
assets:
  - id: db1
    kind: vm
    supplier: acme
  - id: db2
    kind: vm
  - id: app
    kind: vm
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_change_that_leaves_a_tier_1_service_on_one_asset_exits_1(tmp_path: Path, cli: CliRunner) -> None:
    old = _write(tmp_path, "old.yaml", WARD)
    new = _write(tmp_path, "new.yaml", WARD.replace("{any: 1, of: [db1, db2]}", "db1"))
    text = cli("diff", old, new)
    assert text.returncode == 1, text.stderr
    assert "Adds a tier-1 single point of failure:\n  asset:db1 alone now takes down epr\n" in text.stdout
    assert "redundant → single point" in text.stdout

    run = cli("diff", old, new, "--json")
    assert run.returncode == 1, run.stderr
    document = json.loads(run.stdout)
    assert list(document) == [
        "old",
        "new",
        "adds_tier_1_single_point",
        "single_points",
        "services",
        "assets",
        "suppliers",
    ]
    assert document["adds_tier_1_single_point"] is True
    assert document["old"] == {"estate": "ward", "assets": 3, "services": 2}
    assert document["single_points"] == [
        {
            "ref": "asset:db1",
            "change": "added",
            "worst_tier_before": None,
            "worst_tier_after": 1,
            "services_before": [],
            "services_after": [{"id": "epr", "tier": 1}],
            "services_gained": [{"id": "epr", "tier": 1}],
            "services_lost": [],
        },
        {
            "ref": "supplier:acme",
            "change": "added",
            "worst_tier_before": None,
            "worst_tier_after": 1,
            "services_before": [],
            "services_after": [{"id": "epr", "tier": 1}],
            "services_gained": [{"id": "epr", "tier": 1}],
            "services_lost": [],
        },
    ]
    assert document["services"] == [
        {
            "id": "epr",
            "tier_before": 1,
            "tier_after": 1,
            "exposure_before": "redundant",
            "exposure_after": "single-point",
            "single_points_gained": ["asset:db1"],
            "single_points_lost": [],
        }
    ]
    assert document["assets"] == [{"id": "db1", "impact_tier_before": 5, "impact_tier_after": 1}]
    # acme supplies db1 alone: its loss now takes epr down.
    assert document["suppliers"] == [
        {
            "id": "acme",
            "down_by_tier_before": {"1": 0, "2": 0, "3": 0, "4": 0},
            "down_by_tier_after": {"1": 1, "2": 0, "3": 0, "4": 0},
            "services_gained": [{"id": "epr", "tier": 1}],
            "services_lost": [],
        }
    ]


def test_a_change_that_adds_redundancy_exits_0(tmp_path: Path, cli: CliRunner) -> None:
    old = _write(tmp_path, "old.yaml", WARD)
    new = _write(tmp_path, "new.yaml", WARD.replace("requires: [app]", "requires: [{any: 1, of: [app, db2]}]"))
    run = cli("diff", old, new, "--json")
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["adds_tier_1_single_point"] is False
    assert [(p["ref"], p["change"]) for p in document["single_points"]] == [("asset:app", "removed")]
    assert [(s["id"], s["exposure_before"], s["exposure_after"]) for s in document["services"]] == [
        ("lab", "single-point", "redundant")
    ]
    unchanged = cli("diff", old, old)
    assert unchanged.returncode == 0, unchanged.stderr
    assert "No change to risk" in unchanged.stdout


def test_bad_input_exits_2_naming_file_line_and_field(tmp_path: Path, cli: CliRunner) -> None:
    old = _write(tmp_path, "old.yaml", WARD)
    bad = _write(tmp_path, "bad.yaml", WARD.replace("tier: 3", "tier: 7"))
    run = cli("diff", old, bad, "--json")
    assert run.returncode == 2
    assert run.stdout == ""
    assert f"{bad}:10: services[1].tier:" in run.stderr

    dangling = _write(tmp_path, "dangling.yaml", WARD.replace("requires: [app]", "requires: [apq]"))
    run = cli("diff", dangling, old)
    assert run.returncode == 2
    assert f"{dangling}:11:" in run.stderr
    assert "apq" in run.stderr

    run = cli("diff", old, tmp_path / "missing.yaml")
    assert run.returncode == 2
    assert "missing.yaml: no such file" in run.stderr


def test_the_text_fits_80_columns(tmp_path: Path, cli: CliRunner) -> None:
    """Every table of the diff, on the sample estate changed in several ways at once, long ids included."""
    sample = sample_estate_path().read_text(encoding="utf-8")
    long_id = "epr-database-server-number-one-in-the-city-data-centre-hall-b-rack-42-unit-7"
    changed = (
        sample.replace("{any: 1, of: [sql-epr-1, sql-epr-2]}", "sql-epr-1")  # a tier-1 single point
        .replace("sql-epr-1", long_id)  # renamed too: one asset gone, one new, its long id in every section
        .replace("{any: 1, of: [lims-app-1, lims-app-2]}", "lims-app-1")
    )
    changed = changed.replace("    tier: 3\n", "    tier: 1\n", 1)  # a service raised to tier 1
    old = _write(tmp_path, "old.yaml", sample)
    new = _write(tmp_path, "new.yaml", changed)
    run = cli("diff", old, new, "--limit", "50")
    assert run.returncode == 1, run.stderr
    for title in ("Single points of failure:", "Services (", "Asset impact tiers:", "Supplier concentration:"):
        assert title in run.stdout
    assert f"asset:{long_id[:30]}" in run.stdout
    widest = max(run.stdout.splitlines(), key=len)
    assert len(widest) <= 80, widest
