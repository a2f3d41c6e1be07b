"""The synthetic estate generator, and the bundled City General sample the drills are built on.

Both are checked on the raw document (the plain YAML/JSON structure), with a small selector matcher and
down-set propagation written here from the estate format, so the checks hold whatever the engine does.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringfence.core.errors import InputError
from ringfence.core.generate import MINIMUM_ASSETS, generate_estate

Doc = Mapping[str, Any]

ID = re.compile(r"^[a-z0-9._-]+$")
EXAMPLES = files("ringfence.examples")
CITY = EXAMPLES / "city-general"
DEFAULT_STRATA = ("kind", "attrs.os", "attrs.model", "site")
WINDOWS = {"windows-10", "windows-11", "windows-2019", "windows-2022"}

# The fields the estate format v1 allows (services may also carry the `contacts` extension).
TOP_FIELDS = {"apiVersion", "estate", "suppliers", "services", "assets"}
SUPPLIER_FIELDS = {"id", "name", "contact"}  # contact: the extension the continuity pack prints
SERVICE_FIELDS = {"id", "name", "tier", "rto", "rpo", "continuity", "requires", "contacts"}
ASSET_FIELDS = {"id", "kind", "site", "supplier", "attrs", "software", "requires"}
SOFTWARE_FIELDS = {"product", "version", "supplier"}
KINDS = {"host", "vm", "endpoint", "appliance", "saas", "network", "storage"}
DURATION = re.compile(r"^\d+[smhd]$")


# ------------------------------------------------------------------------------------- helpers
# The C loader when PyYAML has it: the sample is 2,800 lines.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Any) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)


def value_of(asset: Doc, key: str) -> str | None:
    if key.startswith("attrs."):
        value = asset.get("attrs", {}).get(key[6:])
        return None if value is None else str(value)
    value = asset.get(key)
    return None if value is None else str(value)


def term_holds(asset: Doc, key: str, negated: bool, options: Sequence[str]) -> bool:
    if key == "software":
        running = {s["product"] for s in asset.get("software", ())} | {
            f"{s['product']}@{s['version']}" for s in asset.get("software", ())
        }
        found = any(option in running for option in options)
    else:
        found = value_of(asset, key) in options
    return found != negated


def matcher(selector: str) -> Any:
    """The estate format's selector: comma-separated `key=a|b` or `key!=a|b` terms, all of which hold."""
    terms = []
    for term in selector.split(","):
        negated = "!=" in term
        key, _, values = term.partition("!=" if negated else "=")
        assert key in {"id", "kind", "site", "supplier", "software"} or key.startswith("attrs."), selector
        terms.append((key, negated, values.split("|")))
    return lambda asset: all(term_holds(asset, key, neg, options) for key, neg, options in terms)


def select(doc: Doc, selector: str) -> list[Doc]:
    match = matcher(selector)
    return [a for a in doc["assets"] if match(a)]


class Dependencies:
    """Who needs whom, from the raw document: hard requirements and `any: K` groups (where resolved)."""

    def __init__(self, doc: Doc) -> None:
        self.tier = {s["id"]: s["tier"] for s in doc["services"]}
        self.assets = {a["id"]: a for a in doc["assets"]}
        self.hard_dependants: dict[str, list[str]] = defaultdict(list)
        self.groups: list[tuple[str, int, tuple[str, ...]]] = []
        self.groups_of: dict[str, list[int]] = defaultdict(list)
        self._impact_tiers: dict[str, int] = {}
        where_cache: dict[str, list[str]] = {}
        for node in [*doc["services"], *doc["assets"]]:
            for req in node.get("requires", ()):
                if isinstance(req, str):
                    self.hard_dependants[req].append(node["id"])
                    continue
                if "of" in req:
                    members = tuple(req["of"])
                else:
                    if req["where"] not in where_cache:
                        where_cache[req["where"]] = [a["id"] for a in select(doc, req["where"])]
                    members = tuple(m for m in where_cache[req["where"]] if m != node["id"])
                index = len(self.groups)
                self.groups.append((node["id"], req.get("any", 1), members))
                for member in members:
                    self.groups_of[member].append(index)

    def down(self, failed: Iterable[str]) -> set[str]:
        """The least set holding `failed` and closed under the format's rules (counter propagation)."""
        up_left = [len(members) for _, _, members in self.groups]
        down: set[str] = set()
        queue = [owner for owner, k, members in self.groups if len(members) < k] + list(failed)
        while queue:
            node = queue.pop()
            if node in down:
                continue
            down.add(node)
            queue.extend(self.hard_dependants.get(node, ()))
            for index in self.groups_of.get(node, ()):
                owner, k, _ = self.groups[index]
                up_left[index] -= 1
                if up_left[index] < k:
                    queue.append(owner)
        return down

    def services_down(self, failed: Iterable[str]) -> dict[str, int]:
        return {n: self.tier[n] for n in self.down(failed) if n in self.tier}

    def impact_tier(self, asset: str) -> int:
        if asset not in self._impact_tiers:
            self._impact_tiers[asset] = min(self.services_down([asset]).values(), default=5)
        return self._impact_tiers[asset]


def check_references(doc: Doc) -> None:
    """Ids unique and well formed; every requirement, supplier and `any` group resolvable and sound."""
    ids = [n["id"] for n in [*doc["services"], *doc["assets"]]]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates
    assert all(ID.match(i) for i in ids)
    known = set(ids)
    matched: dict[str, list[str]] = {}
    suppliers = {s["id"] for s in doc["suppliers"]}
    for asset in doc["assets"]:
        assert asset["kind"] in KINDS, asset["id"]
        if "supplier" in asset:
            assert asset["supplier"] in suppliers, asset["id"]
        for item in asset.get("software", ()):
            assert item.get("supplier", item["product"].split("/")[0]) in suppliers, (asset["id"], item)
    for node in [*doc["services"], *doc["assets"]]:
        hard = [r for r in node.get("requires", ()) if isinstance(r, str)]
        assert len(hard) == len(set(hard)), node["id"]
        for req in node.get("requires", ()):
            if isinstance(req, str):
                assert req in known, (node["id"], req)
                assert req != node["id"], f"{req} requires itself"
                continue
            assert set(req) <= {"any", "of", "where"}, node["id"]
            assert ("of" in req) != ("where" in req), node["id"]
            k = req.get("any", 1)
            if "of" in req:
                members = req["of"]
                assert len(members) == len(set(members)), node["id"]
                assert all(m in known and m != node["id"] for m in members), node["id"]
            else:
                if req["where"] not in matched:
                    matched[req["where"]] = [a["id"] for a in select(doc, req["where"])]
                members = [m for m in matched[req["where"]] if m != node["id"]]
            # More members than K: no single member is needed by the group on its own.
            assert 1 <= k < len(members), (node["id"], req, len(members))


def stratum(asset: Doc, keys: Sequence[str]) -> tuple[str | None, ...]:
    return tuple(value_of(asset, key) for key in keys)


def canary_ring(deps: Dependencies, targets: Sequence[Doc], keys: Sequence[str], *, reverse: bool) -> list[str]:
    """Ring 0 as the plan rules ask: one asset per stratum, the least critical, never more than n - K
    members of an `any: K` group. Ties are broken by id, forwards or backwards, to try both ways."""
    by_stratum: dict[tuple[str | None, ...], list[str]] = defaultdict(list)
    for asset in targets:
        by_stratum[stratum(asset, keys)].append(asset["id"])
    in_ring: Counter[int] = Counter()
    ring: list[str] = []
    for members in by_stratum.values():
        ordered = sorted(members, reverse=reverse)
        ordered.sort(key=lambda a: -deps.impact_tier(a))
        fits = [
            a
            for a in ordered
            if all(in_ring[g] + 1 <= len(deps.groups[g][2]) - deps.groups[g][1] for g in deps.groups_of.get(a, ()))
        ]
        assert fits, f"no canary fits the redundancy rule among {members}"
        ring.append(fits[0])
        for g in deps.groups_of.get(fits[0], ()):
            in_ring[g] += 1
    return ring


# -------------------------------------------------------------------------------- the generator
def test_same_size_and_seed_give_the_same_document() -> None:
    first = generate_estate(3000, seed=7)
    assert first == generate_estate(3000, seed=7)
    assert json.dumps(first) == json.dumps(generate_estate(3000, seed=7))


def test_another_seed_gives_another_estate_of_the_same_size() -> None:
    one: Any = generate_estate(3000, seed=1)
    other: Any = generate_estate(3000, seed=2)
    assert one != other
    assert len(one["assets"]) == len(other["assets"]) == 3000


@pytest.mark.parametrize("size", [MINIMUM_ASSETS, 51, 137, 999, 4321, 20_001])
def test_document_has_exactly_the_asked_number_of_assets_and_resolves(size: int) -> None:
    doc: Any = generate_estate(size, seed=size)
    assert len(doc["assets"]) == size
    assert set(doc) == TOP_FIELDS
    check_references(doc)


@pytest.mark.parametrize("size", [0, MINIMUM_ASSETS - 1, -5])
def test_too_small_an_estate_is_refused_with_the_number(size: int) -> None:
    with pytest.raises(InputError, match=rf"estate of {size} assets.*smallest has {MINIMUM_ASSETS}"):
        generate_estate(size)


def test_a_count_that_is_not_a_whole_number_is_refused() -> None:
    with pytest.raises(InputError, match="whole number"):
        generate_estate(True)
    with pytest.raises(InputError, match="whole number"):
        generate_estate(100.0)  # type: ignore[arg-type]


def test_generated_estate_has_the_shape_of_the_sample() -> None:
    doc: Any = generate_estate(20_000, seed=3)
    assets, services = doc["assets"], doc["services"]
    kinds = Counter(a["kind"] for a in assets)
    assert 0.85 <= kinds["endpoint"] / len(assets) <= 0.90
    assert kinds["host"] >= 3
    assert kinds["vm"] > kinds["host"]
    assert {"network", "storage", "saas"} <= set(kinds)
    for item in [*assets, *services]:
        assert set(item) <= (SERVICE_FIELDS if "tier" in item else ASSET_FIELDS)

    hosts = [a for a in assets if a["kind"] == "host"]
    driver_of = {(h["attrs"]["model"], h["attrs"]["nic_driver"]) for h in hosts}
    assert len(driver_of) == 3 == len({m for m, _ in driver_of}), "the model decides the NIC driver"
    clusters: dict[str, Counter[str]] = defaultdict(Counter)
    for host in hosts:
        clusters[host["attrs"]["cluster"]][host["attrs"]["nic_driver"]] += 1
    assert any(len(c) == 3 for c in clusters.values()), "some clusters mix the three strata"
    assert any(c["i40en-1.10"] >= sum(c.values()) - 1 for c in clusters.values()), "some are one model"

    # One `where` selector per cluster (plus one per ED and one for GP workstations): engines cache them.
    wheres = {r["where"] for n in [*assets, *services] for r in n.get("requires", ()) if "where" in r}
    assert {f"kind=host,attrs.cluster={c}" for c in clusters} <= wheres
    assert len(wheres) <= len(clusters) + len({a.get("site") for a in assets}) + 1
    vms = [a for a in assets if a["kind"] == "vm"]
    assert all(any(r.get("where", "").startswith("kind=host,") for r in vm["requires"]) for vm in vms)

    assert {s["tier"] for s in services} == {1, 2, 3, 4}
    for service in services:
        assert DURATION.match(service["rto"]), service
        assert DURATION.match(service["rpo"]), service
        assert service["continuity"]
    endpoints = [a for a in assets if a["kind"] == "endpoint"]
    assert all(a["software"] == [{"product": "crowdstrike/falcon", "version": "7.15"}] for a in endpoints)
    assert any(a["site"].startswith("gp-") for a in endpoints)
    assert any(a["site"].startswith("hosp-") for a in endpoints)


def test_generated_services_mix_single_points_of_failure_with_redundancy() -> None:
    doc: Any = generate_estate(5_000, seed=5)
    deps = Dependencies(doc)
    vms = [a["id"] for a in doc["assets"] if a["kind"] == "vm"]
    spofs = {vm: deps.services_down([vm]) for vm in vms}
    assert any(spofs.values()), "a single VM takes some service down"
    redundant = [s for s in doc["services"] if any(isinstance(r, dict) and "of" in r for r in s["requires"])]
    assert redundant
    # ...and a redundant pool survives losing any one of its members.
    for service in redundant[:20]:
        pool = next(r["of"] for r in service["requires"] if isinstance(r, dict) and "of" in r)
        for member in pool:
            assert service["id"] not in deps.services_down([member])
    # A one-model cluster falls with its stratum, taking services with it.
    i40en = [a["id"] for a in select(doc, "kind=host,attrs.nic_driver=i40en-1.10")]
    assert deps.services_down(i40en)


def test_services_grow_with_the_estate() -> None:
    small: Any = generate_estate(1_000)
    large: Any = generate_estate(40_000)
    assert len(small["services"]) >= 5
    assert len(large["services"]) >= len(large["assets"]) // 250
    assert len({a["site"] for a in large["assets"] if "site" in a}) > len(
        {a["site"] for a in small["assets"] if "site" in a}
    )


def test_document_survives_json_and_yaml() -> None:
    doc = generate_estate(300, seed=11)
    assert json.loads(json.dumps(doc)) == doc
    assert yaml.safe_load(yaml.safe_dump(doc, sort_keys=False)) == doc


def test_generated_document_loads_with_the_estate_parser() -> None:
    estate_module = pytest.importorskip("ringfence.core.estate")
    parse = getattr(estate_module, "parse_estate_document", None)
    if parse is None:
        pytest.skip("ringfence.core.estate has no parse_estate_document yet")
    estate = parse(generate_estate(2_000, seed=4), source="generated")
    assert len(estate.assets) == 2_000
    assert not estate.warnings


# -------------------------------------------------------------------------- the City General sample
@pytest.fixture(scope="module")
def city() -> Doc:
    doc: Doc = load_yaml(CITY / "estate.yaml")
    return doc


@pytest.fixture(scope="module")
def city_deps(city: Doc) -> Dependencies:
    return Dependencies(city)


def scenario(name: str) -> Doc:
    doc: Doc = load_yaml(CITY / "scenarios" / f"{name}.yaml")
    return doc


def test_sample_follows_the_format_and_resolves(city: Doc) -> None:
    assert set(city) == TOP_FIELDS
    assert city["apiVersion"] == "ringfence/v1"
    assert all(set(s) <= SUPPLIER_FIELDS for s in city["suppliers"])
    assert all(set(s) <= SERVICE_FIELDS for s in city["services"])
    for asset in city["assets"]:
        assert set(asset) <= ASSET_FIELDS, asset["id"]
        assert all(
            set(item) <= SOFTWARE_FIELDS and isinstance(item["version"], str) for item in asset.get("software", ())
        )
    check_references(city)
    assert {"vmware", "microsoft", "crowdstrike", "dell", "hpe", "emis", "advanced", "aws", "veeam"} <= {
        s["id"] for s in city["suppliers"]
    }


def test_sample_services_carry_tier_rto_rpo_continuity_and_contacts(city: Doc) -> None:
    for service in city["services"]:
        assert service["tier"] in (1, 2, 3, 4), service["id"]
        assert DURATION.match(service["rto"]), service["id"]
        assert DURATION.match(service["rpo"]), service["id"]
        assert len(service["continuity"]) > 20, service["id"]
        assert service["contacts"], service["id"]
        assert all(isinstance(c, str) for c in service["contacts"]), service["id"]
    assert Counter(s["tier"] for s in city["services"]).keys() == {1, 2, 3, 4}


def test_sample_has_two_thousand_falcon_workstations(city: Doc) -> None:
    endpoints = [a for a in city["assets"] if a["kind"] == "endpoint"]
    assert 1_900 <= len(endpoints) <= 2_100
    assert all(a["attrs"]["os"] in {"windows-10", "windows-11"} for a in endpoints)
    assert all(any(s["product"] == "crowdstrike/falcon" for s in a["software"]) for a in endpoints)
    sites = {a["site"] for a in endpoints}
    assert {"city", "north"} <= sites
    assert sum(s.startswith("gp-") for s in sites) >= 2


def test_sample_hosts_span_three_driver_strata_and_prod_b_is_mostly_i40en(city: Doc) -> None:
    hosts = [a for a in city["assets"] if a["kind"] == "host"]
    assert all(h["software"] == [{"product": "vmware/esxi", "version": "7.0.2"}] for h in hosts)
    driver_of: dict[str, set[str]] = defaultdict(set)
    for host in hosts:
        driver_of[host["attrs"]["model"]].add(host["attrs"]["nic_driver"])
    assert len(driver_of) == 3, driver_of
    assert all(len(d) == 1 for d in driver_of.values()), f"the model decides the driver: {driver_of}"
    by_cluster: dict[str, Counter[str]] = defaultdict(Counter)
    for host in hosts:
        by_cluster[host["attrs"]["cluster"]][host["attrs"]["nic_driver"]] += 1
    assert set(by_cluster) == {"prod-a", "prod-b"}
    assert len(by_cluster["prod-a"]) == 3
    assert by_cluster["prod-b"]["i40en-1.10"] / sum(by_cluster["prod-b"].values()) >= 0.8


def test_windows_servers_run_the_os_product_and_the_sensor(city: Doc) -> None:
    servers = [a for a in city["assets"] if a["kind"] == "vm" and a["attrs"]["os"].startswith("windows-")]
    assert len(servers) >= 20
    for server in servers:
        products = {s["product"]: s["version"] for s in server["software"]}
        assert products["microsoft/windows-server"].startswith(server["attrs"]["os"][-4:]), server["id"]
        assert products["crowdstrike/falcon"] == "7.15", server["id"]


def test_sample_single_points_of_failure_are_where_the_story_puts_them(city_deps: Dependencies) -> None:
    assert "ophthalmology" in city_deps.services_down(["ophth-epr"])
    assert "file-shares" in city_deps.services_down(["fs1"])
    assert "epr" in city_deps.services_down(["pstore-city"])
    assert "gp-records" in city_deps.services_down(["aws-eu-west-2"])
    for member in ("dc1", "sql-epr-1", "epr-app-2", "ed-app-1", "esx-b01"):
        assert city_deps.services_down([member]) == {}, member


@pytest.mark.parametrize("name", ["crowdstrike-2024", "vsphere-7u3", "sandwell-2021"])
def test_every_stratum_with_a_critical_asset_has_a_harmless_one(name: str, city: Doc, city_deps: Dependencies) -> None:
    update = scenario(name)["update"]
    targets = select(city, update.get("targets") or f"software={update['product']}")
    tiers_by_stratum: dict[tuple[str | None, ...], list[int]] = defaultdict(list)
    for asset in targets:
        tiers_by_stratum[stratum(asset, update.get("strata", DEFAULT_STRATA))].append(
            city_deps.impact_tier(asset["id"])
        )
    for key, tiers in tiers_by_stratum.items():
        if min(tiers) <= 2:
            assert 5 in tiers, f"stratum {key} has tier {min(tiers)} assets but no harmless canary"


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", ["crowdstrike-2024", "vsphere-7u3", "sandwell-2021"])
def test_a_failed_canary_ring_spares_tier_1_and_2_services(
    name: str, reverse: bool, city: Doc, city_deps: Dependencies
) -> None:
    drill = scenario(name)
    update, fault = drill["update"], drill["fault"]
    targets = select(city, update.get("targets") or f"software={update['product']}")
    ring = canary_ring(city_deps, targets, update.get("strata", DEFAULT_STRATA), reverse=reverse)
    affected = matcher(fault["affects"])
    # The worst case: every affected canary fails, whatever the fault's probability.
    failed = [a for a in ring if affected(city_deps.assets[a])]
    assert failed, "the canary ring must meet the fault, or the drill proves nothing"
    down = city_deps.services_down(failed)
    assert all(tier >= 3 for tier in down.values()), down


@pytest.mark.parametrize(
    ("name", "goes_down", "stays_up"),
    [
        ("crowdstrike-2024", {"epr", "ed", "maternity", "gp-records", "nhs111"}, {"lims", "telephony"}),
        ("vsphere-7u3", {"epr", "eprescribing", "theatres"}, {"ed", "maternity", "lims", "pacs"}),
        ("sandwell-2021", {"ophthalmology", "file-shares"}, {"active-directory", "lims"}),
    ],
)
def test_all_at_once_tells_the_incident_story(
    name: str, goes_down: set[str], stays_up: set[str], city: Doc, city_deps: Dependencies
) -> None:
    drill = scenario(name)
    update, fault = drill["update"], drill["fault"]
    targets = select(city, update.get("targets") or f"software={update['product']}")
    affected = matcher(fault["affects"])
    down = city_deps.services_down(a["id"] for a in targets if affected(a))
    assert goes_down <= down.keys()
    assert not stays_up & down.keys()


def test_scenarios_are_complete_drills(city: Doc) -> None:
    for path in (CITY / "scenarios").iterdir():
        drill = load_yaml(path)
        assert set(drill) == {"apiVersion", "scenario", "description", "update", "fault", "seed"}, path.name
        assert drill["scenario"] == path.name.removesuffix(".yaml")
        assert isinstance(drill["seed"], int)
        assert {"id", "product", "version", "bake", "rollback"} <= set(drill["update"])
        assert {"affects", "probability", "after", "rollback_loses_data"} <= set(drill["fault"])
        assert select(city, drill["update"].get("targets") or f"software={drill['update']['product']}")
    crowdstrike, vsphere, sandwell = (scenario(n) for n in ("crowdstrike-2024", "vsphere-7u3", "sandwell-2021"))
    assert crowdstrike["update"]["rollback"] == "none"
    assert crowdstrike["fault"]["after"] == "1m"
    hits_windows = matcher(crowdstrike["fault"]["affects"])
    assert hits_windows({"attrs": {"os": "windows-11"}})
    assert not hits_windows({"attrs": {"os": "rhel-8"}})
    assert "attrs.nic_driver" in vsphere["update"]["strata"]
    assert vsphere["update"]["rollback"] == "reinstall"
    assert sandwell["fault"] == {
        "affects": "attrs.os=windows-2019",
        "probability": 0.05,
        "after": "6h",
        "rollback_loses_data": True,
    }
    assert sandwell["update"]["rollback"] == "snapshot"
    assert sandwell["update"]["bake"] == "8h"


def test_advanced_incident_takes_out_what_advanced_hosts(city: Doc, city_deps: Dependencies) -> None:
    incident = load_yaml(CITY / "incidents" / "advanced-2022.yaml")
    assert incident["fail"] == ["supplier:advanced"]
    supplier = incident["fail"][0].removeprefix("supplier:")
    failed = [
        a["id"]
        for a in city["assets"]
        if a.get("supplier") == supplier or any(s["product"].startswith(f"{supplier}/") for s in a.get("software", ()))
    ]
    assert city_deps.services_down(failed) == {"nhs111": 2, "community-records": 3}


def test_updates_and_holds_name_products_the_estate_runs(city: Doc) -> None:
    products = {f"{s['product']}@{s['version']}" for a in city["assets"] for s in a.get("software", ())}
    names = {p.split("@")[0] for p in products}
    updates = [load_yaml(path) for path in (CITY / "updates").iterdir()]
    assert len(updates) >= 2
    for doc in updates:
        update = doc["update"]
        assert set(doc) == {"apiVersion", "update"}
        assert update["product"] in names
        assert f"{update['product']}@{update['version']}" not in products, "an update changes the version"
        assert select(city, update.get("targets") or f"software={update['product']}")
    holds = load_yaml(EXAMPLES / "holds.yaml")
    assert 2 <= len(holds["holds"]) <= 4
    for hold in holds["holds"]:
        assert hold["release"].split("@")[0] in names
        assert hold["reason"]
        assert hold["source"].startswith("https://")


def test_sample_loads_with_the_estate_parser(city: Doc) -> None:
    estate_module = pytest.importorskip("ringfence.core.estate")
    parse = getattr(estate_module, "parse_estate_document", None)
    if parse is None:
        pytest.skip("ringfence.core.estate has no parse_estate_document yet")
    estate = parse(city, source="estate.yaml")
    assert not estate.warnings
    assert len(estate.services) == 20


def test_generated_workstation_block_matches_its_script(city: Doc) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "make_sample_estate.py"
    if not script.exists():
        pytest.skip("scripts/ is not shipped with the package")
    spec = importlib.util.spec_from_file_location("make_sample_estate", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (CITY / "estate.yaml").read_text(encoding="utf-8")
    block = text.split(module.BEGIN, 1)[1].split(module.END, 1)[0]
    assert block == "".join(module.workstation_lines())
