"""An independent referee for rules 1–7 of update-and-drill-format.md.

Nothing here calls the planner, reconcile, the gates or the safety guard. The estate is read through the
brute-force oracle (``tests/oracle.py``: any-groups and impact tiers by naive fixpoint), strata straight from
the asset fields, and what happens while a rollout runs from the *world* (which operations ran on which
asset, from when to when, what is installed, what is down) and from the rollout's persisted record (phase
transitions, each target's ring and state). The rules, in the form checked:

**Plan (1–5)**, :func:`plan_violations`, on the rings the planner produced.

**Rule 7, admission** — whenever the rollout takes a member of a group with slack (n − K > 0) out of
service (starts an install or a rollback on a member that is available), the group's unavailable members,
this one included, number at most n − K. *Unavailable* is world truth: down, an install or rollback running,
an install that failed (and was not rolled back since), a rollback that failed — and members down before
the rollout started count, since the rule says "counting the members that were already down". The one
excuse is an asset that went down by itself since the controller last looked (an outside crash the test
makes between two steps): no controller can count what it has not yet been told.

**Rule 7, state** — after every step, each group with slack has at most max(n − K, D) members unavailable,
where D is how many of its members were down before the rollout started and still are: the rollout may
never add to a group already at or past its limit. Checked on runs where every failure the bad release
causes shows within the bake (``after`` ≤ bake) and nothing outside the rollout goes down mid-run: a crash
that comes after a ring's gate passed (a late fault) makes a member unavailable that no controller could
have held back when it admitted the next one.

**Rule 6** — (a) no asset of a ring after the canary phase starts its install unless a canary of its stratum
was installed, running the release, up and reporting when a canary ring's gate passed; (b) a gate passes
only when every stratum whose install it attempted has an updated member that is running the release, up
and reporting; (c) when the canary phase ends (its last ring passes), every stratum that still has assets
waiting in later rings has a judged canary — the skipped canary was replaced, or the rollout paused.

**Always** — an asset is installed at most once per rollout; with ``rollback: snapshot`` only after a
restore point of it was taken and verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from oracle import impact_tier, rules_of
from ringfence.core.estate import parse_estate_document
from ringfence.core.rollout.state import AssetState, RolloutPhase

Stratum = tuple[str | None, ...]

_PASS_TO = frozenset({RolloutPhase.TAKING_RESTORE_POINTS, RolloutPhase.APPLYING, RolloutPhase.COMPLETED})
_WAITING = frozenset({AssetState.PENDING, AssetState.RESTORE_POINT_REQUESTED, AssetState.RESTORE_POINT_TAKEN})


class RuleViolation(AssertionError):  # noqa: N818 - a broken rule, named as the rules are
    """A rule broken at a step; the message names the rule, the step, the time and the assets."""


# ------------------------------------------------------------------------------------------ the estate


@dataclass(frozen=True)
class Group:
    owners: tuple[str, ...]
    k: int
    members: frozenset[str]

    @property
    def capacity(self) -> int:
        return len(self.members) - self.k

    @property
    def exempt(self) -> bool:
        return self.capacity <= 0

    def describe(self) -> str:
        return f"{'/'.join(self.owners)} needs {self.k} of {sorted(self.members)}"


@dataclass(frozen=True)
class Facts:
    """What the rules need, read from the estate document through the oracle alone."""

    targets: tuple[str, ...]
    stratum: Mapping[str, Stratum]
    tier: Mapping[str, int]
    groups: tuple[Group, ...]
    strata_keys: tuple[str, ...]

    @classmethod
    def read(cls, document: Mapping[str, Any], update: Mapping[str, Any]) -> Facts:
        estate = parse_estate_document(document)
        rules = rules_of(estate)
        product = update["product"]
        keys = tuple(update["strata"])
        targets = tuple(a.id for a in estate.assets if any(s.product == product for s in a.software))
        by_id = {a.id: a for a in estate.assets}
        stratum = {t: tuple(_field(by_id[t], key) for key in keys) for t in targets}
        tier = {t: impact_tier(estate, t, rules) for t in targets}
        distinct: dict[tuple[int, frozenset[str]], list[str]] = {}
        for owner, groups in rules.groups.items():
            for g in groups:
                if g.members & set(targets):
                    distinct.setdefault((g.k, g.members), []).append(owner)
        found = tuple(Group(tuple(sorted(owners)), k, members) for (k, members), owners in distinct.items())
        return cls(targets, stratum, tier, found, keys)

    def groups_of(self, asset_id: str) -> list[Group]:
        return [g for g in self.groups if asset_id in g.members and not g.exempt]


def _field(asset: Any, key: str) -> str | None:
    if key.startswith("attrs."):
        value = asset.attrs.get(key.removeprefix("attrs."))
        return None if value is None else str(value)
    value = getattr(asset, key)
    return None if value is None else str(value)


# ------------------------------------------------------------------------------------------ rules 1–5


def plan_violations(
    facts: Facts, rings: Sequence[Sequence[str]], canary_rings: int, warned: Iterable[Any]
) -> list[str]:
    """Every way the rings break rules 1–5 (empty when they hold).

    ``warned`` are the plan's warnings (objects with ``members`` and ``k``): each group without slack that
    has a target must be among them."""
    problems: list[str] = []
    placed = [a for ring in rings for a in ring]
    ring_of = {a: i for i, ring in enumerate(rings) for a in ring}
    # 1. Partition.
    if sorted(placed) != sorted(facts.targets):
        problems.append(f"rule 1: the rings hold {sorted(placed)}, the targets are {sorted(facts.targets)}")
    if any(not ring for ring in rings):
        problems.append("rule 1: a ring is empty")
    # 2. Coverage: the canary rings lead and hold every stratum.
    if not 1 <= canary_rings <= len(rings):
        problems.append(f"rule 2: {canary_rings} canary rings of {len(rings)}")
    in_canary = {facts.stratum[a] for ring in rings[:canary_rings] for a in ring if a in facts.stratum}
    missing = set(facts.stratum.values()) - in_canary
    if missing:
        problems.append(f"rule 2: strata without a canary: {sorted(map(str, missing))}")
    # 3. Least critical canaries: the earliest canary ring of each stratum holds one of its highest tier.
    best: dict[Stratum, int] = {}
    for t in facts.targets:
        best[facts.stratum[t]] = max(best.get(facts.stratum[t], 0), facts.tier[t])
    for s, tier in best.items():
        first = next((i for i in range(canary_rings) if any(facts.stratum.get(a) == s for a in rings[i])), None)
        if first is None:
            continue
        tiers = [facts.tier[a] for a in rings[first] if facts.stratum.get(a) == s]
        if tier not in tiers:
            problems.append(
                f"rule 3: stratum {s}: canary ring {first} holds tiers {tiers}, the stratum's highest is {tier}"
            )
    # 4. Redundancy: no ring holds more than n − K of a group with slack; groups without slack are warned about.
    for g in facts.groups:
        if g.exempt:
            if not any(set(w.members) == g.members and w.k == g.k for w in warned):
                problems.append(f"rule 4: {g.describe()} has no slack and is not warned about")
            continue
        for i, ring in enumerate(rings):
            held = sorted(g.members & set(ring))
            if len(held) > g.capacity:
                problems.append(f"rule 4: ring {i} holds {held} of {g.describe()} (at most {g.capacity})")
    # 5. Criticality last: after the canary phase, a more critical asset goes first only when redundancy
    # kept the less critical one out of that ring (one of its groups was full there).
    for a in placed:
        i = ring_of[a]
        if i < canary_rings:
            continue
        for b in placed:
            j = ring_of[b]
            if j > i and facts.tier[a] < facts.tier[b]:
                blocked = any(len(g.members & set(rings[i])) >= g.capacity for g in facts.groups_of(b))
                if not blocked:
                    problems.append(
                        f"rule 5: {a} (tier {facts.tier[a]}) in ring {i} before {b} (tier {facts.tier[b]}) in ring "
                        f"{j}, and no group of {b} was full in ring {i}"
                    )
    return problems


# ------------------------------------------------------------------------------------------ the world


class World(Protocol):
    """World truth about the targets and group members, as a driver's backend sees it."""

    def down(self) -> set[str]: ...

    def unavailable(self) -> set[str]:
        """Down, an install or rollback running, an install or rollback that failed (not rolled back since)."""

    def install_started(self) -> set[str]: ...

    def installs(self, asset_id: str) -> int: ...

    def runs_release(self, asset_id: str) -> bool: ...

    def reporting(self, asset_id: str) -> bool: ...

    def started(self, kind: str, asset_id: str) -> bool: ...

    def restore_point_verified_before_install(self, asset_id: str) -> bool: ...


@dataclass(frozen=True)
class Progress:
    """One target's persisted ring and state."""

    ring: int
    state: AssetState


@dataclass(frozen=True)
class Move:
    """One persisted phase transition."""

    from_phase: RolloutPhase
    to_phase: RolloutPhase
    ring: int
    at: datetime
    reason: str


# ------------------------------------------------------------------------------------------ rules 6 and 7


@dataclass
class Checker:
    facts: Facts
    canary_rings: int
    snapshot_rollback: bool
    state_rule: bool
    """Check rule 7 on the state after every step (see the module docstring for when it is honest)."""
    down_at_start: frozenset[str]
    trace: list[str] = field(default_factory=list)
    ring: int = 0
    transitions_seen: int = 0
    judged: set[Stratum] = field(default_factory=set)
    installs_seen: set[str] = field(default_factory=set)
    unseen_outside: set[str] = field(default_factory=set)
    """Assets that went down by themselves since the controller last observed (the one excuse of rule 7)."""
    steps: int = 0

    def fail(self, message: str) -> None:
        recent = "\n  ".join(self.trace[-25:])
        raise RuleViolation(f"{message}\n-- last steps:\n  {recent}")

    # -- rule 7 when the rollout takes a member out of service (called by the driver wrapper, before the driver)

    def on_start(self, kind: str, assets: Sequence[str], world: World, now: datetime) -> None:
        if kind not in ("apply", "rollback"):
            return  # a restore point leaves the asset in service
        out_now = world.unavailable()
        # What the controller could count: not the assets that went down by themselves since it last looked.
        unavailable = out_now - self.unseen_outside
        for a in assets:
            if world.started(kind, a) or a in out_now:
                continue  # asked again after a restart, or already out of service: nothing more is taken
            unavailable.add(a)
            for g in self.facts.groups_of(a):
                out = sorted(g.members & unavailable)
                if len(out) > g.capacity:
                    self.fail(
                        f"rule 7 broken at {now:%H:%M:%S}: starting {kind} on {a} leaves {len(out)} of "
                        f"{len(g.members)} members of [{g.describe()}] unavailable ({out}); at most {g.capacity} "
                        f"may be (down at start: {sorted(self.down_at_start & g.members)})"
                    )

    def outside_crash(self, asset_id: str) -> None:
        self.unseen_outside.add(asset_id)

    # -- everything else, after each step

    def after_step(
        self,
        now: datetime,
        phase: RolloutPhase,
        assets: Mapping[str, Progress],
        moves: Sequence[Move],
        world: World,
        note: str = "",
    ) -> None:
        self.steps += 1
        self.unseen_outside.clear()
        fresh = moves[self.transitions_seen :]
        self.transitions_seen = len(moves)
        for m in fresh:
            self.trace.append(f"{m.at:%d %H:%M:%S} {m.from_phase}→{m.to_phase} ring {m.ring}: {m.reason[:220]}")
        states = ",".join(f"{a}:{p.ring}:{p.state.value}" for a, p in sorted(assets.items()))
        self.trace.append(
            f"step {self.steps} at {now:%d %H:%M:%S} {phase} ring {self.ring}{note} | {states} | "
            f"down {sorted(world.down())}"
        )
        for m in fresh:
            self._transition(m, assets, world)
        self._installs(now, assets, world)
        if self.state_rule:
            self._group_state(now, world)

    def _healthy_updated(self, a: str, assets: Mapping[str, Progress], world: World) -> bool:
        found = assets.get(a)
        return (
            found is not None
            and found.state is AssetState.APPLIED
            and world.runs_release(a)
            and a not in world.down()
            and world.reporting(a)
        )

    def _transition(self, m: Move, assets: Mapping[str, Progress], world: World) -> None:
        before = self.ring
        self.ring = m.ring
        if not (m.from_phase is RolloutPhase.JUDGING and m.to_phase in _PASS_TO):
            return
        # A gate on ring `before` passed.
        attempted = {self.facts.stratum[a] for a, p in assets.items() if p.ring == before and world.started("apply", a)}
        healthy = {
            self.facts.stratum[a]
            for a, p in assets.items()
            if p.ring <= before and self._healthy_updated(a, assets, world)
        }
        unjudged = attempted - healthy
        if unjudged:
            self.fail(
                f"rule 6 broken: the gate of ring {before} passed at {m.at:%d %H:%M:%S} although strata "
                f"{sorted(map(str, unjudged))} it tried to update have no updated member that is up and reporting"
            )
        if before < self.canary_rings:
            self.judged |= {
                self.facts.stratum[a]
                for a, p in assets.items()
                if p.ring < self.canary_rings and p.ring <= before and self._healthy_updated(a, assets, world)
            }
        leaves_canary_phase = before == self.canary_rings - 1 and (
            m.to_phase is RolloutPhase.COMPLETED or m.ring == before + 1
        )
        if leaves_canary_phase:
            waiting: dict[Stratum, list[str]] = {}
            for a, p in assets.items():
                if p.ring >= self.canary_rings and p.state in _WAITING and self.facts.stratum[a] not in self.judged:
                    waiting.setdefault(self.facts.stratum[a], []).append(a)
            if waiting:
                self.fail(
                    f"rule 6 broken: the canary phase ended at {m.at:%d %H:%M:%S} with strata never judged "
                    f"while assets of theirs wait in later rings: {sorted((str(s), v) for s, v in waiting.items())} "
                    "(a skipped canary is replaced in a further canary wave, or the rollout pauses)"
                )

    def _installs(self, now: datetime, assets: Mapping[str, Progress], world: World) -> None:
        for a in sorted(world.install_started() - self.installs_seen):
            self.installs_seen.add(a)
            progress = assets.get(a)
            if progress is None:
                self.fail(f"an install started on {a}, which is not a target of the rollout")
                return
            if progress.ring >= self.canary_rings and self.facts.stratum[a] not in self.judged:
                self.fail(
                    f"rule 6 broken at {now:%d %H:%M:%S}: {a} (ring {progress.ring}, after the canary phase) "
                    f"started its install although no canary of stratum {self.facts.stratum[a]} was installed and "
                    f"judged healthy (judged: {sorted(map(str, self.judged))})"
                )
            if self.snapshot_rollback and not world.restore_point_verified_before_install(a):
                self.fail(f"{a} was installed without a verified restore point (rollback: snapshot)")
        twice = sorted(a for a in self.installs_seen if world.installs(a) > 1)
        if twice:
            self.fail(f"installed more than once in one rollout: {twice}")

    def _group_state(self, now: datetime, world: World) -> None:
        unavailable = world.unavailable()
        down = world.down()
        for g in self.facts.groups:
            if g.exempt:
                continue
            out = g.members & unavailable
            already = g.members & self.down_at_start & down
            if len(out) > max(g.capacity, len(already)):
                self.fail(
                    f"rule 7 broken at {now:%d %H:%M:%S}: {len(out)} of {len(g.members)} members of "
                    f"[{g.describe()}] unavailable ({sorted(out)}), at most {g.capacity} "
                    f"(down since before the start and still down: {sorted(already)})"
                )
