"""Repository functions for the assurance and policy files stored for each estate (0009).

Every upload is a new row, never changed or deleted: the newest of each kind is the one the estate is assessed
with, and the older ones are the history the audit log's hashes point at. Like every resource module of the store,
these take a Session, flush and never commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.store.rows import record_of
from ringfence.store.tables import AssuranceDocumentRow


class AssuranceKind(StrEnum):
    ASSURANCE = "assurance"
    """The evidence: suppliers' assessments, exercises, restore tests (docs/assurance-format.md)."""
    POLICY = "policy"
    """What must hold, per clinical tier."""


@dataclass(frozen=True)
class AssuranceDocument:
    """An assurance or policy file exactly as stored for an estate."""

    id: int
    estate: str
    kind: AssuranceKind
    name: str
    """The file's own name for itself (``assurance:`` or ``policy:``)."""
    sha256: str
    content: str
    created_at: datetime
    created_by: str


def _record(row: AssuranceDocumentRow) -> AssuranceDocument:
    return record_of(AssuranceDocument, row, kind=AssuranceKind(row.kind))


def add_assurance_document(
    session: Session, *, estate: str, kind: AssuranceKind, name: str, content: str, created_by: str, at: datetime
) -> AssuranceDocument:
    row = AssuranceDocumentRow(
        estate=estate,
        kind=kind.value,
        name=name,
        sha256=hashlib.sha256(content.encode("utf-8")).hexdigest(),
        content=content,
        created_at=at,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return _record(row)


def latest_assurance_document(session: Session, estate: str, kind: AssuranceKind) -> AssuranceDocument | None:
    """The newest file of ``kind`` stored for ``estate``; None when none was."""
    row = session.scalars(
        sa.select(AssuranceDocumentRow)
        .where(AssuranceDocumentRow.estate == estate, AssuranceDocumentRow.kind == kind.value)
        .order_by(AssuranceDocumentRow.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _record(row)


def estates_with_assurance(session: Session) -> list[str]:
    """Every estate an assurance file was stored for, sorted."""
    return list(
        session.scalars(
            sa.select(AssuranceDocumentRow.estate)
            .where(AssuranceDocumentRow.kind == AssuranceKind.ASSURANCE.value)
            .distinct()
            .order_by(AssuranceDocumentRow.estate)
        )
    )


__all__ = [
    "AssuranceDocument",
    "AssuranceKind",
    "add_assurance_document",
    "estates_with_assurance",
    "latest_assurance_document",
]
