"""``/v1/audit``: the hash-chained audit log, page by page, a check of the whole chain, and its anchor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from ringfence.api.deps import EngineDep, Viewer
from ringfence.api.schemas import AuditEntryOut, AuditPage, LogPosition
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
    after: Annotated[LogPosition, Query(description="Only entries after this sequence number.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many entries.")] = 100,
) -> AuditPage:
    """Entries after ``after``, oldest first; poll with ``after=last_seq`` for what was written since."""
    with session_scope(engine, readonly=True) as session:
        entries = stored_audit.list_audit(session, after_seq=after, limit=limit)
    return audit_page(entries, after)


@router.get("/verify", response_model=AuditVerification, summary="Check the audit log's hash chain")
def verify_audit(
    caller: Viewer,
    engine: EngineDep,
    anchor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="SEQ:HASH from GET /v1/audit/anchor, kept elsewhere: also fail when the log no longer "
            "reaches that entry or holds a different one there.",
        ),
    ] = None,
) -> AuditVerification:
    """``ok`` false, with the first bad entry and why, when any entry was changed, removed or inserted, or (with
    ``anchor``) when entries were cut off the log below the anchor (``ringfence audit verify --json``)."""
    kept = None if anchor is None else stored_audit.parse_anchor(anchor)
    with session_scope(engine, readonly=True) as session:
        report = stored_audit.verify_audit(session, anchor=kept)
    return audit_verification(report)


class AuditAnchorOut(BaseModel):
    """``ringfence audit anchor --json``: the last entry, to keep somewhere the server cannot write."""

    model_config = ConfigDict(frozen=True)

    seq: int
    hash: str
    anchor: str
    """``SEQ:HASH``, as ``GET /v1/audit/verify?anchor=`` and ``ringfence audit verify --anchor`` take it."""


@router.get("/anchor", response_model=AuditAnchorOut, summary="The audit log's last entry, as an anchor")
def audit_anchor(caller: Viewer, engine: EngineDep) -> AuditAnchorOut:
    """Keep ``anchor`` elsewhere (a ticket, a log shipper): a later check against it catches entries cut off
    the log's end, which the chain alone cannot."""
    with session_scope(engine, readonly=True) as session:
        kept = stored_audit.audit_anchor(session)
    return AuditAnchorOut(seq=kept.seq, hash=kept.hash, anchor=str(kept))
