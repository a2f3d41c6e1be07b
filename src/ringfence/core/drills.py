"""Drills: play a faulty release against the estate in simulated time, once per strategy, and compare.

Each strategy runs through the real controller (``ringfence.core.rollout.controller``) with the in-memory
repository and the simulated driver on a simulated clock: the clock jumps from one event (an operation
ending, an asset failing, a bake ending) to the next, so a rollout of days plays in a second.

What a result counts (the drill contract in the update format):

- ``exposed``: assets an install reached before the rollout stopped;
- ``failed``: assets that failed;
- ``services_down``: every service down at some moment, given the assets down at that moment;
- ``halted_at_ring`` and ``detected_after``: where the rollout stopped (halted, or paused for a person)
  and the simulated seconds from the first failure to that stop;
- ``data_lost``: assets whose data a rollback lost — rolled back without a verified restore point when the
  fault says that loses data, or left down when the rollout stopped and then removed by reinstalling, as
  the trust did in real life (an asset with a verified restore point is restored from it instead).

A drill whose fault can break none of the update's targets is refused before it is played: every strategy
would report that nothing failed, a clean bill of health that proves nothing. The refusal names the
selector, the scenario's ``fault.affects`` line, and the values the targets do have for the keys the
selector names, so the typo (``i40en-1.10`` for ``i40en-1.9``) shows at once.

Pure orchestration: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import locate_problems
from ringfence.core.graph import EstateGraph, IntArray
from ringfence.core.impact import TIERS, ServiceDown, services_of
from ringfence.core.rollout.controller import Controller, start_rollout
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.rollout.strategy import STRATEGIES, StrategyPlan, plan_strategy
from ringfence.core.selectors import Selector, parse_selector
from ringfence.core.simulation import FaultModel, SimulatedClock, SimulationDriver
from ringfence.core.update import DrillScenario, parse_scenario_text
from ringfence.core.words import count

_STOPS = frozenset({RolloutPhase.HALTED, RolloutPhase.PAUSED})
_ROLLOUT = "drill"


@dataclass(frozen=True)
class TimelinePoint:
    at: float
    """Simulated seconds since the rollout started."""
    exposed: int
    failed: int
    services_down_by_tier: dict[int, int]


@dataclass(frozen=True)
class StrategyResult:
    strategy: str
    exposed: tuple[str, ...]
    failed: tuple[str, ...]
    services_down: tuple[ServiceDown, ...]
    halted_at_ring: int | None
    detected_after: float | None
    data_lost: tuple[str, ...]
    rings: int
    duration: float
    halt_reason: str | None
    timeline: tuple[TimelinePoint, ...]
    outcome: str = ""
    """The phase the rollout ended in (completed, halted, rolled_back, paused, …)."""


@dataclass(frozen=True)
class DrillReport:
    scenario: DrillScenario
    targets: int
    affected: int
    """Targets the fault can break."""
    results: tuple[StrategyResult, ...]


def run_drill(graph: EstateGraph, scenario: DrillScenario, strategies: Sequence[str] = STRATEGIES) -> DrillReport:
    """Play ``scenario`` on ``graph``'s estate with each strategy and report what happened.

    Raises :class:`InputError` at ``fault.affects`` when the fault can break none of the update's targets
    (see the module's docstring), and at ``update.targets`` when the update targets nothing.
    """
    update = scenario.update
    offset = graph.n_services
    affects = parse_selector(scenario.fault.affects)
    affected_positions = graph.assets.match(affects)
    _require_fault_reaches_targets(graph, scenario, affects, affected_positions)
    affected_ids = frozenset(graph.ids[int(p) + offset] for p in affected_positions)
    fault = FaultModel.from_fault(scenario.fault, affected_ids, scenario.seed)
    results: list[StrategyResult] = []
    targets = 0
    affected = 0
    for name in strategies:
        strategy = plan_strategy(name, graph, update)
        all_targets = {a for ring in strategy.rings for a in ring}
        targets = len(all_targets)
        affected = len(all_targets & affected_ids)
        results.append(_play(graph, scenario, name, strategy, fault))
    return DrillReport(scenario=scenario, targets=targets, affected=affected, results=tuple(results))


def run_drill_text(graph: EstateGraph, text: str, source: str, strategies: Sequence[str] = STRATEGIES) -> DrillReport:
    """Parse a scenario file's text and play it. Every problem — in the file itself, or one that only the
    estate reveals (a fault that reaches no target, an update that targets nothing) — names ``source``
    and the line of the field it is about."""
    scenario = parse_scenario_text(text, source)
    try:
        return run_drill(graph, scenario, strategies)
    except InputError as exc:
        problems = [replace(p, source=p.source or source) for p in exc.problems]
        raise InputError(locate_problems(problems, text)) from None


_SHOWN_VALUES = 8
"""Distinct values listed per key in a refusal; the rest are counted."""


def _require_fault_reaches_targets(
    graph: EstateGraph, scenario: DrillScenario, affects: Selector, affected: IntArray
) -> None:
    """Refuse a fault that can break none of the update's targets: its drill could only say nothing failed."""
    update = scenario.update
    targets = graph.assets.match(parse_selector(update.target_selector))
    if targets.size == 0:
        return  # the update's own problem: plan_strategy names it at update.targets
    if np.intersect1d(targets, affected, assume_unique=True).size:
        return
    of_update = f"{count(int(targets.size), 'target')} of update '{update.id}' ({update.target_selector})"
    if affected.size:
        where = (
            f"'{affects}' matches {count(int(affected.size), 'asset')} of estate '{graph.estate.name}', "
            f"none of them among the {of_update}"
        )
    else:
        where = f"'{affects}' matches none of the {of_update}, nor any other asset of estate '{graph.estate.name}'"
    keys = list(dict.fromkeys(term.key for term in affects.terms))
    values = "; ".join(f"the targets' {key} values are: {_target_values(graph, targets, key, affects)}" for key in keys)
    message = f"{where}; {values}. A fault that reaches no target can only report that nothing failed"
    raise InputError([Problem(message, path=("fault", "affects"))])


def _target_values(graph: EstateGraph, targets: IntArray, key: str, affects: Selector) -> str:
    """The values ``targets`` have for ``key``, most common first, with their counts: ``a (30), b (12)``."""
    counts: Counter[str] = Counter()
    if key == "software":
        # The versions of the products the selector names (vendor/name of each vendor/name@version).
        products = {v.partition("@")[0] for term in affects.terms if term.key == "software" for v in term.values}
        assets = graph.estate.assets
        for p in targets.tolist():
            found = [f"{s.product}@{s.version}" for s in assets[p].software if s.product in products]
            counts.update(found or ["(none)"])
    else:
        codes, vocabulary = graph.assets.column(key)
        # Codes run from -1 (no value) up: shifted by one, a bincount counts every value at once.
        per_code = np.bincount(codes[targets] + 1, minlength=len(vocabulary) + 1)
        names = ["(none)", *vocabulary]
        counts.update({names[c]: int(n) for c, n in enumerate(per_code.tolist()) if n})
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{value} ({n})" for value, n in ranked[:_SHOWN_VALUES])
    rest = len(ranked) - _SHOWN_VALUES
    return shown + (f" and {count(rest, 'more value')}" if rest > 0 else "")


def _play(
    graph: EstateGraph, scenario: DrillScenario, name: str, strategy: StrategyPlan, fault: FaultModel
) -> StrategyResult:
    clock = SimulatedClock()
    start = clock()
    driver = SimulationDriver(clock=clock, timing=scenario.update.timing, fault=fault)
    repository = MemoryRolloutRepository()
    repository.add(_ROLLOUT, strategy.update, strategy, at=start)
    start_rollout(repository, _ROLLOUT, actor="drill", at=start)
    controller = Controller(repository, driver, clock, actor="drill")
    world = driver.world
    services = _ServicesDown(graph)

    timeline: list[TimelinePoint] = []
    services_seen: dict[str, ServiceDown] = {}
    last_key: tuple[int, int, tuple[str, ...]] | None = None
    while True:
        report = controller.step(_ROLLOUT)
        down = world.down()
        key = (len(world.exposed()), len(world.failed()), down)
        if key != last_key:
            now_down = services.down(down)
            for s in now_down:
                services_seen[s.id] = s
            by_tier = dict.fromkeys(TIERS, 0)
            for s in now_down:
                by_tier[s.tier] = by_tier.get(s.tier, 0) + 1
            at = (clock() - start).total_seconds()
            timeline.append(TimelinePoint(at, key[0], key[1], by_tier))
            last_key = key
        if report.made_progress:
            continue
        if report.is_settled:
            # The rollout waits for a person, but the world goes on: failures already set in motion happen.
            nxt = driver.next_event_at()
            if nxt is None:
                break
            clock.advance_to(nxt)
            continue
        wake = controller.wake_at()
        if wake is None:
            break  # nothing will ever happen again: stop rather than spin
        clock.advance_to(wake)

    transitions = repository.transitions(_ROLLOUT)
    stop = next((t for t in transitions if t.to_phase in _STOPS), None)
    first_failure = world.first_failure_at()
    detected_after = None
    if stop is not None and first_failure is not None:
        detected_after = max(0.0, stop.at.timestamp() - first_failure)
    # Left down when the rollout stopped: removed by reinstalling unless a verified restore point exists.
    lost = set(world.data_lost())
    if fault.rollback_loses_data:
        lost.update(a for a in world.down() if world.assets[a].restore_point is None)
    last_change = transitions[-1].at if transitions else start
    return StrategyResult(
        strategy=name,
        exposed=world.exposed(),
        failed=world.failed(),
        services_down=tuple(sorted(services_seen.values(), key=lambda s: s.id)),
        halted_at_ring=stop.ring if stop is not None else None,
        detected_after=detected_after,
        data_lost=tuple(sorted(lost)),
        rings=len(strategy.rings),
        duration=(last_change - start).total_seconds(),
        halt_reason=stop.reason if stop is not None else None,
        timeline=tuple(timeline),
        outcome=repository.state(_ROLLOUT).phase.value,
    )


class _ServicesDown:
    """Services down given the assets down, remembered per down set (it changes a few times per drill)."""

    def __init__(self, graph: EstateGraph) -> None:
        self.graph = graph
        self._cache: dict[tuple[str, ...], tuple[ServiceDown, ...]] = {}

    def down(self, assets: tuple[str, ...]) -> tuple[ServiceDown, ...]:
        found = self._cache.get(assets)
        if found is None:
            graph = self.graph
            seeds = np.asarray([graph.index[a] for a in assets if a in graph.index], dtype=np.int64)
            # Only what these failures take down: services down with nothing failed are not the drill's doing.
            mask = graph.propagate(seeds) & ~graph.baseline
            found = services_of(graph, np.flatnonzero(mask[: graph.n_services]).astype(np.int64))
            self._cache[assets] = found
        return found


__all__ = ["DrillReport", "StrategyResult", "TimelinePoint", "run_drill", "run_drill_text"]
