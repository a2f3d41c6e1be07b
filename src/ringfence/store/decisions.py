"""Repository functions for a rollout's decisions: recorded before the controller acts on them, marked done
after, so a controller that dies in between finds what it had decided (``decisions``).

Like every resource module of the store, these take a Session, flush and never commit.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.core.errors import InputError, NotFoundError
from ringfence.store.records import Decision, DecisionStatus, JSONValue
from ringfence.store.rollouts import require_rollout
from ringfence.store.rows import next_seq, record_of
from ringfence.store.tables import DecisionRow


def add_decision(session: Session, rollout_id: str, *, kind: str, payload: JSONValue, at: datetime) -> Decision:
    """Record a decision before acting on it, numbered after the rollout's last one."""
    require_rollout(session, rollout_id)
    if not kind.strip():
        raise InputError(f"a decision of rollout {rollout_id} needs a kind")
    row = DecisionRow(
        rollout_id=rollout_id,
        seq=next_seq(session, DecisionRow.seq, DecisionRow.rollout_id, rollout_id),
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
    return record_of(Decision, row, status=DecisionStatus(row.status))


__all__ = ["add_decision", "list_decisions", "mark_decision_done"]
