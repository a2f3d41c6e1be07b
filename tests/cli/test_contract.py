"""The command-line contract (cli-contract.md), through the real ``ringfence`` process.

Each ``--json`` command must print exactly one JSON document on stdout, with the contract's keys and lists
sorted as it says, and exit 0. Values are held against the library computed in this process on the same
file (not against numbers copied from today's sample), and against facts worked out by hand on a tiny estate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ringfence.core.estate import Estate
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.impact import compute_blast_radius, find_single_points_of_failure, supplier_concentration
from ringfence.core.planner import plan_rings
from ringfence.core.update import parse_update_text
from ringfence.files.disk import examples_dir, read_estate, read_with, sample_estate_path

from .conftest import CliRunner

SAMPLE = sample_estate_path()
UPDATES = examples_dir() / "city-general" / "updates"

# Hand-checked: epr (tier 1) needs app and one of the db pair; portal (3) needs epr; billing (4) needs
# ledger. app runs on host1; globex operates host1 and ledger; acme's agent runs on app, db1 and db2.
TINY = """\
apiVersion: ringfence/v1
estate: tiny
suppliers:
  - {id: acme, name: Acme}
  - {id: globex}
services:
  - {id: epr, tier: 1, rto: 4h, continuity: Paper packs., requires: [app, {any: 1, of: [db1, db2]}]}
  - {id: portal, tier: 3, rto: 1d, continuity: Phone., requires: [epr]}
  - {id: billing, tier: 4, rto: 2d, continuity: Later., requires: [ledger]}
assets:
  - {id: app, kind: vm, site: city, attrs: {os: linux}, software: [{product: acme/agent, version: "1.0"}],
     requires: [host1]}
  - {id: db1, kind: vm, site: city, attrs: {os: linux}, software: [{product: acme/agent, version: "2.0"}]}
  - {id: db2, kind: vm, site: north, attrs: {os: linux}, software: [{product: acme/agent, version: "2.0"}]}
  - {id: host1, kind: host, site: city, supplier: globex}
  - {id: ledger, kind: saas, supplier: globex}
"""

TINY_UPDATE = """\
apiVersion: ringfence/v1
update:
  id: agent-3
  product: acme/agent
  version: "3.0"
  strata: [kind]
  rings: [1, "100%"]
  bake: 2h
"""


def json_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON document on stdout of a successful run (json.loads refuses anything after it)."""
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    assert result.stdout.endswith("\n")
    assert result.stdout.count("\n") == 1, "one document, on one line"
    return document


@pytest.fixture(scope="module")
def sample() -> tuple[Estate, EstateGraph]:
    estate = read_estate(SAMPLE)
    return estate, compile_estate(estate)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "estate.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_graph(tiny: Path) -> EstateGraph:
    return compile_estate(read_estate(tiny))


# ------------------------------------------------------------------------------------------ check


def test_check_sample(cli: CliRunner, sample: tuple[Estate, EstateGraph]) -> None:
    estate, _ = sample
    document = json_of(cli("check", SAMPLE, "--json"))
    assert document["ok"] is True
    assert document["assets"] == len(estate.assets)
    assert document["services"] == len(estate.services)
    assert document["suppliers"] == estate.declared_suppliers


def test_check_tiny(cli: CliRunner, tiny: Path) -> None:
    document = json_of(cli("check", tiny, "--json"))
    assert {k: document[k] for k in ("ok", "assets", "services", "suppliers")} == {
        "ok": True,
        "assets": 5,
        "services": 3,
        "suppliers": 2,
    }


def test_check_strict_fails_on_warnings_with_exit_1(cli: CliRunner, tmp_path: Path) -> None:
    """A where-group matching too little is a warning; --strict makes it the failed check the user asked for."""
    path = tmp_path / "estate.yaml"
    path.write_text(TINY.replace("{any: 1, of: [db1, db2]}", "{any: 4, where: 'attrs.os=linux,kind=vm'}"))
    relaxed = json_of(cli("check", path, "--json"))
    assert relaxed["ok"] is True
    assert any("epr" in w for w in relaxed["warnings"])
    strict = cli("check", path, "--json", "--strict")
    assert strict.returncode == 1, strict.stderr
    document = json.loads(strict.stdout)
    assert document["ok"] is False


# ----------------------------------------------------------------------------------------- impact

IMPACT_CASES = [
    # (refs, services down with tiers, assets down) — worked out by hand from TINY.
    (["asset:db1"], [], ["db1"]),
    (["db1", "db2"], [("epr", 1), ("portal", 3)], ["db1", "db2"]),
    (["service:epr"], [("epr", 1), ("portal", 3)], []),
    (["epr"], [("epr", 1), ("portal", 3)], []),
    (["supplier:globex"], [("billing", 4), ("epr", 1), ("portal", 3)], ["app", "host1", "ledger"]),
    (["supplier:acme"], [("epr", 1), ("portal", 3)], ["app", "db1", "db2"]),
    (["software:acme/agent"], [("epr", 1), ("portal", 3)], ["app", "db1", "db2"]),
    (["software:acme/agent@2.0"], [("epr", 1), ("portal", 3)], ["db1", "db2"]),
    (["site:north"], [], ["db2"]),
    (["site:city"], [("epr", 1), ("portal", 3)], ["app", "db1", "host1"]),
    (["where:kind=host"], [("epr", 1), ("portal", 3)], ["app", "host1"]),
    (["where:attrs.os=linux,site=north|city,kind!=vm"], [], []),
    (["site:north", "asset:db1"], [("epr", 1), ("portal", 3)], ["db1", "db2"]),
]


@pytest.mark.parametrize(("refs", "services", "assets"), IMPACT_CASES, ids=[",".join(c[0]) for c in IMPACT_CASES])
def test_impact_every_failure_form(
    cli: CliRunner,
    tiny: Path,
    tiny_graph: EstateGraph,
    refs: list[str],
    services: list[tuple[str, int]],
    assets: list[str],
) -> None:
    args: list[str | Path] = ["impact", tiny, "--json"]
    for ref in refs:
        args += ["--fail", ref]
    document = json_of(cli(*args))
    assert set(document) >= {"failed", "services_down", "assets_down", "by_tier"}
    assert document["failed"] == sorted(refs)
    assert document["services_down"] == [{"id": s, "tier": t} for s, t in services]
    assert document["assets_down"] == assets
    assert document["by_tier"] == {str(t): sum(1 for _, x in services if x == t) for t in (1, 2, 3, 4)}
    # The library in this process says the same.
    radius = compute_blast_radius(tiny_graph, refs)
    assert document["services_down"] == [{"id": s.id, "tier": s.tier} for s in radius.services_down]
    assert document["assets_down"] == list(radius.assets_down)


def test_impact_on_the_sample(cli: CliRunner, sample: tuple[Estate, EstateGraph]) -> None:
    _, graph = sample
    refs = ["supplier:crowdstrike", "where:attrs.cluster=prod-b", "site:north"]
    document = json_of(cli("impact", SAMPLE, "--json", *(x for ref in refs for x in ("--fail", ref))))
    radius = compute_blast_radius(graph, refs)
    assert document["failed"] == sorted(refs)
    assert document["services_down"] == [{"id": s.id, "tier": s.tier} for s in radius.services_down]
    assert document["assets_down"] == list(radius.assets_down)
    assert document["by_tier"] == {str(t): n for t, n in radius.by_tier.items()}
    ids = [s["id"] for s in document["services_down"]]
    assert ids == sorted(ids)
    assert document["assets_down"] == sorted(document["assets_down"])
    assert document["services_down"], "CrowdStrike plus a cluster plus a site takes something down"


# ------------------------------------------------------------------------------------------- spof

TINY_SPOFS = [
    ("supplier:globex", ["billing", "epr", "portal"], 1),
    ("asset:app", ["epr", "portal"], 1),
    ("asset:host1", ["epr", "portal"], 1),
    ("site:city", ["epr", "portal"], 1),
    ("software:acme/agent", ["epr", "portal"], 1),
    ("supplier:acme", ["epr", "portal"], 1),
    ("asset:ledger", ["billing"], 4),
]


def spof_rows(document: dict[str, Any]) -> list[tuple[str, list[str], int]]:
    assert set(document) >= {"spofs"}
    for row in document["spofs"]:
        assert set(row) >= {"ref", "services", "worst_tier"}
    return [(row["ref"], row["services"], row["worst_tier"]) for row in document["spofs"]]


def test_spof_tiny(cli: CliRunner, tiny: Path) -> None:
    assert spof_rows(json_of(cli("spof", tiny, "--json"))) == TINY_SPOFS


@pytest.mark.parametrize("tier", [3, 1])
def test_spof_tiny_with_tier(cli: CliRunner, tiny: Path, tier: int) -> None:
    """--tier keeps services of tier ≤ T, drops refs left with none, and sorts again on what is kept."""
    tiers = {"epr": 1, "portal": 3, "billing": 4}
    kept = []
    for ref, services, _ in TINY_SPOFS:
        services = [s for s in services if tiers[s] <= tier]
        if services:
            kept.append((ref, services, min(tiers[s] for s in services)))
    kept.sort(key=lambda row: (row[2], -len(row[1]), row[0]))
    got = spof_rows(json_of(cli("spof", tiny, "--json", "--tier", str(tier))))
    assert got == kept
    assert "asset:ledger" not in [ref for ref, _, _ in got]


def check_spof_order(rows: list[tuple[str, list[str], int]]) -> None:
    assert rows == sorted(rows, key=lambda row: (row[2], -len(row[1]), row[0]))
    for _, services, _ in rows:
        assert services == sorted(services)
        assert services


def test_spof_sample(cli: CliRunner, sample: tuple[Estate, EstateGraph]) -> None:
    estate, graph = sample
    rows = spof_rows(json_of(cli("spof", SAMPLE, "--json")))
    expected = [(s.ref, [x.id for x in s.services], s.worst_tier) for s in find_single_points_of_failure(graph)]
    assert rows == expected
    check_spof_order(rows)
    tiers = {s.id: s.tier for s in estate.services}
    for _, services, worst in rows:
        assert worst == min(tiers[s] for s in services)


def test_spof_sample_with_tier(cli: CliRunner, sample: tuple[Estate, EstateGraph]) -> None:
    """The filtered list is the full list with services of tier > 2 removed (and emptied refs dropped)."""
    estate, graph = sample
    tiers = {s.id: s.tier for s in estate.services}
    rows = spof_rows(json_of(cli("spof", SAMPLE, "--json", "--tier", "2")))
    check_spof_order(rows)
    expected = []
    for s in find_single_points_of_failure(graph):
        kept = [x.id for x in s.services if x.tier <= 2]
        if kept:
            expected.append((s.ref, kept, min(tiers[k] for k in kept)))
    expected.sort(key=lambda row: (row[2], -len(row[1]), row[0]))
    assert rows == expected
    assert all(worst <= 2 for _, _, worst in rows)


# ---------------------------------------------------------------------------------- concentration


def test_concentration_tiny(cli: CliRunner, tiny: Path) -> None:
    document = json_of(cli("concentration", tiny, "--json"))
    assert document["suppliers"] == [
        {"id": "acme", "services_down": ["epr", "portal"], "share_by_tier": {"1": 1.0, "3": 1.0, "4": 0.0}},
        {
            "id": "globex",
            "services_down": ["billing", "epr", "portal"],
            "share_by_tier": {"1": 1.0, "3": 1.0, "4": 1.0},
        },
    ]


def test_concentration_sample(cli: CliRunner, sample: tuple[Estate, EstateGraph]) -> None:
    _, graph = sample
    document = json_of(cli("concentration", SAMPLE, "--json"))
    rows = document["suppliers"]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    expected = supplier_concentration(graph)
    assert [r["id"] for r in rows] == [c.id for c in expected]
    for row, c in zip(rows, expected, strict=True):
        assert set(row) >= {"id", "services_down", "share_by_tier"}
        assert row["services_down"] == [s.id for s in c.services_down]
        assert row["services_down"] == sorted(row["services_down"])
        assert row["share_by_tier"] == {str(t): share for t, share in sorted(c.share_by_tier.items())}
        assert all(0.0 <= share <= 1.0 for share in row["share_by_tier"].values())


# ------------------------------------------------------------------------------------------- plan


def check_plan_document(document: dict[str, Any], graph: EstateGraph, update_path: Path) -> None:
    update = read_with(update_path, parse_update_text)
    plan = plan_rings(graph, update)
    assert set(document) >= {"update", "targets", "rings", "warnings"}
    assert document["update"] == update.id
    assert document["targets"] == plan.targets
    assert [r["index"] for r in document["rings"]] == list(range(len(plan.rings)))
    for row, ring in zip(document["rings"], plan.rings, strict=True):
        assert set(row) >= {"index", "name", "assets", "bake"}
        assert row["name"] == ring.name
        assert row["assets"] == list(ring.assets)
        assert row["assets"] == sorted(row["assets"])
        assert row["bake"] == update.bake
        assert isinstance(row["bake"], int | float)
    assert len(document["rings"]) == len(plan.rings)
    assert sum(len(r["assets"]) for r in document["rings"]) == document["targets"]
    assert [(w["kind"], w["owners"], w["members"]) for w in document["warnings"]] == [
        (w.kind, list(w.owners), list(w.members)) for w in plan.warnings
    ]


@pytest.mark.parametrize("name", ["falcon-7.16", "windows-2024-11"])
def test_plan_sample(cli: CliRunner, sample: tuple[Estate, EstateGraph], name: str) -> None:
    _, graph = sample
    path = UPDATES / f"{name}.yaml"
    check_plan_document(json_of(cli("plan", SAMPLE, path, "--json")), graph, path)


def test_plan_of_a_held_release_is_refused_then_overridden(cli: CliRunner, sample: tuple[Estate, EstateGraph]) -> None:
    """The bundled holds list withdraws ESXi 7.0.3: refusing it is the problem the user asked about (exit 1)."""
    _, graph = sample
    path = UPDATES / "esxi-7u3.yaml"
    refused = cli("plan", SAMPLE, path, "--json")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "on hold" in refused.stderr.replace("\n", "")
    document = json_of(cli("plan", SAMPLE, path, "--json", "--override-hold", "CAB-77: hotfix applied"))
    check_plan_document(document, graph, path)
    assert document["hold_override"]["justification"] == "CAB-77: hotfix applied"
    assert document["hold_override"]["release"] == "vmware/esxi@7.0.3"


def test_plan_tiny(cli: CliRunner, tiny: Path, tiny_graph: EstateGraph, tmp_path: Path) -> None:
    """One stratum (vm): the canary is db1, the first of the two tier-5 pair members; then app (tier 1, it
    takes the EPR down alone) goes with db2, which the pair allows (n − K = 1 per ring)."""
    path = tmp_path / "agent-3.yaml"
    path.write_text(TINY_UPDATE, encoding="utf-8")
    document = json_of(cli("plan", tiny, path, "--json"))
    check_plan_document(document, tiny_graph, path)
    assert document["update"] == "agent-3"
    assert document["targets"] == 3
    assert [(r["index"], r["name"], r["assets"], r["bake"]) for r in document["rings"]] == [
        (0, "canary", ["db1"], 7200),
        (1, "ring 1", ["app", "db2"], 7200),
    ]
    assert document["warnings"] == []


def test_plan_tiny_pair_alone_in_strata_takes_two_canary_waves(
    cli: CliRunner, tiny: Path, tiny_graph: EstateGraph, tmp_path: Path
) -> None:
    """With the default strata db1 (city) and db2 (north) are each the least critical of their stratum, but
    the EPR needs one of them up: the canary phase takes them in two waves, never both in one ring."""
    path = tmp_path / "agent-3.yaml"
    path.write_text(TINY_UPDATE.replace("  strata: [kind]\n", ""), encoding="utf-8")
    document = json_of(cli("plan", tiny, path, "--json"))
    check_plan_document(document, tiny_graph, path)
    assert [(r["name"], r["canary"], r["assets"]) for r in document["rings"]] == [
        ("canary", True, ["db1"]),
        ("canary wave 2", True, ["db2"]),
        ("ring 2", False, ["app"]),
    ]
    assert document["canary_rings"] == 2
    assert "epr needs 1 of 2 (db1, db2) up" in document["rings"][1]["why"]
    assert document["warnings"] == []
