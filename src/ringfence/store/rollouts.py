"""Repository functions for rollouts and their targets (``rollouts``, ``rollout_assets``).

A rollout's phase changes only through :func:`apply_transition`, optimistically: it writes only if the row is
still at the version the caller read, and refuses with :class:`~ringfence.core.errors.ConflictError`
otherwise. Creating a rollout and each transition land in the audit log in the same transaction. Rollout
ids are numbered under an advisory lock, so two creators never pick one id. Like every resource module of
the store, these take a Session, flush and never commit.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ringfence.core.audit import AuditEntry, AuditValue
from ringfence.core.errors import ConflictError, NotFoundError
from ringfence.core.rollout.state import AssetState, RolloutPhase, RolloutState, Transition, new_rollout_state
from ringfence.store.audit import append_audit
from ringfence.store.db import LOCK_NAMESPACE_ROLLOUT_IDS
from ringfence.store.estates import get_estate_version
from ringfence.store.records import JSONValue, Rollout, RolloutAsset
from ringfence.store.rows import chunks, next_id, record_of, upsert, where_in
from ringfence.store.tables import DecisionRow, RolloutAssetRow, RolloutRow


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
    created_by_token: int | None = None,
) -> Rollout:
    """Store a new rollout, pending (or awaiting approval), with the next free id (``r-000001``, …);
    ``created_by_token`` is the API token that created it (None from the CLI)."""
    get_estate_version(session, estate_version_id)
    if rollout_id is None:
        rollout_id = next_id(session, RolloutRow, "r", LOCK_NAMESPACE_ROLLOUT_IDS)
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
        created_by_token=created_by_token,
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


def get_rollout(session: Session, rollout_id: str) -> Rollout:
    """The rollout as stored now (read from the database, not from what this session remembers)."""
    row = session.get(RolloutRow, rollout_id, populate_existing=True)
    if row is None:
        raise NotFoundError(f"rollout {rollout_id} does not exist")
    return _rollout(row)


def list_rollouts(session: Session, *, phases: Collection[RolloutPhase] | None = None) -> list[Rollout]:
    """Rollouts (in ``phases``, when given), oldest first."""
    stmt = where_in(
        sa.select(RolloutRow).order_by(RolloutRow.created_at, RolloutRow.id), RolloutRow.phase, phases, RolloutPhase
    )
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
    paused_from = None if row.paused_from is None else RolloutPhase(row.paused_from)
    return record_of(RolloutState, row, phase=RolloutPhase(row.phase), paused_from=paused_from)


def _rollout(row: RolloutRow) -> Rollout:
    return record_of(Rollout, row, state=_rollout_state(row))


def require_rollout(session: Session, rollout_id: str) -> None:
    """Raise NotFoundError unless ``rollout_id`` exists (what a rollout's decisions, verdicts, … check first)."""
    found = session.scalar(sa.select(RolloutRow.id).where(RolloutRow.id == rollout_id))
    if found is None:
        raise NotFoundError(f"rollout {rollout_id} does not exist")


# ---------------------------------------------------------------------------------------- rollout assets


def upsert_rollout_assets(session: Session, rollout_id: str, assets: Iterable[RolloutAsset]) -> int:
    """Insert or update these targets of ``rollout_id`` (keyed by asset id); returns how many were written."""
    require_rollout(session, rollout_id)
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
    stmt = upsert(session, RolloutAssetRow.__table__, ["rollout_id", "asset_id"], _REFRESHED)
    for chunk in chunks(rows):
        session.execute(stmt, chunk)
    return len(rows)


_REFRESHED = ("ring", "stratum", "state", "detail", "restore_point_ref", "updated_at")
"""What an upsert of a target changes: everything but its keys."""


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
    stmt = where_in(stmt, RolloutAssetRow.state, states, AssetState)
    return [_rollout_asset(row) for row in session.scalars(stmt)]


def _rollout_asset(row: RolloutAssetRow) -> RolloutAsset:
    return record_of(RolloutAsset, row, state=AssetState(row.state))


# ------------------------------------------------------------------------------- reads for hot pollers
#
# The directive board and /metrics ask these many times a minute, so each reads only the columns it needs.


def count_rollouts_by_phase(session: Session) -> dict[RolloutPhase, int]:
    """How many rollouts are in each phase (every phase present, 0 when none)."""
    counts = dict.fromkeys(RolloutPhase, 0)
    for phase, count in session.execute(sa.select(RolloutRow.phase, sa.func.count()).group_by(RolloutRow.phase)):
        counts[RolloutPhase(phase)] = int(count)
    return counts


def rollout_versions(session: Session, phases: Collection[RolloutPhase]) -> tuple[tuple[str, int, int], ...]:
    """(id, state version, number of its last decision or 0) of each rollout in ``phases``, oldest first.

    A change in either number is a change a reader of the rollout's targets cares about: the controller
    records a batch's installs as started with the decision that starts them.
    """
    decided = sa.select(sa.func.max(DecisionRow.seq)).where(DecisionRow.rollout_id == RolloutRow.id).scalar_subquery()
    stmt = where_in(
        sa.select(RolloutRow.id, RolloutRow.version, decided.label("decided")), RolloutRow.phase, phases, RolloutPhase
    ).order_by(RolloutRow.created_at, RolloutRow.id)
    return tuple((row.id, row.version, row.decided or 0) for row in session.execute(stmt))


def list_rollout_targets(session: Session, rollout_id: str) -> list[tuple[str, int, AssetState]]:
    """(asset id, ring, state) of each target of ``rollout_id``, in no particular order."""
    rows = session.execute(
        sa.select(RolloutAssetRow.asset_id, RolloutAssetRow.ring, RolloutAssetRow.state).where(
            RolloutAssetRow.rollout_id == rollout_id
        )
    )
    return [(asset_id, ring, AssetState(state)) for asset_id, ring, state in rows]


def rollout_creator_token(session: Session, rollout_id: str) -> int | None:
    """The API token that created ``rollout_id`` (None when it was created on the CLI)."""
    return session.scalar(sa.select(RolloutRow.created_by_token).where(RolloutRow.id == rollout_id))


def known_rollout_ids(session: Session, rollout_ids: Collection[str]) -> set[str]:
    """Those of ``rollout_ids`` that name a stored rollout."""
    if not rollout_ids:
        return set()
    return set(session.scalars(sa.select(RolloutRow.id).where(RolloutRow.id.in_(list(rollout_ids)))))


__all__ = [
    "apply_transition",
    "count_rollouts_by_phase",
    "create_rollout",
    "get_rollout",
    "known_rollout_ids",
    "list_rollout_assets",
    "list_rollout_targets",
    "list_rollouts",
    "require_rollout",
    "rollout_creator_token",
    "rollout_versions",
    "upsert_rollout_assets",
]
