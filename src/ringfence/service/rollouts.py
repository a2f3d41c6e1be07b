"""Rollout use cases over SQL: create, approve, start, run, pause, resume, abort, roll back, status, log.

Each use case is one transaction (``session_scope``); every phase change goes through
``ringfence.core.rollout.state.transition`` and lands in the audit log in the same transaction (the store's
``apply_transition`` writes both). :class:`SqlRolloutRepository` is the controller's repository on
``ringfence.store``: one session per transaction, the rollout's lock taken first.

How a rollout is stored
    ``rollouts.update_doc`` the update as JSON; ``rollouts.plan`` the strategy (name, gate mode, bake,
    whether it rolls back, the rings, the driver, the health source, plan warnings); ``rollout_assets`` each
    target's ring, stratum (a JSON list) and progress; ``decisions`` the controller's decisions (actions as JSON);
    ``observations`` operation results and health readings (a reading is written when it changes, or
    when the last one predates the asset's install, so the latest reading is always the one to use).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.core.audit import AuditEntry, AuditValue
from ringfence.core.clock import utc_now
from ringfence.core.documents import RingStatusOut, RolloutAssetOut, RolloutStatusDocument, calendar_document
from ringfence.core.driver import DRIVERS_OWN_HEALTH, Driver, HealthSource, OperationKind, OperationResult
from ringfence.core.errors import ConflictError, InputError, Problem
from ringfence.core.estate import locate_problems, parse_estate_text
from ringfence.core.gates import AssetHealth, RingVerdict
from ringfence.core.graph import compile_estate
from ringfence.core.planner import format_stratum
from ringfence.core.rollout.controller import (
    Controller,
    PendingDecision,
    StepReport,
    abort_rollout,
    pause_rollout,
    resume_rollout,
    roll_back_rollout,
    start_rollout,
)
from ringfence.core.rollout.reconcile import (
    AssetUpdate,
    Decision,
    RingMove,
    RolloutView,
    actions_from_document,
)
from ringfence.core.rollout.state import (
    AssetState,
    RolloutPhase,
    RolloutState,
    Transition,
    check_asset_moves,
    transition,
)
from ringfence.core.rollout.strategy import StrategyPlan, plan_strategy
from ringfence.core.update import Hold, HoldOverride, Update, check_holds, parse_update_text
from ringfence.drivers.registry import available_health_sources, require_driver_able
from ringfence.service.estates import record_estate_text, require_current_of_record, require_held_targets
from ringfence.service.people import Actor, refuse_same_person
from ringfence.service.policies import run_after_transition
from ringfence.service.rollout_view import (
    NO_WINDOWS,
    WindowStatus,
    latest_health,
    read_rollout_view,
    stored_plan,
    window_status,
)
from ringfence.store.audit import append_audit, list_audit
from ringfence.store.db import rollout_lock, session_scope
from ringfence.store.decisions import add_decision as insert_decision
from ringfence.store.decisions import list_decisions
from ringfence.store.decisions import mark_decision_done as mark_stored_decision_done
from ringfence.store.observations import add_observations
from ringfence.store.records import (
    DecisionStatus,
    EstateFormat,
    JSONValue,
    Observation,
    ObservationKind,
    Rollout,
    RolloutAsset,
)
from ringfence.store.rollouts import apply_transition as write_transition
from ringfence.store.rollouts import create_rollout as insert_rollout
from ringfence.store.rollouts import get_rollout, list_rollout_assets, rollout_creator_token, upsert_rollout_assets
from ringfence.store.verdicts import add_gate_verdict

RESTORE_POINTS_RELEASED = "rollout.restore_points_released"
"""The audit action recording that the driver let go of a finished rollout's restore points (its sentences)."""

_RESULT_KIND = {
    OperationKind.restore_point: ObservationKind.RESTORE_POINT,
    OperationKind.apply: ObservationKind.INSTALL_RESULT,
    OperationKind.rollback: ObservationKind.ROLLBACK_RESULT,
}


# ------------------------------------------------------------------------------------------ repository


class SqlRolloutRepository:
    """The controller's repository on the SQL store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def session(self, rollout_id: str) -> Iterator[SqlRolloutSession]:
        with session_scope(self.engine) as session:
            rollout_lock(session, rollout_id)
            yield SqlRolloutSession(session, rollout_id)


class SqlRolloutSession:
    def __init__(self, session: Session, rollout_id: str) -> None:
        self.session = session
        self.rollout_id = rollout_id

    def view(self) -> RolloutView:
        return read_rollout_view(self.session, self.rollout_id)

    def pending_decision(self) -> PendingDecision | None:
        pending = list_decisions(self.session, self.rollout_id, status=DecisionStatus.PENDING)
        if not pending:
            return None
        first = pending[0]
        return PendingDecision(first.seq, actions_from_document(first.payload))

    def apply_transition(self, new_state: RolloutState, record: Transition, *, actor: str) -> None:
        """Write the transition and its audit entry, then run the after-transition policies that fire on it
        (``ringfence.service.policies``), all in this one transaction: a side effect never lands without its
        transition, nor a transition without its side effects."""
        write_transition(self.session, record, new_state, actor=actor)
        run_after_transition(self.session, record, actor=actor)

    def update_assets(self, updates: Sequence[AssetUpdate], at: datetime) -> None:
        current = {a.asset_id: a for a in list_rollout_assets(self.session, self.rollout_id)}
        # The whole batch through the asset door before any row is written: a refused move changes nothing.
        check_asset_moves(
            self.rollout_id, {a: row.state for a, row in current.items()}, ((u.asset_id, u.state) for u in updates)
        )
        rows = []
        for u in updates:
            old = current[u.asset_id]
            ref = u.restore_point_ref if u.restore_point_ref is not None else old.restore_point_ref
            rows.append(
                RolloutAsset(
                    asset_id=u.asset_id,
                    ring=old.ring,
                    stratum=old.stratum,
                    state=u.state,
                    updated_at=at,
                    detail=u.detail,
                    restore_point_ref=ref,
                )
            )
        upsert_rollout_assets(self.session, self.rollout_id, rows)

    def move_assets(self, moves: Sequence[RingMove], at: datetime) -> None:
        current = {a.asset_id: a for a in list_rollout_assets(self.session, self.rollout_id)}
        # A ring move keeps the state: through the door all the same, so every write of an asset passes it.
        check_asset_moves(
            self.rollout_id,
            {a: row.state for a, row in current.items()},
            ((m.asset_id, current[m.asset_id].state) for m in moves),
        )
        upsert_rollout_assets(
            self.session,
            self.rollout_id,
            [
                RolloutAsset(
                    asset_id=m.asset_id,
                    ring=m.ring,
                    stratum=current[m.asset_id].stratum,
                    state=current[m.asset_id].state,
                    updated_at=at,
                    detail=m.detail,
                    restore_point_ref=current[m.asset_id].restore_point_ref,
                )
                for m in moves
            ],
        )

    def record_verdict(self, verdict: RingVerdict, at: datetime) -> None:
        add_gate_verdict(self.session, self.rollout_id, verdict, at=at)

    def add_decision(self, decision: Decision, at: datetime) -> int:
        payload: dict[str, JSONValue] = {
            "actions": cast(JSONValue, decision.actions_document()),
            "transitions": [{"to": t.to.value, "reason": t.reason} for t in decision.transitions],
        }
        return insert_decision(self.session, self.rollout_id, kind="reconcile", payload=payload, at=at).seq

    def mark_decision_done(self, seq: int, at: datetime) -> None:
        mark_stored_decision_done(self.session, self.rollout_id, seq, at=at)

    def record_results(self, kind: OperationKind, results: Sequence[OperationResult], at: datetime) -> None:
        add_observations(
            self.session,
            [
                Observation(
                    asset_id=r.asset_id,
                    at=at,
                    kind=_RESULT_KIND[kind],
                    status=r.status,
                    detail={"detail": r.detail, "ref": r.ref},
                    rollout_id=self.rollout_id,
                )
                for r in results
            ],
        )

    def record_health(self, health: Mapping[str, AssetHealth], at: datetime) -> None:
        rollout = get_rollout(self.session, self.rollout_id)
        latest = latest_health(self.session, self.rollout_id, rollout.created_at)
        installed = {a.asset_id: a.updated_at for a in list_rollout_assets(self.session, self.rollout_id)}
        fresh = []
        for asset_id, reading in health.items():
            last = latest.get(asset_id)
            stale = last is not None and asset_id in installed and last[0] < installed[asset_id]
            if last is None or last[1] != reading or stale:
                fresh.append(
                    Observation(
                        asset_id=asset_id,
                        at=at,
                        kind=ObservationKind.HEALTH_CHECK,
                        status=reading.status.value,
                        detail={
                            "signal": reading.signal.value if reading.signal else None,
                            "seconds_after_install": reading.seconds_after_install,
                            "detail": reading.detail,
                        },
                        rollout_id=self.rollout_id,
                    )
                )
        if fresh:
            add_observations(self.session, fresh)

    def restore_points_released(self) -> bool:
        # Kept in the audit log, not a column: the entry that says what the driver did is the flag itself, and
        # only a rollout that is over asks (once, or again after a crash between its end and the release).
        subject = f"rollout:{self.rollout_id}"
        return bool(list_audit(self.session, subject=subject, action=RESTORE_POINTS_RELEASED, limit=1))

    def record_restore_points_released(self, sentences: Sequence[str], at: datetime, *, actor: str) -> None:
        append_audit(
            self.session,
            actor=actor,
            action=RESTORE_POINTS_RELEASED,
            subject=f"rollout:{self.rollout_id}",
            detail={"sentences": list(sentences)},
            at=at,
        )


# ------------------------------------------------------------------------------------------ use cases


@dataclass(frozen=True)
class CreatedRollout:
    """A rollout created (``rollout`` None on a dry run) and the plan it follows."""

    rollout: Rollout | None
    strategy: StrategyPlan
    update: Update
    hold_override: HoldOverride | None


def create_rollout(
    engine: Engine | None,
    *,
    estate_text: str,
    estate_source: str,
    update_text: str,
    update_source: str,
    actor: str,
    at: datetime,
    holds: Sequence[Hold] = (),
    override_hold: str | None = None,
    driver: str = "simulated",
    strategy: str = "ringfence",
    require_approval: bool = False,
    dry_run: bool = False,
    health_source: str | None = None,
    actor_token: int | None = None,
) -> CreatedRollout:
    """Plan an update on an estate and store it as a new rollout (pending, or awaiting approval).

    A release under a vendor hold is refused unless ``override_hold`` says why; an overridden hold
    always needs someone else's approval before the rollout can start. ``health_source`` names what judges
    the rollout's health (None: its driver's own reading); an unknown name is refused, nothing stored.

    Stored, a rollout is planned on the estate of record only (``ringfence.service.estates``): the text is
    recorded as an upload would be (a first upload, or a version that weakens nothing, becomes current), and
    the rollout is refused (409, naming what differs, nothing stored but the version) unless the text is its
    estate's current version and that version holds every target. A dry run plans on any text.
    ``actor_token`` is the API token creating it (None on the CLI): the two-person rule compares persons.
    """
    judged_by = check_health_source(health_source)
    estate = parse_estate_text(estate_text, estate_source)
    update = parse_update_text(update_text, update_source)
    require_driver_able(driver, update, source=update_source, text=update_text)  # before anything is planned or stored
    override = check_holds(update, holds, override_hold)
    graph = compile_estate(estate)
    try:
        planned = plan_strategy(strategy, graph, update, hold_override=override)
    except InputError as exc:
        # What only the estate reveals (targets that match nothing, a window rule naming no service) is located in
        # the update file, as the file's own problems are.
        located = [replace(p, source=p.source or update_source) for p in exc.problems]
        raise InputError(locate_problems(located, update_text)) from None
    if dry_run or engine is None:
        return CreatedRollout(None, planned, update, override)
    needs_approval = require_approval or override is not None
    plan_doc = cast(JSONValue, planned.stored(driver, override, health_source=judged_by).to_document())
    fmt = EstateFormat.JSON if estate_source.lower().endswith(".json") else EstateFormat.YAML
    with session_scope(engine) as session:
        recorded = record_estate_text(session, estate_text, estate, fmt, actor=actor, at=at, actor_token=actor_token)
        version = recorded.version
        refusal: ConflictError | None = None
        try:
            require_current_of_record(session, version, estate)
            require_held_targets(session, version, [a for ring in planned.rings for a in ring])
        except ConflictError as exc:
            refusal = exc  # the version (a proposal, say) is kept; the rollout is not
    if refusal is not None:
        raise refusal
    with session_scope(engine) as session:
        # Judged again in the transaction that stores the rollout: the estate of record may have moved since.
        require_current_of_record(session, version, estate)
        require_held_targets(session, version, [a for ring in planned.rings for a in ring])
        rollout = insert_rollout(
            session,
            estate_version_id=version.id,
            update_id=update.id,
            update_doc=cast(JSONValue, planned.update.model_dump(mode="json")),
            plan=plan_doc,
            created_by=actor,
            needs_approval=needs_approval,
            at=at,
            created_by_token=actor_token,
        )
        upsert_rollout_assets(
            session,
            rollout.id,
            [
                RolloutAsset(
                    asset_id=asset,
                    ring=index,
                    stratum=json.dumps(list(planned.strata.get(asset, ()))),
                    state=AssetState.PENDING,
                    updated_at=at,
                )
                for index, ring in enumerate(planned.rings)
                for asset in ring
            ],
        )
        if override is not None:
            append_audit(
                session,
                actor=actor,
                action="rollout.hold_override",
                subject=f"rollout:{rollout.id}",
                detail={
                    "release": override.release,
                    "reason": override.reason,
                    "justification": override.justification,
                },
                at=at,
            )
    return CreatedRollout(rollout, planned, update, override)


def check_health_source(name: str | None, *, path: tuple[str, ...] = ("health_source",)) -> str:
    """``name`` as a rollout stores it (None: ``driver``, the driver's own reading); an InputError naming the
    known sources, at ``path`` (the API's field, the CLI's option), when no health source of that name is installed."""
    if name is None or name == DRIVERS_OWN_HEALTH:
        return DRIVERS_OWN_HEALTH
    known = available_health_sources()
    if name not in known:
        listed = ", ".join(known)
        raise InputError(
            [Problem(f"there is no health source '{name}'; the known health sources are: {listed}", path=path)]
        )
    return name


def approve_rollout(
    engine: Engine, rollout_id: str, *, actor: str, at: datetime, actor_token: int | None = None
) -> RolloutState:
    """Approve a rollout awaiting approval. The person who created it cannot approve it (four eyes): not under
    another spelling of their name, nor with a token they issued, nor one whose issuer created it
    (:func:`~ringfence.service.people.refuse_same_person`). ``actor_token``: the approver's API token (None on
    the CLI)."""
    with session_scope(engine) as session:
        rollout_lock(session, rollout_id)
        rollout = get_rollout(session, rollout_id)
        if rollout.state.phase is not RolloutPhase.AWAITING_APPROVAL:
            raise ConflictError(f"rollout {rollout_id} is {rollout.state.phase}, not awaiting approval")
        refuse_same_person(
            session,
            Actor(rollout.created_by, rollout_creator_token(session, rollout_id)),
            Actor(actor, actor_token),
            what=f"rollout {rollout_id}",
        )
        new_state, record = transition(rollout.state, RolloutPhase.PENDING, f"approved by {actor}", at=at)
        write_transition(session, record, new_state, actor=actor, approved_by=actor)
        return new_state


def start(engine: Engine, rollout_id: str, *, actor: str, at: datetime) -> RolloutState:
    return start_rollout(SqlRolloutRepository(engine), rollout_id, actor=actor, at=at)


def pause(engine: Engine, rollout_id: str, *, actor: str, at: datetime, why: str = "") -> RolloutState:
    return pause_rollout(SqlRolloutRepository(engine), rollout_id, actor=actor, at=at, why=why)


def resume(engine: Engine, rollout_id: str, *, actor: str, at: datetime, why: str = "") -> RolloutState:
    return resume_rollout(SqlRolloutRepository(engine), rollout_id, actor=actor, at=at, why=why)


def abort(engine: Engine, rollout_id: str, *, actor: str, at: datetime, why: str = "") -> RolloutState:
    return abort_rollout(SqlRolloutRepository(engine), rollout_id, actor=actor, at=at, why=why)


def roll_back(engine: Engine, rollout_id: str, *, actor: str, at: datetime, why: str = "") -> RolloutState:
    return roll_back_rollout(SqlRolloutRepository(engine), rollout_id, actor=actor, at=at, why=why)


def controller(
    engine: Engine, driver: Driver, clock: Any, *, actor: str = "controller", health: HealthSource | None = None
) -> Controller:
    """The controller of ``engine``'s rollouts on ``driver``, judged by ``health`` (None: the driver's own)."""
    return Controller(SqlRolloutRepository(engine), driver, clock, actor=actor, health=health)


def driver_name(engine: Engine, rollout_id: str) -> str:
    with session_scope(engine, readonly=True) as session:
        plan = stored_plan(get_rollout(session, rollout_id))
    return plan.driver


@dataclass(frozen=True)
class RingStatus:
    index: int
    name: str
    """``canary``, ``canary wave 2`` …, ``ring N``."""
    is_canary: bool
    assets: int
    states: dict[str, int]
    strata: tuple[str, ...]


@dataclass(frozen=True)
class RolloutStatus:
    rollout: Rollout
    strategy: str
    rings: tuple[RingStatus, ...]
    assets: tuple[RolloutAsset, ...]
    pending_decisions: int
    health_source: str = DRIVERS_OWN_HEALTH
    windows: WindowStatus = NO_WINDOWS
    """What its change windows say now: the controller's waiting sentence, the opening, the rings' calendar."""


def status(engine: Engine, rollout_id: str, *, now: datetime | None = None) -> RolloutStatus:
    with session_scope(engine, readonly=True) as session:
        rollout = get_rollout(session, rollout_id)
        assets = tuple(list_rollout_assets(session, rollout_id))
        pending = len(list_decisions(session, rollout_id, status=DecisionStatus.PENDING))
        windows = window_status(session, rollout, now if now is not None else utc_now())
    plan = stored_plan(rollout)
    rings = []
    for index in range(plan.ring_count):
        members = [a for a in assets if a.ring == index]
        counts: dict[str, int] = {}
        for a in members:
            counts[a.state.value] = counts.get(a.state.value, 0) + 1
        strata = sorted({format_stratum(tuple(json.loads(a.stratum))) for a in members if a.stratum != "[]"})
        rings.append(
            RingStatus(index, plan.ring_name(index), plan.is_canary_ring(index), len(members), counts, tuple(strata))
        )
    return RolloutStatus(rollout, plan.strategy, tuple(rings), assets, pending, plan.health_source, windows)


def status_document(found: RolloutStatus) -> RolloutStatusDocument:
    """``ringfence rollout status --json`` and the API's answer about a rollout: one model (core.documents)."""
    r = found.rollout
    return RolloutStatusDocument(
        id=r.id,
        update=r.update_id,
        strategy=found.strategy,
        phase=r.state.phase.value,
        ring=r.state.ring,
        paused_from=r.state.paused_from.value if r.state.paused_from else None,
        halt_reason=r.state.halt_reason,
        version=r.state.version,
        created_by=r.created_by,
        approved_by=r.approved_by,
        needs_approval=r.needs_approval,
        updated_at=r.state.updated_at.isoformat(),
        rings=[
            RingStatusOut(
                index=ring.index,
                name=ring.name,
                canary=ring.is_canary,
                assets=ring.assets,
                states=ring.states,
                strata=list(ring.strata),
            )
            for ring in found.rings
        ],
        assets=[
            RolloutAssetOut(id=a.asset_id, ring=a.ring, state=a.state.value, detail=a.detail)
            for a in sorted(found.assets, key=lambda a: a.asset_id)
        ],
        pending_decisions=found.pending_decisions,
        health_source=found.health_source,
        waiting=found.windows.waiting,
        opens_at=found.windows.opens_at.astimezone(UTC).isoformat() if found.windows.opens_at else None,
        calendar=(
            calendar_document([r.name for r in found.rings], found.windows.calendar, found.windows.calendar[0].ready_at)
            if found.windows.calendar
            else None
        ),
    )


def log(engine: Engine, rollout_id: str) -> list[AuditEntry]:
    with session_scope(engine, readonly=True) as session:
        get_rollout(session, rollout_id)
        return list_audit(session, subject=f"rollout:{rollout_id}")


def log_document(entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    def plain(value: AuditValue) -> AuditValue:
        return value

    return [
        {
            "seq": e.seq,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "detail": {k: plain(v) for k, v in e.detail.items()},
            "hash": e.hash,
        }
        for e in entries
    ]


def parse_driver_options(pairs: Sequence[str], *, path: tuple[str, ...] = ("--driver-option",)) -> dict[str, str]:
    """``["world=w.json", "apply=1s"]`` → a dict; a pair without ``=`` is bad input (named at ``path``)."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError([Problem(f"{pair!r} is not key=value", path=path)])
        options[key.strip()] = value.strip()
    return options


__all__ = [
    "CreatedRollout",
    "RolloutStatus",
    "SqlRolloutRepository",
    "StepReport",
    "abort",
    "approve_rollout",
    "check_health_source",
    "controller",
    "create_rollout",
    "driver_name",
    "log",
    "log_document",
    "parse_driver_options",
    "pause",
    "resume",
    "roll_back",
    "start",
    "status",
    "status_document",
    "stored_plan",
]
