"""The ring planner held to "What a plan must hold" (update-and-drill-format.md), on random estates and updates.

Everything a rule needs is recomputed here from the estate *document* (the plain dicts a YAML file loads as),
sharing no code with the planner: targets and ``where`` members by a small selector evaluator, impact tiers
by a naive fixpoint over the document's requirements, strata straight from the asset fields. The rules, in
the form checked:

1. **Partition** — the rings' assets are exactly the assets the update's selector matches, each once; no
   ring is empty. An update that matches nothing is an InputError.
2. **Coverage** — every stratum among the targets has an asset in ring 0 (and ring 0 holds one per stratum).
3. **Least critical canaries** — in each stratum, ring 0 holds an asset of the highest tier among that
   stratum's targets.
4. **Redundancy kept** — for every ``any: K`` group of n members, each ring holds at most n − K members,
   except groups listed under ``warnings``: ``no-slack`` ones (n − K ≤ 0) in any ring, ``coverage-conflict``
   ones in ring 0 only. Every group with n − K ≤ 0 that has a target member IS listed as ``no-slack``; every
   warning names a real group (same members and K, its owners among the warning's owners) with a target
   member; a coverage conflict really overfills ring 0 — and only when no choice of least-critical
   canaries (one per stratum) could have avoided it.
5. **Criticality last**, after ring 0: if a is in ring i ≥ 1 and b in a later ring j > i although
   tier(a) < tier(b) (a is more critical yet goes first), then b was deferred by redundancy in ring i: for
   one of b's groups with n − K > 0, ring i already holds n − K of its members. More generally no target
   waits without a reason: anything in a later ring than i was either blocked in ring i that way, or ring i
   was full (it took all the step of ``rings`` allowed it).

Ring sizes: no ring after the canary crosses a cumulative step of ``rings``; when nothing is blocked anywhere,
the sizes are exactly the differences of the steps. And the same input always gives the same plan.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ringfence.errors import InputError
from ringfence.estate import parse_estate_document
from ringfence.graph import compile_estate
from ringfence.planner import Plan, plan_rings
from ringfence.update import Update

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PRODUCT = "acme/agent"
OTHER_PRODUCT = "globex/db"
KINDS = ("host", "vm", "endpoint")
SITES = (None, "north", "south")
OSES = (None, "win", "linux")
MODELS = (None, "r750", "dl380")
VERSIONS = ("1.0", "2.0", "3.0")
STRATA_KEYS = ("kind", "site", "attrs.os", "attrs.model")
WHERE_TERMS = (
    "kind=host",
    "kind=host|vm",
    "kind!=endpoint",
    "site=north",
    "site=north|south",
    "site!=south",
    "attrs.os=win",
    "attrs.os!=linux",
    "attrs.model=r750|dl380",
    f"software={PRODUCT}",
    f"software={PRODUCT}@2.0",
    f"software={OTHER_PRODUCT}",
)
TARGET_SELECTORS = (
    None,  # the default: software=<product>
    None,
    f"software={PRODUCT}@2.0",
    f"software={PRODUCT},kind!=endpoint",
    f"software={PRODUCT}|{OTHER_PRODUCT}",
    f"software={PRODUCT},site=north|south",
    "kind=host|vm",
)
# Shares whose exact value a float also holds, so the expected ceiling is not at the mercy of rounding.
SHARES = ("5%", "10%", "12.5%", "25%", "50%", "100%")
NO_SERVICE_TIER = 5


# ------------------------------------------------------------------------------------- strategies


@st.composite
def where_selectors(draw: st.DrawFn) -> str:
    return ",".join(draw(st.lists(st.sampled_from(WHERE_TERMS), min_size=1, max_size=2, unique=True)))


@st.composite
def requirement_lists(
    draw: st.DrawFn, owner: str, asset_ids: list[str], node_ids: list[str], *, hard: int, groups: int
) -> list[Any]:
    """Hard requirements and any-groups (``of`` lists, K anywhere from 1 to n, and ``where`` selectors)."""
    others = [i for i in node_ids if i != owner]
    requires: list[Any] = draw(st.lists(st.sampled_from(others), max_size=hard, unique=True)) if others else []
    for _ in range(draw(st.integers(0, groups))):
        if draw(st.integers(0, 2)) > 0:
            # Mostly assets (so groups meet the targets), now and then any node.
            pool = [i for i in (asset_ids if draw(st.integers(0, 3)) else node_ids) if i != owner]
            if not pool:
                continue
            members = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=min(6, len(pool)), unique=True))
            group: dict[str, Any] = {"of": members, "any": draw(st.integers(1, len(members)))}
        else:
            group = {"where": draw(where_selectors()), "any": draw(st.integers(1, 4))}
        if group["any"] == 1 and draw(st.booleans()):
            del group["any"]  # K defaults to 1
        requires.append(group)
    return requires


@st.composite
def estate_documents(draw: st.DrawFn, *, with_groups: bool = True) -> dict[str, Any]:
    n_assets = draw(st.integers(1, 22))
    n_services = draw(st.integers(0, 6))
    # Ids unrelated to estate order, so "sorted by id" and "in estate order" disagree.
    asset_ids = [f"a{i:02d}" for i in draw(st.permutations(range(n_assets)))]
    service_ids = [f"s{i}" for i in range(n_services)]
    node_ids = service_ids + asset_ids
    services = []
    for sid in service_ids:
        service: dict[str, Any] = {"id": sid, "tier": draw(st.integers(1, 4))}
        requires = draw(requirement_lists(sid, asset_ids, node_ids, hard=2, groups=3 if with_groups else 0))
        if requires:
            service["requires"] = requires
        services.append(service)
    assets = []
    for aid in asset_ids:
        asset: dict[str, Any] = {"id": aid, "kind": draw(st.sampled_from(KINDS))}
        site = draw(st.sampled_from(SITES))
        if site is not None:
            asset["site"] = site
        attrs = {
            key: value
            for key, value in (("os", draw(st.sampled_from(OSES))), ("model", draw(st.sampled_from(MODELS))))
            if value is not None
        }
        if attrs:
            asset["attrs"] = attrs
        software = []
        if draw(st.integers(0, 3)) > 0:
            software.append({"product": PRODUCT, "version": draw(st.sampled_from(VERSIONS))})
        if draw(st.integers(0, 3)) == 0:
            software.append({"product": OTHER_PRODUCT, "version": "1"})
        if software:
            asset["software"] = software
        if draw(st.integers(0, 2)) == 0:
            requires = draw(requirement_lists(aid, asset_ids, node_ids, hard=1, groups=1 if with_groups else 0))
            if requires:
                asset["requires"] = requires
        assets.append(asset)
    return {"apiVersion": "ringfence/v1", "estate": "prop", "services": services, "assets": assets}


@st.composite
def update_documents(draw: st.DrawFn) -> dict[str, Any]:
    steps = draw(st.lists(st.one_of(st.integers(1, 12), st.sampled_from(SHARES)), min_size=1, max_size=4))
    update: dict[str, Any] = {
        "id": "upd",
        "product": PRODUCT,
        "version": "9.0",
        "strata": draw(st.lists(st.sampled_from(STRATA_KEYS), max_size=4, unique=True)),
        "rings": steps,
        "bake": "30m",
    }
    targets = draw(st.sampled_from(TARGET_SELECTORS))
    if targets is not None:
        update["targets"] = targets
    return update


# ------------------------------------------------------------------ the estate, read independently


@dataclass(frozen=True)
class Group:
    owner: str
    k: int
    members: frozenset[str]

    @property
    def slack(self) -> int:
        """n − K: how many members may be down at once."""
        return len(self.members) - self.k


def field_value(asset: Mapping[str, Any], key: str) -> str | None:
    value = asset.get(key) if key in ("id", "kind", "site") else asset.get("attrs", {}).get(key.removeprefix("attrs."))
    assert value is None or isinstance(value, str), (key, value)
    return value


def runs(asset: Mapping[str, Any], ref: str) -> bool:
    product, _, version = ref.partition("@")
    return any(
        item["product"] == product and (not version or item["version"] == version) for item in asset.get("software", ())
    )


def matches(selector: str, asset: Mapping[str, Any]) -> bool:
    """Every term holds: ``key=v1|v2`` (one of) or ``key!=v1|v2`` (none of)."""
    for term in selector.split(","):
        negated = "!=" in term
        key, value = term.split("!=" if negated else "=")
        alternatives = value.split("|")
        hit = (
            any(runs(asset, v) for v in alternatives) if key == "software" else field_value(asset, key) in alternatives
        )
        if hit == negated:
            return False
    return True


@dataclass(frozen=True)
class Reading:
    """What the rules need, derived from the document alone."""

    tier_of_service: dict[str, int]
    hard: dict[str, frozenset[str]]
    groups_of_owner: dict[str, tuple[Group, ...]]
    groups: tuple[Group, ...]
    assets: dict[str, Mapping[str, Any]]
    asset_order: dict[str, int]

    def down_after(self, failed: Iterable[str]) -> set[str]:
        """The least set holding ``failed`` and closed under the rules: apply them all until nothing changes."""
        down = set(failed)
        changed = True
        while changed:
            changed = False
            for node in self.hard:
                if node in down:
                    continue
                if self.hard[node] & down or any(len(g.members - down) < g.k for g in self.groups_of_owner[node]):
                    down.add(node)
                    changed = True
        return down

    def impact_tier(self, asset_id: str) -> int:
        down = self.down_after({asset_id})
        return min((t for s, t in self.tier_of_service.items() if s in down), default=NO_SERVICE_TIER)

    def targets(self, selector: str) -> list[str]:
        return [a for a in self.assets if matches(selector, self.assets[a])]

    def stratum(self, asset_id: str, keys: Iterable[str]) -> tuple[str | None, ...]:
        return tuple(field_value(self.assets[asset_id], key) for key in keys)

    def groups_with(self, asset_id: str) -> list[Group]:
        return [g for g in self.groups if asset_id in g.members]


def read(doc: Mapping[str, Any]) -> Reading:
    assets = {a["id"]: a for a in doc["assets"]}
    hard: dict[str, frozenset[str]] = {}
    groups_of_owner: dict[str, tuple[Group, ...]] = {}
    for node in [*doc["services"], *doc["assets"]]:
        requires = node.get("requires", [])
        hard[node["id"]] = frozenset(r for r in requires if isinstance(r, str))
        found = []
        for r in requires:
            if isinstance(r, dict):
                if "of" in r:
                    members = frozenset(r["of"])
                else:  # a where-group never counts its own owner
                    members = frozenset(a for a in assets if a != node["id"] and matches(r["where"], assets[a]))
                found.append(Group(node["id"], r.get("any", 1), members))
        groups_of_owner[node["id"]] = tuple(found)
    return Reading(
        tier_of_service={s["id"]: s["tier"] for s in doc["services"]},
        hard=hard,
        groups_of_owner=groups_of_owner,
        groups=tuple(g for gs in groups_of_owner.values() for g in gs),
        assets=assets,
        asset_order={a: i for i, a in enumerate(assets)},
    )


def step_boundaries(steps: Iterable[int | str], n: int) -> list[int]:
    """Cumulative targets done after each step (a count, or the ceiling of a share of n), capped at n, never
    going back (a step smaller than one before it is already done), ending at n."""
    ends = []
    reached = 0
    for step in steps:
        wanted = math.ceil(Fraction(step.removesuffix("%")) * n / 100) if isinstance(step, str) else step
        end = min(n, wanted)
        reached = max(reached, end)
        ends.append(reached)
    return sorted({*ends, n})


def is_blocked(b: str, ring: set[str], reading: Reading) -> bool:
    """``b`` cannot join ``ring`` without it holding more than n − K members of one of b's groups."""
    return any(g.slack > 0 and len(g.members & ring) >= g.slack for g in reading.groups_with(b))


def canary_can_avoid_overfill(strata: list[list[str]], groups: list[Group], budget: int = 20_000) -> bool | None:
    """Is there a choice of one candidate per stratum that keeps every group with slack within it?

    Depth-first with pruning; None when the search exceeds ``budget`` steps (the case is then not judged).
    """
    load: dict[int, int] = {}
    member_of = {a: [i for i, g in enumerate(groups) if a in g.members] for s in strata for a in s}
    steps = 0

    def search(depth: int) -> bool | None:
        nonlocal steps
        if depth == len(strata):
            return True
        for candidate in strata[depth]:
            steps += 1
            if steps > budget:
                return None
            mine = member_of[candidate]
            if all(load.get(g, 0) < groups[g].slack for g in mine):
                for g in mine:
                    load[g] = load.get(g, 0) + 1
                found = search(depth + 1)
                for g in mine:
                    load[g] -= 1
                if found is None or found:
                    return found
        return False

    return search(0)


# ------------------------------------------------------------------------------------------ checks


def planned(doc: dict[str, Any], update_doc: dict[str, Any]) -> tuple[Update, Plan | None]:
    update = Update.model_validate(update_doc)
    graph = compile_estate(parse_estate_document(doc, source="<hypothesis>"))
    reading = read(doc)
    if not reading.targets(update.target_selector):
        with pytest.raises(InputError) as caught:
            plan_rings(graph, update)
        assert caught.value.problems[0].path == ("update", "targets")
        event("no target: InputError")
        return update, None
    return update, plan_rings(graph, update)


def check_plan(doc: dict[str, Any], update: Update, plan: Plan) -> None:
    reading = read(doc)
    targets = reading.targets(update.target_selector)
    rings = [list(r.assets) for r in plan.rings]
    ring_sets = [set(r) for r in rings]
    ring_of = {a: i for i, r in enumerate(rings) for a in r}
    tier = {a: reading.impact_tier(a) for a in targets}
    keys = tuple(update.strata)
    stratum = {a: reading.stratum(a, keys) for a in targets}

    # The plan describes itself truthfully: indices, names, sorted assets, aligned tiers and strata.
    assert [r.index for r in plan.rings] == list(range(len(plan.rings)))
    assert [r.name for r in plan.rings] == ["canary"] + [f"ring {i}" for i in range(1, len(plan.rings))]
    assert plan.strata_keys == keys
    assert plan.targets == len(targets)
    for ring in plan.rings:
        assert list(ring.assets) == sorted(ring.assets)
        assert list(ring.tiers) == [tier[a] for a in ring.assets]
        assert [plan.strata[s] for s in ring.strata] == [stratum[a] for a in ring.assets]
        assert ring.bake == update.bake

    # Rule 1: partition.
    assert sorted(a for r in rings for a in r) == sorted(targets)
    assert all(rings), "an empty ring"

    # Rules 2 and 3: one canary per stratum, and of that stratum's highest (least critical) tier.
    by_stratum: dict[tuple[str | None, ...], list[str]] = {}
    for a in targets:
        by_stratum.setdefault(stratum[a], []).append(a)
    canary = rings[0]
    assert {stratum[a] for a in canary} == set(by_stratum)
    assert len(canary) == len(by_stratum), "the canary holds one asset per stratum"
    for s, members in by_stratum.items():
        least_critical = max(tier[a] for a in members)
        assert any(stratum[a] == s and tier[a] == least_critical for a in canary), (s, least_critical)

    # Rule 4: redundancy kept, exemptions exactly as warned.
    with_target = [g for g in reading.groups if g.members & set(targets)]
    no_slack = {(frozenset(w.members), w.k) for w in plan.warnings if w.kind == "no-slack"}
    conflicts = {(frozenset(w.members), w.k) for w in plan.warnings if w.kind == "coverage-conflict"}
    for w in plan.warnings:
        assert w.kind in ("no-slack", "coverage-conflict"), w
        same = [g for g in with_target if g.members == frozenset(w.members) and g.k == w.k]
        assert same, f"warning about no group with a target member: {w}"
        assert set(w.owners) <= {g.owner for g in same}, w
        assert w.message
        if w.kind == "no-slack":
            assert same[0].slack <= 0, w
        else:
            assert same[0].slack > 0, w
            assert len(same[0].members & ring_sets[0]) > same[0].slack, f"conflict not overfilling ring 0: {w}"
    for g in with_target:
        key = (g.members, g.k)
        if g.slack <= 0:
            listed = [w for w in plan.warnings if w.kind == "no-slack" and (frozenset(w.members), w.k) == key]
            assert listed, f"group {g} has no slack but is not warned about"
            assert g.owner in listed[0].owners
            event("no-slack group")
        for i, held in enumerate(ring_sets):
            if len(g.members & held) > g.slack:
                assert key in no_slack or (i == 0 and key in conflicts), (
                    f"ring {i} holds {sorted(g.members & held)}, more than {g.slack} of {g}"
                )

    # Rule 5, and no asset waits without a reason; rings never cross a step of `rings`.
    boundaries = [b for b in step_boundaries(update.rings, len(targets)) if b > len(canary)]
    done = len(canary)
    full = []
    for members in rings[1:]:
        allowance = next(b for b in boundaries if b > done) - done
        assert len(members) <= allowance, f"a ring of {len(members)} crosses a step ({allowance} left in it)"
        full.append(len(members) == allowance)
        done += len(members)
    anything_blocked = False
    for i in range(1, len(rings)):
        later = [b for r in rings[i + 1 :] for b in r]
        for b in later:
            if is_blocked(b, ring_sets[i], reading):
                anything_blocked = True
                continue
            assert full[i - 1], f"{b} waits past ring {i}, which had room and no group of b's was full there"
            worse = [a for a in rings[i] if tier[a] < tier[b]]
            assert not worse, f"ring {i} holds {worse}, more critical than {b} (tier {tier[b]}), which waits"
    if anything_blocked:
        event("an asset deferred by redundancy")
    if any(is_blocked(b, ring_sets[i], reading) for i in range(1, len(rings)) for b in targets if ring_of[b] > i):
        return
    # Nothing deferred: the rings are exactly the steps.
    expected = [b - a for a, b in itertools.pairwise([len(canary), *boundaries])]
    assert [len(r) for r in rings[1:]] == expected


# ------------------------------------------------------------------------------------------- tests


@PROPERTY
@given(doc=estate_documents(), update_doc=update_documents())
def test_every_plan_holds_the_rules(doc: dict[str, Any], update_doc: dict[str, Any]) -> None:
    update, plan = planned(doc, update_doc)
    if plan is not None:
        event(f"warnings: {sorted({w.kind for w in plan.warnings})}")
        check_plan(doc, update, plan)


@settings(PROPERTY, max_examples=50)
@given(doc=estate_documents(with_groups=False), update_doc=update_documents())
def test_without_groups_rings_follow_the_steps(doc: dict[str, Any], update_doc: dict[str, Any]) -> None:
    """No any-group, nothing to defer: after the canary, ring sizes are exactly the cumulative steps."""
    update, plan = planned(doc, update_doc)
    if plan is None:
        return
    assert plan.warnings == ()
    check_plan(doc, update, plan)
    n = plan.targets
    boundaries = [b for b in step_boundaries(update.rings, n) if b > plan.rings[0].size]
    cumulative = list(itertools.accumulate(r.size for r in plan.rings))
    assert cumulative == [plan.rings[0].size, *boundaries]


@settings(PROPERTY, max_examples=100)
@given(doc=estate_documents(), update_doc=update_documents())
def test_coverage_conflicts_only_when_unavoidable(doc: dict[str, Any], update_doc: dict[str, Any]) -> None:
    """A coverage conflict overfills a group in ring 0; that is only allowed when every choice of one
    least-critical canary per stratum would overfill some group with slack."""
    update, plan = planned(doc, update_doc)
    if plan is None or not any(w.kind == "coverage-conflict" for w in plan.warnings):
        return
    reading = read(doc)
    targets = reading.targets(update.target_selector)
    tier = {a: reading.impact_tier(a) for a in targets}
    by_stratum: dict[tuple[str | None, ...], list[str]] = {}
    for a in targets:
        by_stratum.setdefault(reading.stratum(a, update.strata), []).append(a)
    candidates = [[a for a in ms if tier[a] == max(tier[m] for m in ms)] for ms in by_stratum.values()]
    groups = [g for g in reading.groups if g.slack > 0]
    avoidable = canary_can_avoid_overfill(candidates, groups)
    event(f"coverage conflict, avoidable: {avoidable}")
    assert avoidable is not True, (
        f"plan warns of a coverage conflict {[w.members for w in plan.warnings if w.kind == 'coverage-conflict']}, "
        f"but one canary per stratum from {candidates} fits every group"
    )


@settings(PROPERTY, max_examples=40)
@given(doc=estate_documents(), update_doc=update_documents())
def test_same_input_same_plan(doc: dict[str, Any], update_doc: dict[str, Any]) -> None:
    _, first = planned(doc, update_doc)
    _, second = planned(doc, update_doc)
    assert first == second
