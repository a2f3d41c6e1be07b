"""The audit log page: one page of entries, newest first, and whether the whole chain still verifies."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from ringfence.core.audit import ChainReport
from ringfence.store.audit import list_audit, verify_audit
from ringfence.store.db import session_scope
from ringfence.web.views.shared import when

AUDIT_PAGE = 100
"""Audit entries per page, newest first."""


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    detail: str
    hash: str


@dataclass(frozen=True)
class AuditPage:
    chain: ChainReport
    rows: tuple[AuditRow, ...]
    page: int
    pages: int
    subject: str


def audit_page(engine: Engine, *, page: int, subject: str | None) -> AuditPage:
    """One page of the audit log, newest first, and whether the whole chain still verifies."""
    with session_scope(engine, readonly=True) as session:
        chain = verify_audit(session)
        if subject:
            entries = list_audit(session, subject=subject)
            total = len(entries)
            high = total - AUDIT_PAGE * (page - 1)
            shown = entries[max(0, high - AUDIT_PAGE) : max(0, high)]
        else:
            # Entries are numbered 1, 2, 3… while the chain holds; past a break, read on to the real last one.
            newest = chain.count
            if not chain.ok:
                tail = list_audit(session, after_seq=chain.count)
                newest = tail[-1].seq if tail else chain.count
            total = newest
            high = newest - AUDIT_PAGE * (page - 1)
            low = max(0, high - AUDIT_PAGE)
            shown = list_audit(session, after_seq=low, limit=max(0, high - low))
    rows = tuple(
        AuditRow(
            seq=e.seq,
            at=when(e.at),
            actor=e.actor,
            action=e.action,
            subject=e.subject,
            detail=json.dumps(dict(e.detail), sort_keys=True, ensure_ascii=False),
            hash=e.hash,
        )
        for e in reversed(shown)
    )
    pages = max(1, -(-total // AUDIT_PAGE))
    return AuditPage(chain, rows, page, pages, subject or "")
