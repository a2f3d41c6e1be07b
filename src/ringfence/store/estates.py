"""Repository functions for estate versions: each estate file exactly as uploaded, never replaced or deleted.

Like every resource module of the store, these take a Session, flush and never commit; an upload lands in the
audit log in the same transaction.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ringfence.core.errors import InputError, NotFoundError
from ringfence.store.audit import append_audit
from ringfence.store.records import EstateFormat, EstateVersion
from ringfence.store.rows import record_of
from ringfence.store.tables import EstateVersionRow


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
    return record_of(EstateVersion, row, format=EstateFormat(row.format))


__all__ = ["add_estate_version", "get_estate_version", "latest_estate_version", "list_estate_versions"]
