"""The ring planner on the bundled sample estate and on small estates written out by hand.

The sample (``examples/city-general``) is edited as the project grows, so nothing here counts its assets:
the facts checked are the ones its comments promise (HA pairs never share a ring, every canary is of
impact tier 5, no plan of the three bundled updates needs a warning) and the rules themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

from ringfence.core.errors import ConflictError, InputError
from ringfence.core.estate import AnyGroup, Estate, parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.impact import compute_blast_radius, impact_tiers
from ringfence.core.planner import plan_rings
from ringfence.core.selectors import parse_selector
from ringfence.core.update import Hold, HoldOverride, Update, check_holds, parse_holds_text, parse_update_text
from ringfence.files.disk import examples_dir, read_estate, read_with, sample_estate_path

UPDATES = ("esxi-7u3", "falcon-7.16", "windows-2024-11")


@pytest.fixture(scope="module")
def sample() -> tuple[Estate, EstateGraph]:
    estate = read_estate(sample_estate_path())
    return estate, compile_estate(estate)


def sample_update(name: str) -> Update:
    return read_with(examples_dir() / "city-general" / "updates" / f"{name}.yaml", parse_update_text)


def group_members(estate: Estate, group: AnyGroup, owner: str) -> set[str]:
    if group.of is not None:
        return set(group.of)
    assert group.selector is not None
    return {a.id for a in estate.assets if a.id != owner and group.selector.matches(a)}


def all_groups(estate: Estate) -> list[tuple[str, int, set[str]]]:
    """(owner, K, members) of every any-group in the estate."""
    return [
        (node.id, group.any, group_members(estate, group, node.id))
        for node in (*estate.services, *estate.assets)
        for group in node.any_groups
    ]


def tiny(text: str) -> EstateGraph:
    return compile_estate(parse_estate_text(text, "tiny.yaml"))


def update(**fields: object) -> Update:
    return Update.model_validate({"id": "upd", "product": "acme/agent", "version": "2.0", **fields})


# ------------------------------------------------------------------------------------ the sample


@pytest.mark.parametrize("name", UPDATES)
def test_sample_plan_is_a_partition_of_the_targets(sample: tuple[Estate, EstateGraph], name: str) -> None:
    estate, graph = sample
    up = sample_update(name)
    plan = plan_rings(graph, up)
    wanted = parse_selector(up.target_selector)  # the per-asset reference semantics, not the index
    targets = sorted(a.id for a in estate.assets if wanted.matches(a))
    placed = [a for ring in plan.rings for a in ring.assets]
    assert sorted(placed) == targets
    assert len(placed) == len(set(placed))
    assert all(ring.size > 0 for ring in plan.rings)
    assert plan.targets == len(targets)


@pytest.mark.parametrize("name", UPDATES)
def test_sample_groups_keep_their_redundancy(sample: tuple[Estate, EstateGraph], name: str) -> None:
    """No plan of the bundled updates needs a warning, so no ring may hold more than n − K of any group;
    in particular the two members of an HA pair (any 1 of 2) are never in one ring."""
    estate, graph = sample
    plan = plan_rings(graph, sample_update(name))
    assert plan.warnings == ()
    ring_of = plan.ring_of()
    pairs_seen = 0
    for owner, k, members in all_groups(estate):
        for ring in plan.rings:
            held = members & set(ring.assets)
            assert len(held) <= len(members) - k, f"{ring.name} holds {sorted(held)} of {owner}'s any {k}"
        if k == 1 and len(members) == 2 and all(m in ring_of for m in members):
            first, second = sorted(members)
            assert ring_of[first] != ring_of[second], (owner, first, second)
            pairs_seen += 1
    if name != "esxi-7u3":  # the hosts are in large groups, not pairs
        assert pairs_seen > 0


def test_windows_update_splits_the_pacs_pair(sample: tuple[Estate, EstateGraph]) -> None:
    """pacs-app-1 (city) and pacs-app-2 (north) sit in different strata; rule 4 still keeps them apart."""
    _, graph = sample
    ring_of = plan_rings(graph, sample_update("windows-2024-11")).ring_of()
    assert ring_of["pacs-app-1"] != ring_of["pacs-app-2"]


@pytest.mark.parametrize("name", UPDATES)
def test_sample_canaries_are_least_critical(sample: tuple[Estate, EstateGraph], name: str) -> None:
    """The sample is built so every stratum has a tier-5 asset: every canary takes no service down alone,
    and each stratum of the targets has its canary."""
    _, graph = sample
    plan = plan_rings(graph, sample_update(name))
    canaries = plan.rings[: plan.canary_rings]
    assert canaries[0].name == "canary"
    assert all(ring.canary for ring in canaries)
    assert not any(ring.canary for ring in plan.rings[plan.canary_rings :])
    assert {t for ring in canaries for t in ring.tiers} == {5}
    for asset in (a for ring in canaries for a in ring.assets):
        assert compute_blast_radius(graph, [f"asset:{asset}"]).services_down == (), asset
    assert sorted(s for ring in canaries for s in ring.strata) == list(range(len(plan.strata)))


@pytest.mark.parametrize("name", UPDATES)
def test_sample_criticality_goes_last(sample: tuple[Estate, EstateGraph], name: str) -> None:
    """After the canary phase, an asset more critical than one in a later ring is only there when that later
    asset was blocked by a group already at n − K in the earlier ring."""
    estate, graph = sample
    plan = plan_rings(graph, sample_update(name))
    groups = [(k, members) for _, k, members in all_groups(estate) if len(members) - k > 0]
    for i, ring in enumerate(plan.rings[plan.canary_rings :], start=plan.canary_rings):
        here = set(ring.assets)
        most_critical_here = min(ring.tiers)
        for later in plan.rings[i + 1 :]:
            for asset, tier in zip(later.assets, later.tiers, strict=True):
                if tier <= most_critical_here:
                    continue
                blocked = any(asset in m and len(m & here) >= len(m) - k for k, m in groups)
                assert blocked, (
                    f"{asset} (tier {tier}) waits for {later.name} behind {ring.name} (tier {most_critical_here})"
                )


def test_sample_ring_tiers_are_the_impact_tiers(sample: tuple[Estate, EstateGraph]) -> None:
    estate, graph = sample
    plan = plan_rings(graph, sample_update("windows-2024-11"))
    position = {a.id: i for i, a in enumerate(estate.assets)}
    for ring in plan.rings:
        expected = impact_tiers(graph, np.asarray([position[a] for a in ring.assets], dtype=np.int64)).tolist()
        assert list(ring.tiers) == expected


def test_a_no_slack_group_in_the_sample_is_warned_about(sample: tuple[Estate, EstateGraph]) -> None:
    """Add a service that needs both PACS app servers: the plan cannot update either without an outage."""
    estate, _ = sample
    text = sample_estate_path().read_text(encoding="utf-8")
    assert text.count("\nservices:\n") == 1
    added = "  - {id: pacs-reporting, tier: 2, requires: [{any: 2, of: [pacs-app-1, pacs-app-2]}]}\n"
    graph = compile_estate(parse_estate_text(text.replace("\nservices:\n", "\nservices:\n" + added), "variant.yaml"))
    plan = plan_rings(graph, sample_update("windows-2024-11"))
    assert [(w.kind, w.owners, w.members, w.k) for w in plan.warnings] == [
        ("no-slack", ("pacs-reporting",), ("pacs-app-1", "pacs-app-2"), 2)
    ]
    assert "pacs-reporting" in plan.warnings[0].message
    assert "pacs-app-1" in plan.warnings[0].message
    assert len(estate.services) + 1 == len(graph.estate.services)


# ------------------------------------------------------------------------------ small estates


TWO_STRATA = """\
apiVersion: ringfence/v1
estate: tiny
services:
  - {id: epr, tier: 1, requires: [{any: 1, of: [h1, v1]}]}
assets:
  - {id: h1, kind: host, software: [{product: acme/agent, version: "1.0"}]}
  - {id: v1, kind: vm, software: [{product: acme/agent, version: "1.0"}]}
  - {id: h2, kind: host, software: [{product: acme/agent, version: "1.0"}]}
"""


def test_a_pair_that_coverage_would_empty_goes_in_two_canary_waves() -> None:
    """h1 and v1 are an HA pair but are also the least critical of their strata (host/vm): one canary ring
    holding both would take the EPR down. Redundancy wins: v1 waits for a second canary wave, which says why,
    and nothing is warned about (the pair has slack; it only must not lose both at once)."""
    # Billing needs h2, so h1 is the only least-critical host (tier 5 against h2's tier 4).
    graph = tiny(TWO_STRATA.replace("services:\n", "services:\n  - {id: billing, tier: 4, requires: [h2]}\n"))
    plan = plan_rings(graph, update(strata=["kind"], rings=["100%"]))
    assert plan.warnings == ()
    assert [(r.name, r.canary, r.assets, r.tiers) for r in plan.rings] == [
        ("canary", True, ("h1",), (5,)),
        ("canary wave 2", True, ("v1",), (5,)),
        ("ring 2", False, ("h2",), (4,)),
    ]
    assert plan.canary_rings == 2
    assert plan.rings[0].why is None
    assert (
        plan.rings[1].why == "canary wave 2: v1 (stratum vm) cannot share a ring with h1: epr needs 1 of 2 (h1, v1) up"
    )
    assert plan.rings[2].why is None
    assert [(g.owners, g.members, g.k, g.capacity) for g in plan.groups] == [(("epr",), ("h1", "v1"), 1, 1)]


def test_coverage_without_conflict_picks_the_other_host() -> None:
    """With a second tier-5 host available, the canary covers both strata without emptying the pair."""
    plan = plan_rings(tiny(TWO_STRATA), update(strata=["kind"], rings=["100%"]))
    assert plan.warnings == ()
    assert plan.rings[0].assets == ("h2", "v1")
    assert [r.assets for r in plan.rings[1:]] == [("h1",)]


def test_no_slack_group_is_warned_with_owner_and_members() -> None:
    graph = tiny(
        """\
apiVersion: ringfence/v1
estate: tiny
services:
  - {id: lab, tier: 1, requires: [{any: 2, of: [db1, db2]}]}
assets:
  - {id: db1, kind: vm, software: [{product: acme/agent, version: "1.0"}]}
  - {id: db2, kind: vm, software: [{product: acme/agent, version: "1.0"}]}
  - {id: spare, kind: vm, software: [{product: acme/agent, version: "1.0"}]}
"""
    )
    plan = plan_rings(graph, update(strata=["kind"], rings=[1, "100%"]))
    assert [(w.kind, w.owners, w.members, w.k) for w in plan.warnings] == [("no-slack", ("lab",), ("db1", "db2"), 2)]
    # The least critical is the spare (tier 5); db1/db2 each take the lab (tier 1) down alone.
    assert plan.rings[0].assets == ("spare",)
    assert [r.tiers for r in plan.rings] == [(5,), (1, 1)]


def test_hosts_of_a_cluster_spread_over_rings_as_its_slack_allows() -> None:
    """Five hosts, VMs need 3 of them up: at most two hosts per ring, however large the step."""
    hosts = "\n".join(
        f"  - {{id: esx{i}, kind: host, software: [{{product: acme/agent, version: '1.0'}}]}}" for i in range(1, 6)
    )
    graph = tiny(
        "apiVersion: ringfence/v1\nestate: tiny\nservices:\n  - {id: epr, tier: 1, requires: [app]}\n"
        "assets:\n" + hosts + "\n  - {id: app, kind: vm, requires: [{any: 3, where: 'kind=host'}]}\n"
    )
    plan = plan_rings(graph, update(strata=[], rings=["100%"]))
    assert plan.warnings == ()
    assert [r.size for r in plan.rings] == [1, 2, 2]
    assert set(plan.rings[0].assets) | set(plan.rings[1].assets) | set(plan.rings[2].assets) == {
        f"esx{i}" for i in range(1, 6)
    }


def test_an_update_that_targets_nothing_is_bad_input() -> None:
    graph = tiny(TWO_STRATA)
    with pytest.raises(InputError) as caught:
        plan_rings(graph, update(targets="software=acme/agent@9.9"))
    problem = caught.value.problems[0]
    assert problem.path == ("update", "targets")
    assert "software=acme/agent@9.9" in problem.message
    assert "tiny" in problem.message
    with pytest.raises(InputError):
        plan_rings(graph, Update.model_validate({"id": "x", "product": "other/thing", "version": "1"}))


@pytest.mark.parametrize(
    ("rollback", "per_ring", "worst"),
    [
        ("snapshot", 600 + 300 + 3600, 3 * 1200),  # apply 10m + restore point 5m + bake 1h; rollback 20m a ring
        ("reinstall", 600 + 3600, 3 * 1200),  # no restore point to take
        ("none", 600 + 3600, None),  # no rollback path at all
    ],
)
def test_minimum_duration_and_worst_case_rollback(rollback: str, per_ring: int, worst: int | None) -> None:
    graph = tiny(TWO_STRATA)
    plan = plan_rings(
        graph,
        update(
            strata=[],
            rings=[1, 2, "100%"],
            bake="1h",
            rollback=rollback,
            timing={"apply": "10m", "rollback": "20m", "restore_point": "5m"},
        ),
    )
    # One stratum, three targets: canary 1, then steps at 1 (already done), 2 and 3.
    assert [r.size for r in plan.rings] == [1, 1, 1]
    assert plan.minimum_duration == 3 * per_ring
    assert plan.worst_case_rollback == worst


def test_plans_are_deterministic(sample: tuple[Estate, EstateGraph]) -> None:
    """Planning again, on a graph compiled afresh from the same file, gives the same plan."""
    _, graph = sample
    up = sample_update("falcon-7.16")
    assert plan_rings(graph, up) == plan_rings(compile_estate(read_estate(sample_estate_path())), up)


def test_a_step_that_adds_nothing_is_noted_not_dropped() -> None:
    """Three targets in one stratum: the canary updates one, so a first step of 1 adds nothing, and 50% of 3
    (2) and then a count of 2 are the same point. Each step that adds no ring says so in the plan's notes."""
    plan = plan_rings(tiny(TWO_STRATA), update(strata=[], rings=[1, "50%", 2, "100%"]))
    assert [r.size for r in plan.rings] == [1, 1, 1]
    assert all(r.why is None for r in plan.rings)
    assert plan.notes == (
        "rings[0] (1) adds no ring on this estate: it asks for 1 target to be done, and 1 already are after the "
        "canary phase",
        "rings[2] (2) adds no ring on this estate: it asks for 2 targets to be done, and 2 already are after "
        "rings[1] ('50%')",
    )


def test_a_ring_past_the_last_step_says_why() -> None:
    """rings stops at 1 of 3 targets (the canary, h2, already covers it): the rest still go, in a ring that
    says the planner added it; h1 and v1 are an HA pair, so one of them waits for one more, which says why."""
    plan = plan_rings(tiny(TWO_STRATA), update(strata=[], rings=[1]))
    assert [r.assets for r in plan.rings] == [("h2",), ("h1",), ("v1",)]
    assert [r.why for r in plan.rings] == [
        None,
        "ring 1 added: the steps of rings end at 1 of 3 targets; the other 2 go in this ring and any after it",
        "ring 2 added: 1 asset deferred from ring 1 to keep redundancy of epr (needs 1 of 2)",
    ]
    assert len(plan.notes) == 1  # the step 1: the canary already did it


def test_sample_groups_are_every_group_with_a_target(sample: tuple[Estate, EstateGraph]) -> None:
    """Plan.groups lists each distinct any-group with a target among its members, by ids, with all members."""
    estate, graph = sample
    up = sample_update("windows-2024-11")
    plan = plan_rings(graph, up)
    targets = {a for ring in plan.rings for a in ring.assets}
    expected: dict[tuple[frozenset[str], int], set[str]] = {}
    for owner, k, members in all_groups(estate):
        if members & targets:
            expected.setdefault((frozenset(members), k), set()).add(owner)
    assert {(frozenset(g.members), g.k): set(g.owners) for g in plan.groups} == expected
    assert len(plan.groups) == len(expected)
    assert all(list(g.members) == sorted(g.members) for g in plan.groups)


# ------------------------------------------------------------------------------------------ holds


@pytest.fixture(scope="module")
def held() -> tuple[Hold, ...]:
    return read_with(examples_dir() / "holds.yaml", parse_holds_text)


def test_a_held_release_is_refused_without_justification(held: tuple[Hold, ...]) -> None:
    esxi = sample_update("esxi-7u3")
    for justification in (None, "", "   "):
        with pytest.raises(ConflictError) as caught:
            check_holds(esxi, held, justification)
        message = str(caught.value)
        assert "vmware/esxi@7.0.3 is on hold" in message
        assert "VMware withdrew ESXi 7.0 Update 3" in message
        assert "https://kb.vmware.com/s/article/86287" in message
        assert "--override-hold" in message


def test_a_held_release_is_planned_with_a_recorded_justification(
    held: tuple[Hold, ...], sample: tuple[Estate, EstateGraph]
) -> None:
    esxi = sample_update("esxi-7u3")
    override = check_holds(esxi, held, "  CAB-4411: vendor hotfix VIB applied on every host  ")
    assert override == HoldOverride(
        release="vmware/esxi@7.0.3",
        reason=next(h.reason for h in held if h.release == "vmware/esxi@7.0.3"),
        justification="CAB-4411: vendor hotfix VIB applied on every host",
    )
    _, graph = sample
    plan = plan_rings(graph, esxi, hold_override=override)
    assert plan.hold_override == override
    assert plan.rings == plan_rings(graph, esxi).rings  # the override changes what is recorded, not the rings


def test_releases_not_on_hold_pass(held: tuple[Hold, ...]) -> None:
    assert check_holds(sample_update("falcon-7.16"), held) is None
    assert check_holds(sample_update("windows-2024-11"), held, "not needed") is None


def test_a_hold_on_a_product_holds_every_version() -> None:
    held = parse_holds_text(
        "apiVersion: ringfence/v1\nholds:\n  - {release: acme/agent, reason: Recalled by the vendor.}\n", "h.yaml"
    )
    with pytest.raises(ConflictError, match="Recalled by the vendor"):
        check_holds(update(), held)
    other = Update.model_validate({"id": "x", "product": "acme/agentx", "version": "2.0"})
    assert check_holds(other, held) is None
