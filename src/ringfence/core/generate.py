"""Synthetic estates of any size, shaped like the bundled City General sample.

``generate_estate(assets, seed)`` returns an estate *document*: the plain dicts and lists of the estate
file format (docs: estate-format.md), ready for ``json.dumps`` or a YAML dumper, or for
``ringfence.core.estate.parse_estate_document``. It is for benchmarks, load tests and demos at scale; the
shape follows a real trust:

- hospital sites (``hosp-NNN``), each with a pair of core switches, and GP practices (``gp-NNNN``)
  that hold only workstations;
- VMware clusters at the hospital sites, each backed by one storage array (a single point of failure,
  as in most trusts), with ESXi hosts across three hardware strata where the model decides the NIC
  driver. Every third cluster is built from one model (like prod-b in the sample), so losing the
  i40en stratum takes it down; the others mix all three;
- VMs that need K hosts of their cluster (``{any: K, where: "kind=host,attrs.cluster=C"}``: one selector
  per cluster, so an engine that caches selector results evaluates few);
- Active Directory (two domain controllers per server site), SQL Server availability-group pairs,
  and business services of every tier with rto, rpo, continuity and contacts. Services are redundant
  app pools, single-VM systems (real single points of failure), SaaS hosted in one cloud region, or
  composites that need another service;
- the bulk (85-90% at scale) as Windows workstations running the endpoint agent, some of which the
  emergency department and GP services need K of.

Guarantees: exactly ``assets`` assets; the same document for the same ``(assets, seed)``; ids unique
across assets and services; every reference resolves; every ``any: K`` group has more than K
members, so no single asset is needed by a group on its own.

Speed: about a million assets in a few seconds. To get there, sub-objects that many assets have in
common (``attrs`` mappings, ``software`` lists, ``requires`` lists of VMs and hosts) are *shared*
between assets. Treat the document as read-only; a YAML dumper will write the shared parts as
anchors and aliases unless told to ignore aliases (JSON is unaffected).

Pure: no I/O, no clock; randomness comes only from ``random.Random(seed)``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from ringfence.core.errors import InputError

MINIMUM_ASSETS = 50
"""The smallest estate that still has every part: two sites, a cluster, a directory, services of every tier."""

Document = dict[str, object]

_SUPPLIERS: tuple[tuple[str, str], ...] = (
    ("vmware", "VMware by Broadcom"),
    ("microsoft", "Microsoft"),
    ("crowdstrike", "CrowdStrike"),
    ("dell", "Dell Technologies"),
    ("hpe", "Hewlett Packard Enterprise"),
    ("cisco", "Cisco"),
    ("redhat", "Red Hat"),
    ("veeam", "Veeam Software"),
    ("cerner", "Oracle Health (Cerner)"),
    ("emis", "EMIS Health"),
    ("advanced", "Advanced (OneAdvanced)"),
    ("aws", "Amazon Web Services"),
    ("sectra", "Sectra"),
    ("clinisys", "CliniSys"),
    ("medisoft", "Medisoft"),
    ("k2", "K2 Medical Systems"),
    ("jac", "JAC Computer Services"),
    ("accenture", "Accenture (NHSmail)"),
    ("rldatix", "RLDatix"),
    ("bt", "BT Business"),
    ("virginmedia", "Virgin Media O2 Business"),
)

# Three hardware strata; the model decides the NIC driver (and the hardware supplier).
_I40EN = ("PowerEdge R750", "i40en-1.10", "dell")
_IXGBEN = ("PowerEdge R740", "ixgben-1.8", "dell")
_QFLE3 = ("ProLiant DL380 Gen10", "qfle3-1.4", "hpe")
_MIXED_STRATA = (_I40EN, _IXGBEN, _QFLE3)

_HOSTS_PER_CLUSTER = 12
_HOST_SHARE = 0.005
_VM_SHARE = 0.10
_ASSETS_PER_SERVICE = 200
_ASSETS_PER_HOSPITAL = 20_000
_ASSETS_PER_PRACTICE = 2_500
_PRACTICE_ENDPOINT_SHARE = 0.2

_SERVER_OSES = ("windows-2019", "windows-2022", "rhel-8")
_OS_SOFTWARE: dict[str, tuple[str, str]] = {
    "windows-2019": ("microsoft/windows-server", "2019.17763.5830"),
    "windows-2022": ("microsoft/windows-server", "2022.20348.2461"),
    "rhel-8": ("redhat/rhel", "8.9"),
}
_AGENT = {"product": "crowdstrike/falcon", "version": "7.15"}
_SQL = ("microsoft/sql-server", "15.0.4375")

# (dept, weight) and (model, os, weight) of workstations.
_HOSPITAL_DEPTS = (("ed", 6), ("maternity", 4), ("wards", 45), ("outpatients", 20), ("admin", 25))
_HOSPITAL_FLEET = (
    ("OptiPlex 7090", "windows-10", 40),
    ("OptiPlex 7010", "windows-11", 45),
    ("Latitude 5440", "windows-11", 15),
)
_PRACTICE_FLEET = (("EliteDesk 800 G6", "windows-10", 60), ("ProBook 450 G9", "windows-11", 40))

_RTO_RPO = {1: ("2h", "15m"), 2: ("4h", "1h"), 3: ("1d", "4h"), 4: ("3d", "1d")}
_CONTINUITY = {
    1: (
        "Paper downtime packs on every ward; read-only extract printed every 4 hours; back-entry within 48 hours.",
        "Manual tracking board and paper cards; critical results and admissions phoned through.",
        "Paper charts printed from the 4-hourly extract; the on-call team keeps a read-only copy.",
    ),
    2: (
        "Urgent work by phone from the duty consultant; images and reports sent later from local stores.",
        "Printed lists each evening; urgent cases routed to the neighbouring provider by agreement.",
    ),
    3: (
        "Next-day clinic lists printed each evening; routine work rebooked after restore.",
        "Weekly printed caseloads; notes on paper and scanned in later.",
    ),
    4: (
        "Work deferred; urgent requests by phone and email.",
        "Critical documents kept in the departmental red folders.",
    ),
}
_CONTACTS = ("IT service desk 01632 960000", "Infrastructure on-call 01632 960001")

# Service families per tier: (base id, name, application product or None).
_FAMILIES: dict[int, tuple[tuple[str, str, tuple[str, str] | None], ...]] = {
    1: (
        ("epr", "Electronic patient record", ("cerner/millennium", "2018.07")),
        ("ed", "Emergency department system", ("emis/symphony", "2.42")),
        ("maternity", "Maternity record", ("k2/athena", "5.2")),
        ("eprescribing", "Electronic prescribing", ("jac/epma", "9.1")),
        ("lims", "Pathology laboratory system", ("clinisys/winpath", "5.38")),
    ),
    2: (
        ("pacs", "Radiology imaging", ("sectra/pacs", "24.2")),
        ("theatres", "Theatre management", None),
        ("cardiology", "Cardiology reporting", None),
        ("renal", "Renal dialysis records", None),
    ),
    3: (
        ("ophthalmology", "Ophthalmology EPR", ("medisoft/ophthalmology", "7.1")),
        ("bed-management", "Bed management", None),
        ("outpatients", "Outpatient booking", None),
        ("dermatology", "Dermatology imaging", None),
    ),
    4: (
        ("file-shares", "Network file shares", None),
        ("printing", "Print services", None),
        ("payroll", "Payroll interface", None),
        ("intranet", "Staff intranet", None),
        ("backup", "Backup and restore", ("veeam/backup-replication", "12.1")),
    ),
}

# SaaS: (asset id, supplier, region asset it runs in or None, service base, service name, tier).
_SAAS: tuple[tuple[str, str, str | None, str, str, int], ...] = (
    ("emis-web", "emis", "aws-eu-west-2", "gp-records", "GP clinical records", 2),
    ("adastra", "advanced", None, "nhs111", "NHS 111 and out-of-hours triage", 2),
    ("carenotes", "advanced", None, "community-records", "Community and mental health records", 3),
    ("nhsmail", "accenture", "azure-uk-south", "email", "Email", 4),
    ("healthroster", "rldatix", "aws-eu-west-2", "rostering", "e-Rostering", 4),
)
_REGIONS = (("aws-eu-west-2", "aws", "eu-west-2"), ("azure-uk-south", "microsoft", "uk-south"))

_PATTERNS = ("redundant", "single", "saas", "composite")
_PATTERN_WEIGHTS = (45, 20, 15, 20)
_TIER_WEIGHTS = (15, 25, 35, 25)
# The first services are fixed so that even the smallest estate has every tier and every pattern.
_OPENING: tuple[tuple[str, int], ...] = (("redundant", 1), ("single", 3), ("saas", 2), ("single", 4))


@dataclass
class _Cluster:
    name: str
    site: str
    requires: list[object] = field(default_factory=list)
    """The shared ``requires`` list of VMs on this cluster: K of its hosts."""
    attrs_by_os: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Counts:
    """How many of each part an estate of ``assets`` gets."""

    hospitals: int
    practices: int
    hosts: int
    clusters: int
    services: int

    @classmethod
    def for_size(cls, assets: int) -> _Counts:
        hosts = max(3, round(assets * _HOST_SHARE))
        clusters = max(1, min(round(hosts / _HOSTS_PER_CLUSTER), hosts // 3))
        return cls(
            hospitals=max(2, assets // _ASSETS_PER_HOSPITAL),
            practices=max(1, assets // _ASSETS_PER_PRACTICE),
            hosts=hosts,
            clusters=clusters,
            services=max(len(_OPENING), assets // _ASSETS_PER_SERVICE - 1),
        )


def generate_estate(assets: int, seed: int = 0) -> Document:
    """An estate document with exactly ``assets`` assets, the same for the same ``(assets, seed)``.

    Raises :class:`~ringfence.core.errors.InputError` when ``assets`` is below :data:`MINIMUM_ASSETS`.
    """
    if isinstance(assets, bool) or not isinstance(assets, int):
        raise InputError(f"the number of assets to generate must be a whole number, not {assets!r}")
    if assets < MINIMUM_ASSETS:
        raise InputError(
            f"cannot generate an estate of {assets} assets: the smallest has {MINIMUM_ASSETS} "
            "(sites, a cluster, a directory and services of every tier need them)"
        )
    return _EstateBuilder(assets, random.Random(seed)).build()


class _EstateBuilder:
    """Builds one document; each ``_add_*`` step appends to the lists in the order they appear in it."""

    def __init__(self, assets: int, rng: random.Random) -> None:
        self.total = assets
        self.rng = rng
        self.counts = _Counts.for_size(assets)
        width = max(3, len(str(self.counts.hospitals)))
        self.hospitals = [f"hosp-{i:0{width}d}" for i in range(1, self.counts.hospitals + 1)]
        width = max(4, len(str(self.counts.practices)))
        self.practices = [f"gp-{i:0{width}d}" for i in range(1, self.counts.practices + 1)]
        self.network: list[Document] = []
        self.storage: list[Document] = []
        self.hosts: list[Document] = []
        self.vms: list[Document] = []
        self.saas: list[Document] = []
        self.services: list[Document] = []
        self.clusters: list[_Cluster] = []
        self.clusters_at: dict[str, list[_Cluster]] = {}
        self.switches: dict[str, list[object]] = {}
        self.sql_pairs: dict[str, list[list[str]]] = {}
        self.services_at: Counter[str] = Counter()
        self.family_counter: Counter[str] = Counter()
        # Services that want K of a site's ED workstations, filled in once the workstations exist.
        self.ed_requirers: dict[str, list[object]] = {}
        self.gp_requirers: list[list[object]] = []
        self.software_lists: dict[tuple[str, ...], list[dict[str, str]]] = {}

    # ------------------------------------------------------------------------------------------ build
    def build(self) -> Document:
        self._add_network()
        self._add_clusters()
        self._add_saas()
        self._add_directory()
        self._add_services()
        self._add_generic_vms()
        before = len(self.network) + len(self.storage) + len(self.hosts) + len(self.vms) + len(self.saas)
        endpoints = self._endpoints(self.total - before)
        assets: list[Document] = [*self.network, *self.storage, *self.hosts, *self.vms, *self.saas, *endpoints]
        return {
            "apiVersion": "ringfence/v1",
            "estate": f"generated-{self.total}",
            "suppliers": [{"id": sid, "name": name} for sid, name in _SUPPLIERS],
            "services": self.services,
            "assets": assets,
        }

    # ----------------------------------------------------------------------------------- infrastructure
    def _add_network(self) -> None:
        nx_os = [{"product": "cisco/nx-os", "version": "10.2.6"}]
        attrs = {"model": "Nexus 93180YC-FX"}
        for site in self.hospitals:
            ids = [f"core-{site}-1", f"core-{site}-2"]
            for switch in ids:
                self.network.append(
                    {
                        "id": switch,
                        "kind": "network",
                        "site": site,
                        "supplier": "cisco",
                        "attrs": attrs,
                        "software": nx_os,
                    }
                )
            self.switches[site] = [{"any": 1, "of": ids}]
        # Two HSCN connections from two carriers at two sites: the SaaS services reach out through them.
        for link, carrier, site in (
            ("hscn-bt", "bt", self.hospitals[0]),
            ("hscn-virgin", "virginmedia", self.hospitals[1]),
        ):
            self.network.append(
                {"id": link, "kind": "network", "site": site, "supplier": carrier, "requires": self.switches[site]}
            )

    def _add_clusters(self) -> None:
        esxi = [{"product": "vmware/esxi", "version": "7.0.2"}]
        n = self.counts.clusters
        base, extra = divmod(self.counts.hosts, n)
        for c in range(n):
            site = self.hospitals[c % len(self.hospitals)]
            number = len(self.clusters_at.get(site, ())) + 1
            cluster = _Cluster(name=f"{site}-c{number}", site=site)
            hosts = base + (1 if c < extra else 0)
            # One array per cluster, dual-controller but one box: a single point of failure by design.
            array_supplier, model = ("dell", "PowerStore 5000T") if c % 2 == 0 else ("hpe", "Alletra 6030")
            array = f"array-{cluster.name}"
            self.storage.append(
                {
                    "id": array,
                    "kind": "storage",
                    "site": site,
                    "supplier": array_supplier,
                    "attrs": {"model": model},
                    "requires": self.switches[site],
                }
            )
            host_requires: list[object] = [self.switches[site][0], array]
            strata = self._host_strata(c, hosts)
            attrs_of = {
                stratum: {"model": stratum[0], "nic_driver": stratum[1], "os": "esxi", "cluster": cluster.name}
                for stratum in set(strata)
            }
            for j, stratum in enumerate(strata, start=1):
                self.hosts.append(
                    {
                        "id": f"esx-{cluster.name}-{j:02d}",
                        "kind": "host",
                        "site": site,
                        "supplier": stratum[2],
                        "attrs": attrs_of[stratum],
                        "software": esxi,
                        "requires": host_requires,
                    }
                )
            # HA admission control: the cluster's load needs a third of its hosts. A single host is never
            # missed (K <= hosts - 1); a one-model cluster cannot survive losing its model's stratum.
            need = max(1, hosts // 3)
            cluster.requires = [{"any": need, "where": f"kind=host,attrs.cluster={cluster.name}"}]
            self.clusters.append(cluster)
            self.clusters_at.setdefault(site, []).append(cluster)

    @staticmethod
    def _host_strata(c: int, hosts: int) -> list[tuple[str, str, str]]:
        if c % 3 == 1:
            # Bought in one order, like prod-b: all R750 (i40en), plus one R740 added later when large.
            strata = [_I40EN] * hosts
            if hosts >= 7:
                strata[-1] = _IXGBEN
            return strata
        return [_MIXED_STRATA[j % 3] for j in range(hosts)]

    def _add_saas(self) -> None:
        for region, supplier, name in _REGIONS:
            self.saas.append({"id": region, "kind": "saas", "supplier": supplier, "attrs": {"region": name}})
        for asset_id, provider, hosted_in, *_ in _SAAS:
            item: Document = {"id": asset_id, "kind": "saas", "supplier": provider}
            if hosted_in is not None:
                item["requires"] = [hosted_in]
            self.saas.append(item)

    # ---------------------------------------------------------------------------------------------- VMs
    def _software(self, os: str, *extra: tuple[str, str]) -> list[dict[str, str]]:
        key = (os, *(p for p, _ in extra))
        found = self.software_lists.get(key)
        if found is None:
            product, version = _OS_SOFTWARE[os]
            found = [{"product": product, "version": version}, _AGENT]
            found.extend({"product": p, "version": v} for p, v in extra)
            self.software_lists[key] = found
        return found

    def _vm(
        self, vm_id: str, cluster: _Cluster, os: str, software: list[dict[str, str]], requires: list[object]
    ) -> None:
        attrs = cluster.attrs_by_os.get(os)
        if attrs is None:
            attrs = cluster.attrs_by_os[os] = {"os": os, "cluster": cluster.name}
        self.vms.append(
            {
                "id": vm_id,
                "kind": "vm",
                "site": cluster.site,
                "attrs": attrs,
                "software": software,
                "requires": requires,
            }
        )

    def _two_clusters(self, site: str) -> tuple[_Cluster, _Cluster]:
        at_site = self.clusters_at[site]
        first = self.rng.randrange(len(at_site))
        return at_site[first], at_site[(first + 1) % len(at_site)]

    def _add_directory(self) -> None:
        dcs: list[str] = []
        for site, clusters in self.clusters_at.items():
            for k, cluster in enumerate((clusters[0], clusters[-1]), start=1):
                dc = f"dc-{site}-{k}"
                self._vm(dc, cluster, "windows-2022", self._software("windows-2022"), cluster.requires)
                dcs.append(dc)
        self.services.append(
            {
                "id": "active-directory",
                "name": "Active Directory and single sign-on",
                "tier": 2,
                "rto": "1h",
                "rpo": "1h",
                "continuity": "Cached credentials on workstations; break-glass accounts in the site safe.",
                "contacts": list(_CONTACTS),
                "requires": [{"any": 1, "of": dcs}],
            }
        )

    def _sql_pair(self, site: str) -> list[str]:
        """A SQL Server availability group at the site: a new one for every fourth service placed there."""
        pairs = self.sql_pairs.setdefault(site, [])
        if not pairs or self.services_at[site] % 4 == 0:
            number = len(pairs) + 1
            members = [f"sql-{site}-{number}-a", f"sql-{site}-{number}-b"]
            software = self._software("windows-2022", _SQL)
            for member, cluster in zip(members, self._two_clusters(site), strict=True):
                self._vm(member, cluster, "windows-2022", software, cluster.requires)
            pairs.append(members)
        return pairs[-1]

    def _add_services(self) -> None:
        server_sites = list(self.clusters_at)
        for i in range(self.counts.services):
            if i < len(_OPENING):
                pattern, tier = _OPENING[i]
            else:
                pattern = self.rng.choices(_PATTERNS, weights=_PATTERN_WEIGHTS)[0]
                tier = self.rng.choices((1, 2, 3, 4), weights=_TIER_WEIGHTS)[0]
            if pattern == "saas":
                self._add_saas_service()
                continue
            site = server_sites[i % len(server_sites)]
            base, name, product = self.rng.choice(_FAMILIES[tier])
            self.family_counter[base] += 1
            number = self.family_counter[base]
            service_id = f"{base}-{number}"
            extra = (product,) if product is not None else ()
            requires: list[object]
            if pattern == "redundant":
                os = self.rng.choice(_SERVER_OSES)
                software = self._software(os, *extra)
                apps = [f"{service_id}-app-{k}" for k in range(1, self.rng.choice((2, 2, 3)) + 1)]
                first, second = self._two_clusters(site)
                # One in three pools keeps every app server on one cluster: redundancy with a shared fate.
                same_fate = self.rng.random() < 1 / 3
                for k, app in enumerate(apps):
                    cluster = first if same_fate or k % 2 == 0 else second
                    self._vm(app, cluster, os, software, cluster.requires)
                requires = [{"any": 1, "of": apps}, {"any": 1, "of": self._sql_pair(site)}, "active-directory"]
                if tier == 1:
                    self.ed_requirers.setdefault(site, requires)
            elif pattern == "single":
                os = self.rng.choice(_SERVER_OSES[:2])
                cluster = self.rng.choice(self.clusters_at[site])
                app = f"{service_id}-app-1"
                self._vm(app, cluster, os, self._software(os, *extra), cluster.requires)
                requires = [app, "active-directory"]
            else:  # composite: an app of its own on top of a service that already exists
                os = self.rng.choice(_SERVER_OSES[:2])
                cluster = self.rng.choice(self.clusters_at[site])
                app = f"{service_id}-app-1"
                self._vm(app, cluster, os, self._software(os, *extra), cluster.requires)
                other = self.services[self.rng.randrange(len(self.services))]["id"]
                requires = [app, other]
            self.services_at[site] += 1
            rto, rpo = _RTO_RPO[tier]
            self.services.append(
                {
                    "id": service_id,
                    "name": f"{name} {number}",
                    "tier": tier,
                    "rto": rto,
                    "rpo": rpo,
                    "continuity": self.rng.choice(_CONTINUITY[tier]),
                    "contacts": list(_CONTACTS),
                    "requires": requires,
                }
            )

    def _add_saas_service(self) -> None:
        asset_id, _, _, base, name, tier = self.rng.choice(_SAAS)
        self.family_counter[base] += 1
        number = self.family_counter[base]
        rto, rpo = _RTO_RPO[tier]
        requires: list[object] = [asset_id, {"any": 1, "of": ["hscn-bt", "hscn-virgin"]}]
        if asset_id == "emis-web":
            # The practices reach EMIS over their own lines, but need their own PCs up (July 2024).
            requires = [asset_id]
            self.gp_requirers.append(requires)
        self.services.append(
            {
                "id": f"{base}-{number}",
                "name": f"{name} {number}",
                "tier": tier,
                "rto": rto,
                "rpo": rpo,
                "continuity": self.rng.choice(_CONTINUITY[tier]),
                "contacts": list(_CONTACTS),
                "requires": requires,
            }
        )

    def _add_generic_vms(self) -> None:
        """Servers no service is mapped to (utilities, test, training): most of a real estate's VMs."""
        wanted = max(0, round(self.total * _VM_SHARE) - len(self.vms))
        clusters = self.clusters
        oses = _SERVER_OSES
        choose = self.rng.choices
        picks = choose(range(len(clusters) * len(oses)), k=wanted)
        for n, pick in enumerate(picks, start=1):
            cluster = clusters[pick // len(oses)]
            os = oses[pick % len(oses)]
            self._vm(f"srv-{n:07d}", cluster, os, self._software(os), cluster.requires)

    # ---------------------------------------------------------------------------------------- endpoints
    def _endpoints(self, count: int) -> list[Document]:
        if count < 0:  # pragma: no cover - the layout above leaves room for MINIMUM_ASSETS
            raise InputError(f"cannot fit an estate into {self.total} assets")
        practice_total = round(count * _PRACTICE_ENDPOINT_SHARE)
        quotas = _split(count - practice_total, self.hospitals) + _split(practice_total, self.practices)
        agent = [_AGENT]
        hospital_profiles = _profiles(_HOSPITAL_DEPTS, _HOSPITAL_FLEET)
        practice_profiles = _profiles((("gp", 1),), _PRACTICE_FLEET)
        out: list[Document] = []
        gp_total = 0
        for site, quota in quotas:
            profiles, weights = practice_profiles if site.startswith("gp-") else hospital_profiles
            picks = self.rng.choices(range(len(profiles)), weights=weights, k=quota)
            start = len(out) + 1
            out.extend(
                {
                    "id": f"ws-{number:07d}",
                    "kind": "endpoint",
                    "site": site,
                    "attrs": profiles[pick][0],
                    "software": agent,
                }
                for number, pick in enumerate(picks, start=start)
            )
            per_dept: Counter[str] = Counter()
            for pick, n in Counter(picks).items():
                per_dept[profiles[pick][1]] += n
            gp_total += per_dept["gp"]
            requires = self.ed_requirers.get(site)
            if requires is not None and per_dept["ed"] >= 2:
                # The ED needs a quarter of its workstations: one lost PC is never missed.
                requires.append(
                    {"any": max(1, per_dept["ed"] // 4), "where": f"kind=endpoint,site={site},attrs.dept=ed"}
                )
        if gp_total >= 2:
            for requires in self.gp_requirers:
                requires.append({"any": max(1, gp_total // 5), "where": "kind=endpoint,attrs.dept=gp"})
        return out


def _split(total: int, sites: list[str]) -> list[tuple[str, int]]:
    """``total`` shared out over ``sites`` as evenly as whole numbers allow, the first sites taking the rest."""
    base, extra = divmod(total, len(sites))
    return [(site, base + (1 if i < extra else 0)) for i, site in enumerate(sites)]


def _profiles(
    depts: tuple[tuple[str, int], ...], fleet: tuple[tuple[str, str, int], ...]
) -> tuple[list[tuple[dict[str, str], str]], list[int]]:
    """Every (department, model) combination as a shared attrs mapping, with its weight."""
    profiles: list[tuple[dict[str, str], str]] = []
    weights: list[int] = []
    for dept, dept_weight in depts:
        for model, os, model_weight in fleet:
            profiles.append(({"os": os, "model": model, "dept": dept}, dept))
            weights.append(dept_weight * model_weight)
    return profiles, weights
