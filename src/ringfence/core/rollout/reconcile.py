"""The reconcile step: from what is persisted and observed, and the clock, decide what to do next.

:func:`reconcile` is pure and idempotent: the same view at the same time gives the same decision, and a
decision never repeats work the view shows as started. When unsure it does nothing and lets the next
pass act. The controller persists a decision (its phase changes and asset progress) before it calls a
driver, so a crash between deciding and acting repeats at most idempotent driver calls.

Per phase (ring ``r`` is the rollout's current ring):

- pending, awaiting approval, paused, completed, rolled back, failed: nothing (people act);
- taking restore points (rollback ``snapshot`` only): start a restore point on each of ring r's assets
  not yet asked; once each is taken or failed verification, apply. An asset whose restore point failed
  is never updated;
- applying: start the install on ring r's eligible assets (restore point taken, or pending when the
  update does not roll back by snapshot); once none is installing, bake (and judge at once without a
  bake);
- baking: judge when the bake is over — or at once when a gate judged now would fail (a crashed canary
  does not wait out the bake). Never earlier on a pass;
- judging: passed → the next ring (or completed); failed → halted, and rolling back in the same decision
  when the strategy rolls back and the update can; inconclusive or error → paused for a human;
- rolling back: roll back every asset updated in this rollout, all rings (the release is bad); when
  each is rolled back or its rollback failed → rolled back, or failed naming the assets;
- halted (and every stopped phase): assets never reached are marked skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from ringfence.core.driver import OperationKind
from ringfence.core.durations import humanize_duration
from ringfence.core.gates import (
    AssetStatus,
    GateOutcome,
    RingVerdict,
    StratumVerdict,
)
from ringfence.core.planner import Stratum, format_stratum
from ringfence.core.rollout.judging import _stratum_key, explain, judge
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.core.rollout.strategy import GateMode
from ringfence.core.rollout.view import (
    _NOT_YET_UPDATED,
    _UNREACHED,
    _UPDATED,
    MAX_SKIPPED_CANARIES,
    SINCE_INSTALL,
    Action,
    AssetProgress,
    AssetUpdate,
    CancelOperation,
    Decision,
    PhaseChange,
    RingMove,
    RolloutView,
    StartOperation,
    actions_from_document,
    first_phase,
    operation_deadline,
)
from ringfence.core.windows import RingOpening, RingSlot, ring_opening, ring_rules_now, update_calendar
from ringfence.core.words import count, names


def reconcile(view: RolloutView, now: datetime) -> Decision:
    """The next decision for the rollout in ``view`` at ``now``. See the module docstring."""
    # Change windows (ringfence.core.windows): a ring's restore points and installs start only inside the windows
    # of every asset in it, and a bake ends into the next ring only inside that ring's; else the decision waits,
    # saying until when. Rollbacks, cancels and deadlines never wait: undoing a bad release is not a change.
    overdue = _overdue(view, now)
    if not overdue.is_empty:
        return overdue
    phase = view.state.phase
    if phase is RolloutPhase.TAKING_RESTORE_POINTS:
        return _taking_restore_points(view, now)
    if phase is RolloutPhase.APPLYING:
        return _applying(view, now)
    if phase is RolloutPhase.BAKING:
        return _baking(view, now)
    if phase is RolloutPhase.JUDGING:
        return _judging(view)
    if phase is RolloutPhase.ROLLING_BACK:
        return _rolling_back(view)
    if phase is RolloutPhase.HALTED or phase.is_terminal:
        return Decision(asset_updates=_skip_unreached(view))
    return Decision()


# ------------------------------------------------------------------------------------------ the phases

GIVEN_UP = {
    OperationKind.restore_point: AssetState.RESTORE_POINT_FAILED,
    OperationKind.apply: AssetState.FAILED,
    OperationKind.rollback: AssetState.ROLLBACK_FAILED,
}
"""The state an asset ends in when its operation is given up (past its deadline, or refused by the driver)."""
_OPERATION = {
    OperationKind.restore_point: ("restore point", "restore_point"),
    OperationKind.apply: ("install", "apply"),
    OperationKind.rollback: ("rollback", "rollback"),
}


def _overdue(view: RolloutView, now: datetime) -> Decision:
    """Operations past their deadline: cancelled, and failed with a sentence saying how long was waited."""
    late: dict[OperationKind, list[str]] = {}
    for a in view.assets:
        kind = a.in_flight
        if kind is not None and now - a.updated_at > timedelta(seconds=operation_deadline(view.update, kind)):
            late.setdefault(kind, []).append(a.asset_id)
    updates: list[AssetUpdate] = []
    for kind, ids in late.items():
        noun, timing_key = _OPERATION[kind]
        why = (
            f"no {noun} result from the driver within {humanize_duration(operation_deadline(view.update, kind))} "
            f"(twice the update's timing.{timing_key} and 5 min more): treated as failed"
        )
        updates.extend(AssetUpdate(a, GIVEN_UP[kind], why) for a in ids)
    return Decision(
        actions=tuple(CancelOperation(kind, tuple(ids)) for kind, ids in late.items()), asset_updates=tuple(updates)
    )


def _taking_restore_points(view: RolloutView, now: datetime) -> Decision:
    r = view.state.ring
    ring = view.ring(r)
    unjudged = _unjudged(view, [a for a in ring if a.state is AssetState.PENDING])
    if unjudged:
        return Decision(asset_updates=_never_widen(unjudged))
    to_ask = tuple(a.asset_id for a in ring if a.state is AssetState.PENDING)
    if to_ask and (closed := _closed_window(view, r, now)) is not None:
        return _wait_for_window(view, closed, now)
    if to_ask:
        return Decision(
            actions=(StartOperation(OperationKind.restore_point, to_ask),),
            asset_updates=tuple(AssetUpdate(a, AssetState.RESTORE_POINT_REQUESTED) for a in to_ask),
        )
    if any(a.state is AssetState.RESTORE_POINT_REQUESTED for a in ring):
        return Decision()  # restore points still being taken
    taken = [a for a in ring if a.state is AssetState.RESTORE_POINT_TAKEN]
    failed = [a.asset_id for a in ring if a.state is AssetState.RESTORE_POINT_FAILED]
    reason = f"ring {r}: {len(taken)} of {len(ring)} restore points taken and verified"
    if failed:
        reason += (
            f"; {count(len(failed), 'asset')} whose restore point failed verification "
            f"will not be updated ({names(failed)})"
        )
    return Decision(transitions=(PhaseChange(RolloutPhase.APPLYING, reason),))


def _ready(view: RolloutView, a: AssetProgress) -> bool:
    """Ready to install: no asset is ever updated without a verified restore point when the update rolls back by
    snapshot."""
    if view.update.rollback == "snapshot":
        return a.state is AssetState.RESTORE_POINT_TAKEN
    return a.state is AssetState.PENDING


def _applying(view: RolloutView, now: datetime) -> Decision:
    r = view.state.ring
    ring = view.ring(r)
    ready = [a for a in ring if _ready(view, a)]
    unjudged = _unjudged(view, ready)
    if unjudged:
        return Decision(asset_updates=_never_widen(unjudged))
    held: list[str] = []
    if ready:
        room = _Redundancy(view, _unavailable(view), _down(view))
        to_apply = tuple(a.asset_id for a in ready if room.admit(a.asset_id) is None)
        if to_apply and (closed := _closed_window(view, r, now)) is not None:
            return _wait_for_window(view, closed, now)
        if to_apply:
            return Decision(
                actions=(StartOperation(OperationKind.apply, to_apply),),
                asset_updates=tuple(AssetUpdate(a, AssetState.APPLYING) for a in to_apply),
            )
        if any(a.state in (AssetState.APPLYING, AssetState.RESTORE_POINT_REQUESTED) for a in ring):
            return Decision()  # what holds them back may be running now; look again when it ends
        held = [a.asset_id for a in ready]
        # Held back by rule 7. When members this ring just updated are what holds them back, those are judged
        # first and the held ones go in a further wave of the ring once the gate passes (an updated member is not
        # proven up until its ring is judged). Anything else — a member down outside the rollout — needs a person.
        mine = {a.asset_id for a in ring if a.state in _UPDATED}
        if not any(b in mine for a in held for b in room.blockers(a)):
            reason = (
                f"ring {r}: {count(len(held), 'asset')} held back by rule 7 (redundancy at run time): "
                f"{room.why_blocked(held[0])}; resume once enough members are back up, or abort"
            )
            return Decision(transitions=(PhaseChange(RolloutPhase.PAUSED, reason),))
    if any(a.state in (AssetState.APPLYING, AssetState.RESTORE_POINT_REQUESTED) for a in ring):
        return Decision()  # installs still running
    waiting = set(held)
    stragglers = [a.asset_id for a in ring if a.state is AssetState.PENDING and a.asset_id not in waiting]
    applied = sum(1 for a in ring if a.state is AssetState.APPLIED)
    install_failed = [a.asset_id for a in ring if a.state is AssetState.FAILED]
    skipped = [a.asset_id for a in ring if a.state is AssetState.RESTORE_POINT_FAILED] + stragglers
    reason = f"ring {r}: {applied} of {len(ring)} assets updated"
    if install_failed:
        reason += f", {len(install_failed)} failed to install ({names(install_failed)})"
    if skipped:
        reason += f", {len(skipped)} skipped without a verified restore point ({names(skipped)})"
    if held:
        reason += f", {len(held)} held back by rule 7 for a further wave once these are judged ({names(held)})"
    transitions = [PhaseChange(RolloutPhase.BAKING, f"{reason}; baking for {humanize_duration(view.bake)}")]
    if view.bake <= 0:
        transitions = [
            PhaseChange(RolloutPhase.BAKING, f"{reason}; no bake"),
            PhaseChange(RolloutPhase.JUDGING, f"ring {r} has no bake: judged as soon as it is applied"),
        ]
    updates = tuple(AssetUpdate(a, AssetState.SKIPPED, "never updated: no verified restore point") for a in stragglers)
    return Decision(transitions=tuple(transitions), asset_updates=updates)


def _baking(view: RolloutView, now: datetime) -> Decision:
    r = view.state.ring
    elapsed = (now - view.phase_entered_at).total_seconds()
    # The bake ends into the next ring only inside that ring's windows; meanwhile it bakes on (still watched).
    closed = _closed_window(view, r + 1, now) if elapsed >= view.bake and r + 1 < view.ring_count else None
    if elapsed >= view.bake and closed is None:
        return Decision(
            transitions=(PhaseChange(RolloutPhase.JUDGING, f"ring {r} baked for {humanize_duration(view.bake)}"),)
        )
    # A crashed canary should not wait out the bake: judge now, and leave early only on a failure.
    if view.gate_mode is not GateMode.none:
        verdict = judge(view)
        if verdict.outcome is GateOutcome.failed:
            reason = (
                f"ring {r}: a failure seen {humanize_duration(elapsed)} into the "
                f"{humanize_duration(view.bake)} bake; judging now"
            )
            return Decision(transitions=(PhaseChange(RolloutPhase.JUDGING, reason),))
    if closed is not None:
        return _wait_for_window(view, closed, now, f"ring {r} baked for {humanize_duration(view.bake)}; ")
    return Decision()


def _closed_window(view: RolloutView, ring: int, now: datetime) -> RingOpening | None:
    """Why ring ``ring`` may not open at ``now`` (its windows, a freeze, an incident's freeze); None: it may."""
    update = view.update
    if not (update.windows or update.freezes or view.incident_freezes):
        return None
    rules = ring_rules_now(view.ring_windows, view.planned_rings, ring, (a.asset_id for a in view.ring(ring)))
    opening = ring_opening(ring, update.windows, rules, update.freezes, view.incident_freezes, now)
    return None if opening.is_open else opening


def window_wait(view: RolloutView, now: datetime) -> Decision | None:
    """What a running rollout waits for at ``now`` when a change window, a freeze or an incident's freeze holds
    its next ring: the decision the controller would take (its ``waiting`` sentence and ``wake_at``, the
    opening), for the status document and the dashboard to say what the controller says. None: it waits for no
    window (or does not run). Only rollouts held to windows are reconciled here, so reading a status costs the
    others nothing."""
    update = view.update
    if not view.state.phase.is_running or not (update.windows or update.freezes or view.incident_freezes):
        return None
    decision = reconcile(view, now)
    return decision if decision.waiting is not None else None


def rollout_calendar(view: RolloutView, now: datetime) -> tuple[RingSlot, ...]:
    """When each ring still ahead (the current one first) can start and be done at the earliest, from ``now``
    (core.windows.ring_calendar, as the plan's calendar); () without windows or freezes, or once it is over."""
    update = view.update
    phase = view.state.phase
    if phase.is_terminal or not (update.windows or update.freezes):
        return ()
    first = view.state.ring
    rings = range(first, view.ring_count)
    slots = update_calendar(
        update,
        [ring_rules_now(view.ring_windows, view.planned_rings, r, (a.asset_id for a in view.ring(r))) for r in rings],
        [view.bake for _ in rings],
        now,
    )
    return tuple(replace(slot, ring=slot.ring + first) for slot in slots)


def _wait_for_window(view: RolloutView, closed: RingOpening, now: datetime, before: str = "") -> Decision:
    """Wait for the window, saying until when; or, when the windows never coincide, pause for a person (a wait
    that can never end would wedge the rollout). An incident's freeze is waited out: it ends when the incident
    is closed, which the next pass sees."""
    sentence = before + closed.sentence(now)
    if closed.opens_at is None and not view.incident_freezes:
        reason = f"{sentence}; a person must look (change the windows, or abort)"
        return Decision(transitions=(PhaseChange(RolloutPhase.PAUSED, reason),))
    return Decision(waiting=sentence, wake_at=closed.opens_at)


def _judging(view: RolloutView) -> Decision:
    r = view.state.ring
    verdict = judge(view)
    sentence = explain(verdict)
    # A canary ring whose every canary was skipped judged nothing at all: a replacement wave, not a person.
    if verdict.outcome is GateOutcome.passed or (not verdict.strata and r < view.canary_rings):
        wave, note = _canary_wave(view, verdict, sentence)
        if wave is not None:
            return wave
        sentence += note
    if verdict.outcome is GateOutcome.passed:
        held = [a.asset_id for a in view.ring(r) if _ready(view, a)]
        if held:
            reason = (
                f"{sentence}; another wave of ring {r} for the {count(len(held), 'asset')} rule 7 held back "
                f"until these were judged ({names(held)})"
            )
            return Decision(transitions=(PhaseChange(first_phase(view.update), reason, r),), verdict=verdict)
    if verdict.outcome is GateOutcome.passed:
        if r + 1 < view.ring_count:
            nxt = len(view.ring(r + 1))
            reason = f"{sentence}; starting ring {r + 1} ({count(nxt, 'asset')})"
            return Decision(transitions=(PhaseChange(first_phase(view.update), reason, r + 1),), verdict=verdict)
        done = sum(1 for a in view.assets if a.state is AssetState.APPLIED)
        reason = f"{sentence}; {done} of {len(view.assets)} targets updated"
        return Decision(transitions=(PhaseChange(RolloutPhase.COMPLETED, reason),), verdict=verdict)
    if verdict.outcome is GateOutcome.failed:
        transitions = [PhaseChange(RolloutPhase.HALTED, sentence)]
        if view.rolls_back_on_halt and view.update.rollback != "none":
            updated = sum(1 for a in view.assets if a.state in _UPDATED or a.state is AssetState.APPLYING)
            how = "from their verified restore points" if view.update.rollback == "snapshot" else "by reinstalling"
            transitions.append(
                PhaseChange(
                    RolloutPhase.ROLLING_BACK,
                    f"ring {r} failed its gate: rolling back the {count(updated, 'asset')} updated so far, {how}",
                )
            )
        return Decision(transitions=tuple(transitions), asset_updates=_skip_unreached(view), verdict=verdict)
    # Inconclusive or error: a person decides; missing telemetry is never a pass.
    return Decision(transitions=(PhaseChange(RolloutPhase.PAUSED, sentence),), verdict=verdict)


def _canary_wave(view: RolloutView, verdict: RingVerdict, sentence: str) -> tuple[Decision | None, str]:
    """Rule 6 at the end of a canary ring: a stratum the ring held but could not judge (every canary of it was
    skipped before its install) gets a replacement canary in a further wave of this ring, or the rollout
    pauses for a person. Returns that decision, or None and a note for strata with nothing left to widen."""
    r = view.state.ring
    if r >= view.canary_rings:
        return None, ""
    ring = view.ring(r)
    held: dict[Stratum, list[AssetProgress]] = {}
    for a in ring:
        held.setdefault(a.stratum, []).append(a)
    judged_here = {a.stratum for a in ring if a.state in _UPDATED}
    earlier = {a.stratum for a in view.assets if a.ring < r and a.state is AssetState.APPLIED}
    ahead = {a.stratum for a in view.assets if r < a.ring < view.canary_rings and a.state in _NOT_YET_UPDATED}
    unjudged = sorted((s for s in held if s not in judged_here | earlier | ahead), key=_stratum_key)
    if not unjudged:
        return None, ""
    wanted = set(unjudged)
    spares: dict[Stratum, list[AssetProgress]] = {}
    for a in view.assets:
        if a.ring >= view.canary_rings and a.state is AssetState.PENDING and a.stratum in wanted:
            spares.setdefault(a.stratum, []).append(a)
    room = _Redundancy(view, _unavailable(view), _down(view))
    # Rule 4 holds for the ring a replacement joins, as planned rings hold it: no more than n − K members of a
    # group in it, not counting those skipped before their install (they are never updated). Rule 7 alone would
    # let a fifth member join four proven up; the rule, and the safety guard, count the ring.
    ring_load: dict[int, int] = {}
    for a in ring:
        if a.state not in (AssetState.RESTORE_POINT_FAILED, AssetState.SKIPPED):
            for g in view.groups_of.get(a.asset_id, ()):
                ring_load[g] = ring_load.get(g, 0) + 1

    def overfills(asset_id: str) -> int | None:
        return next(
            (g for g in view.groups_of.get(asset_id, ()) if 0 < view.groups[g].capacity <= ring_load.get(g, 0)),
            None,
        )

    moves: list[RingMove] = []
    blocked: list[str] = []
    nothing_left: list[str] = []
    for stratum in unjudged:
        name = format_stratum(stratum)
        skipped = [a for a in held[stratum] if a.state in (AssetState.RESTORE_POINT_FAILED, AssetState.SKIPPED)]
        why_skipped = (
            f"{names([a.asset_id for a in skipped])} skipped ({skipped[-1].detail or 'not updated'})"
            if skipped
            else f"{names([a.asset_id for a in held[stratum]])} not updated"
        )
        if len(skipped) >= MAX_SKIPPED_CANARIES:
            blocked.append(f"stratum {name}: {len(skipped)} canaries skipped in a row, {why_skipped}")
            continue
        # The least critical spare first (rule 3), then the earliest planned, then by id: deterministic.
        candidates = sorted(spares.get(stratum, []), key=lambda a: (-view.tiers.get(a.asset_id, 0), a.ring, a.asset_id))
        if not candidates:
            nothing_left.append(f"stratum {name} ({why_skipped}) has no asset left to update")
            continue
        pick = next((a for a in candidates if overfills(a.asset_id) is None and room.admit(a.asset_id) is None), None)
        if pick is None:
            first = candidates[0].asset_id
            full = overfills(first)
            why = (
                room.why_blocked(first)
                if full is None
                else f"{view.groups[full].describe()}; ring {r} holds {ring_load[full]} of them already, "
                f"the {view.groups[full].capacity} that may be down at once"
            )
            blocked.append(
                f"stratum {name}: {why_skipped}, and no replacement can be updated now without breaking "
                f"redundancy ({why})"
            )
            continue
        for g in view.groups_of.get(pick.asset_id, ()):
            ring_load[g] = ring_load.get(g, 0) + 1
        moves.append(RingMove(pick.asset_id, r, f"replacement canary for stratum {name}: {why_skipped}"))
    if blocked:
        reason = (
            f"{sentence} — but no stratum may widen unjudged (rule 6): {'; '.join(blocked)}; "
            "a person decides (resume to try again, or abort)"
        )
        return Decision(transitions=(PhaseChange(RolloutPhase.PAUSED, reason),), verdict=verdict), ""
    note = f"; {'; '.join(nothing_left)}" if nothing_left else ""
    if not moves:
        return None, note
    replaced = ", ".join(f"{m.asset_id} for stratum {format_stratum(_stratum_of(view, m.asset_id))}" for m in moves)
    reason = (
        f"{sentence}{note} — {count(len(moves), 'stratum')} not judged yet, its canary skipped: "
        f"another canary wave of ring {r} with {replaced}"
    )
    return Decision(
        transitions=(PhaseChange(first_phase(view.update), reason, r),), ring_moves=tuple(moves), verdict=verdict
    ), ""


def _rolling_back(view: RolloutView) -> Decision:
    skip = _skip_unreached(view)
    to_roll = [a.asset_id for a in view.assets if a.state in (AssetState.APPLIED, AssetState.FAILED)]
    # Assets already down go first (rolling them back can only bring them up); the healthy ones as redundancy allows.
    # A member of this ring not proven up may be down or carrying its service alone: counted, never waved through.
    room = _Redundancy(view, _unavailable(view), _down(view), rollback=True)
    start = tuple(a for a in to_roll if room.admit(a) is None)
    if start:
        return Decision(
            actions=(StartOperation(OperationKind.rollback, start),),
            asset_updates=(*skip, *(AssetUpdate(a, AssetState.ROLLING_BACK) for a in start)),
        )
    # An install still running is rolled back once it has finished, never in the middle.
    if any(a.state in (AssetState.APPLYING, AssetState.ROLLING_BACK) for a in view.assets):
        return Decision(asset_updates=skip)
    rolled = sum(1 for a in view.assets if a.state is AssetState.ROLLED_BACK)
    failed = [a.asset_id for a in view.assets if a.state is AssetState.ROLLBACK_FAILED]
    if to_roll:
        # Healthy on the new release, and rolling them back now would take a service below K: a rollback that
        # waited for that could wait for ever, so it ends here and says what a person must finish.
        reason = (
            f"{count(len(to_roll), 'asset')} left on {view.update.release} ({names(to_roll)}): rolling "
            f"{'it' if len(to_roll) == 1 else 'them'} back now would break redundancy "
            f"({room.why_blocked(to_roll[0])}); roll back by hand once enough members are up"
        )
        if failed:
            reason = f"{len(failed)} rollbacks failed ({names(failed)}); {reason}"
        return Decision(transitions=(PhaseChange(RolloutPhase.FAILED, reason),), asset_updates=skip)
    if failed:
        reason = f"{len(failed)} of {len(failed) + rolled} rollbacks failed ({names(failed)}); they need a person"
        return Decision(transitions=(PhaseChange(RolloutPhase.FAILED, reason),), asset_updates=skip)
    return Decision(
        transitions=(PhaseChange(RolloutPhase.ROLLED_BACK, f"all {count(rolled, 'updated asset')} rolled back"),),
        asset_updates=skip,
    )


def _skip_unreached(view: RolloutView) -> tuple[AssetUpdate, ...]:
    why = f"never updated: the rollout stopped at ring {view.state.ring}"
    return tuple(AssetUpdate(a.asset_id, AssetState.SKIPPED, why) for a in view.assets if a.state in _UNREACHED)


# ------------------------------------------------------------------------------------------ rules 6 and 7

_OUT_OF_SERVICE = frozenset(
    {AssetState.APPLYING, AssetState.FAILED, AssetState.ROLLING_BACK, AssetState.ROLLBACK_FAILED}
)
"""States in which a target is unavailable because of the rollout: being updated, failed, rolling back."""


def _unjudged(view: RolloutView, assets: Iterable[AssetProgress]) -> list[AssetProgress]:
    """Rule 6: of ``assets`` (about to be touched in a ring after the canary phase), those whose stratum has no
    canary that was updated and judged healthy — an applied asset of a canary ring the rollout has passed."""
    r = view.state.ring
    if view.canary_rings == 0 or r < view.canary_rings:
        return []
    candidates = list(assets)
    if not candidates:
        return []
    judged = {a.stratum for a in view.assets if a.ring < view.canary_rings and a.state is AssetState.APPLIED}
    return [a for a in candidates if a.stratum not in judged]


def _never_widen(assets: Sequence[AssetProgress]) -> tuple[AssetUpdate, ...]:
    return tuple(
        AssetUpdate(
            a.asset_id,
            AssetState.SKIPPED,
            f"never updated: no canary of stratum {format_stratum(a.stratum)} was updated and judged healthy (rule 6)",
        )
        for a in assets
    )


def _down(view: RolloutView) -> set[str]:
    """Assets out of service now: targets being updated, failed or rolling back, and anything whose latest reading
    is a failure (members down before the rollout started, or outside it, count too)."""
    down = {a for a, h in view.health.items() if h.status is AssetStatus.failed}
    down.update(a.asset_id for a in view.assets if a.state in _OUT_OF_SERVICE)
    return down


def _unavailable(view: RolloutView) -> set[str]:
    """What an install may not count on: the assets :func:`_down`, and this ring's updated assets, which are not
    proven up until the ring is judged (a release that crashes two minutes after it loads reports healthy for a
    minute first) — those of an earlier wave of the ring that passed its gate are."""
    unavailable = _down(view)
    r = view.state.ring
    judged = view.ring_passed_at
    unavailable.update(
        a.asset_id
        for a in view.assets
        if a.state is AssetState.APPLIED and a.ring == r and (judged is None or a.updated_at > judged)
    )
    return unavailable


class _Redundancy:
    """Rule 7 as the rollout admits assets one at a time: a group never has more than n − K members unavailable."""

    def __init__(self, view: RolloutView, unavailable: set[str], down: set[str], *, rollback: bool = False) -> None:
        self.view = view
        self.unavailable = unavailable
        self.down = down
        """Out of service already."""
        self.rollback = rollback
        """Rolling back a member that is down can only bring it up: it always may. An install on a down member
        adds nothing to the count either, but the rule counts every member down (rule 7: at no moment more than
        n − K unavailable, counting those already down): a group already below K is left alone, for a person."""
        self.load: dict[int, int] = {}

    def _used(self, g: int) -> int:
        found = self.load.get(g)
        if found is None:
            found = self.load[g] = sum(1 for m in self.view.groups[g].members if m in self.unavailable)
        return found

    def admit(self, asset_id: str) -> int | None:
        """Take ``asset_id`` out of service if every group of it has room (None), else the group that is full."""
        mine = self.view.groups_of.get(asset_id, ())
        if not mine or (self.rollback and asset_id in self.down):
            return None
        # An asset already counted (updated in this ring, not proven up) takes nothing more out by its own
        # operation, but the others counted still do: it is admitted only if the group has room beside them.
        counted = 1 if asset_id in self.unavailable else 0
        full = next((g for g in mine if self._used(g) - counted >= self.view.groups[g].capacity), None)
        if full is None and not counted:
            for g in mine:
                self.load[g] += 1
        return full

    def _full(self, asset_id: str) -> int | None:
        groups = self.view.groups
        counted = 1 if asset_id in self.unavailable else 0
        mine = self.view.groups_of.get(asset_id, ())
        return next((g for g in mine if self._used(g) - counted >= groups[g].capacity), None)

    def blockers(self, asset_id: str) -> list[str]:
        """The unavailable members of the first group that has no room for ``asset_id``."""
        full = self._full(asset_id)
        members = [] if full is None else self.view.groups[full].members
        return [m for m in members if m in self.unavailable and m != asset_id]

    def why_blocked(self, asset_id: str) -> str:
        full = self._full(asset_id)
        if full is None:
            return f"{asset_id} may be taken out of service"
        group = self.view.groups[full]
        out = self.blockers(asset_id)
        return (
            f"{group.describe()}; {names(out)} {'is' if len(out) == 1 else 'are'} unavailable, so {asset_id} "
            f"would leave {len(group.members) - len(out) - 1} up"
        )


def _stratum_of(view: RolloutView, asset_id: str) -> Stratum:
    return next(a.stratum for a in view.assets if a.asset_id == asset_id)


__all__ = [
    "GIVEN_UP",
    "SINCE_INSTALL",
    "Action",
    "AssetProgress",
    "AssetUpdate",
    "CancelOperation",
    "Decision",
    "PhaseChange",
    "RingMove",
    "RolloutView",
    "StartOperation",
    "StratumVerdict",
    "actions_from_document",
    "explain",
    "first_phase",
    "judge",
    "operation_deadline",
    "reconcile",
    "rollout_calendar",
    "window_wait",
]
