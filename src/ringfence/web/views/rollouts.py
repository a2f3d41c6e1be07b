"""The rollouts list and a rollout's page: its rings, strata, the gate's live verdict, its phase changes, the
assets it broke and the buttons the caller may press, from the rollout use cases (status and log)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from ringfence.core.audit import AuditEntry
from ringfence.core.clock import utc_now
from ringfence.core.durations import humanize_duration
from ringfence.core.gates import AssetHealth, AssetStatus, RingVerdict, format_stratum
from ringfence.core.incident import Incident
from ringfence.core.rollout.reconcile import SINCE_INSTALL, RolloutView, judge
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.core.windows import RingSlot, format_local
from ringfence.service import incidents as incident_service
from ringfence.service import rollouts as rollout_service
from ringfence.service.people import person_of
from ringfence.service.tokens import Caller, Role
from ringfence.service.workers import worker_status
from ringfence.store.db import session_scope
from ringfence.store.observations import list_observations
from ringfence.store.records import ObservationKind, Rollout
from ringfence.store.rollouts import list_rollouts
from ringfence.web.security import may
from ringfence.web.views.shared import when


@dataclass(frozen=True)
class RolloutRow:
    id: str
    update: str
    phase: str
    ring: int
    rings: int
    created_by: str
    approved_by: str
    created_at: str
    updated_at: str
    halt_reason: str
    held_release: str
    """The release under a vendor hold it goes ahead despite, or ''."""


def rollout_rows(engine: Engine) -> list[RolloutRow]:
    """Every rollout, newest first."""
    with session_scope(engine, readonly=True) as session:
        found = list_rollouts(session)
    return [_rollout_row(r) for r in reversed(found)]


def _rollout_row(r: Rollout) -> RolloutRow:
    plan = r.plan if isinstance(r.plan, dict) else {}
    rings = plan.get("rings")
    held = plan.get("hold_override")
    return RolloutRow(
        id=r.id,
        update=r.update_id,
        phase=r.state.phase.value,
        ring=r.state.ring,
        rings=len(rings) if isinstance(rings, list) else 0,
        created_by=r.created_by,
        approved_by=r.approved_by or ("awaiting approval" if r.needs_approval else "not needed"),
        created_at=when(r.created_at),
        updated_at=when(r.state.updated_at),
        halt_reason=r.state.halt_reason or "",
        held_release=str(held.get("release", "")) if isinstance(held, dict) else "",
    )


@dataclass(frozen=True)
class RingRow:
    index: int
    name: str
    """``canary``, ``canary wave 2`` …, then ``ring N``: what the plan made of the ring."""
    assets: int
    updated: int
    """Targets the update reached: installed (healthy or not), being rolled back, or rolled back."""
    states: tuple[tuple[str, int], ...]
    strata: tuple[str, ...]
    is_current: bool


@dataclass(frozen=True)
class CalendarRow:
    """When a ring still ahead can start and be done at the earliest, under the update's change windows."""

    index: int
    name: str
    starts: str
    """``Sun 13 Dec 2026 01:00 GMT`` (London), or why it cannot."""
    waits: str
    """How long it waits for its window once the ring before it is done, or ''."""
    done: str


def calendar_rows(names: Sequence[str], slots: Sequence[RingSlot]) -> tuple[CalendarRow, ...]:
    return tuple(
        CalendarRow(
            index=slot.ring,
            name=names[slot.ring] if slot.ring < len(names) else f"ring {slot.ring}",
            starts=format_local(slot.starts_at) if slot.starts_at else "no opening within a year",
            waits=humanize_duration(slot.waits.total_seconds()) if slot.waits else "",
            done=format_local(slot.done_at) if slot.done_at else "—",
        )
        for slot in slots
    )


@dataclass(frozen=True)
class StratumRow:
    stratum: str
    targets: int
    updated: int
    healthy: int
    failed: int
    unknown: int
    outcome: str
    """The gate's outcome on the current ring for this stratum ('' when it has nothing to judge)."""
    sentence: str


@dataclass(frozen=True)
class Verdict:
    """A phase change and the sentence that explains it (the gate's verdict, or who did what and why)."""

    at: str
    actor: str
    from_phase: str
    to_phase: str
    ring: str
    reason: str


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    confirm: str
    """The question asked before acting ('' for none)."""
    is_danger: bool


@dataclass(frozen=True)
class FailedAsset:
    """An asset the rollout broke, what failed, and where it stands now."""

    id: str
    ring: str
    stratum: str
    what: str
    """What failed, in words: ``install failed: …``, ``crashed 20 min after install``."""
    state: str
    """Its state in the rollout now (``rolled_back``, ``rollback_failed``, ``applied`` …)."""
    state_detail: str
    """What its rollback said, once it has one."""


@dataclass(frozen=True)
class IncidentLink:
    """The incident the rollout's halt declared."""

    id: str
    status: str
    title: str


@dataclass(frozen=True)
class HoldOverride:
    """A vendor hold the rollout goes ahead despite: what an approver must read before approving."""

    release: str
    reason: str
    """The vendor's reason for the hold."""
    justification: str
    """Why the rollout's creator planned it anyway, as recorded when it was created."""
    by: str


@dataclass(frozen=True)
class RolloutPage:
    id: str
    update: str
    product: str
    version: str
    strategy: str
    health_source: str
    """What judges its health: ``driver`` (the driver's own reading) or the health source it names."""
    phase: str
    is_terminal: bool
    ring: int
    ring_name: str
    ring_count: int
    paused_from: str
    halt_reason: str
    created_by: str
    created_at: str
    approved_by: str
    needs_approval: bool
    updated_at: str
    rings: tuple[RingRow, ...]
    strata: tuple[StratumRow, ...]
    gate_sentence: str
    verdicts: tuple[Verdict, ...]
    actions: tuple[Action, ...]
    approval_note: str
    """Why an approver sees no approve button (they created the rollout), or ''."""
    hold_override: HoldOverride | None
    warnings: tuple[str, ...]
    failed_assets: tuple[FailedAsset, ...]
    incident: IncidentLink | None
    driven_by: str = ""
    """The live worker driving it, or ''."""
    waiting_for_worker: str = ""
    """Why nothing drives it while it runs (no live worker runs its driver), or ''."""
    waiting: str = ""
    """The controller's sentence when a change window or a freeze holds the next ring, until when; or ''."""
    opens_at: str = ""
    """When the window it waits for opens (London), or ''."""
    calendar: tuple[CalendarRow, ...] = ()
    """The rings still ahead: when each can start and be done at the earliest (with change windows only)."""


_INSTALLED = SINCE_INSTALL
_REACHED = _INSTALLED | {AssetState.ROLLED_BACK}


def rollout_page(engine: Engine, rollout_id: str, caller: Caller) -> RolloutPage:
    found = rollout_service.status(engine, rollout_id)
    entries = rollout_service.log(engine, rollout_id)
    view = _view(engine, rollout_id)
    r = found.rollout
    plan = r.plan if isinstance(r.plan, dict) else {}
    state = r.state
    update = view.update
    counts_by_ring: dict[int, int] = {}
    for a in found.assets:
        if a.state in _REACHED:
            counts_by_ring[a.ring] = counts_by_ring.get(a.ring, 0) + 1
    names = ring_names(plan, len(found.rings))
    incident = incident_service.of_rollout(engine, rollout_id)
    rings = tuple(
        RingRow(
            index=ring.index,
            name=names[ring.index],
            assets=ring.assets,
            updated=counts_by_ring.get(ring.index, 0),
            states=tuple(sorted(ring.states.items(), key=lambda item: _STATE_ORDER.get(item[0], 99))),
            strata=ring.strata,
            is_current=ring.index == state.ring and (state.phase.is_running or state.phase is RolloutPhase.PAUSED),
        )
        for ring in found.rings
    )
    verdict = _live_verdict(view)
    strata = _strata(view, verdict)
    warnings = plan.get("warnings")
    hold = _hold_override(r)
    by, waiting = worker_status(engine, r, utc_now())
    return RolloutPage(
        id=r.id,
        update=r.update_id,
        product=update.product,
        version=update.version,
        strategy=found.strategy,
        health_source=found.health_source,
        phase=state.phase.value,
        is_terminal=state.phase.is_terminal,
        ring=state.ring,
        ring_name=names[state.ring] if state.ring < len(names) else f"ring {state.ring}",
        ring_count=len(found.rings),
        paused_from=state.paused_from.value if state.paused_from else "",
        halt_reason=state.halt_reason or "",
        created_by=r.created_by,
        created_at=when(r.created_at),
        approved_by=r.approved_by or "",
        needs_approval=r.needs_approval,
        updated_at=when(state.updated_at),
        rings=rings,
        strata=strata,
        gate_sentence=verdict.sentence if verdict is not None else "",
        verdicts=tuple(_verdicts(entries)),
        actions=tuple(_actions(r, update.rollback, caller, hold)),
        approval_note=_approval_note(r, caller),
        hold_override=hold,
        warnings=tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
        failed_assets=_failed_assets(engine, r, view, names, incident),
        incident=IncidentLink(incident.id, incident.status.value, incident.title) if incident is not None else None,
        driven_by=by or "",
        waiting_for_worker=waiting or "",
        waiting=found.windows.waiting or "",
        opens_at=format_local(found.windows.opens_at) if found.windows.opens_at else "",
        calendar=calendar_rows(names, found.windows.calendar),
    )


_STATE_ORDER = {s.value: i for i, s in enumerate(AssetState)}


def ring_names(plan: Mapping[str, object], count: int) -> list[str]:
    """Each ring as the planner names it: ``canary``, ``canary wave 2`` …, then ``ring N``.

    Read defensively, from what the stored plan says of its canary phase: ``canary_rings`` (how many leading
    rings are canaries), or ``canary: true`` on each such ring. A plan that says neither (stored before
    canary waves) names each ring by its number rather than guess.
    """
    stored = plan.get("canary_rings")
    rings = plan.get("rings")
    if isinstance(stored, int) and not isinstance(stored, bool):
        canaries = stored
    elif isinstance(rings, list):
        # The canary phase is the leading rings only.
        canaries = next(
            (i for i, ring in enumerate(rings) if not (isinstance(ring, Mapping) and ring.get("canary") is True)),
            len(rings),
        )
    else:
        canaries = 0
    return [
        "canary" if i == 0 and canaries > 0 else f"canary wave {i + 1}" if i < canaries else f"ring {i}"
        for i in range(count)
    ]


def _failed_assets(
    engine: Engine, r: Rollout, view: RolloutView, names: Sequence[str], incident: Incident | None
) -> tuple[FailedAsset, ...]:
    """The assets the rollout broke — its install failed, its health failed since the install, or its rollback
    failed — each with what failed and where it stands now. Read from what was observed during the rollout,
    so an asset is still named, with its failure, once it has been rolled back and reports healthy again."""
    seen = _failures_seen(engine, r)
    recorded = {ref.removeprefix("asset:") for ref in incident.failed} if incident is not None else set()
    rows = []
    for a in sorted(view.assets, key=lambda a: (a.ring, a.asset_id)):
        what = seen.get(a.asset_id, "")
        if not what and incident is not None and a.asset_id in recorded:
            what = f"failed when the rollout halted (incident {incident.id})"
        if not what and a.state is AssetState.ROLLBACK_FAILED:
            what = "its rollback failed"
        if not what:
            continue
        has_rollback = a.state in (AssetState.ROLLING_BACK, AssetState.ROLLED_BACK, AssetState.ROLLBACK_FAILED)
        rows.append(
            FailedAsset(
                id=a.asset_id,
                ring=names[a.ring] if a.ring < len(names) else f"ring {a.ring}",
                stratum=format_stratum(a.stratum),
                what=what,
                state=a.state.value,
                state_detail=(a.detail or "") if has_rollback else "",
            )
        )
    return tuple(rows)


def _failures_seen(engine: Engine, r: Rollout) -> dict[str, str]:
    """What failed on each asset during rollout ``r``: its failed install and its last failed health reading,
    in words (``install failed: …``, ``crashed 20 min after install``)."""
    with session_scope(engine, readonly=True) as session:
        found = list_observations(
            session,
            since=r.created_at,
            rollout_id=r.id,
            kinds=[ObservationKind.INSTALL_RESULT, ObservationKind.HEALTH_CHECK],
        )
    install: dict[str, str] = {}
    health: dict[str, str] = {}
    for obs in found:
        if obs.status != AssetStatus.failed.value:  # "failed" for an operation's result and for a reading alike
            continue
        note = obs.detail.get("detail")
        said = f": {note}" if note else ""
        if obs.kind is ObservationKind.INSTALL_RESULT:
            install[obs.asset_id] = f"install failed{said}"
            continue
        signal = obs.detail.get("signal")
        after = obs.detail.get("seconds_after_install")
        when = f" {humanize_duration(float(after))} after install" if isinstance(after, int | float) else ""
        health[obs.asset_id] = f"{str(signal).replace('_', ' ') if signal else 'failed'}{when}{said}"
    return {a: "; ".join(w for w in (install.get(a), health.get(a)) if w) for a in install.keys() | health.keys()}


def _view(engine: Engine, rollout_id: str) -> RolloutView:
    # A read-only transaction: the page must never wait for (or hold up) the controller's lock.
    with session_scope(engine, readonly=True) as session:
        return rollout_service.SqlRolloutSession(session, rollout_id).view()


def _live_verdict(view: RolloutView) -> RingVerdict | None:
    """What the gate would say about the current ring now, once something in it is installed.

    Only while the rollout runs or is paused: once it has halted, the assets it never reached are skipped
    and no longer a control group, so judging again would contradict the verdict that halted it (which
    the page shows as the halt reason).
    """
    phase = view.state.phase
    if not (phase.is_running or phase is RolloutPhase.PAUSED):
        return None
    if not any(a.state in _INSTALLED for a in view.ring(view.state.ring)):
        return None
    return judge(view)


def _strata(view: RolloutView, verdict: RingVerdict | None) -> tuple[StratumRow, ...]:
    by_stratum = {format_stratum(v.stratum): v for v in verdict.strata} if verdict is not None else {}
    groups: dict[str, list[str]] = {}
    states: dict[str, AssetState] = {}
    for a in view.assets:
        groups.setdefault(format_stratum(a.stratum), []).append(a.asset_id)
        states[a.asset_id] = a.state
    rows = []
    for name in sorted(groups):
        members = groups[name]
        installed = [m for m in members if states[m] in _INSTALLED]
        health = [view.health.get(m) for m in installed]
        healthy = sum(1 for h in health if h is not None and h.status is AssetStatus.healthy)
        failed = sum(1 for m, h in zip(installed, health, strict=True) if _is_failed(states[m], h))
        judged = by_stratum.get(name)
        rows.append(
            StratumRow(
                stratum=name,
                targets=len(members),
                updated=len(installed),
                healthy=healthy,
                failed=failed,
                unknown=len(installed) - healthy - failed,
                outcome=judged.outcome.value if judged is not None else "",
                sentence=judged.sentence if judged is not None else "",
            )
        )
    return tuple(rows)


def _is_failed(state: AssetState, health: AssetHealth | None) -> bool:
    return state in (AssetState.FAILED, AssetState.ROLLBACK_FAILED) or (
        health is not None and health.status is AssetStatus.failed
    )


def _verdicts(entries: Sequence[AuditEntry]) -> list[Verdict]:
    """The rollout's phase changes with their sentences, newest first."""
    out = []
    for e in entries:
        if e.action != "rollout.transition":
            continue
        detail = e.detail
        ring = detail.get("ring")
        out.append(
            Verdict(
                at=when(e.at),
                actor=e.actor,
                from_phase=str(detail.get("from", "")),
                to_phase=str(detail.get("to", "")),
                ring="" if ring is None else str(ring),
                reason=str(detail.get("reason", "")),
            )
        )
    return list(reversed(out))


def _hold_override(r: Rollout) -> HoldOverride | None:
    held = rollout_service.stored_plan(r).hold_override
    if not held:
        return None
    return HoldOverride(
        release=held.get("release", ""),
        reason=held.get("reason", ""),
        justification=held.get("justification", ""),
        by=r.created_by,
    )


def _actions(r: Rollout, rollback: str, caller: Caller, hold: HoldOverride | None) -> list[Action]:
    """The buttons this caller may press now. The service layer checks again; this only hides the rest."""
    phase = r.state.phase
    found: list[Action] = []
    if (
        phase is RolloutPhase.AWAITING_APPROVAL
        and may(caller, Role.APPROVER)
        and person_of(caller.name) != person_of(r.created_by)
    ):
        # The question repeats the hold, so nobody approves an overridden hold without having read it.
        despite = f" It goes ahead despite the vendor hold on {hold.release}." if hold is not None else ""
        found.append(Action("approve", "Approve", f"Approve rollout {r.id} as {caller.name}?{despite}", False))
    if not may(caller, Role.OPERATOR):
        return found
    if phase is RolloutPhase.PENDING:
        found.append(Action("start", "Start", f"Start rollout {r.id}?", False))
    if phase.is_running:
        found.append(Action("pause", "Pause", "", False))
    if phase is RolloutPhase.PAUSED:
        found.append(Action("resume", "Resume", f"Resume rollout {r.id}?", False))
    if phase.is_running or phase is RolloutPhase.PAUSED:
        found.append(Action("abort", "Abort", f"Abort rollout {r.id}? It halts at once.", True))
    if phase is RolloutPhase.HALTED and rollback != "none":
        found.append(Action("rollback", "Roll back", f"Roll back every updated asset of {r.id}?", True))
    return found


def _approval_note(r: Rollout, caller: Caller) -> str:
    if r.state.phase is not RolloutPhase.AWAITING_APPROVAL:
        return ""
    if person_of(caller.name) == person_of(r.created_by):
        return f"You created {r.id}, so someone else with the approver role must approve it."
    if not may(caller, Role.APPROVER):
        return f"{r.id} is waiting for a person with the approver role who did not create it."
    return ""
