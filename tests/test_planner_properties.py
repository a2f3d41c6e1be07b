"""The ring planner held to "What a plan must hold" (update-and-drill-format.md), on random estates and updates.

Everything a rule needs is recomputed here from the estate *document* (the plain dicts a YAML file loads as),
sharing no code with the planner: targets and ``where`` members by a small selector evaluator, impact tiers
by a naive fixpoint over the document's requirements, strata straight from the asset fields. The rules, in
the form checked (C is the number of leading rings marked ``canary``: the canary phase):

1. **Partition** — the rings' assets are exactly the assets the update's selector matches, each once; no
   ring is empty. An update that matches nothing is an InputError.
2. **Coverage** — the canary rings come first (rings 0 .. C−1, and no other ring is marked canary) and
   together hold every stratum among the targets, one asset per stratum.
3. **Least critical canaries** — in each stratum, the earliest canary ring holding the stratum holds an asset
   of the highest tier among that stratum's targets.
4. **Redundancy kept, canaries included** — for every ``any: K`` group of n members with n − K > 0, NO ring
   (canary waves included) holds more than n − K members. The only warnings are ``no-slack`` ones, exactly
   the groups with n − K ≤ 0 and a target member. A stratum waits for canary wave w only when each of its
   least-critical assets would overfill a group in every earlier wave (the waves are filled greedily).
5. **Criticality last**, after the canary phase: if a is in ring i ≥ C and b in a later ring although
   tier(a) < tier(b), then b was deferred by redundancy in ring i. More generally no target waits without a
   reason: anything in a later ring than i was either blocked in ring i, or ring i was full (it took all
   the step of ``rings`` allowed it).

Also: ring names (``canary``, ``canary wave 2``…, ``ring N``); a ``why`` exactly on the rings the planner
added (canary waves beyond the first, rings for deferred targets, rings past the last step); a note for
each step of ``rings`` that adds no asset; ``Plan.groups`` is every distinct group with a target member.
Ring sizes never cross a cumulative step of ``rings``; when nothing is blocked anywhere they are exactly the
differences of the steps. And the same input always gives the same plan.

Two families of estates: random ones (``estate_documents``), and ones built to make coverage and redundancy
collide (``collision_documents``): replicas each alone in their own stratum, overlapping groups sharing
members, groups of K = n − 1, where-groups and of-lists, several groups per asset, and tiers drawn so that
the least-critical asset of a stratum is exactly the replica a group cannot spare.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, currently_in_test_context, given, settings, target
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from ringfence.core.errors import InputError
from ringfence.core.estate import parse_estate_document
from ringfence.core.graph import compile_estate
from ringfence.core.planner import Plan, plan_rings
from ringfence.core.update import Update, parse_update_text

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

# Collisions: replica sets by role; each replica mostly has a model no other asset has (alone in its stratum).
ROLES = ("db", "app", "dc", "pacs")
SHARED_MODELS = ("shared-1", "shared-2")
COLLISION_STRATA = (
    ["attrs.model"],
    ["kind", "attrs.model"],
    ["kind", "attrs.os", "attrs.model", "site"],
    ["site", "attrs.model"],
    ["kind"],
)


def event(label: str) -> None:
    """Count ``label`` in hypothesis' statistics; the data-driven cases call the checker outside a test run."""
    if currently_in_test_context():
        hypothesis_event(label)


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
def ring_steps(draw: st.DrawFn) -> list[int | str]:
    """A valid ``rings``: counts growing among counts, shares among shares, the two kinds interleaved at will
    (so a step can still fall behind one of the other kind: those add no ring and must be noted)."""
    counts = sorted(draw(st.lists(st.integers(1, 12), max_size=3, unique=True)))
    shares = sorted(draw(st.lists(st.sampled_from(SHARES), max_size=3, unique=True)), key=Fraction_of)
    if not counts and not shares:
        shares = [draw(st.sampled_from(SHARES))]
    kinds = draw(st.permutations([True] * len(shares) + [False] * len(counts)))
    share_steps, count_steps = iter(shares), iter(counts)
    return [next(share_steps) if is_share else next(count_steps) for is_share in kinds]


def Fraction_of(share: str) -> Fraction:  # noqa: N802 - reads as the value it returns
    return Fraction(share.removesuffix("%"))


@st.composite
def update_documents(draw: st.DrawFn, strata: Iterable[list[str]] | None = None) -> dict[str, Any]:
    update: dict[str, Any] = {
        "id": "upd",
        "product": PRODUCT,
        "version": "9.0",
        "strata": (
            draw(st.lists(st.sampled_from(STRATA_KEYS), max_size=4, unique=True))
            if strata is None
            else draw(st.sampled_from(list(strata)))
        ),
        "rings": draw(ring_steps()),
        "bake": "30m",
    }
    targets = draw(st.sampled_from(TARGET_SELECTORS))
    if targets is not None:
        update["targets"] = targets
    return update


@st.composite
def collision_documents(draw: st.DrawFn) -> dict[str, Any]:
    """An estate built to make coverage and redundancy collide.

    Replica sets (2 to 5 assets of one role) whose members each mostly sit alone in their own stratum (a model
    nobody else has), so that each is the least critical of its stratum and the canary wants them all at
    once; groups over them of K = n − 1 most often (one spare), of-lists or ``where: attrs.role=…``;
    overlapping groups that share members across sets; replicas that own groups over other sets (several
    groups per asset); and services that hard-require assets, so tiers fall where they hurt most.
    """
    assets: list[dict[str, Any]] = []
    sets: list[list[str]] = []
    for role in ROLES[: draw(st.integers(1, len(ROLES)))]:
        members = []
        for i in range(1, draw(st.integers(2, 5)) + 1):
            asset_id = f"{role}-{i}"
            alone = draw(st.integers(0, 4)) > 0
            asset: dict[str, Any] = {
                "id": asset_id,
                "kind": draw(st.sampled_from(("vm", "host"))),
                "site": draw(st.sampled_from(("city", "north"))),
                "attrs": {
                    "role": role,
                    "os": "linux",
                    "model": f"solo-{asset_id}" if alone else draw(st.sampled_from(SHARED_MODELS)),
                },
            }
            if draw(st.integers(0, 6)) > 0:  # now and then a replica the update does not target
                asset["software"] = [{"product": PRODUCT, "version": "1.0"}]
            assets.append(asset)
            members.append(asset_id)
        sets.append(members)
    for i in range(draw(st.integers(0, 5))):
        assets.append(
            {
                "id": f"ws-{i}",
                "kind": "endpoint",
                "site": draw(st.sampled_from(("city", "north"))),
                "attrs": {"os": "win", "model": draw(st.sampled_from(SHARED_MODELS))},
                "software": [{"product": PRODUCT, "version": "1.0"}],
            }
        )
    replicas = [a for members in sets for a in members]
    every_id = [a["id"] for a in assets]

    def spare_one_mostly(n: int) -> int:
        """K for a group of n: n − 1 (one spare) most often, else anything from 1 to n (n: no slack)."""
        return max(1, n - 1) if draw(st.integers(0, 2)) > 0 else draw(st.integers(1, n))

    services: list[dict[str, Any]] = []
    for members in sets:
        role = members[0].rsplit("-", 1)[0]
        group: dict[str, Any]
        if draw(st.booleans()):
            group = {"where": f"attrs.role={role}", "any": spare_one_mostly(len(members))}
        else:
            of = draw(st.lists(st.sampled_from(members), min_size=1, max_size=len(members), unique=True))
            group = {"of": of, "any": spare_one_mostly(len(of))}
        services.append({"id": f"svc-{role}", "tier": draw(st.integers(1, 4)), "requires": [group]})
    for i in range(draw(st.integers(0, 3))):  # overlapping groups, sharing members across the sets
        of = draw(st.lists(st.sampled_from(replicas), min_size=2, max_size=min(6, len(replicas)), unique=True))
        services.append(
            {
                "id": f"overlap-{i}",
                "tier": draw(st.integers(1, 4)),
                "requires": [{"of": of, "any": spare_one_mostly(len(of))}],
            }
        )
    for asset in assets:  # replicas that need others: several groups on one asset, owner left out of where
        if asset["id"] in replicas and draw(st.integers(0, 3)) == 0:
            role = draw(st.sampled_from([m[0].rsplit("-", 1)[0] for m in sets]))
            asset["requires"] = [{"where": f"attrs.role={role}", "any": 1}]
    for i in range(draw(st.integers(0, 3))):  # tiers: a service that cannot lose this one asset
        services.append(
            {"id": f"hard-{i}", "tier": draw(st.integers(1, 4)), "requires": [draw(st.sampled_from(every_id))]}
        )
    return {"apiVersion": "ringfence/v1", "estate": "collide", "services": services, "assets": assets}


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


def step_end(step: int | str, n: int) -> int:
    """Targets done once a step is through: a count, or the ceiling of a share of n, capped at n."""
    wanted = math.ceil(Fraction_of(step) * n / 100) if isinstance(step, str) else step
    return min(n, wanted)


def step_boundaries(steps: Iterable[int | str], n: int) -> list[int]:
    """Cumulative targets done after each step, never going back (a step behind one before it is already
    done), ending at n."""
    ends = []
    reached = 0
    for step in steps:
        reached = max(reached, step_end(step, n))
        ends.append(reached)
    return sorted({*ends, n})


def is_blocked(b: str, ring: set[str], reading: Reading) -> bool:
    """``b`` cannot join ``ring`` without it holding more than n − K members of one of b's groups."""
    return any(g.slack > 0 and len(g.members & ring) >= g.slack for g in reading.groups_with(b))


def one_ring_could_cover(strata: list[list[str]], groups: list[Group], budget: int = 20_000) -> bool | None:
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
    n = len(targets)
    rings = [list(r.assets) for r in plan.rings]
    ring_sets = [set(r) for r in rings]
    tier = {a: reading.impact_tier(a) for a in targets}
    keys = tuple(update.strata)
    stratum = {a: reading.stratum(a, keys) for a in targets}
    by_stratum: dict[tuple[str | None, ...], list[str]] = {}
    for a in targets:
        by_stratum.setdefault(stratum[a], []).append(a)
    least_critical = {s: max(tier[a] for a in members) for s, members in by_stratum.items()}
    candidates = {s: [a for a in members if tier[a] == least_critical[s]] for s, members in by_stratum.items()}

    # The canary phase is a prefix of the rings, named canary, canary wave 2, …; then ring N for index N.
    c = plan.canary_rings
    assert c >= 1, "no canary ring"
    assert [r.canary for r in plan.rings] == [True] * c + [False] * (len(rings) - c)
    assert [r.name for r in plan.rings] == (
        ["canary"] + [f"canary wave {w + 1}" for w in range(1, c)] + [f"ring {i}" for i in range(c, len(rings))]
    )

    # The plan describes itself truthfully: indices, sorted assets, aligned tiers and strata.
    assert [r.index for r in plan.rings] == list(range(len(plan.rings)))
    assert plan.strata_keys == keys
    assert plan.targets == n
    for ring in plan.rings:
        assert list(ring.assets) == sorted(ring.assets)
        assert list(ring.tiers) == [tier[a] for a in ring.assets]
        assert [plan.strata[s] for s in ring.strata] == [stratum[a] for a in ring.assets]
        assert ring.bake == update.bake

    # Rule 1: partition.
    assert sorted(a for r in rings for a in r) == sorted(targets)
    assert all(rings), "an empty ring"

    # Rule 2: the canary rings together hold every stratum, one asset each.
    in_canary = [a for r in rings[:c] for a in r]
    assert {stratum[a] for a in in_canary} == set(by_stratum)
    assert len(in_canary) == len(by_stratum), "the canary phase holds one asset per stratum"
    # Rule 3: the earliest canary ring holding a stratum holds one of its least critical assets.
    for s in by_stratum:
        earliest = next(i for i in range(c) if any(stratum[a] == s for a in rings[i]))
        assert any(stratum[a] == s and tier[a] == least_critical[s] for a in rings[earliest]), (s, earliest)
    # Waves are few: a stratum waits for wave w only if none of its candidates fits any earlier wave.
    for w in range(1, c):
        for a in rings[w]:
            for v in range(w):
                fits = [x for x in candidates[stratum[a]] if not is_blocked(x, ring_sets[v], reading)]
                assert not fits, f"{a} waits for canary wave {w + 1}, but {fits} of its stratum fit ring {v}"

    # Rule 4: redundancy kept in every ring, canary waves included; the only warnings are groups with no slack.
    with_target = [g for g in reading.groups if g.members & set(targets)]
    for w in plan.warnings:
        assert w.kind == "no-slack", w
        same = [g for g in with_target if g.members == frozenset(w.members) and g.k == w.k]
        assert same, f"warning about no group with a target member: {w}"
        assert set(w.owners) == {g.owner for g in same}, w
        assert same[0].slack <= 0, w
        assert w.message
    warned = {(frozenset(w.members), w.k) for w in plan.warnings}
    assert len(warned) == len(plan.warnings), "a group warned about twice"
    for g in with_target:
        if g.slack <= 0:
            assert (g.members, g.k) in warned, f"group {g} has no slack but is not warned about"
            event("no-slack group")
            continue
        for i, held in enumerate(ring_sets):
            assert len(g.members & held) <= g.slack, (
                f"{plan.rings[i].name} holds {sorted(g.members & held)}, more than {g.slack} of {g}"
            )

    # Plan.groups: every distinct group with a target member, owners merged, all members listed and sorted.
    expected_groups: dict[tuple[frozenset[str], int], set[str]] = {}
    for g in with_target:
        expected_groups.setdefault((g.members, g.k), set()).add(g.owner)
    assert len(plan.groups) == len(expected_groups)
    for pg in plan.groups:
        assert list(pg.members) == sorted(pg.members)
        assert list(pg.owners) == sorted(pg.owners)
        assert set(pg.owners) == expected_groups[(frozenset(pg.members), pg.k)], pg
        assert pg.capacity == len(pg.members) - pg.k

    # Rule 5, and no asset waits without a reason; rings never cross a step of `rings`.
    canary_total = len(in_canary)
    boundaries = [b for b in step_boundaries(update.rings, n) if b > canary_total]
    done = canary_total
    full = []
    for members in rings[c:]:
        allowance = next(b for b in boundaries if b > done) - done
        assert len(members) <= allowance, f"a ring of {len(members)} crosses a step ({allowance} left in it)"
        full.append(len(members) == allowance)
        done += len(members)
    anything_blocked = False
    for i in range(c, len(rings)):
        for b in (b for r in rings[i + 1 :] for b in r):
            if is_blocked(b, ring_sets[i], reading):
                anything_blocked = True
                continue
            assert full[i - c], f"{b} waits past ring {i}, which had room and no group of b's was full there"
            worse = [a for a in rings[i] if tier[a] < tier[b]]
            assert not worse, f"ring {i} holds {worse}, more critical than {b} (tier {tier[b]}), which waits"

    # A why on exactly the rings the planner added; a note for each step that adds no ring.
    assert plan.rings[0].why is None
    for w in range(1, c):
        why = plan.rings[w].why
        assert why is not None
        assert why.startswith(f"canary wave {w + 1}: "), why
        assert any(a in why for a in rings[w]), why
    # What the steps reach, in order: a step behind one before it reaches nothing new.
    real_ends = set(itertools.accumulate((step_end(step, n) for step in update.rings), max))
    done = canary_total
    for i in range(c, len(rings)):
        heading_for = next(b for b in sorted(real_ends | {n}) if b > done)
        from_the_steps = (done == canary_total or done in real_ends) and heading_for in real_ends
        assert (plan.rings[i].why is None) == from_the_steps, (i, plan.rings[i].why, done, sorted(real_ends))
        if plan.rings[i].why is not None:
            assert plan.rings[i].why.startswith(f"ring {i} added: "), plan.rings[i].why
            event("a ring added after the canary")
        done += len(rings[i])
    idle = []
    reached = canary_total
    for j, step in enumerate(update.rings):
        if step_end(step, n) <= reached:
            idle.append(j)
        reached = max(reached, step_end(step, n))
    assert len(plan.notes) == len(idle), (plan.notes, idle)
    for j, note in zip(idle, plan.notes, strict=True):
        assert note.startswith(f"rings[{j}] "), note

    if anything_blocked:
        event("an asset deferred by redundancy")
        return
    # Nothing deferred: the rings after the canary phase are exactly the steps.
    expected = [b - a for a, b in itertools.pairwise([canary_total, *boundaries])]
    assert [len(r) for r in rings[c:]] == expected


# ------------------------------------------------------------------------------------------- tests


@PROPERTY
@given(doc=estate_documents(), update_doc=update_documents())
def test_every_plan_holds_the_rules(doc: dict[str, Any], update_doc: dict[str, Any]) -> None:
    update, plan = planned(doc, update_doc)
    if plan is not None:
        event(f"canary waves: {plan.canary_rings}")
        target(float(plan.canary_rings), label="canary waves")
        check_plan(doc, update, plan)
        check_member_numbers(plan)


def check_member_numbers(plan: Plan) -> None:
    """Each group's members by number (what the safety guard reads) are its members by id."""
    flat = [a for ring in plan.rings for a in ring.assets]
    for group in plan.groups:
        assert group.numbers is not None
        targets, outside = group.numbers
        assert list(targets) == sorted(set(targets))
        assert sorted([flat[p] for p in targets] + list(outside)) == sorted(group.members)
        assert not set(outside) & set(flat)


@settings(PROPERTY, max_examples=300)
@given(doc=collision_documents(), update_doc=update_documents(strata=COLLISION_STRATA))
def test_redundancy_is_never_traded_for_coverage(doc: dict[str, Any], update_doc: dict[str, Any]) -> None:
    """Estates built so that the canary of each stratum is a replica its group cannot spare with the others:
    every rule still holds, and no ring — canary waves included — holds more than n − K of a group."""
    update, plan = planned(doc, update_doc)
    if plan is None:
        return
    event(f"canary waves: {plan.canary_rings}")
    # Steer the search towards the plans with the most waves and the fullest canaries: where a bug would be.
    target(float(plan.canary_rings), label="canary waves")
    target(float(plan.rings[0].size), label="canary size")
    check_plan(doc, update, plan)
    if plan.canary_rings > 1:
        reading = read(doc)
        targets = reading.targets(update.target_selector)
        tier = {a: reading.impact_tier(a) for a in targets}
        strata: dict[tuple[str | None, ...], list[str]] = {}
        for a in targets:
            strata.setdefault(reading.stratum(a, update.strata), []).append(a)
        choices = [[a for a in ms if tier[a] == max(tier[m] for m in ms)] for ms in strata.values()]
        # For information only: greedy waves are few, not always the fewest.
        event(f"several waves; one ring could have covered: {one_ring_could_cover(choices, list(reading.groups))}")


@settings(PROPERTY, max_examples=50)
@given(doc=estate_documents(with_groups=False), update_doc=update_documents())
def test_without_groups_rings_follow_the_steps(doc: dict[str, Any], update_doc: dict[str, Any]) -> None:
    """No any-group, nothing to defer: one canary ring, then ring sizes are exactly the cumulative steps."""
    update, plan = planned(doc, update_doc)
    if plan is None:
        return
    assert plan.warnings == ()
    assert plan.canary_rings == 1
    assert plan.groups == ()
    check_plan(doc, update, plan)
    n = plan.targets
    boundaries = [b for b in step_boundaries(update.rings, n) if b > plan.rings[0].size]
    cumulative = list(itertools.accumulate(r.size for r in plan.rings))
    assert cumulative == [plan.rings[0].size, *boundaries]


@settings(PROPERTY, max_examples=40)
@given(doc=collision_documents(), update_doc=update_documents(strata=COLLISION_STRATA))
def test_same_input_same_plan(doc: dict[str, Any], update_doc: dict[str, Any]) -> None:
    _, first = planned(doc, update_doc)
    _, second = planned(doc, update_doc)
    assert first == second


@settings(PROPERTY, max_examples=200)
@given(steps=st.lists(st.one_of(st.integers(1, 12), st.sampled_from(SHARES)), min_size=1, max_size=6))
def test_rings_that_go_back_are_refused_at_the_step(steps: list[int | str]) -> None:
    """Among counts, each must be larger than the count before; among shares, than the share before. A step
    that is not is refused at its own line and index; the others (mixed kinds) are accepted as written."""
    going_back = []
    last: dict[bool, Fraction] = {}
    for i, step in enumerate(steps):
        is_share = isinstance(step, str)
        size = Fraction_of(step) if isinstance(step, str) else Fraction(step)
        if is_share in last and size <= last[is_share]:
            going_back.append(i)
            continue
        last[is_share] = size
    text = yaml.safe_dump(
        {"apiVersion": "ringfence/v1", "update": {"id": "u", "product": PRODUCT, "version": "2", "rings": steps}},
        default_flow_style=False,
        sort_keys=False,
    )
    lines = text.splitlines()
    first_step_line = lines.index("  rings:") + 2
    if not going_back:
        assert parse_update_text(text, "u.yaml").rings == tuple(steps)
        return
    event(f"refused: {len(going_back)} step(s)")
    with pytest.raises(InputError) as caught:
        parse_update_text(text, "u.yaml")
    problems = caught.value.problems
    assert [p.path for p in problems] == [("update", "rings", i) for i in going_back]
    for i, problem in zip(going_back, problems, strict=True):
        assert problem.source == "u.yaml"
        assert problem.line == first_step_line + i, (problem, text)
        written = f"'{steps[i]}'" if isinstance(steps[i], str) else str(steps[i])
        assert problem.message.startswith(f"{written} is not larger than "), problem.message
        assert "cumulative" in problem.message
