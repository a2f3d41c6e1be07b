"""Repository functions for the audit log: a hash chain, appended to only.

Everything that changes what a rollout is or does lands here in the same transaction as the change: a
created rollout, each phase transition, an uploaded estate version. Appenders take turns (an advisory lock
held to the end of the transaction on PostgreSQL; SQLite runs every read-write transaction alone), so each
one chains onto the entry really before it. Like every resource module of the store, these take a Session,
flush and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.core.audit import AuditEntry, AuditValue, ChainReport, chain_entry, verify_chain
from ringfence.store.db import LOCK_NAMESPACE_AUDIT, advisory_lock
from ringfence.store.rows import CHUNK, record_of
from ringfence.store.tables import AuditRow


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
    stmt = sa.select(AuditRow.__table__).order_by(AuditRow.seq).execution_options(yield_per=CHUNK)
    result = session.execute(stmt)
    try:
        return verify_chain(_audit_entry(row) for row in result)
    finally:
        result.close()


def _audit_entry(row: AuditRow | sa.Row[Any]) -> AuditEntry:
    """An entry from its ORM row, or from the plain columns of one (what :func:`verify_audit` streams)."""
    return record_of(AuditEntry, row)


__all__ = ["append_audit", "list_audit", "verify_audit"]
