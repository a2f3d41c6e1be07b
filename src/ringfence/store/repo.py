"""Repository functions: small, typed, one job each. They take a Session, flush, and never commit.

The service layer opens the transaction (``session_scope``), calls these, and commits once, so a use case
is written whole or not at all. Rows become frozen records here and nowhere else.

Everything that changes what a rollout is or does lands in the audit log in the same transaction: a
created rollout, each phase transition, an uploaded estate version.

Locks, when two writers meet (PostgreSQL; on SQLite every read-write transaction already runs alone):

- the audit chain: an advisory lock held to the end of the transaction, so appenders take turns and each
  one chains onto the entry really before it;
- a rollout's phase: optimistic — :func:`apply_transition` writes only if the row is still at the version
  the caller read, and refuses with :class:`~ringfence.core.errors.ConflictError` otherwise;
- a rollout's reconciliation: :func:`ringfence.store.db.rollout_lock`, taken first in the transaction;
- numbering rollouts and incidents: an advisory lock per kind, so two creators never pick one id;
- an incident's events: :func:`get_incident` with ``for_update`` (``SELECT … FOR UPDATE``), so writers of
  one incident take turns and each sees the other's marks.

How an incident is stored: ``incidents`` one row per incident, with ``snapshot`` — the down items in restore
order with what each waits for, and the continuity plans — so an incident never changes because the estate
did; ``incident_events`` its timeline, appended to only. Restored marks and the closing are read back from
the events; ``status`` and ``closed_at`` on the row are kept for listing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from ringfence.core.audit import AuditEntry, AuditValue, ChainReport, chain_entry, verify_chain
from ringfence.core.errors import ConflictError, InputError, NotFoundError
from ringfence.core.rollout.state import AssetState, RolloutPhase, RolloutState, Transition, new_rollout_state
from ringfence.store.db import (
    LOCK_NAMESPACE_AUDIT,
    LOCK_NAMESPACE_INCIDENT_IDS,
    LOCK_NAMESPACE_ROLLOUT_IDS,
    advisory_lock,
)
from ringfence.store.records import (
    Decision,
    DecisionStatus,
    EstateFormat,
    EstateVersion,
    JSONValue,
    Observation,
    ObservationKind,
    Rollout,
    RolloutAsset,
)
from ringfence.store.tables import (
    AuditRow,
    DecisionRow,
    EstateVersionRow,
    IncidentEventRow,
    IncidentRow,
    ObservationRow,
    RolloutAssetRow,
    RolloutRow,
)

if TYPE_CHECKING:
    from ringfence.core.incident import DownItem, Incident, IncidentEvent, IncidentStatus
    from ringfence.core.recovery import ContinuityAction

# Rows per executemany batch (psycopg pipelines them). Measured faster than one multi-row VALUES
# statement, whose compilation dominates at this size.
_CHUNK = 1000

# ---------------------------------------------------------------------------------------------- estates


def add_estate_version(
    session: Session,
    *,
    name: str,
    content: str,
    format: EstateFormat | str,
    created_by: str,
    asset_count: int,
    service_count: int,
    at: datetime,
) -> EstateVersion:
    """Keep ``content`` as a new version of estate ``name``; the same text uploaded again is the same version.

    Versions are never replaced or deleted, so a bad upload cannot take the place of the last good one.
    """
    fmt = _estate_format(format)
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    existing = _estate_version_by_digest(session, name, digest)
    if existing is not None:
        return _estate_version(existing)
    row = EstateVersionRow(
        name=name,
        sha256=digest,
        content=content,
        format=fmt.value,
        created_at=at,
        created_by=created_by,
        asset_count=asset_count,
        service_count=service_count,
    )
    try:
        # A savepoint, so that losing a race with a concurrent upload of the same text leaves the
        # caller's transaction usable and the version already stored is returned.
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        winner = _estate_version_by_digest(session, name, digest)
        if winner is None:
            raise
        return _estate_version(winner)
    append_audit(
        session,
        actor=created_by,
        action="estate.upload",
        subject=f"estate:{name}",
        detail={"version": row.id, "sha256": digest, "assets": asset_count, "services": service_count},
        at=at,
    )
    return _estate_version(row)


def get_estate_version(session: Session, version_id: int) -> EstateVersion:
    row = session.get(EstateVersionRow, version_id)
    if row is None:
        raise NotFoundError(f"estate version {version_id} does not exist")
    return _estate_version(row)


def latest_estate_version(session: Session, name: str) -> EstateVersion:
    """The newest version of estate ``name``."""
    row = session.scalars(
        sa.select(EstateVersionRow).where(EstateVersionRow.name == name).order_by(EstateVersionRow.id.desc()).limit(1)
    ).first()
    if row is None:
        raise NotFoundError(f"no estate named {name!r} has been uploaded")
    return _estate_version(row)


def list_estate_versions(session: Session, name: str | None = None) -> list[EstateVersion]:
    """Every version (of ``name``, when given), oldest first."""
    stmt = sa.select(EstateVersionRow).order_by(EstateVersionRow.id)
    if name is not None:
        stmt = stmt.where(EstateVersionRow.name == name)
    return [_estate_version(row) for row in session.scalars(stmt)]


def _estate_version_by_digest(session: Session, name: str, digest: str) -> EstateVersionRow | None:
    return session.scalars(
        sa.select(EstateVersionRow).where(EstateVersionRow.name == name, EstateVersionRow.sha256 == digest)
    ).first()


def _estate_format(value: EstateFormat | str) -> EstateFormat:
    try:
        return EstateFormat(value)
    except ValueError:
        raise InputError(f"an estate is stored as yaml or json, not {value!r}") from None


def _estate_version(row: EstateVersionRow) -> EstateVersion:
    return EstateVersion(
        id=row.id,
        name=row.name,
        sha256=row.sha256,
        content=row.content,
        format=EstateFormat(row.format),
        created_at=row.created_at,
        created_by=row.created_by,
        asset_count=row.asset_count,
        service_count=row.service_count,
    )


# --------------------------------------------------------------------------------------------- rollouts


def create_rollout(
    session: Session,
    *,
    estate_version_id: int,
    update_id: str,
    update_doc: JSONValue,
    plan: JSONValue,
    created_by: str,
    needs_approval: bool,
    at: datetime,
    rollout_id: str | None = None,
) -> Rollout:
    """Store a new rollout, pending (or awaiting approval), with the next free id (``r-000001``, …)."""
    get_estate_version(session, estate_version_id)
    if rollout_id is None:
        rollout_id = _next_id(session, RolloutRow, "r", LOCK_NAMESPACE_ROLLOUT_IDS)
    elif session.get(RolloutRow, rollout_id) is not None:
        raise ConflictError(f"rollout {rollout_id} already exists")
    state = new_rollout_state(rollout_id, at=at, needs_approval=needs_approval)
    row = RolloutRow(
        id=state.id,
        estate_version_id=estate_version_id,
        update_id=update_id,
        update_doc=update_doc,
        plan=plan,
        phase=state.phase.value,
        ring=state.ring,
        paused_from=None,
        halt_reason=None,
        version=state.version,
        created_by=created_by,
        approved_by=None,
        needs_approval=needs_approval,
        created_at=state.updated_at,
        updated_at=state.updated_at,
    )
    session.add(row)
    session.flush()
    append_audit(
        session,
        actor=created_by,
        action="rollout.create",
        subject=f"rollout:{state.id}",
        detail={
            "update": update_id,
            "estate_version": estate_version_id,
            "phase": state.phase.value,
            "needs_approval": needs_approval,
        },
        at=at,
    )
    return _rollout(row)


def _next_id(session: Session, row: type[RolloutRow] | type[IncidentRow], prefix: str, namespace: int) -> str:
    """The next free id of ``row``'s table: ``r-000001``, ``inc-000001``, …"""
    # Creators take turns (PostgreSQL advisory lock; SQLite's single writer) so two never pick one id.
    advisory_lock(session, namespace)
    number = session.scalar(sa.select(sa.func.count()).select_from(row)) or 0
    while True:
        number += 1
        candidate = f"{prefix}-{number:06d}"
        if session.get(row, candidate) is None:
            return candidate


def _next_seq(
    session: Session, seq: InstrumentedAttribute[int], owner: InstrumentedAttribute[str], owner_id: str
) -> int:
    """The number after the last one ``owner_id`` has in the ``seq`` column (1 for the first)."""
    last = session.scalar(sa.select(sa.func.max(seq)).where(owner == owner_id))
    return (last or 0) + 1


def get_rollout(session: Session, rollout_id: str) -> Rollout:
    """The rollout as stored now (read from the database, not from what this session remembers)."""
    row = session.get(RolloutRow, rollout_id, populate_existing=True)
    if row is None:
        raise NotFoundError(f"rollout {rollout_id} does not exist")
    return _rollout(row)


def list_rollouts(session: Session, *, phases: Collection[RolloutPhase] | None = None) -> list[Rollout]:
    """Rollouts (in ``phases``, when given), oldest first."""
    stmt = sa.select(RolloutRow).order_by(RolloutRow.created_at, RolloutRow.id)
    if phases is not None:
        stmt = stmt.where(RolloutRow.phase.in_([RolloutPhase(p).value for p in phases]))
    return [_rollout(row) for row in session.scalars(stmt.execution_options(populate_existing=True))]


def apply_transition(
    session: Session,
    transition: Transition,
    new_state: RolloutState,
    *,
    actor: str,
    approved_by: str | None = None,
) -> AuditEntry:
    """Write a transition made by ``ringfence.core.rollout.state.transition`` and record it in the audit log.

    Optimistic concurrency: the row changes only if it is still at the version ``new_state`` was made
    from; otherwise someone else moved the rollout first and this raises ConflictError, changing nothing.
    ``approved_by`` records who approved, on the move from awaiting approval to pending.
    """
    rollout_id = transition.rollout_id
    if new_state.id != rollout_id or new_state.phase is not transition.to_phase:
        raise ConflictError(
            f"rollout {rollout_id}: the state given ({new_state.id}, {new_state.phase}) is not the one "
            f"the transition to {transition.to_phase} produced"
        )
    if approved_by is not None and not (
        transition.from_phase is RolloutPhase.AWAITING_APPROVAL and transition.to_phase is RolloutPhase.PENDING
    ):
        raise ConflictError(
            f"rollout {rollout_id}: an approver is recorded only when an approval moves it from "
            f"awaiting_approval to pending, not from {transition.from_phase} to {transition.to_phase}"
        )
    read_version = new_state.version - 1
    values: dict[str, Any] = {
        "phase": new_state.phase.value,
        "ring": new_state.ring,
        "paused_from": None if new_state.paused_from is None else new_state.paused_from.value,
        "halt_reason": new_state.halt_reason,
        "version": new_state.version,
        "updated_at": new_state.updated_at,
    }
    if approved_by is not None:
        values["approved_by"] = approved_by
    result = session.execute(
        sa.update(RolloutRow)
        .where(
            RolloutRow.id == rollout_id,
            RolloutRow.version == read_version,
            RolloutRow.phase == transition.from_phase.value,
        )
        .values(**values)
        # Plain UPDATE (its rowcount is the concurrency check); readers here always refresh from the row.
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        now = session.execute(
            sa.select(RolloutRow.version, RolloutRow.phase).where(RolloutRow.id == rollout_id)
        ).first()
        if now is None:
            raise NotFoundError(f"rollout {rollout_id} does not exist")
        raise ConflictError(
            f"rollout {rollout_id} was changed by someone else: it is {now.phase} at version {now.version}, "
            f"not {transition.from_phase} at version {read_version}; reload it and decide again"
        )
    detail: dict[str, AuditValue] = {
        "from": transition.from_phase.value,
        "to": transition.to_phase.value,
        "ring": transition.ring,
        "reason": transition.reason,
        "version": new_state.version,
    }
    if approved_by is not None:
        detail["approved_by"] = approved_by
    return append_audit(
        session,
        actor=actor,
        action="rollout.transition",
        subject=f"rollout:{rollout_id}",
        detail=detail,
        at=transition.at,
    )


def _rollout_state(row: RolloutRow) -> RolloutState:
    return RolloutState(
        id=row.id,
        phase=RolloutPhase(row.phase),
        ring=row.ring,
        paused_from=None if row.paused_from is None else RolloutPhase(row.paused_from),
        halt_reason=row.halt_reason,
        version=row.version,
        updated_at=row.updated_at,
    )


def _rollout(row: RolloutRow) -> Rollout:
    return Rollout(
        id=row.id,
        estate_version_id=row.estate_version_id,
        update_id=row.update_id,
        update_doc=row.update_doc,
        plan=row.plan,
        state=_rollout_state(row),
        created_by=row.created_by,
        approved_by=row.approved_by,
        needs_approval=row.needs_approval,
        created_at=row.created_at,
    )


def _require_rollout(session: Session, rollout_id: str) -> None:
    found = session.scalar(sa.select(RolloutRow.id).where(RolloutRow.id == rollout_id))
    if found is None:
        raise NotFoundError(f"rollout {rollout_id} does not exist")


# ---------------------------------------------------------------------------------------- rollout assets


def upsert_rollout_assets(session: Session, rollout_id: str, assets: Iterable[RolloutAsset]) -> int:
    """Insert or update these targets of ``rollout_id`` (keyed by asset id); returns how many were written."""
    _require_rollout(session, rollout_id)
    table = cast(sa.Table, RolloutAssetRow.__table__)
    rows = [
        {
            "rollout_id": rollout_id,
            "asset_id": asset.asset_id,
            "ring": asset.ring,
            "stratum": asset.stratum,
            "state": AssetState(asset.state).value,
            "detail": asset.detail,
            "restore_point_ref": asset.restore_point_ref,
            "updated_at": asset.updated_at,
        }
        for asset in assets
    ]
    dialect = session.get_bind().dialect.name
    for chunk in _chunks(rows):
        if dialect == "postgresql":
            pg = postgresql.insert(table)
            stmt: sa.Executable = pg.on_conflict_do_update(
                index_elements=["rollout_id", "asset_id"], set_=_refresh(pg.excluded)
            )
        else:
            lite = sqlite.insert(table)
            stmt = lite.on_conflict_do_update(index_elements=["rollout_id", "asset_id"], set_=_refresh(lite.excluded))
        session.execute(stmt, chunk)
    return len(rows)


def _refresh(excluded: Any) -> dict[str, Any]:
    return {name: excluded[name] for name in ("ring", "stratum", "state", "detail", "restore_point_ref", "updated_at")}


def list_rollout_assets(
    session: Session,
    rollout_id: str,
    *,
    ring: int | None = None,
    states: Collection[AssetState] | None = None,
) -> list[RolloutAsset]:
    """The targets of ``rollout_id`` (of one ring, in some states), by ring then asset id."""
    stmt = (
        sa.select(RolloutAssetRow)
        .where(RolloutAssetRow.rollout_id == rollout_id)
        .order_by(RolloutAssetRow.ring, RolloutAssetRow.asset_id)
        .execution_options(populate_existing=True)
    )
    if ring is not None:
        stmt = stmt.where(RolloutAssetRow.ring == ring)
    if states is not None:
        stmt = stmt.where(RolloutAssetRow.state.in_([AssetState(s).value for s in states]))
    return [_rollout_asset(row) for row in session.scalars(stmt)]


def _rollout_asset(row: RolloutAssetRow) -> RolloutAsset:
    return RolloutAsset(
        asset_id=row.asset_id,
        ring=row.ring,
        stratum=row.stratum,
        state=AssetState(row.state),
        updated_at=row.updated_at,
        detail=row.detail,
        restore_point_ref=row.restore_point_ref,
    )


# -------------------------------------------------------------------------------------------- decisions


def add_decision(session: Session, rollout_id: str, *, kind: str, payload: JSONValue, at: datetime) -> Decision:
    """Record a decision before acting on it, numbered after the rollout's last one."""
    _require_rollout(session, rollout_id)
    if not kind.strip():
        raise InputError(f"a decision of rollout {rollout_id} needs a kind")
    row = DecisionRow(
        rollout_id=rollout_id,
        seq=_next_seq(session, DecisionRow.seq, DecisionRow.rollout_id, rollout_id),
        created_at=at,
        kind=kind,
        payload=payload,
        status=DecisionStatus.PENDING.value,
        done_at=None,
    )
    session.add(row)
    session.flush()
    return _decision(row)


def list_decisions(session: Session, rollout_id: str, *, status: DecisionStatus | None = None) -> list[Decision]:
    """Decisions of ``rollout_id`` in the order they were taken."""
    stmt = (
        sa.select(DecisionRow)
        .where(DecisionRow.rollout_id == rollout_id)
        .order_by(DecisionRow.seq)
        .execution_options(populate_existing=True)
    )
    if status is not None:
        stmt = stmt.where(DecisionRow.status == DecisionStatus(status).value)
    return [_decision(row) for row in session.scalars(stmt)]


def mark_decision_done(session: Session, rollout_id: str, seq: int, *, at: datetime) -> Decision:
    """Mark a decision as acted on. Idempotent: a decision already done keeps its first ``done_at``."""
    row = session.get(DecisionRow, (rollout_id, seq), populate_existing=True)
    if row is None:
        raise NotFoundError(f"rollout {rollout_id} has no decision {seq}")
    if row.status != DecisionStatus.DONE.value:
        row.status = DecisionStatus.DONE.value
        row.done_at = at
        session.flush()
    return _decision(row)


def _decision(row: DecisionRow) -> Decision:
    return Decision(
        rollout_id=row.rollout_id,
        seq=row.seq,
        created_at=row.created_at,
        kind=row.kind,
        payload=row.payload,
        status=DecisionStatus(row.status),
        done_at=row.done_at,
    )


# ----------------------------------------------------------------------------------------- observations


def add_observations(session: Session, observations: Iterable[Observation]) -> int:
    """Store observations (their ``id`` is ignored and assigned); returns how many were stored."""
    table = cast(sa.Table, ObservationRow.__table__)
    rows = [
        {
            "rollout_id": obs.rollout_id,
            "asset_id": obs.asset_id,
            "at": obs.at,
            "kind": ObservationKind(obs.kind).value,
            "status": obs.status,
            "detail": dict(obs.detail),
        }
        for obs in observations
    ]
    for chunk in _chunks(rows):
        session.execute(sa.insert(table), chunk)
    return len(rows)


def list_observations(
    session: Session,
    *,
    since: datetime,
    until: datetime | None = None,
    rollout_id: str | None = None,
    asset_ids: Collection[str] | None = None,
    kinds: Collection[ObservationKind] | None = None,
) -> list[Observation]:
    """Observations at or after ``since`` (and before ``until``), oldest first, optionally narrowed."""
    stmt = sa.select(ObservationRow).where(ObservationRow.at >= since).order_by(ObservationRow.at, ObservationRow.id)
    if until is not None:
        stmt = stmt.where(ObservationRow.at < until)
    if rollout_id is not None:
        stmt = stmt.where(ObservationRow.rollout_id == rollout_id)
    if asset_ids is not None:
        stmt = stmt.where(ObservationRow.asset_id.in_(list(asset_ids)))
    if kinds is not None:
        stmt = stmt.where(ObservationRow.kind.in_([ObservationKind(k).value for k in kinds]))
    return [_observation(row) for row in session.scalars(stmt)]


def _observation(row: ObservationRow) -> Observation:
    return Observation(
        asset_id=row.asset_id,
        at=row.at,
        kind=ObservationKind(row.kind),
        status=row.status,
        detail=row.detail,
        rollout_id=row.rollout_id,
        id=row.id,
    )


# -------------------------------------------------------------------------------------------- incidents
#
# The incident model (``ringfence.core.incident``) is imported where it is used: it brings numpy and scipy, which
# the commands that only touch tokens, migrations or the audit log should not load.


def next_incident_id(session: Session) -> str:
    """The id for an incident about to be declared (``inc-000001``, …); the lock is held to the end."""
    return _next_id(session, IncidentRow, "inc", LOCK_NAMESPACE_INCIDENT_IDS)


def add_incident(session: Session, incident: Incident) -> None:
    """Store a newly declared incident: its row, with the snapshot it was declared on, and its events."""
    if incident.estate_version_id is None:
        raise InputError(f"incident {incident.id} names no estate version: it is stored with the estate declared on")
    session.add(
        IncidentRow(
            id=incident.id,
            title=incident.title,
            estate_version_id=incident.estate_version_id,
            rollout_id=incident.rollout_id,
            failed=list(incident.failed),
            status=incident.status.value,
            step_seconds=incident.step_seconds,
            snapshot=_snapshot_document(incident),
            declared_at=incident.declared_at,
            declared_by=incident.declared_by,
            closed_at=incident.closed_at,
        )
    )
    session.flush()
    for event in incident.events:
        add_incident_event(session, incident.id, event)


def add_incident_event(session: Session, incident_id: str, event: IncidentEvent) -> int:
    """Append ``event`` to the incident's timeline, numbered after its last one; returns its number."""
    seq = _next_seq(session, IncidentEventRow.seq, IncidentEventRow.incident_id, incident_id)
    session.add(
        IncidentEventRow(
            incident_id=incident_id,
            seq=seq,
            at=event.at,
            kind=event.kind.value,
            actor=event.actor,
            text=event.text,
            items=list(event.items),
        )
    )
    session.flush()
    return seq


def mark_incident_closed(session: Session, incident_id: str, *, at: datetime) -> None:
    """Record on the row (for listing) what the incident's closing event says."""
    from ringfence.core.incident import IncidentStatus

    session.execute(
        sa.update(IncidentRow)
        .where(IncidentRow.id == incident_id)
        .values(status=IncidentStatus.CLOSED.value, closed_at=at)
        .execution_options(synchronize_session=False)
    )


def get_incident(session: Session, incident_id: str, *, for_update: bool = False) -> Incident:
    """The incident as stored now; ``for_update`` holds its row until the transaction ends (PostgreSQL)."""
    row = session.get(IncidentRow, incident_id, populate_existing=True, with_for_update=for_update)
    if row is None:
        raise NotFoundError(f"incident {incident_id} does not exist")
    return _incident(row, _incident_events(session, [incident_id]).get(incident_id, []))


def incident_of_rollout(session: Session, rollout_id: str) -> Incident | None:
    """The incident ``rollout_id`` caused, if any (a rollout causes at most one)."""
    found = session.scalar(sa.select(IncidentRow.id).where(IncidentRow.rollout_id == rollout_id))
    return None if found is None else get_incident(session, found)


def list_incidents(session: Session, *, status: IncidentStatus | None = None) -> list[Incident]:
    """Incidents (open or closed only, when asked), by id."""
    stmt = sa.select(IncidentRow).order_by(IncidentRow.id).execution_options(populate_existing=True)
    if status is not None:
        stmt = stmt.where(IncidentRow.status == status.value)
    rows = session.scalars(stmt).all()
    events = _incident_events(session, [row.id for row in rows])
    return [_incident(row, events.get(row.id, [])) for row in rows]


def _incident_events(session: Session, incident_ids: Sequence[str]) -> dict[str, list[IncidentEventRow]]:
    found: dict[str, list[IncidentEventRow]] = {}
    for start in range(0, len(incident_ids), _CHUNK):
        stmt = (
            sa.select(IncidentEventRow)
            .where(IncidentEventRow.incident_id.in_(incident_ids[start : start + _CHUNK]))
            .order_by(IncidentEventRow.incident_id, IncidentEventRow.seq)
            .execution_options(populate_existing=True)
        )
        for row in session.scalars(stmt):
            found.setdefault(row.incident_id, []).append(row)
    return found


def _incident(row: IncidentRow, events: Sequence[IncidentEventRow]) -> Incident:
    from ringfence.core.incident import EventKind, Incident, IncidentEvent

    snapshot = cast(Mapping[str, Any], row.snapshot)
    return Incident(
        id=row.id,
        title=row.title,
        estate=str(snapshot["estate"]),
        failed=tuple(row.failed),
        declared_at=row.declared_at,
        declared_by=row.declared_by,
        items=tuple(_down_item(i) for i in snapshot["items"]),
        continuity=tuple(_continuity_action(c) for c in snapshot["continuity"]),
        events=tuple(
            IncidentEvent(e.at, EventKind(e.kind), e.actor, e.text, tuple(cast(list[str], e.items))) for e in events
        ),
        step_seconds=row.step_seconds,
        rollout_id=row.rollout_id,
        estate_version_id=row.estate_version_id,
    )


def _snapshot_document(incident: Incident) -> dict[str, JSONValue]:
    """What an incident was declared with, as the JSON of ``incidents.snapshot`` (read by :func:`_incident`)."""
    return {
        "estate": incident.estate,
        "items": [
            {
                "id": i.id,
                "kind": i.kind.value,
                "name": i.name,
                "step": i.step,
                "tier": i.tier,
                "rto": i.rto,
                "needs": list(i.needs),
                "groups": [{"k": g.k, "up": g.up, "members": list(g.members), "text": g.text} for g in i.groups],
            }
            for i in incident.items
        ],
        "continuity": [
            {
                "service": c.service,
                "name": c.name,
                "tier": c.tier,
                "rto": c.rto,
                "plan": c.plan,
                "contacts": list(c.contacts),
            }
            for c in incident.continuity
        ],
    }


def _down_item(doc: Mapping[str, Any]) -> DownItem:
    from ringfence.core.incident import DownItem, GroupNeed, ItemKind

    return DownItem(
        id=doc["id"],
        kind=ItemKind(doc["kind"]),
        name=doc["name"],
        step=int(doc["step"]),
        tier=doc["tier"],
        rto=doc["rto"],
        needs=tuple(doc["needs"]),
        groups=tuple(GroupNeed(int(g["k"]), int(g["up"]), tuple(g["members"]), g["text"]) for g in doc["groups"]),
    )


def _continuity_action(doc: Mapping[str, Any]) -> ContinuityAction:
    from ringfence.core.recovery import ContinuityAction

    return ContinuityAction(
        doc["service"], doc["name"], int(doc["tier"]), doc["rto"], doc["plan"], tuple(doc["contacts"])
    )


# -------------------------------------------------------------------------------------------- audit log


def append_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, AuditValue],
    at: datetime,
) -> AuditEntry:
    """Chain a new entry onto the last one in the log and store it.

    Appenders take turns until their transaction ends (PostgreSQL advisory lock; SQLite's single
    writer), so each reads the entry really before it; ``seq`` being the primary key makes a fork
    impossible even if that were bypassed.
    """
    advisory_lock(session, LOCK_NAMESPACE_AUDIT)
    last = session.scalars(sa.select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
    entry = chain_entry(
        None if last is None else _audit_entry(last),
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        detail=detail,
    )
    session.add(
        AuditRow(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            detail=dict(entry.detail),
            prev_hash=entry.prev_hash,
            hash=entry.hash,
        )
    )
    session.flush()
    return entry


def list_audit(
    session: Session, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
) -> list[AuditEntry]:
    """Audit entries after ``after_seq`` (about ``subject``, when given), in the order written."""
    stmt = (
        sa.select(AuditRow)
        .where(AuditRow.seq > after_seq)
        .order_by(AuditRow.seq)
        .execution_options(populate_existing=True)
    )
    if subject is not None:
        stmt = stmt.where(AuditRow.subject == subject)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_audit_entry(row) for row in session.scalars(stmt)]


def verify_audit(session: Session) -> ChainReport:
    """Check the whole audit log as stored, streaming it in order of ``seq``."""
    # Read the columns, not ORM objects: a row tampered with outside ringfence must be seen as stored,
    # and a long log should not fill the identity map.
    stmt = sa.select(AuditRow.__table__).order_by(AuditRow.seq).execution_options(yield_per=_CHUNK)
    result = session.execute(stmt)
    try:
        return verify_chain(_audit_entry(row) for row in result)
    finally:
        result.close()


def _audit_entry(row: AuditRow | sa.Row[Any]) -> AuditEntry:
    """An entry from its ORM row, or from the plain columns of one (what :func:`verify_audit` streams)."""
    return AuditEntry(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        detail=row.detail,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


__all__ = [
    "add_decision",
    "add_estate_version",
    "add_incident",
    "add_incident_event",
    "add_observations",
    "append_audit",
    "apply_transition",
    "create_rollout",
    "get_estate_version",
    "get_incident",
    "get_rollout",
    "incident_of_rollout",
    "latest_estate_version",
    "list_audit",
    "list_decisions",
    "list_estate_versions",
    "list_incidents",
    "list_observations",
    "list_rollout_assets",
    "list_rollouts",
    "mark_decision_done",
    "mark_incident_closed",
    "next_incident_id",
    "upsert_rollout_assets",
    "verify_audit",
]
