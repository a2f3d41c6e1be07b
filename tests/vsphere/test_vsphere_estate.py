"""The pure half of the vSphere import: facts → estate, and ``--merge`` (no vCenter needed)."""

from __future__ import annotations

import pytest

from ringfence.core.estate import parse_estate_document
from ringfence.files.importers.vsphere_estate import (
    ClusterFacts,
    DatastoreFacts,
    HostFacts,
    VCenterFacts,
    VmFacts,
    estate_from_facts,
    merge_estate,
)

from .conftest import require_pyvmomi


def _facts(*, ha: bool = True, failover: int = 1, hosts: int = 3) -> VCenterFacts:
    morefs = tuple(f"host-{i}" for i in range(hosts))
    return VCenterFacts(
        clusters=(ClusterFacts("domain-c1", "Prod A", "DC-City", ha, failover, morefs),),
        hosts=tuple(
            HostFacts(
                m,
                f"esx-{i}.trust.nhs.uk",
                "DC-City",
                "domain-c1",
                "Dell Inc.",
                "R750",
                "7.0.3",
                "21930508",
                ("i40en", "ntg3"),
            )
            for i, m in enumerate(morefs)
        ),
        vms=(VmFacts("vm-1", "EPR DB", "DC-City", "host-0", ("ds-1",), "Microsoft Windows Server 2019 (64-bit)"),),
        datastores=(DatastoreFacts("ds-1", "vsan-prod", "DC-City", "vsan"),),
    )


def _vm(document: dict[str, object]) -> dict[str, object]:
    assets = document["assets"]
    assert isinstance(assets, list)
    return next(a for a in assets if a["kind"] == "vm")


PROD_A = "attrs.vsphere.type=HostSystem,attrs.datacenter=DC-City,attrs.cluster=Prod A"
"""Cluster Prod A's hosts, as a VM's HA requirement names them (tests/vsphere/test_import_vsphere_selectors.py)."""


@pytest.mark.parametrize(
    ("ha", "failover", "hosts", "expected"),
    [
        (True, 1, 3, {"any": 2, "where": PROD_A}),
        (True, 2, 3, {"any": 1, "where": PROD_A}),
        (True, 5, 3, {"any": 1, "where": PROD_A}),
        (True, 0, 3, "esx-0.trust.nhs.uk"),  # admission control off: nothing reserved, its own host
        (False, 0, 3, "esx-0.trust.nhs.uk"),  # HA off
    ],
)
def test_a_vm_requires_what_ha_guarantees(ha: bool, failover: int, hosts: int, expected: object) -> None:
    document = estate_from_facts(_facts(ha=ha, failover=failover, hosts=hosts), "t")
    vm = _vm(document)
    assert vm["requires"] == [expected, "vsan-prod"]
    parse_estate_document(document)  # what `check` reads


def test_host_facts_become_attrs_and_software() -> None:
    document = estate_from_facts(_facts(), "t", sites={"DC-City": "city"})
    host = next(a for a in document["assets"] if a["kind"] == "host")  # type: ignore[attr-defined]
    assert host["supplier"] == "dell"
    assert host["site"] == "city"
    assert host["software"] == [{"product": "vmware/esxi", "version": "7.0.3"}]
    assert host["attrs"]["nic_driver"] == "i40en+ntg3"
    assert host["attrs"]["cluster"] == "Prod A"
    assert _vm(document)["attrs"]["os"] == "Microsoft Windows Server 2019 (64-bit)"  # type: ignore[index]


def test_names_vcenter_repeats_get_their_moref() -> None:
    facts = _facts()
    twins = (VmFacts("vm-1", "web", "DC-City", None), VmFacts("vm-2", "web", "DC-North", None))
    document = estate_from_facts(VCenterFacts(facts.clusters, facts.hosts, twins, facts.datastores), "t")
    ids = [a["id"] for a in document["assets"] if a["kind"] == "vm"]  # type: ignore[attr-defined]
    assert ids == ["web-vm-1", "web-vm-2"]


def test_merge_keeps_an_asset_gone_from_vcenter_that_a_service_names() -> None:
    existing = estate_from_facts(_facts(), "t")
    existing["services"] = [{"id": "epr", "tier": "1", "requires": ["epr-db"]}]
    facts = _facts()
    fresh = estate_from_facts(VCenterFacts(facts.clusters, facts.hosts, (), facts.datastores), "t")
    merged, report = merge_estate(existing, fresh)
    assert report.kept_though_gone == {"epr-db": ["epr"]}
    assert report.disappeared == []
    assert "epr-db is no longer in vCenter but is kept: epr still requires it" in report.sentences()
    assert merged["services"] == [{"id": "epr", "tier": 1, "requires": ["epr-db"]}]
    parse_estate_document(merged)


@pytest.mark.parametrize(
    ("policy", "fields", "expected"),
    [
        ("FailoverLevelAdmissionControlPolicy", {"failoverLevel": 2}, (True, 2)),
        ("FailoverResourcesAdmissionControlPolicy", {"failoverLevel": 1, "autoComputePercentages": True}, (True, 1)),
        # Explicit percentages: the whole hosts the smaller share covers, ⌊25 % × 8⌋ = 2.
        (
            "FailoverResourcesAdmissionControlPolicy",
            {"cpuFailoverResourcesPercent": 25, "memoryFailoverResourcesPercent": 30},
            (True, 2),
        ),
        ("FailoverHostAdmissionControlPolicy", {"failoverHosts": ["host-7"]}, (True, 1)),
        (None, {}, (True, 0)),  # admission control off
    ],
)
def test_failover_capacity_from_each_admission_control_policy(
    policy: str | None, fields: dict[str, object], expected: tuple[bool, int]
) -> None:
    require_pyvmomi()
    from pyVmomi import vim

    from ringfence.files.importers.vsphere import _ha

    das = vim.cluster.DasConfigInfo(enabled=True, admissionControlEnabled=policy is not None)
    if policy is not None:
        if "failoverHosts" in fields:
            fields = {"failoverHosts": [vim.HostSystem(str(h)) for h in fields["failoverHosts"]]}  # type: ignore[attr-defined]
        das.admissionControlPolicy = getattr(vim.cluster, policy)(**fields)
    assert _ha(vim.cluster.ConfigInfoEx(dasConfig=das), 8) == expected
    assert _ha(vim.cluster.ConfigInfoEx(dasConfig=vim.cluster.DasConfigInfo(enabled=False)), 8) == (False, 0)


def test_merge_matches_a_recreated_vm_by_its_id_and_keeps_what_gone_assets_name() -> None:
    facts = _facts()
    existing = estate_from_facts(facts, "t")
    vm = _vm(existing)
    vm["attrs"]["owner"] = "EPR team"  # type: ignore[index]
    existing["services"] = [{"id": "epr", "tier": 1, "requires": ["epr-db"]}]
    # The VM restored from backup: same name, a new moref; its datastore is gone from vCenter.
    recreated = VmFacts("vm-99", "EPR DB", "DC-City", "host-0", ("ds-1",), "Microsoft Windows Server 2019 (64-bit)")
    fresh = estate_from_facts(VCenterFacts(facts.clusters, facts.hosts, (recreated,), facts.datastores), "t")
    merged, report = merge_estate(existing, fresh)
    assert report.changed["epr-db"][0] == "recreated in vCenter (vsphere.moref vm-1 → vm-99)"
    assert (report.appeared, report.disappeared) == ([], [])
    assert _vm(merged)["attrs"]["owner"] == "EPR team"  # type: ignore[index]

    # Gone: the VM (a service names it) and its datastore (only the kept VM names it): both kept, the file checks.
    gone = estate_from_facts(VCenterFacts(facts.clusters, facts.hosts, (), ()), "t")
    merged, report = merge_estate(existing, gone)
    assert report.kept_though_gone == {"epr-db": ["epr"], "vsan-prod": ["epr-db"]}
    parse_estate_document(merged)
