"""The vsphere-7u3 drill on an estate imported from a simulated vCenter (issue 16).

The session's vCenter (tests/vsphere/conftest.py): clusters DC0_C0..C3 of 8 hosts whose admission control
tolerates 1, 2, 1 host failures and, for C3, HA off; host i's NIC driver is (i40en, bnxtnet, qedentv)[i % 3],
so each cluster has three i40en hosts: more than any cluster's failover capacity. The bundled scenario
(examples/city-general/scenarios/vsphere-7u3.yaml) is played as shipped on what ``ringfence import vsphere``
wrote, after people add one service per cluster, as docs/vsphere.md tells them to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.conftest import run_cli
from ringfence.core.selectors import parse_selector
from ringfence.core.update import parse_scenario_text

from .conftest import VCenter, require_pyvmomi

require_pyvmomi()

SCENARIO = Path(__file__).parents[2] / "examples" / "city-general" / "scenarios" / "vsphere-7u3.yaml"


@pytest.fixture(scope="module")
def estate(vcenter: VCenter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The imported estate with a tier-1 service per cluster needing every VM of it."""
    path = tmp_path_factory.mktemp("drill") / "estate.yaml"
    result = run_cli(
        "import", "vsphere", "--server", vcenter.url, "--user", vcenter.user, "--password", vcenter.password,
        "--out", path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(path.read_text())
    by_cluster: dict[str, list[str]] = {}
    for asset in document["assets"]:
        if asset["kind"] == "vm":
            by_cluster.setdefault(asset["attrs"]["cluster"], []).append(asset["id"])
    document["services"] = [
        {"id": f"svc-{cluster.lower()}", "tier": 1, "rto": "4h", "continuity": "paper", "requires": sorted(vms)}
        for cluster, vms in sorted(by_cluster.items())
    ]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _hosts(estate: Path) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in yaml.safe_load(estate.read_text())["assets"] if a["kind"] == "host"}


def test_the_scenario_selects_by_what_the_import_writes(estate: Path) -> None:
    """Targets, strata and fault name the importer's attributes: every host is a target, every stratum key
    is an attribute every host has, and the fault reaches exactly the i40en hosts."""
    scenario = parse_scenario_text(SCENARIO.read_text(), str(SCENARIO))
    hosts = _hosts(estate)
    assert scenario.update.targets == "software=vmware/esxi"
    assert all(h["software"][0]["product"] == "vmware/esxi" for h in hosts.values())
    for key in scenario.update.strata:
        if key.startswith("attrs."):
            assert all(key.removeprefix("attrs.") in h["attrs"] for h in hosts.values()), key
    fault = parse_selector(scenario.fault.affects)
    assert [t.key for t in fault.terms] == ["attrs.nic_driver"]
    i40en = {i for i, h in hosts.items() if h["attrs"]["nic_driver"] == "i40en"}
    assert len(i40en) == 12
    assert {i for i, h in hosts.items() if h["attrs"]["nic_driver"] in fault.terms[0].values} == i40en


def test_the_drill_halts_after_the_canary_within_ha_capacity(estate: Path) -> None:
    result = run_cli("drill", estate, SCENARIO, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    hosts = _hosts(estate)
    i40en = {i for i, h in hosts.items() if h["attrs"]["nic_driver"] == "i40en"}
    assert (report["targets"], report["affected"]) == (len(hosts), len(i40en))
    results = {r["strategy"]: r for r in report["results"]}

    ours = results["ringfence"]
    assert ours["halted_at_ring"] == 0  # the canary ring caught it
    assert ours["outcome"] == "rolled_back"
    assert ours["failed_assets"], "the canary held no host of the faulty stratum"
    assert set(ours["failed_assets"]) <= i40en & set(ours["exposed_assets"])  # only the faulty driver fails
    assert len(ours["exposed_assets"]) < len(hosts)
    assert ours["services_down"] == []
    # HA capacity never broken: no HA cluster ever had more hosts out (being updated, failed) than it tolerates.
    for cluster in ("DC0_C0", "DC0_C1", "DC0_C2"):
        failover = {int(h["attrs"]["ha_failover_hosts"]) for h in hosts.values() if h["attrs"]["cluster"] == cluster}
        exposed = [i for i in ours["exposed_assets"] if hosts[i]["attrs"]["cluster"] == cluster]
        assert len(exposed) <= failover.pop(), (cluster, exposed)

    # The same fault rolled out at once: every i40en host fails, three per cluster, beyond what HA reserved.
    at_once = results["all-at-once"]
    assert set(at_once["failed_assets"]) == i40en
    assert {s["id"] for s in at_once["services_down"]} >= {"svc-dc0_c0", "svc-dc0_c1", "svc-dc0_c2"}
