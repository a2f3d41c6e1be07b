"""Hypothesis strategies that build estates and runs meant to make the safety rules collide.

Estates (:func:`adversarial_estates`) are small on purpose — a counter-example must be readable — but shaped
the way the estates that broke the promise were:

- replicas each alone in their own stratum (a stratum of one asset must be its own canary);
- any-groups that overlap (members shared between groups), with K = n − 1 (one member may be down), K = 1,
  K = n (no slack: exempt and warned about) and anything between;
- group members outside the update's targets (they do not run the product, but their owner needs them);
- members already down when the rollout starts;
- services of several tiers, hard requirements next to any-groups, and strata of size 1.

Runs (:func:`adversarial_runs`) add what goes wrong while a rollout runs: restore points that fail
verification, installs and rollbacks that fail, assets that send no telemetry, operations the driver never
answers, a driver that refuses an operation, a bad release that crashes some targets after a delay, people
who pause, resume, abort and roll back at random moments (and take their time about it), and the controller
killed at random driver calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

PRODUCT = "acme/agent"
OTHER_PRODUCT = "other/tool"
RELEASE = "2.0"
KINDS = ("vm", "host", "endpoint")
OSES = ("win", "linux")
SITES = ("north", "south", "east")
STRATA = ("kind", "attrs.os", "site")
BAKE = 600
"""Seconds of bake in every generated update (10 min)."""
TIMING = {"apply": "1m", "rollback": "2m", "restore_point": "30s"}
RINGS = ([1, "50%", "100%"], ["100%"], [2, "100%"], [1, "25%", "50%", "100%"])


@dataclass(frozen=True)
class EstateCase:
    """A generated estate document, the update to roll out over it, and the assets down before it starts."""

    document: dict[str, Any]
    update: dict[str, Any]
    down_at_start: frozenset[str]

    @property
    def asset_ids(self) -> tuple[str, ...]:
        return tuple(a["id"] for a in self.document["assets"])

    @property
    def targets(self) -> tuple[str, ...]:
        """Assets running the product (the update's default selector), in estate order."""
        return tuple(
            a["id"] for a in self.document["assets"] if any(s["product"] == PRODUCT for s in a.get("software", ()))
        )


@st.composite
def adversarial_estates(draw: st.DrawFn, *, max_targets: int = 9, rollback: str | None = None) -> EstateCase:
    n_targets = draw(st.integers(1, max_targets))
    n_outside = draw(st.integers(0, 3))
    targets = [f"t{i}" for i in range(n_targets)]
    outside = [f"o{i}" for i in range(n_outside)]
    everyone = targets + outside
    # One shape in three gives every asset its own site: every stratum then holds one asset.
    singletons = draw(st.integers(0, 2)) == 0
    assets: dict[str, dict[str, Any]] = {}
    for i, asset_id in enumerate(everyone):
        product = PRODUCT if asset_id in targets else OTHER_PRODUCT
        asset: dict[str, Any] = {
            "id": asset_id,
            "kind": draw(st.sampled_from(KINDS)),
            "attrs": {"os": draw(st.sampled_from(OSES))},
            "software": [{"product": product, "version": "1.0"}],
        }
        site = f"site-{i}" if singletons else draw(st.sampled_from((None, *SITES)))
        if site is not None:
            asset["site"] = site
        assets[asset_id] = asset

    services: list[dict[str, Any]] = []
    groups: list[list[str]] = []
    for s in range(draw(st.integers(0, 4))):
        requires: list[Any] = []
        if len(everyone) >= 2:
            pool = everyone
            if groups and draw(st.booleans()):
                # Overlap on purpose: start from a member of an earlier group.
                first = draw(st.sampled_from(draw(st.sampled_from(groups))))
                rest = draw(st.lists(st.sampled_from([a for a in pool if a != first]), max_size=3, unique=True))
                members = [first, *rest]
            else:
                members = draw(st.lists(st.sampled_from(pool), min_size=2, max_size=min(5, len(pool)), unique=True))
            if len(members) >= 2:
                n = len(members)
                k = draw(st.sampled_from((n - 1, n - 1, 1, n, draw(st.integers(1, n)))))
                requires.append({"any": max(1, k), "of": members})
                groups.append(members)
                if draw(st.integers(0, 2)) == 0:
                    # Replicas each alone in their own stratum: a stratum of one must be its own canary.
                    for j, member in enumerate(members):
                        assets[member]["site"] = f"alone-{s}-{j}"
        if draw(st.integers(0, 4)) == 0:
            requires.append({"any": draw(st.integers(1, 3)), "where": f"kind={draw(st.sampled_from(KINDS))}"})
        if draw(st.integers(0, 5)) == 0:
            requires.append(draw(st.sampled_from(everyone)))  # a hard requirement: a single point of failure
        service: dict[str, Any] = {"id": f"s{s}", "name": f"Service {s}", "tier": draw(st.integers(1, 4))}
        if requires:
            service["requires"] = requires
        services.append(service)
    # Now and then an asset that needs K of some others (a cluster member needing its peers).
    if len(everyone) >= 3 and draw(st.integers(0, 3)) == 0:
        owner = draw(st.sampled_from(everyone))
        peers = draw(
            st.lists(st.sampled_from([a for a in everyone if a != owner]), min_size=2, max_size=4, unique=True)
        )
        assets[owner]["requires"] = [{"any": draw(st.integers(1, len(peers))), "of": peers}]

    down = frozenset(draw(st.lists(st.sampled_from(everyone), max_size=2, unique=True)))
    update = {
        "id": "agent-2",
        "product": PRODUCT,
        "version": RELEASE,
        "strata": list(STRATA),
        "rings": draw(st.sampled_from(RINGS)),
        "bake": f"{BAKE}s",
        "rollback": rollback or draw(st.sampled_from(("snapshot", "reinstall", "none"))),
        "timing": dict(TIMING),
    }
    document = {
        "apiVersion": "ringfence/v1",
        "estate": "adversarial",
        "services": services,
        "assets": list(assets.values()),
    }
    return EstateCase(document, update, down)


# ------------------------------------------------------------------------------------------ runs


@dataclass(frozen=True)
class Intervention:
    """Something a person does before controller step ``at_step`` (or, with ``at_ring``, before the first step once
    the rollout has reached that ring), if the phase allows it then."""

    at_step: int
    action: str
    """``pause``, ``resume``, ``abort`` or ``roll back``."""
    at_ring: int | None = None


@dataclass(frozen=True)
class Run:
    """What goes wrong in one rollout, and what people do about it."""

    fault: frozenset[str] = frozenset()
    fault_after: int = 120
    restore_point_failures: frozenset[str] = frozenset()
    install_failures: frozenset[str] = frozenset()
    rollback_failures: frozenset[str] = frozenset()
    silent: frozenset[str] = frozenset()
    hung: frozenset[str] = frozenset()
    """Assets whose operations the driver never reports on (a host that never comes back)."""
    refuse: tuple[str, int] | None = None
    """(operation kind, n): the driver refuses the n-th start of that kind (counted from 1)."""
    interventions: tuple[Intervention, ...] = ()
    reaction: int = 0
    """Seconds a person takes to act on a rollout that waits for them (simulated time passes meanwhile)."""
    resumes: int = 1
    """Times a person resumes a paused rollout before aborting it instead."""
    kills: tuple[tuple[int, bool], ...] = ()
    """(n, after): the controller process dies at its n-th driver call, before it (False) or after it (True)."""
    outside_crashes: tuple[tuple[int, str], ...] = field(default=())
    """(step, asset): an asset the rollout never touched goes down by itself before that step."""

    @property
    def late_fault(self) -> bool:
        """The fault shows after the bake: a gate can pass before the crash (no controller can see it coming)."""
        return bool(self.fault) and self.fault_after > BAKE


@st.composite
def adversarial_runs(
    draw: st.DrawFn,
    case: EstateCase,
    *,
    kills: bool = False,
    people: bool = True,
    hung: bool = True,
    late_faults: bool = True,
    outside_crashes: bool = False,
) -> Run:
    targets = list(case.targets)

    def some(max_size: int, pool: list[str] | None = None) -> frozenset[str]:
        chosen = pool if pool is not None else targets
        # Half the time nothing goes wrong this way, so that runs also get deep into their rings.
        if not chosen or draw(st.booleans()):
            return frozenset()
        return frozenset(draw(st.lists(st.sampled_from(chosen), max_size=max_size, unique=True)))

    afters = (0, 60, 120, BAKE) + ((BAKE * 3,) if late_faults else ())
    # Silence hides a member's state from the controller: a silent member already down is its own question
    # (see test_run_rules), so the general runs keep silence to targets that are up.
    up_targets = [t for t in targets if t not in case.down_at_start]
    interventions: tuple[Intervention, ...] = ()
    if people:
        interventions = tuple(
            Intervention(step, action)
            for step, action in draw(
                st.lists(
                    st.tuples(st.integers(1, 60), st.sampled_from(("pause", "resume", "abort", "roll back"))),
                    max_size=3,
                )
            )
        )
    refuse = None
    if draw(st.integers(0, 4)) == 0:
        refuse = (draw(st.sampled_from(("restore_point", "apply", "rollback"))), draw(st.integers(1, 3)))
    killed: tuple[tuple[int, bool], ...] = ()
    if kills:
        killed = tuple(
            sorted(draw(st.lists(st.tuples(st.integers(1, 80), st.booleans()), min_size=1, max_size=4, unique=True)))
        )
    crashes: tuple[tuple[int, str], ...] = ()
    if outside_crashes:
        crashes = tuple(draw(st.lists(st.tuples(st.integers(1, 40), st.sampled_from(case.asset_ids)), max_size=2)))
    return Run(
        fault=some(len(targets)),
        fault_after=draw(st.sampled_from(afters)),
        restore_point_failures=some(3),
        install_failures=some(2),
        rollback_failures=some(2),
        silent=some(2, up_targets),
        hung=some(1) if hung and draw(st.integers(0, 3)) == 0 else frozenset(),
        refuse=refuse,
        interventions=interventions,
        reaction=draw(st.sampled_from((0, 0, 300, 3 * 3600))) if people else 0,
        resumes=draw(st.integers(0, 2)),
        kills=killed,
        outside_crashes=crashes,
    )
