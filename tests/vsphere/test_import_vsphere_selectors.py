"""A VM's HA requirement names its cluster's hosts by selector (the pure half; vcsim in test_import_vsphere.py).

A cluster of 100 hosts listed in every one of its 1,000 VMs is 100,000 lines of YAML; one selector per VM
says the same (bench/vsphere_import.py measures it). The selector must count exactly the cluster's hosts, and
``--merge`` must recognise it as the import's own.
"""

from __future__ import annotations

from typing import Any

from ringfence.core.estate import parse_estate_document
from ringfence.core.graph import compile_estate
from ringfence.core.impact import compute_blast_radius
from ringfence.files.importers.vsphere_estate import (
    ClusterFacts,
    HostFacts,
    VCenterFacts,
    VmFacts,
    estate_from_facts,
    merge_estate,
)


def _facts(*clusters: tuple[str, str, str]) -> VCenterFacts:
    """Clusters (moref, name, datacenter) of three hosts each, tolerating one failure, one VM each."""
    cluster_facts, hosts, vms = [], [], []
    for moref, name, datacenter in clusters:
        members = tuple(f"{moref}-h{i}" for i in range(3))
        cluster_facts.append(ClusterFacts(moref, name, datacenter, True, 1, members))
        hosts += [HostFacts(h, f"esx-{h}", datacenter, moref, esxi_version="7.0.2") for h in members]
        vms.append(VmFacts(f"{moref}-vm", f"vm-{moref}", datacenter, members[0]))
    return VCenterFacts(tuple(cluster_facts), tuple(hosts), tuple(vms))


def _requires(document: dict[str, object], asset_id: str) -> list[Any]:
    assets: Any = document["assets"]
    return next(a["requires"] for a in assets if a["id"] == asset_id)


def test_the_cluster_is_named_by_selector_and_counts_only_its_hosts() -> None:
    # Same cluster name in two datacenters (allowed): the datacenter keeps them apart.
    document = estate_from_facts(_facts(("c1", "prod, a", "City"), ("c2", "prod, a", "North")), "trust")
    assert _requires(document, "vm-c1") == [
        {"any": 2, "where": "attrs.vsphere.type=HostSystem,attrs.datacenter=City,attrs.cluster=prod a"}
    ]
    graph = compile_estate(parse_estate_document(document, source="trust"))
    # Two of c1's three hosts down: beyond its failover capacity of 1, so its VM is down, and c2's is not.
    down = compute_blast_radius(graph, ["asset:esx-c1-h0", "asset:esx-c1-h1"]).assets_down
    assert "vm-c1" in down
    assert "vm-c2" not in down
    assert "vm-c1" not in compute_blast_radius(graph, ["asset:esx-c1-h0"]).assets_down


def test_clusters_sharing_a_name_in_one_datacenter_list_their_hosts() -> None:
    """Two host folders of one datacenter may hold clusters of the same name: a selector would merge them."""
    document = estate_from_facts(_facts(("c1", "prod", "City"), ("c2", "prod", "City")), "trust")
    assert _requires(document, "vm-c1") == [{"any": 2, "of": ["esx-c1-h0", "esx-c1-h1", "esx-c1-h2"]}]


def test_merge_replaces_the_imports_selector_and_keeps_peoples_own() -> None:
    fresh = estate_from_facts(_facts(("c1", "prod", "City")), "trust")
    existing = estate_from_facts(_facts(("c1", "prod", "City")), "trust")
    theirs = {"any": 1, "where": "kind=host,attrs.cluster=prod"}  # written by a person: not the import's shape
    assets: Any = existing["assets"]
    vm = next(a for a in assets if a["id"] == "vm-c1")
    vm["requires"] = [{"any": 3, "where": vm["requires"][0]["where"]}, theirs]  # as if F had been 0
    merged, report = merge_estate(existing, fresh)
    assert _requires(merged, "vm-c1") == [_requires(fresh, "vm-c1")[0], theirs]
    assert report.changed == {"vm-c1": ["requirements"]}
