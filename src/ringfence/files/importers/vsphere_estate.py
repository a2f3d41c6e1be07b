"""What vCenter reports, as an estate: the pure half of ``ringfence import vsphere`` (no I/O, no pyVmomi).

:mod:`ringfence.files.importers.vsphere` asks vCenter and hands over :class:`VCenterFacts`; this module maps them
to an estate document (:func:`estate_from_facts`) and, for ``--merge``, folds a fresh import into the file
people have been editing (:func:`merge_estate`). Both are deterministic, so the tests can build facts by hand.

The requirement rule (docs/vsphere.md, "What a VM requires"): vSphere HA with admission control reserves room
to restart every VM of a cluster after F host failures, F being the admission control's failover capacity.
That is the whole guarantee: with at most F of the cluster's n hosts down a VM runs (on its host or restarted
elsewhere); with F + 1 down vSphere promises nothing. So a VM of such a cluster requires
``{any: n - F, where: <the cluster's hosts>}``: it is up exactly while n - F hosts are. Without HA (or with
admission control off: F = 0) nothing restarts it anywhere vSphere guarantees, and it requires its own host.
A VM requires every datastore its files are on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ringfence.core.estate import API_VERSION, LONGEST_ID

__all__ = [
    "OWNED_ATTRS",
    "ClusterFacts",
    "DatastoreFacts",
    "HostFacts",
    "MergeReport",
    "VCenterFacts",
    "VmFacts",
    "asset_id",
    "cluster_selector",
    "estate_from_facts",
    "import_warnings",
    "merge_estate",
    "vm_requirement",
]

MOREF_ATTR = "vsphere.moref"
"""The managed object id vCenter gives the asset: how ``--merge`` recognises it after a rename."""

OWNED_ATTRS = frozenset(
    {
        MOREF_ATTR,
        "vsphere.type",
        "datacenter",
        "cluster",
        "ha",
        "ha_failover_hosts",
        "vendor",
        "model",
        "esxi_build",
        "nic_driver",
        "os",
        "guest_id",
        "datastore_type",
        "host",
    }
)
"""The attributes an import writes: ``--merge`` refreshes these and keeps every other attribute people wrote."""

ESXI = "vmware/esxi"


@dataclass(frozen=True)
class ClusterFacts:
    moref: str
    name: str
    datacenter: str
    ha_enabled: bool
    failover_hosts: int
    """The host failures admission control reserves room for (0 when HA or admission control is off)."""
    hosts: tuple[str, ...]
    """Morefs of its hosts."""


@dataclass(frozen=True)
class HostFacts:
    moref: str
    name: str
    datacenter: str
    cluster: str | None
    """The moref of its cluster; None for a standalone host."""
    vendor: str = ""
    model: str = ""
    esxi_version: str = ""
    esxi_build: str = ""
    nic_drivers: tuple[str, ...] = ()
    connection: str = "connected"
    """``runtime.connectionState``: ``connected``, ``disconnected`` or ``notResponding``."""


@dataclass(frozen=True)
class VmFacts:
    moref: str
    name: str
    datacenter: str
    host: str | None
    """The moref of the host it runs on (None: vCenter names none, e.g. an orphaned VM)."""
    datastores: tuple[str, ...] = ()
    guest_os: str = ""
    guest_id: str = ""


@dataclass(frozen=True)
class DatastoreFacts:
    moref: str
    name: str
    datacenter: str
    type: str = ""


@dataclass(frozen=True)
class VCenterFacts:
    clusters: tuple[ClusterFacts, ...] = ()
    hosts: tuple[HostFacts, ...] = ()
    vms: tuple[VmFacts, ...] = ()
    datastores: tuple[DatastoreFacts, ...] = ()


_NOT_ID = re.compile(r"[^a-z0-9._-]+")
_VENDOR_SUFFIX = re.compile(r"[-.]*(inc|ltd|llc|corp|corporation|co|gmbh|limited)$")


def _slug(text: str) -> str:
    return _NOT_ID.sub("-", text.lower()).strip("-")[:LONGEST_ID]


def asset_id(name: str) -> str:
    """``ESX-A01.trust.nhs.uk`` → ``esx-a01.trust.nhs.uk``: the rule of the other importers (docs/importers.md)."""
    return _slug(name)


def _supplier(vendor: str) -> str | None:
    """``Dell Inc.`` → ``dell``; ``HPE`` → ``hpe``: who to call about the hardware."""
    slug = _VENDOR_SUFFIX.sub("", _slug(vendor.replace(",", " ")).strip("-.")).strip("-.")
    return slug or None


def _version(text: str) -> str:
    """A version the estate format accepts (no spaces, ``,|@=!``)."""
    return re.sub(r"[\s,|@=!]+", "-", text.strip()) or "unknown"


def _selector_safe(text: str) -> str:
    """An attribute value selectors can match: they cannot hold ``, | = !``."""
    return re.sub(r"\s*[,|=!]\s*", " ", text).strip()


def vm_requirement(
    cluster: ClusterFacts | None, host_id: str | None, host_ids: Sequence[str], where: str | None = None
) -> object | None:
    """What a VM needs to be up, from what vSphere guarantees (the module docstring, docs/vsphere.md).

    ``host_ids`` are the asset ids of the cluster's hosts, in order; ``host_id`` the VM's own host.
    ``where``, a selector matching exactly those hosts (:func:`cluster_selector`), names them instead of
    listing them: a cluster of 100 hosts would otherwise repeat 100 ids in every one of its VMs.
    """
    if cluster is not None and cluster.ha_enabled and cluster.failover_hosts >= 1 and host_ids:
        need = max(1, len(host_ids) - cluster.failover_hosts)
        return {"any": need, "where": where} if where else {"any": need, "of": list(host_ids)}
    return host_id


HOSTS_OF_A_CLUSTER = "attrs.vsphere.type=HostSystem"
"""The first term of the selector an import writes for a cluster's hosts: how ``--merge`` recognises it."""


def cluster_selector(cluster: ClusterFacts) -> str:
    """``attrs.vsphere.type=HostSystem,attrs.datacenter=DC,attrs.cluster=NAME``: the cluster's hosts as imported."""
    return (
        f"{HOSTS_OF_A_CLUSTER},attrs.datacenter={_selector_safe(cluster.datacenter)},"
        f"attrs.cluster={_selector_safe(cluster.name)}"
    )


def estate_from_facts(facts: VCenterFacts, name: str, *, sites: Mapping[str, str] | None = None) -> dict[str, object]:
    """The estate document for what vCenter holds: datastores, hosts and VMs, each a ``vsphere.moref`` attr.

    ``sites`` maps a datacenter's name to a site; a datacenter not in it is its own site.
    """
    sites = sites or {}
    ids = _assign_ids(facts)
    clusters = {c.moref: c for c in facts.clusters}
    hosts = {h.moref: h for h in facts.hosts}
    assets: list[dict[str, object]] = []
    # A cluster's hosts by selector, unless two clusters of a datacenter share a name (possible in two host
    # folders): then the selector would count both, and its hosts are listed.
    selectors = {c.moref: cluster_selector(c) for c in facts.clusters}
    shared = {selector for selector, uses in Counter(selectors.values()).items() if uses > 1}

    for ds in sorted(facts.datastores, key=lambda d: ids[d.moref]):
        attrs = {MOREF_ATTR: ds.moref, "vsphere.type": "Datastore", "datacenter": _selector_safe(ds.datacenter)}
        if ds.type:
            attrs["datastore_type"] = ds.type
        assets.append(_asset(ids[ds.moref], "storage", ds.name, sites.get(ds.datacenter, ds.datacenter), attrs))

    for host in sorted(facts.hosts, key=lambda h: ids[h.moref]):
        cluster = clusters.get(host.cluster) if host.cluster else None
        attrs = {
            MOREF_ATTR: host.moref,
            "vsphere.type": "HostSystem",
            "datacenter": _selector_safe(host.datacenter),
            "os": "esxi",
        }
        if cluster is not None:
            attrs["cluster"] = _selector_safe(cluster.name)
            attrs["ha"] = "true" if cluster.ha_enabled else "false"
            attrs["ha_failover_hosts"] = str(cluster.failover_hosts)
        if host.vendor:
            attrs["vendor"] = _selector_safe(host.vendor)
        if host.model:
            attrs["model"] = _selector_safe(host.model)
        if host.esxi_build:
            attrs["esxi_build"] = _version(host.esxi_build)
        if host.nic_drivers:
            attrs["nic_driver"] = "+".join(sorted(set(host.nic_drivers)))
        asset = _asset(ids[host.moref], "host", host.name, sites.get(host.datacenter, host.datacenter), attrs)
        supplier = _supplier(host.vendor)
        if supplier:
            asset["supplier"] = supplier
        if host.esxi_version:
            asset["software"] = [{"product": ESXI, "version": _version(host.esxi_version)}]
        assets.append(asset)

    for vm in sorted(facts.vms, key=lambda v: ids[v.moref]):
        runs_on = hosts.get(vm.host) if vm.host else None
        cluster = clusters.get(runs_on.cluster) if runs_on is not None and runs_on.cluster else None
        attrs = {MOREF_ATTR: vm.moref, "vsphere.type": "VirtualMachine", "datacenter": _selector_safe(vm.datacenter)}
        if cluster is not None:
            attrs["cluster"] = _selector_safe(cluster.name)
        if vm.host in ids:
            attrs["host"] = ids[vm.host]
        if vm.guest_os:
            attrs["os"] = _selector_safe(vm.guest_os)
        if vm.guest_id:
            attrs["guest_id"] = _selector_safe(vm.guest_id)
        requires: list[object] = []
        # Sorted: the order vCenter lists hosts in may change between two imports; the file should not.
        cluster_hosts = sorted(ids[h] for h in cluster.hosts if h in ids) if cluster is not None else []
        where = selectors.get(cluster.moref) if cluster is not None else None
        own_host = ids.get(vm.host) if vm.host else None
        needed = vm_requirement(cluster, own_host, cluster_hosts, where if where not in shared else None)
        if needed is not None:
            requires.append(needed)
        requires.extend(ids[d] for d in dict.fromkeys(vm.datastores) if d in ids)
        asset = _asset(ids[vm.moref], "vm", vm.name, sites.get(vm.datacenter, vm.datacenter), attrs)
        if requires:
            asset["requires"] = requires
        assets.append(asset)

    suppliers = sorted({str(a["supplier"]) for a in assets if "supplier" in a} | ({"vmware"} if facts.hosts else set()))
    return {
        "apiVersion": API_VERSION,
        "estate": name,
        "suppliers": [{"id": s} for s in suppliers],
        "services": [],
        "assets": assets,
    }


_LISTED = 10
"""Objects named in one warning; the rest are counted (a vCenter of 250 clusters without HA is one line)."""


def import_warnings(facts: VCenterFacts) -> list[str]:
    """What the user should know about the imported inventory: one sentence per kind of doubt.

    - a host vCenter does not reach (disconnected, not responding): its facts are the last vCenter kept,
      and without its ESXi version it is no target of an update selecting ``software=vmware/esxi``;
    - a cluster without the HA guarantee: its VMs each require their own host (module docstring);
    - a VM for which vCenter names no host (orphaned, inaccessible): only its datastores are required.
    """
    clusters = {c.moref: c for c in facts.clusters}
    sentences: list[str] = []
    unreached = sorted(facts.hosts, key=lambda h: h.name)
    unreached = [h for h in unreached if h.connection != "connected"]
    if unreached:
        described = [
            f"{h.name} ({_where_host(h, clusters)}{', ESXi version unknown' if not h.esxi_version else ''})"
            for h in unreached
        ]
        sentences.append(
            f"{_named(described, 'host')} {'is' if len(unreached) == 1 else 'are'} not connected to vCenter "
            "(runtime.connectionState): imported from what vCenter last knew; a host without an ESXi version is "
            "no target of an update of vmware/esxi; re-import (--merge) once connected"
        )
    vms_in: dict[str, int] = {}
    cluster_of_host = {h.moref: h.cluster for h in facts.hosts}
    for vm in facts.vms:
        cluster = cluster_of_host.get(vm.host) if vm.host else None
        if cluster:
            vms_in[cluster] = vms_in.get(cluster, 0) + 1
    for ha_on, why in ((False, "vSphere HA off"), (True, "HA admission control off (no failover capacity reserved)")):
        unguarded = sorted(
            (c for c in facts.clusters if c.ha_enabled == ha_on and c.failover_hosts == 0), key=lambda c: c.name
        )
        if unguarded:
            described = [f"{c.name} (datacenter {c.datacenter}, {vms_in.get(c.moref, 0)} VMs)" for c in unguarded]
            sentences.append(
                f"{_named(described, 'cluster')} {'has' if len(unguarded) == 1 else 'have'} {why}, so each VM "
                "there requires its own host (nothing is guaranteed to restart it elsewhere)"
            )
    homeless = sorted((v for v in facts.vms if not v.host or v.host not in cluster_of_host), key=lambda v: v.name)
    if homeless:
        described = [f"{v.name} (datacenter {v.datacenter})" for v in homeless]
        sentences.append(
            f"vCenter names no host for {_named(described, 'VM')} (orphaned or inaccessible): "
            "imported requiring only its datastores"
        )
    return sentences


def _where_host(host: HostFacts, clusters: Mapping[str, ClusterFacts]) -> str:
    cluster = clusters.get(host.cluster) if host.cluster else None
    where = f"cluster {cluster.name}, " if cluster is not None else ""
    return f"{where}datacenter {host.datacenter}, {host.connection}"


def _named(described: Sequence[str], noun: str) -> str:
    shown = ", ".join(described[:_LISTED])
    more = f" and {len(described) - _LISTED} more" if len(described) > _LISTED else ""
    return f"{noun if len(described) == 1 else noun + 's'} {shown}{more}"


def _asset(asset_id_: str, kind: str, name: str, site: str, attrs: dict[str, str]) -> dict[str, object]:
    asset: dict[str, object] = {"id": asset_id_, "kind": kind}
    if asset_id_ != name:
        asset["name"] = name
    site = _selector_safe(site)
    if site:
        asset["site"] = site
    asset["attrs"] = attrs
    return asset


def _assign_ids(facts: VCenterFacts) -> dict[str, str]:
    """Moref → asset id: the name's slug, or, where two objects share one, the slug and the moref.

    vCenter keeps names unique only within a folder (two datacenters may each hold a VM ``web-1``);
    the moref is unique in the vCenter, so the pair is.
    """
    objects: tuple[DatastoreFacts | HostFacts | VmFacts, ...] = (*facts.datastores, *facts.hosts, *facts.vms)
    named = [(o.moref, asset_id(o.name)) for o in objects]
    uses: dict[str, int] = {}
    for _, slug in named:
        uses[slug] = uses.get(slug, 0) + 1
    ids: dict[str, str] = {}
    for moref, slug in named:
        if not slug or uses[slug] > 1:
            slug = "-".join(p for p in (slug, _slug(moref)) if p)
        ids[moref] = slug
    return ids


# ------------------------------------------------------------------------------------------------- --merge


@dataclass
class MergeReport:
    """What a ``--merge`` found: asset ids that appeared, disappeared (and whether kept), and what changed."""

    appeared: list[str] = field(default_factory=list)
    disappeared: list[str] = field(default_factory=list)
    kept_though_gone: dict[str, list[str]] = field(default_factory=dict)
    """An asset gone from vCenter that people's services or requirements still name: kept, with who names it."""
    changed: dict[str, list[str]] = field(default_factory=dict)
    """Asset id → one sentence per field vCenter changed."""

    def sentences(self, limit: int = 20) -> list[str]:
        lines: list[str] = []
        for label, ids in (("appeared", self.appeared), ("disappeared", self.disappeared)):
            if ids:
                shown = ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
                lines.append(f"{len(ids)} {'asset' if len(ids) == 1 else 'assets'} {label}: {shown}")
        for gone, names in self.kept_though_gone.items():
            verb = "requires" if len(names) == 1 else "require"
            lines.append(f"{gone} is no longer in vCenter but is kept: {', '.join(names)} still {verb} it")
        for number, (asset, changes) in enumerate(sorted(self.changed.items())):
            if number == limit:
                lines.append(f"{len(self.changed) - limit} more assets changed")
                break
            lines.append(f"{asset} changed: {'; '.join(changes)}")
        return lines or ["nothing changed in vCenter since the last import"]


def _is_imported(asset: Mapping[str, object]) -> bool:
    attrs = asset.get("attrs")
    return isinstance(attrs, Mapping) and isinstance(attrs.get(MOREF_ATTR), str)


def _imported_requirement(requirement: object, vsphere_ids: set[str]) -> bool:
    """Whether a requirement is of the shape the import writes (so the fresh import replaces it).

    The import writes a hard requirement on a host or datastore, an any-group of a cluster's hosts by
    :func:`cluster_selector`, and (files of earlier imports, or clusters sharing a name) an any-group listing
    only hosts; a requirement people added on another VM, another selector, a service or a non-vSphere
    asset is theirs.
    """
    if isinstance(requirement, str):
        return requirement in vsphere_ids
    if isinstance(requirement, Mapping):
        where = requirement.get("where")
        if isinstance(where, str):
            return where.startswith(HOSTS_OF_A_CLUSTER + ",")
        members = requirement.get("of")
        return isinstance(members, list) and bool(members) and all(m in vsphere_ids for m in members)
    return False


def merge_estate(existing: Mapping[str, object], fresh: Mapping[str, object]) -> tuple[dict[str, object], MergeReport]:
    """``existing`` (the file people edit) refreshed with ``fresh`` (a new import), and what changed.

    vCenter owns, for each asset carrying a ``vsphere.moref``: its kind, name, site, supplier, the
    ``vmware/esxi`` software item, the attributes in :data:`OWNED_ATTRS` and the requirements of the import's
    shape (:func:`_imported_requirement`). Everything else people wrote stays: services, suppliers, other
    assets, other attributes, software and requirements. An asset is recognised by its moref, so a VM
    renamed in vCenter keeps the id services name it by.
    """
    report = MergeReport()
    old_assets = [a for a in _list(existing.get("assets")) if isinstance(a, Mapping)]
    new_assets = [a for a in _list(fresh.get("assets")) if isinstance(a, Mapping)]
    old_by_moref = {_moref(a): a for a in old_assets if _is_imported(a)}
    new_by_moref = {_moref(a): a for a in new_assets}

    # Old moref → fresh moref. By moref first; then an old asset whose moref is gone and a fresh one no old
    # asset has, with the same id, are the same machine recreated (a VM restored from backup, a host re-added).
    unclaimed = {str(a["id"]): m for m, a in new_by_moref.items() if m not in old_by_moref}
    pairs: dict[str, str] = {}
    for moref, old in old_by_moref.items():
        if moref in new_by_moref:
            pairs[moref] = moref
        elif str(old["id"]) in unclaimed:
            pairs[moref] = unclaimed[str(old["id"])]
    claimed = set(pairs.values())

    # Ids the fresh import gives, renamed to the ids people already use for the same machines.
    renames = {
        str(new_by_moref[new]["id"]): str(old_by_moref[old]["id"])
        for old, new in pairs.items()
        if old_by_moref[old]["id"] != new_by_moref[new]["id"]
    }
    taken = {str(a.get("id")) for a in old_assets}
    for moref, new in new_by_moref.items():
        # A new asset whose id another asset already holds takes its moref as a suffix.
        if moref not in claimed and new["id"] in taken and str(new["id"]) not in renames:
            renames[str(new["id"])] = f"{new['id']}-{_slug(moref)}"
    vsphere_ids = {renames.get(str(a["id"]), str(a["id"])) for a in new_assets if a.get("kind") in ("host", "storage")}
    vsphere_ids |= {str(a["id"]) for a in old_assets if _is_imported(a) and a.get("kind") in ("host", "storage")}

    merged_assets: list[dict[str, object]] = []
    gone: dict[str, Mapping[str, object]] = {}
    for old in old_assets:
        if not _is_imported(old):
            merged_assets.append(_numbers_back(old))
            continue
        fresh_moref = pairs.get(_moref(old))
        if fresh_moref is None:
            gone[str(old["id"])] = old
            continue
        merged = _merge_asset(old, _renamed(new_by_moref[fresh_moref], renames), vsphere_ids)
        changes = _changes(old, merged)
        if fresh_moref != _moref(old):
            changes.insert(0, f"recreated in vCenter ({MOREF_ATTR} {_moref(old)} → {fresh_moref})")
        if changes:
            report.changed[str(old["id"])] = changes
        merged_assets.append(merged)
    for moref, new in new_by_moref.items():
        if moref not in claimed:
            asset = _renamed(new, renames)
            report.appeared.append(str(asset["id"]))
            merged_assets.append(asset)

    # An asset gone from vCenter that something people wrote still names stays, so the file still checks; and
    # so, in turn, does what a kept asset names.
    services = _list(existing.get("services"))
    while True:
        named_by = _named_by([*services, *merged_assets])
        keep = [i for i in gone if i not in report.kept_though_gone and named_by.get(i)]
        if not keep:
            break
        for i in keep:
            report.kept_though_gone[i] = sorted(named_by[i] - {i})
            merged_assets.append(_numbers_back(gone[i]))
    report.disappeared = [i for i in gone if i not in report.kept_though_gone]

    document = {key: value for key, value in existing.items() if key not in ("assets", "suppliers")}
    document.setdefault("apiVersion", API_VERSION)
    document["services"] = [_numbers_back(s) if isinstance(s, Mapping) else s for s in _list(existing.get("services"))]
    suppliers = [dict(s) for s in _list(existing.get("suppliers")) if isinstance(s, Mapping)]
    listed = {s.get("id") for s in suppliers}
    suppliers += [
        dict(s) for s in _list(fresh.get("suppliers")) if isinstance(s, Mapping) and s.get("id") not in listed
    ]
    document["suppliers"] = suppliers
    document.setdefault("services", [])
    document["assets"] = merged_assets
    return document, report


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _moref(asset: Mapping[str, object]) -> str:
    attrs = asset.get("attrs")
    return str(attrs.get(MOREF_ATTR)) if isinstance(attrs, Mapping) else ""


def _renamed(asset: Mapping[str, object], renames: Mapping[str, str]) -> dict[str, object]:
    result = dict(asset)
    result["id"] = renames.get(str(asset["id"]), asset["id"])
    if result["id"] != asset["id"] and "name" not in asset:
        result["name"] = asset["id"]  # an import leaves out a name equal to its id; the id is now another
    if "requires" in asset:
        result["requires"] = [_rename_requirement(r, renames) for r in _list(asset["requires"])]
    return result


def _rename_requirement(requirement: object, renames: Mapping[str, str]) -> object:
    if isinstance(requirement, str):
        return renames.get(requirement, requirement)
    if isinstance(requirement, Mapping) and isinstance(requirement.get("of"), list):
        return {**requirement, "of": [renames.get(str(m), m) for m in _list(requirement["of"])]}
    return requirement


def _merge_asset(old: Mapping[str, object], new: Mapping[str, object], vsphere_ids: set[str]) -> dict[str, object]:
    merged: dict[str, object] = {"id": old["id"], "kind": new["kind"]}
    for key in ("name", "site", "supplier"):
        if key in new:
            merged[key] = new[key]
    old_attrs = old.get("attrs")
    attrs = {k: v for k, v in old_attrs.items() if k not in OWNED_ATTRS} if isinstance(old_attrs, Mapping) else {}
    new_attrs = new.get("attrs")
    merged["attrs"] = {**(dict(new_attrs) if isinstance(new_attrs, Mapping) else {}), **attrs}
    theirs = [s for s in _list(old.get("software")) if not (isinstance(s, Mapping) and s.get("product") == ESXI)]
    software = [*_list(new.get("software")), *theirs]
    if software:
        merged["software"] = software
    kept = [_counted(r) for r in _list(old.get("requires")) if not _imported_requirement(r, vsphere_ids)]
    requires = [*_list(new.get("requires")), *kept]
    if requires:
        merged["requires"] = requires
    return merged


def _changes(old: Mapping[str, object], merged: Mapping[str, object]) -> list[str]:
    changes: list[str] = []
    for key in ("kind", "name", "site", "supplier"):
        if old.get(key) != merged.get(key):
            changes.append(f"{key} {old.get(key) or '(none)'} → {merged.get(key) or '(none)'}")
    old_attrs, new_attrs = old.get("attrs"), merged.get("attrs")
    old_attrs = old_attrs if isinstance(old_attrs, Mapping) else {}
    new_attrs = new_attrs if isinstance(new_attrs, Mapping) else {}
    # Where a VM runs changes with every vMotion: not worth a line of the report.
    for key in sorted(OWNED_ATTRS - {MOREF_ATTR, "host"}):
        if old_attrs.get(key) != new_attrs.get(key):
            changes.append(f"attrs.{key} {old_attrs.get(key) or '(none)'} → {new_attrs.get(key) or '(none)'}")
    if _esxi(old) != _esxi(merged):
        changes.append(f"{ESXI} {_esxi(old) or '(none)'} → {_esxi(merged) or '(none)'}")
    if _canonical(old.get("requires")) != _canonical(merged.get("requires")):
        changes.append("requirements")
    return changes


def _counted(requirement: object) -> object:
    """An any-group read from the file with its count as text (the loader keeps scalars as written) → a number."""
    if isinstance(requirement, Mapping) and isinstance(requirement.get("any"), str) and requirement["any"].isdigit():
        return {**requirement, "any": int(requirement["any"])}
    return requirement


def _numbers_back(node: Mapping[str, object]) -> dict[str, object]:
    """A service or asset as read (counts as text, see :func:`_counted`) with its numbers numbers again.

    The file is written back for people to read: ``tier: 1``, not ``tier: '1'``.
    """
    result = dict(node)
    if isinstance(result.get("tier"), str) and str(result["tier"]).isdigit():
        result["tier"] = int(str(result["tier"]))
    if "requires" in result:
        result["requires"] = [_counted(r) for r in _list(result["requires"])]
    return result


def _canonical(requires: object) -> list[object]:
    return [
        (str(r.get("any", 1)), tuple(_list(r.get("of"))), r.get("where")) if isinstance(r, Mapping) else r
        for r in _list(requires)
    ]


def _esxi(asset: Mapping[str, object]) -> str | None:
    for item in _list(asset.get("software")):
        if isinstance(item, Mapping) and item.get("product") == ESXI:
            return str(item.get("version"))
    return None


def _named_by(nodes: Sequence[object]) -> dict[str, set[str]]:
    """Asset id → the ids of the services and assets whose requirements name it (selectors aside)."""
    named: dict[str, set[str]] = {}
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        for requirement in _list(node.get("requires")):
            members = [requirement] if isinstance(requirement, str) else []
            if isinstance(requirement, Mapping):
                members = [m for m in _list(requirement.get("of")) if isinstance(m, str)]
            for member in members:
                named.setdefault(str(member), set()).add(str(node.get("id")))
    return named
