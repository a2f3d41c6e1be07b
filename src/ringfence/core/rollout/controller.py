"""The rollout controller: reconcile, persist, act, record — one crash-safe step at a time.

A step (:meth:`Controller.step`):

1. In one transaction, holding the rollout's lock: load the view. If a decision is still pending (it was
   persisted, but the process may have died before acting on it), take it again; otherwise compute
   :func:`~ringfence.core.rollout.reconcile.reconcile`, apply its phase changes through
   :func:`~ringfence.core.rollout.state.transition`, write its asset progress (e.g. assets to ``applying``
   *before* any driver is called) and persist its actions as a pending decision. Commit.
2. Act: hand each action to the driver. Drivers are idempotent per (rollout, operation, asset), so
   acting twice on one decision starts nothing twice.
3. Poll the operations in flight and observe health; in a second transaction record the results as
   progress (only for assets still waiting on that operation) and health, and mark the decision done.

A crash between any two points leaves either a pending decision (acted on again, harmlessly) or a done
one; no asset is updated twice and nothing is lost.

The controller talks to storage through :class:`RolloutRepository` (``ringfence.core.rollout.memory`` for
drills, ``ringfence.service.rollouts`` for SQL) and to machines through a driver. The use cases that
people start (start, pause, resume, abort, roll back) are here too, so both stores share them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import compress, repeat
from operator import attrgetter, is_
from typing import Protocol

from ringfence.core.driver import (
    Batch,
    Driver,
    HealthSource,
    OperationKind,
    OperationResult,
    release_restore_points,
)
from ringfence.core.errors import ConflictError, DriverError
from ringfence.core.gates import AssetHealth, AssetStatus, RingVerdict
from ringfence.core.rollout.guard import Columns, GuardGroup, GuardPlan, GuardState, check_opening, refusal_sentence
from ringfence.core.rollout.reconcile import (
    GIVEN_UP,
    Action,
    AssetUpdate,
    Decision,
    PhaseChange,
    RingMove,
    RolloutView,
    StartOperation,
    first_phase,
    operation_deadline,
    reconcile,
)
from ringfence.core.rollout.state import AssetState, RolloutPhase, RolloutState, Transition, transition

SETTLED_PHASES = frozenset(
    {
        RolloutPhase.PENDING,
        RolloutPhase.AWAITING_APPROVAL,
        RolloutPhase.PAUSED,
        RolloutPhase.HALTED,
        RolloutPhase.COMPLETED,
        RolloutPhase.ROLLED_BACK,
        RolloutPhase.FAILED,
    }
)
"""Phases in which a rollout waits for a person (or is over): the controller loop stops there."""

RELEASES_RESTORE_POINTS = frozenset({RolloutPhase.COMPLETED, RolloutPhase.ROLLED_BACK})
"""Phases after which no restore point is needed any more: the driver may let go of them (``core.driver``'s
``release_restore_points`` hook). Not FAILED: a person may still need one there."""


@dataclass(frozen=True)
class PendingDecision:
    seq: int
    actions: tuple[Action, ...]


class RolloutSession(Protocol):
    """One transaction on one rollout, its lock held until the transaction ends."""

    def view(self) -> RolloutView: ...

    def pending_decision(self) -> PendingDecision | None: ...

    def apply_transition(self, new_state: RolloutState, record: Transition, *, actor: str) -> None: ...

    def update_assets(self, updates: Sequence[AssetUpdate], at: datetime) -> None: ...

    def move_assets(self, moves: Sequence[RingMove], at: datetime) -> None: ...

    def record_verdict(self, verdict: RingVerdict, at: datetime) -> None: ...

    def add_decision(self, decision: Decision, at: datetime) -> int: ...

    def mark_decision_done(self, seq: int, at: datetime) -> None: ...

    def record_results(self, kind: OperationKind, results: Sequence[OperationResult], at: datetime) -> None: ...

    def record_health(self, health: Mapping[str, AssetHealth], at: datetime) -> None: ...

    def restore_points_released(self) -> bool:
        """Whether the driver was asked to let go of this rollout's restore points (recorded below)."""
        ...

    def record_restore_points_released(self, sentences: Sequence[str], at: datetime, *, actor: str) -> None:
        """Record that the driver was asked to let go of this rollout's restore points, with its sentences."""
        ...


class RolloutRepository(Protocol):
    def session(self, rollout_id: str) -> AbstractContextManager[RolloutSession]: ...


@dataclass(frozen=True)
class StepReport:
    """What one step did."""

    rollout_id: str
    phase: RolloutPhase
    ring: int
    transitions: tuple[Transition, ...] = ()
    started: tuple[StartOperation, ...] = ()
    results: int = 0
    health_changes: int = 0
    reused_decision: bool = False
    in_flight: int = 0
    at: datetime | None = None
    verdict: RingVerdict | None = None
    """The gate's verdict, each stratum's sentence included, when this step judged a ring."""

    decided: int = 0
    """Assets the step's decision moved (given up at a deadline, skipped, moved into a canary wave), and actions."""
    waiting: str | None = None
    """Why the rollout waits though it runs: a ring outside its change window, until when (core.windows)."""
    released: tuple[str, ...] = ()
    """What the driver said when this step asked it to let go of the restore points of a rollout that is over."""

    @property
    def made_progress(self) -> bool:
        return bool(self.transitions or self.started or self.results or self.health_changes or self.decided)

    @property
    def is_settled(self) -> bool:
        """Nothing will happen without a person: a waiting phase and nothing in flight."""
        return self.phase in SETTLED_PHASES and self.in_flight == 0 and not self.made_progress


@dataclass
class Controller:
    """Drives rollouts through ``driver``, persisting through ``repository``, in the time of ``clock``."""

    repository: RolloutRepository
    driver: Driver
    clock: Callable[[], datetime]
    actor: str = "controller"
    health: HealthSource | None = None
    """What judges the rollout's health: None, the driver's own ``observe`` (see core.driver.HealthSource)."""
    _phase_deadline: datetime | None = field(default=None, init=False, repr=False)
    _window_opens: datetime | None = field(default=None, init=False, repr=False)
    _outside: tuple[tuple[str, int], tuple[str, ...]] | None = field(default=None, init=False, repr=False)
    _guard_plans: dict[str, GuardPlan] = field(default_factory=dict, init=False, repr=False)

    def step(self, rollout_id: str) -> StepReport:
        now = self.clock()
        transitions: list[Transition] = []
        reused = False
        verdict: RingVerdict | None = None
        decided = 0
        reading: Mapping[str, AssetHealth] | None = None
        unread: DriverError | None = None
        waiting: str | None = None
        self._window_opens = None
        for attempt in range(2):
            with self.repository.session(rollout_id) as session:
                view = session.view()
                pending = session.pending_decision()
                if pending is not None:
                    reused = True
                    break
                if reading is not None:
                    session.record_health(reading, now)
                    view = session.view()
                decision = reconcile(view, now)
                if unread is not None and view.state.phase.is_running:
                    decision = Decision(
                        transitions=(
                            PhaseChange(RolloutPhase.PAUSED, f"{self._health_name} could not read health: {unread}"),
                        )
                    )
                elif attempt == 0 and _needs_health_now(view, decision):
                    # A decision stands on health read now, not at the end of a step that may be hours old (a
                    # rollout paused at its gate and resumed later; the first step, before any reading): rule 7
                    # counts the members that are down now, and a gate judges what the canaries say now. It is
                    # read outside the transaction, which is left without a write: a driver's reading may take
                    # long (a playbook) or write to this very database (the simulated world), and a write
                    # transaction held meanwhile blocks every other writer, the driver's own included.
                    needs_reading = True
                else:
                    needs_reading = False
                if not needs_reading:
                    waiting, self._window_opens = decision.waiting, decision.wake_at
                    decision = self._guarded(view, decision)
                    verdict = decision.verdict
                    decided = len(decision.asset_updates) + len(decision.ring_moves) + len(decision.actions)
                    pending = self._record_decision(session, view, decision, now, transitions)
                    if not decision.is_empty:
                        view = session.view()
                    break
            try:
                reading = self._observe(view)
            except DriverError as exc:
                unread = exc
        update = view.update

        def batch(kind: OperationKind, assets: tuple[str, ...]) -> Batch:
            return Batch(rollout_id, kind, update.product, update.version, assets)

        started: list[StartOperation] = []
        try:
            for action in pending.actions if pending else ():
                if isinstance(action, StartOperation):
                    self.driver.start(batch(action.kind, action.assets))
                    started.append(action)
                else:
                    self.driver.cancel(batch(action.kind, action.assets))
        except DriverError as exc:
            # A refusal is an observation, never a retry every few seconds: the operation's assets are given up
            # with the driver's sentence and the rollout stops for a person.
            refused = action.kind if isinstance(action, StartOperation) else None
            return self._driver_refused(rollout_id, pending, refused, action.assets, exc, now, refused_start=True)

        in_flight: dict[OperationKind, list[str]] = {}
        for a in view.assets:
            kind = a.in_flight
            if kind is not None:
                in_flight.setdefault(kind, []).append(a.asset_id)
        polled: dict[OperationKind, Sequence[OperationResult]] = {}
        for kind, ids in in_flight.items():
            try:
                polled[kind] = self.driver.poll(batch(kind, tuple(ids)))
            except DriverError as exc:
                return self._driver_refused(rollout_id, pending, kind, tuple(ids), exc, now)
        blind: DriverError | None = None
        try:
            # Members of the rollout's groups outside it are watched too: rule 7 counts them when they are down.
            health: Mapping[str, AssetHealth] = self._observe(view)
        except DriverError as exc:
            # No reading is never a pass: the gate sees unknown health. A running rollout pauses with the sentence.
            health, blind = {}, exc

        results = 0
        with self.repository.session(rollout_id) as session:
            before = session.view()
            current = {a.asset_id: a for a in before.assets}
            # A new reading is progress too: a canary that just crashed must be judged now, not after the bake.
            health_changes = sum(1 for a, h in health.items() if before.health.get(a) != h)
            updates: list[AssetUpdate] = []
            for kind, found in polled.items():
                final = [r for r in found if r.is_final]
                # Only an asset still waiting on this operation takes its result: a person may have moved on.
                final = [r for r in final if r.asset_id in current and current[r.asset_id].in_flight is kind]
                if final:
                    session.record_results(kind, final, now)
                updates.extend(_progress(kind, r) for r in final)
            if updates:
                session.update_assets(updates, now)
            session.record_health(health, now)
            if pending is not None:
                session.mark_decision_done(pending.seq, now)
            results = len(updates)
            view = session.view()
            if blind is not None and view.state.phase.is_running:
                sentence = f"{self._health_name} could not read health: {blind}"
                state, record = transition(view.state, RolloutPhase.PAUSED, sentence, at=now)
                session.apply_transition(state, record, actor=self.actor)
                transitions.append(record)
                view = session.view()
        return self._report(
            view,
            now,
            transitions=tuple(transitions),
            started=tuple(started),
            results=results,
            health_changes=health_changes,
            reused=reused,
            verdict=verdict,
            decided=decided,
            waiting=waiting,
            released=self._release_restore_points(view, now),
        )

    def _release_restore_points(self, view: RolloutView, now: datetime) -> tuple[str, ...]:
        """Once a rollout has completed or rolled back, ask the driver to let go of the restore points it still
        holds, and record what it says, once.

        Asked by any step that finds the rollout over and the release not yet recorded, not only by the step
        that ended it: a process that died between the two leaves it to the next step. Done outside any
        transaction (a driver may take minutes: vCenter removes snapshots one task at a time) and recorded after;
        two processes asking at once is harmless (the hook is idempotent) and only the first is recorded. A
        failure is a sentence in the record, never a crash nor a retry every step: a person reads it and removes
        what is left."""
        if (
            view.state.phase not in RELEASES_RESTORE_POINTS
            or view.update.rollback != "snapshot"
            or not callable(getattr(self.driver, "release_restore_points", None))
        ):
            return ()
        rollout_id = view.state.id
        with self.repository.session(rollout_id) as session:
            if session.restore_points_released():
                return ()
        said: tuple[str, ...]
        try:
            said = release_restore_points(self.driver, rollout_id) or ()
        except Exception as exc:  # whatever the driver raises, the rollout is over all the same
            said = (f"the {self.driver.name} driver could not let go of the restore points: {exc}",)
        with self.repository.session(rollout_id) as session:
            if not session.restore_points_released():
                session.record_restore_points_released(said, now, actor=self.actor)
        return said

    def _record_decision(
        self,
        session: RolloutSession,
        view: RolloutView,
        decision: Decision,
        now: datetime,
        transitions: list[Transition],
    ) -> PendingDecision | None:
        """Persist ``decision`` in ``session``: its verdict, transitions, moves and updates; its actions as the
        decision the driver is handed (returned), none when it has no actions."""
        if decision.verdict is not None:
            # The verdict as facts, in the transaction of the move it causes (a next ring, a canary wave, a
            # pause or a halt): the transition's reason only explains it.
            session.record_verdict(decision.verdict, now)
        state = view.state
        for change in decision.transitions:
            state, record = transition(state, change.to, change.reason, at=now, ring=change.ring)
            session.apply_transition(state, record, actor=self.actor)
            transitions.append(record)
        if decision.ring_moves:
            session.move_assets(decision.ring_moves, now)
        if decision.asset_updates:
            session.update_assets(decision.asset_updates, now)
        if decision.actions:
            return PendingDecision(session.add_decision(decision, now), decision.actions)
        return None

    def _guarded(self, view: RolloutView, decision: Decision) -> Decision:
        """The safety guard's word on a decision that installs: the decision itself, or a pause naming the rule.

        The guard shares no code with the planner or reconcile and re-checks rules 1–7 against the plan as it
        was persisted and the state now, before any install starts: the last line of defence against a bug
        in either. Only ringfence's own rollouts are guarded (the baselines of a drill stand for tools that
        hold no such rules), and only plans that carry the facts the rules need (plans stored before canary
        waves carry no tiers or groups)."""
        starting = [
            a
            for act in decision.actions
            if isinstance(act, StartOperation) and act.kind is OperationKind.apply
            for a in act.assets
        ]
        if not starting or view.canary_rings <= 0 or not view.tiers or view.state.phase is not RolloutPhase.APPLYING:
            return decision
        # The targets as columns sharing one key list, not dicts: at a million targets, building a dict costs six
        # times reading a column, and the guard reads columns in one pass (see guard.Columns).
        assets = view.assets
        ids = list(map(attrgetter("asset_id"), assets))
        plan = self._guard_plans.get(view.state.id)
        if plan is None:
            plan = self._guard_plans[view.state.id] = GuardPlan(
                rings=view.planned_rings,
                canary_rings=view.canary_rings,
                strata=Columns(ids, list(map(attrgetter("stratum"), assets))),
                tiers=view.tiers,
                groups=tuple(GuardGroup(g.owners, g.members, g.k, g.numbers) for g in view.groups),
            )
        state = GuardState(
            ring=view.state.ring,
            assignment=Columns(ids, list(map(attrgetter("ring"), assets))),
            states=Columns(ids, list(map(attrgetter("state"), assets))),
            down=_failed(view.health),
            # Every ring before the current one passed its gate: that is the only way a rollout moves on.
            judged_rings=view.state.ring,
        )
        violations = check_opening(plan, state, starting)
        if not violations:
            return decision
        reason = f"{refusal_sentence(violations)}; a person must look (resume to check again, or abort)"
        return Decision(transitions=(PhaseChange(RolloutPhase.PAUSED, reason),))

    def wake_at(self) -> datetime | None:
        """When waiting should end: the driver's next event, the end of the bake, the deadline of an operation
        in flight or the opening of the change window a ring waits for, whichever is first."""
        times = [t for t in (self.driver.next_event_at(), self._phase_deadline, self._window_opens) if t is not None]
        return min(times) if times else None

    def _note_deadlines(self, view: RolloutView, now: datetime | None = None) -> None:
        due = [
            a.updated_at + timedelta(seconds=operation_deadline(view.update, kind) + 1)
            for a in view.assets
            if (kind := a.in_flight) is not None
        ]
        baked = view.phase_entered_at + timedelta(seconds=view.bake)
        # A bake over and still baking waits for the next ring's change window (``_window_opens``): its end is
        # no time to wake at any more, and waking at a past time would spin.
        if view.state.phase is RolloutPhase.BAKING and (now is None or baked > now):
            due.append(baked)
        self._phase_deadline = min(due) if due else None

    def _observe(self, view: RolloutView) -> Mapping[str, AssetHealth]:
        """The latest health of the targets, and of the members of the rollout's groups outside it."""
        source = self.health if self.health is not None else self.driver
        return source.observe([*(a.asset_id for a in view.assets), *self._outside_members(view)])

    @property
    def _health_name(self) -> str:
        if self.health is None or self.health is self.driver:
            return f"the {self.driver.name} driver"
        return f"the health source {self.health.name}"

    def _outside_members(self, view: RolloutView) -> tuple[str, ...]:
        if not view.groups:
            return ()
        key = (view.state.id, len(view.groups))
        if self._outside is None or self._outside[0] != key:
            targets = {a.asset_id for a in view.assets}
            outside = sorted({m for g in view.groups for m in g.members if m not in targets})
            self._outside = (key, tuple(outside))
        return self._outside[1]

    def _driver_refused(
        self,
        rollout_id: str,
        pending: PendingDecision | None,
        kind: OperationKind | None,
        assets: tuple[str, ...],
        exc: DriverError,
        now: datetime,
        *,
        refused_start: bool = False,
    ) -> StepReport:
        """Record a driver's refusal or error: the operation's assets end with its sentence, the decision is done,
        and a running rollout halts with the sentence as its reason (a person rolls it back or closes it)."""
        what = _VERBS[kind] if kind is not None else "cancel an operation"
        sentence = f"the {self.driver.name} driver could not {what}: {exc}"
        transitions: list[Transition] = []
        with self.repository.session(rollout_id) as session:
            view = session.view()
            if kind is not None:
                mine = set(assets)
                # An install the driver refused to start never touched its asset: skipped, not failed (a failed
                # one counts as down and is rolled back). Restore points and rollbacks end as given up.
                gave_up = AssetState.SKIPPED if kind is OperationKind.apply and refused_start else GIVEN_UP[kind]
                updates = [
                    AssetUpdate(a.asset_id, gave_up, sentence)
                    for a in view.assets
                    if a.asset_id in mine and a.in_flight is kind
                ]
                if updates:
                    session.update_assets(updates, now)
            if pending is not None:
                session.mark_decision_done(pending.seq, now)
            if view.state.phase.is_running:
                state, record = transition(view.state, RolloutPhase.HALTED, sentence, at=now)
                session.apply_transition(state, record, actor=self.actor)
                transitions.append(record)
            view = session.view()
        return self._report(view, now, transitions=tuple(transitions), results=len(assets))

    def _report(
        self,
        view: RolloutView,
        now: datetime,
        *,
        transitions: tuple[Transition, ...] = (),
        started: tuple[StartOperation, ...] = (),
        results: int = 0,
        health_changes: int = 0,
        reused: bool = False,
        verdict: RingVerdict | None = None,
        decided: int = 0,
        waiting: str | None = None,
        released: tuple[str, ...] = (),
    ) -> StepReport:
        """What a step did, where the rollout is now, and (for :meth:`wake_at`) when to look again."""
        self._note_deadlines(view, now)
        return StepReport(
            rollout_id=view.state.id,
            phase=view.state.phase,
            ring=view.state.ring,
            transitions=transitions,
            started=started,
            results=results,
            health_changes=health_changes,
            reused_decision=reused,
            in_flight=sum(1 for a in view.assets if a.in_flight is not None),
            at=now,
            verdict=verdict,
            decided=decided,
            waiting=waiting,
            released=released,
        )

    def run_until_settled(
        self,
        rollout_id: str,
        *,
        wait_until: Callable[[datetime | None], None],
        max_steps: int = 1_000_000,
        on_step: Callable[[StepReport], None] | None = None,
    ) -> StepReport:
        """Step until the rollout waits for a person or is over.

        Between steps that changed nothing, ``wait_until(self.wake_at())`` lets time pass: a simulated
        clock jumps there, a real process sleeps (at most its poll interval when there is no known time).
        """
        report = self.step(rollout_id)
        for _ in range(max_steps):
            if on_step is not None:
                on_step(report)
            if report.is_settled:
                return report
            if not report.made_progress:
                wait_until(self.wake_at())
            report = self.step(rollout_id)
        return report

    def steps(self, rollout_id: str, *, wait_until: Callable[[datetime | None], None]) -> Iterator[StepReport]:
        """Each step until settled (for callers that watch, like drills)."""
        while True:
            report = self.step(rollout_id)
            yield report
            if report.is_settled:
                return
            if not report.made_progress:
                wait_until(self.wake_at())


_VERBS = {
    OperationKind.restore_point: "take restore points",
    OperationKind.apply: "install the update",
    OperationKind.rollback: "roll back",
}


_DECIDES_ON_HEALTH = frozenset({*(p for p in RolloutPhase if p.is_running), RolloutPhase.ROLLING_BACK})
"""Phases whose decisions stand on health: gates, installs, and a rollback's order (rule 7), which may be asked
for hours after the halt."""


def _needs_health_now(view: RolloutView, decision: Decision) -> bool:
    """Whether ``decision`` must stand on a health reading taken now (a gate, or installs about to start)."""
    return not decision.is_empty and (view.state.phase in _DECIDES_ON_HEALTH or _starts_installs(decision))


def _starts_installs(decision: Decision) -> bool:
    return any(isinstance(a, StartOperation) and a.kind is OperationKind.apply for a in decision.actions)


def _progress(kind: OperationKind, result: OperationResult) -> AssetUpdate:
    ok = result.status == "succeeded"
    detail = result.detail or None
    if kind is OperationKind.restore_point:
        if ok:
            return AssetUpdate(result.asset_id, AssetState.RESTORE_POINT_TAKEN, detail, result.ref)
        return AssetUpdate(result.asset_id, AssetState.RESTORE_POINT_FAILED, detail)
    if kind is OperationKind.apply:
        return AssetUpdate(result.asset_id, AssetState.APPLIED if ok else AssetState.FAILED, detail)
    return AssetUpdate(result.asset_id, AssetState.ROLLED_BACK if ok else AssetState.ROLLBACK_FAILED, detail)


# ------------------------------------------------------------------------------------------ use cases


def start_rollout(repository: RolloutRepository, rollout_id: str, *, actor: str, at: datetime) -> RolloutState:
    """Start a pending rollout (its first ring's restore points or installs). Already running: unchanged."""
    with repository.session(rollout_id) as session:
        view = session.view()
        state = view.state
        if state.phase is RolloutPhase.AWAITING_APPROVAL:
            raise ConflictError(f"rollout {rollout_id} is awaiting approval; approve it before starting it")
        if state.phase is not RolloutPhase.PENDING:
            return state
        ring0 = len(view.ring(0))
        reason = (
            f"started by {actor}: ring 0 of {view.ring_count} ({ring0} asset{'s' if ring0 != 1 else ''}), "
            f"{len(view.assets)} targets in all"
        )
        new_state, record = transition(state, first_phase(view.update), reason, at=at)
        session.apply_transition(new_state, record, actor=actor)
        return new_state


def change_phase(
    repository: RolloutRepository,
    rollout_id: str,
    to: RolloutPhase,
    reason: str,
    *,
    actor: str,
    at: datetime,
    allowed_from: frozenset[RolloutPhase] | None = None,
    verb: str = "",
) -> RolloutState:
    """A person's move (pause, resume, abort, roll back) through the one door, with who and why."""
    with repository.session(rollout_id) as session:
        view = session.view()
        state = view.state
        if allowed_from is not None and state.phase not in allowed_from:
            raise ConflictError(
                f"rollout {rollout_id} is {state.phase}; it can only be {verb or to} when "
                f"{' or '.join(sorted(p.value for p in allowed_from))}"
            )
        if to is RolloutPhase.ROLLING_BACK and view.update.rollback == "none":
            raise ConflictError(
                f"rollout {rollout_id} cannot be rolled back: update '{view.update.id}' says rollback: none"
            )
        new_state, record = transition(state, to, reason, at=at)
        session.apply_transition(new_state, record, actor=actor)
        return new_state


def pause_rollout(
    repository: RolloutRepository, rollout_id: str, *, actor: str, at: datetime, why: str = ""
) -> RolloutState:
    running = frozenset(p for p in RolloutPhase if p.is_running)
    reason = f"paused by {actor}" + (f": {why}" if why else "")
    return change_phase(
        repository, rollout_id, RolloutPhase.PAUSED, reason, actor=actor, at=at, allowed_from=running, verb="paused"
    )


def resume_rollout(
    repository: RolloutRepository, rollout_id: str, *, actor: str, at: datetime, why: str = ""
) -> RolloutState:
    with repository.session(rollout_id) as session:
        state = session.view().state
    if state.phase is not RolloutPhase.PAUSED or state.paused_from is None:
        raise ConflictError(f"rollout {rollout_id} is {state.phase}; only a paused rollout can be resumed")
    reason = f"resumed by {actor}" + (f": {why}" if why else "")
    return change_phase(repository, rollout_id, state.paused_from, reason, actor=actor, at=at)


def abort_rollout(
    repository: RolloutRepository, rollout_id: str, *, actor: str, at: datetime, why: str = ""
) -> RolloutState:
    allowed = frozenset({*(p for p in RolloutPhase if p.is_running), RolloutPhase.PAUSED})
    reason = f"aborted by {actor}" + (f": {why}" if why else "")
    return change_phase(
        repository, rollout_id, RolloutPhase.HALTED, reason, actor=actor, at=at, allowed_from=allowed, verb="aborted"
    )


def roll_back_rollout(
    repository: RolloutRepository, rollout_id: str, *, actor: str, at: datetime, why: str = ""
) -> RolloutState:
    reason = f"rollback requested by {actor}" + (f": {why}" if why else "")
    return change_phase(
        repository,
        rollout_id,
        RolloutPhase.ROLLING_BACK,
        reason,
        actor=actor,
        at=at,
        allowed_from=frozenset({RolloutPhase.HALTED}),
        verb="rolled back",
    )


__all__ = [
    "RELEASES_RESTORE_POINTS",
    "SETTLED_PHASES",
    "Controller",
    "PendingDecision",
    "RolloutRepository",
    "RolloutSession",
    "StepReport",
    "abort_rollout",
    "change_phase",
    "pause_rollout",
    "resume_rollout",
    "roll_back_rollout",
    "start_rollout",
]


def _failed(health: Mapping[str, AssetHealth]) -> frozenset[str]:
    """The assets whose latest report is a failure. Read a column at a time (C loops, no Python frame per
    report): at a million reports, a generator expression costs a third of the guard's whole check."""
    statuses = map(attrgetter("status"), health.values())
    return frozenset(compress(health.keys(), map(is_, statuses, repeat(AssetStatus.failed))))
