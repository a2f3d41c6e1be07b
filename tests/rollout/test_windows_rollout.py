"""The rollout keeps to change windows: the real controller, the in-memory repository and the simulated driver
in simulated time. No restore point or install ever starts outside the windows of an asset of its ring; a ring
that waits says until when, and the rollout goes on once the window opens."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.core.driver import Batch, OperationKind
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.rollout.controller import Controller, StepReport, start_rollout
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.reconcile import reconcile
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.simulation import SimulatedClock, SimulationDriver
from ringfence.core.update import Update
from ringfence.core.windows import IncidentFreeze

LONDON = ZoneInfo("Europe/London")
ESTATE = """
apiVersion: ringfence/v1
estate: small
services:
  - {id: web, name: Web, tier: 1, requires: [{any: 1, of: [app-1, app-2]}]}
  - {id: lab, name: Pathology, tier: 2, requires: [app-3]}
  - {id: desk, name: Desk, tier: 3, requires: [{any: 2, where: "kind=endpoint"}]}
assets:
  - {id: app-1, kind: vm, site: city, software: [{product: acme/agent, version: "1.0"}]}
  - {id: app-2, kind: vm, site: city, software: [{product: acme/agent, version: "1.0"}]}
  - {id: app-3, kind: vm, site: city, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-1, kind: endpoint, site: gp-a, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-2, kind: endpoint, site: gp-a, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-3, kind: endpoint, site: gp-b, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-4, kind: endpoint, site: gp-b, software: [{product: acme/agent, version: "1.0"}]}
  - {id: ws-5, kind: endpoint, site: gp-b, software: [{product: acme/agent, version: "1.0"}]}
"""
ID = "r-1"
SITES = {"app-1": "city", "app-2": "city", "app-3": "city", "ws-1": "gp-a", "ws-2": "gp-a"} | {
    f"ws-{i}": "gp-b" for i in (3, 4, 5)
}


@pytest.fixture(scope="module")
def graph() -> EstateGraph:
    return compile_estate(parse_estate_text(ESTATE, "small.yaml"))


class RecordingDriver(SimulationDriver):
    """The simulated driver, remembering when each batch was started."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.started: list[tuple[datetime, Batch]] = []

    def start(self, batch: Batch) -> None:
        self.started.append((self.clock(), batch))
        super().start(batch)


def make_update(windows: list[dict[str, object]], **fields: object) -> Update:
    return Update.model_validate(
        {
            "id": "agent-2",
            "product": "acme/agent",
            "version": "2.0",
            "bake": "1h",
            "rings": [1, "50%", "100%"],
            "windows": windows,
            **fields,
        }
    )


def run(graph: EstateGraph, update: Update, start: datetime) -> tuple[MemoryRolloutRepository, RecordingDriver, list]:
    clock = SimulatedClock(start)
    driver = RecordingDriver(clock=clock, timing=update.timing)
    repo = MemoryRolloutRepository()
    repo.add(ID, update, plan_strategy("ringfence", graph, update), at=clock())
    start_rollout(repo, ID, actor="alice", at=clock())
    controller = Controller(repo, driver, clock)
    reports: list[StepReport] = []

    def wait_until(at: datetime | None) -> None:
        assert at is not None, "a rollout waiting for a window must know when to look again"
        clock.advance_to(at)

    controller.run_until_settled(ID, wait_until=wait_until, max_steps=2000, on_step=reports.append)
    return repo, driver, reports


CITY = {"site": "city", "allow": ["Sun 01:00-05:00"]}
GP = {"selector": "site=gp-a|gp-b", "allow": ["daily 19:00-07:00"]}
LAB = {"service": "lab", "never": ["daily 00:00-02:00"]}


def test_every_start_is_inside_its_assets_windows_and_the_rollout_completes(graph: EstateGraph) -> None:
    update = make_update([CITY, GP, LAB])
    start = datetime(2026, 12, 7, 10, 0, tzinfo=LONDON)  # a Monday morning: nothing is open
    repo, driver, reports = run(graph, update, start)
    assert repo.state(ID).phase is RolloutPhase.COMPLETED
    assert driver.started
    for at, batch in driver.started:
        local = at.astimezone(LONDON)
        for asset in batch.assets:
            if SITES[asset] == "city":
                assert local.weekday() == 6, (asset, local)
                assert 1 <= local.hour < 5, (asset, local)
            else:
                assert local.hour >= 19 or local.hour < 7, (asset, local)
            if asset == "app-3":
                assert local.hour >= 2, (asset, local)
    # It waited, and said until when, in London's time.
    waits = [r.waiting for r in reports if r.waiting]
    assert waits
    assert any("waits for its change window until" in w and ("GMT" in w or "BST" in w) for w in waits)


def test_a_bake_ends_into_the_next_ring_only_inside_its_window(graph: EstateGraph) -> None:
    # Each ring takes 15 min to install and bakes for 1h: ring 1 starts at 04:45, inside; its bake ends at 06:00,
    # outside, and ring 2 waits a week in that bake.
    update = make_update([{"allow": ["Sun 01:00-05:00"]}])
    repo, driver, reports = run(graph, update, datetime(2026, 12, 13, 3, 30, tzinfo=LONDON))
    assert repo.state(ID).phase is RolloutPhase.COMPLETED
    baked_and_waiting = [r for r in reports if r.waiting and "baked for 1h" in r.waiting]
    assert baked_and_waiting, "a ring that baked waits in its bake for the next ring's window"
    assert all(r.phase is RolloutPhase.BAKING for r in baked_and_waiting)
    assert "ring 2 waits for its change window until Sun 20 Dec 2026 01:00 GMT" in baked_and_waiting[0].waiting
    starts = sorted({at for at, _ in driver.started})
    assert starts[-1].astimezone(LONDON) >= datetime(2026, 12, 20, 1, 0, tzinfo=LONDON)


@settings(max_examples=20, deadline=None)
@given(
    city=st.sampled_from(["Sun 01:00-05:00", "Sat,Sun 22:00-04:00", "daily 03:00-03:30", "Mon-Fri 12:00-13:00"]),
    gp=st.sampled_from(["weekdays 19:00-07:00", "Wed 00:00-24:00", "Fri-Mon 20:00-06:00"]),
    start_minute=st.integers(0, 14 * 24 * 60),
)
def test_property_no_start_outside_any_window_of_its_ring(
    graph: EstateGraph, city: str, gp: str, start_minute: int
) -> None:
    from ringfence.core.windows import parse_window

    windows = {"city": parse_window(city), "gp": parse_window(gp)}
    update = make_update([{"site": "city", "allow": [city]}, {"selector": "site=gp-a|gp-b", "allow": [gp]}])
    # Across the October change: 18 October 2026 plus up to two weeks.
    start = datetime(2026, 10, 18, tzinfo=UTC) + timedelta(minutes=start_minute)
    repo, driver, _ = run(graph, update, start)
    # The canary ring holds a city VM and a GP workstation: it opens only where both windows meet, and where they
    # never do the rollout pauses for a person rather than wait for ever.
    phase = repo.state(ID).phase
    assert phase is RolloutPhase.COMPLETED or (
        phase is RolloutPhase.PAUSED and "never all coincide" in repo.transitions(ID)[-1].reason
    )
    plan = plan_strategy("ringfence", graph, update)
    ring_of = {a: r for r, members in enumerate(plan.rings) for a in members}
    for at, batch in driver.started:
        if batch.kind is OperationKind.rollback:
            continue
        local = at.astimezone(LONDON)
        ring = {ring_of[a] for a in batch.assets}
        everyone = [a for r in ring for a in plan.rings[r]]
        for asset in everyone:
            window = windows["city" if SITES[asset] == "city" else "gp"]
            assert window.holds(local.weekday(), local.hour * 60 + local.minute), (asset, local, window.text)


def test_windows_that_never_coincide_pause_for_a_person(graph: EstateGraph) -> None:
    # Every ring holds both kinds only if they share one; a rule for every target makes any ring need both.
    update = make_update([{"allow": ["Sun 01:00-05:00"]}, {"site": "city", "allow": ["Mon 01:00-05:00"]}])
    repo, driver, _ = run(graph, update, datetime(2026, 12, 7, tzinfo=UTC))
    assert repo.state(ID).phase is RolloutPhase.PAUSED
    reason = repo.transitions(ID)[-1].reason
    assert "ring 0 waits: the change windows of its assets never all coincide in the next 400 days" in reason
    assert "a person must look" in reason
    assert not driver.started


def test_an_open_incident_freeze_holds_the_first_ring(graph: EstateGraph) -> None:
    update = make_update([])
    clock = SimulatedClock(datetime(2026, 12, 7, tzinfo=UTC))
    repo = MemoryRolloutRepository()
    repo.add(ID, update, plan_strategy("ringfence", graph, update), at=clock())
    start_rollout(repo, ID, actor="alice", at=clock())
    with repo.session(ID) as session:
        view = session.view()
    frozen = replace(view, incident_freezes=(IncidentFreeze("INC-1", "EPR down"),))
    decision = reconcile(frozen, clock())
    assert decision.actions == ()
    assert decision.transitions == ()
    assert decision.waiting is not None
    assert "incident INC-1 (EPR down)" in decision.waiting
    assert decision.wake_at is None
    # Without the freeze the same view starts the ring's restore points.
    assert reconcile(view, clock()).actions


def test_a_date_freeze_holds_until_the_day_after(graph: EstateGraph) -> None:
    update = make_update([], freezes=[{"name": "Christmas", "from": "2026-12-19", "to": "2027-01-03"}])
    repo, driver, _ = run(graph, update, datetime(2026, 12, 20, 12, tzinfo=UTC))
    assert repo.state(ID).phase is RolloutPhase.COMPLETED
    first = min(at for at, _ in driver.started)
    assert first == datetime(2027, 1, 4, 0, 0, tzinfo=UTC)  # midnight in London is midnight UTC in January


def test_the_stored_plan_keeps_each_rings_rules_and_a_plan_without_windows_is_stored_as_before(
    graph: EstateGraph,
) -> None:
    from ringfence.core.rollout.record import StoredPlan

    windowed = plan_strategy("ringfence", graph, make_update([CITY, GP, LAB])).stored("simulated")
    assert any(windowed.ring_windows)
    assert StoredPlan.from_document(windowed.to_document()).ring_windows == windowed.ring_windows
    plain = plan_strategy("ringfence", graph, make_update([])).stored("simulated")
    assert "ring_windows" not in plain.to_document()
    # The service rule reaches app-3 through the lab service; the site rule every city VM; the GP rule the rest.
    strategy = plan_strategy("ringfence", graph, make_update([CITY, GP, LAB]))
    for ring, rules in zip(strategy.rings, strategy.ring_windows, strict=True):
        expected = {0} if any(SITES[a] == "city" for a in ring) else set()
        expected |= {1} if any(SITES[a] != "city" for a in ring) else set()
        expected |= {2} if "app-3" in ring else set()
        assert set(rules) == expected
