"""``/v1/audit``: the hash-chained audit log, page by page, and a check of the whole chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ringfence.api.deps import EngineDep, Viewer
from ringfence.api.schemas import AuditEntryOut, AuditPage
from ringfence.core.audit import AuditEntry
from ringfence.core.documents import AuditVerification, audit_verification
from ringfence.store import audit as stored_audit
from ringfence.store.db import session_scope

router = APIRouter(prefix="/v1/audit", tags=["audit"])

MAX_PAGE = 1000


def audit_out(entry: AuditEntry) -> AuditEntryOut:
    # The schema's fields are the entry's attributes, name for name: one mapping, kept by pydantic.
    return AuditEntryOut.model_validate(entry, from_attributes=True)


def audit_page(entries: list[AuditEntry], after: int) -> AuditPage:
    return AuditPage(entries=[audit_out(e) for e in entries], last_seq=entries[-1].seq if entries else after)


@router.get("", response_model=AuditPage, summary="Audit entries in the order written")
def list_audit(
    caller: Viewer,
    engine: EngineDep,
    after: Annotated[int, Query(ge=0, description="Only entries after this sequence number.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many entries.")] = 100,
) -> AuditPage:
    """Entries after ``after``, oldest first; poll with ``after=last_seq`` for what was written since."""
    with session_scope(engine, readonly=True) as session:
        entries = stored_audit.list_audit(session, after_seq=after, limit=limit)
    return audit_page(entries, after)


@router.get("/verify", response_model=AuditVerification, summary="Check the audit log's hash chain")
def verify_audit(caller: Viewer, engine: EngineDep) -> AuditVerification:
    """``ok`` false, with the first bad entry and why, when any entry was changed, removed or inserted
    (``ringfence audit verify --json``)."""
    with session_scope(engine, readonly=True) as session:
        report = stored_audit.verify_audit(session)
    return audit_verification(report)
