"""Repository functions for estate versions: each estate file exactly as uploaded, never replaced or deleted,
and the estate of record: which version of each estate is current, and which estate holds each asset.

A version's ``status`` says what it is to the estate of record (:mod:`ringfence.service.estates` decides it):
``accepted`` versions may be current (an estate's current version is the accepted one accepted last),
``proposed`` ones wait for a second person, ``rejected`` ones never become current, and ``kept`` ones are
stored only to be referred to (an incident declared on a text) and are never of record.

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
from ringfence.core.rollout.state import AssetState
from ringfence.store.audit import append_audit
from ringfence.store.records import EstateFormat, EstateVersion
from ringfence.store.rows import chunks, record_of, upsert
from ringfence.store.tables import EstateAssetRow, EstateVersionRow, RolloutAssetRow

ACCEPTED = "accepted"
PROPOSED = "proposed"
REJECTED = "rejected"
KEPT = "kept"
ESTATE_STATUSES = (ACCEPTED, PROPOSED, REJECTED, KEPT)


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
    status: str = KEPT,
    created_by_token: int | None = None,
) -> EstateVersion:
    """Keep ``content`` as a new version of estate ``name``; the same text uploaded again is the same version.

    Versions are never replaced or deleted, so a bad upload cannot take the place of the last good one. A new
    version has ``status`` (default ``kept``: stored, never of record; :func:`decide_estate_version` changes
    it); one already stored keeps its own.
    """
    if status not in ESTATE_STATUSES:
        raise InputError(f"an estate version is {', '.join(ESTATE_STATUSES)}, not {status!r}")
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
        status=status,
        accepted_at=at if status == ACCEPTED else None,
        created_by_token=created_by_token,
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
        detail={
            "version": row.id,
            "sha256": digest,
            "assets": asset_count,
            "services": service_count,
            "status": status,
        },
        at=at,
    )
    return _estate_version(row)


def decide_estate_version(
    session: Session, version_id: int, status: str, *, at: datetime, by: str | None = None
) -> EstateVersion:
    """Set a stored version's status (accepting it makes it its estate's current version from ``at``);
    ``by`` is the second person who decided, when one did. The caller audits the decision."""
    if status not in ESTATE_STATUSES:
        raise InputError(f"an estate version is {', '.join(ESTATE_STATUSES)}, not {status!r}")
    row = session.get(EstateVersionRow, version_id)
    if row is None:
        raise NotFoundError(f"estate version {version_id} does not exist")
    row.status = status
    if status == ACCEPTED:
        row.accepted_at = at
    if by is not None:
        row.decided_by = by
        row.decided_at = at
    session.flush()
    return _estate_version(row)


def current_estate_version(session: Session, name: str) -> EstateVersion | None:
    """The current version of record of estate ``name``: the accepted version accepted last (None: none is)."""
    row = session.scalars(
        sa.select(EstateVersionRow)
        .where(EstateVersionRow.name == name, EstateVersionRow.status == ACCEPTED)
        .order_by(EstateVersionRow.accepted_at.desc(), EstateVersionRow.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _estate_version(row)


def current_estate_versions(session: Session) -> dict[str, EstateVersion]:
    """Every estate's current version of record, by name."""
    current: dict[str, EstateVersion] = {}
    rows = session.scalars(
        sa.select(EstateVersionRow)
        .where(EstateVersionRow.status == ACCEPTED)
        .order_by(EstateVersionRow.accepted_at, EstateVersionRow.id)
    )
    for row in rows:
        current[row.name] = _estate_version(row)  # the one accepted last wins
    return current


def asset_holders(session: Session, asset_ids: list[str]) -> dict[str, tuple[str, int]]:
    """Asset id → (estate name, version id) of the estate of record holding it, for those of ``asset_ids`` held."""
    found: dict[str, tuple[str, int]] = {}
    for batch in chunks(sorted(set(asset_ids))):
        rows = session.execute(
            sa.select(EstateAssetRow.asset_id, EstateAssetRow.estate_name, EstateAssetRow.version_id).where(
                EstateAssetRow.asset_id.in_(batch)
            )
        )
        for asset_id, name, version_id in rows:
            found[asset_id] = (name, version_id)
    return found


def hold_assets(session: Session, *, name: str, version_id: int, asset_ids: list[str]) -> None:
    """Make version ``version_id`` of ``name`` the holder of ``asset_ids`` (taking any from the estate that held
    them: an approved move) and of nothing else ``name`` held before."""
    session.execute(sa.delete(EstateAssetRow).where(EstateAssetRow.estate_name == name))
    statement = upsert(session, EstateAssetRow.__table__, ["asset_id"], ["estate_name", "version_id"])
    for batch in chunks(sorted(set(asset_ids))):
        session.execute(statement, [{"asset_id": a, "estate_name": name, "version_id": version_id} for a in batch])
    session.flush()


def targets_of_record(session: Session, rollout_id: str, version_id: int) -> list[tuple[str, int, AssetState, bool]]:
    """(asset id, ring, state, held) of each target of ``rollout_id``: ``held`` when version ``version_id`` holds
    the asset of record (the only targets an agent may be told to install; any may be told to roll back)."""
    held = sa.and_(EstateAssetRow.asset_id == RolloutAssetRow.asset_id, EstateAssetRow.version_id == version_id)
    rows = session.execute(
        sa.select(RolloutAssetRow.asset_id, RolloutAssetRow.ring, RolloutAssetRow.state, EstateAssetRow.asset_id)
        .outerjoin(EstateAssetRow, held)
        .where(RolloutAssetRow.rollout_id == rollout_id)
    )
    return [(asset_id, ring, AssetState(state), holder is not None) for asset_id, ring, state, holder in rows]


def record_mark(session: Session) -> tuple[int, datetime | None]:
    """One row that changes whenever a version becomes current (and so whenever an asset changes holder)."""
    count, latest = session.execute(
        sa.select(sa.func.count(), sa.func.max(EstateVersionRow.accepted_at)).where(EstateVersionRow.status == ACCEPTED)
    ).one()
    return int(count), latest


def get_estate_version(session: Session, version_id: int) -> EstateVersion:
    row = session.get(EstateVersionRow, version_id)
    if row is None:
        raise NotFoundError(f"estate version {version_id} does not exist")
    return _estate_version(row)


def latest_estate_version(session: Session, name: str) -> EstateVersion:
    """The current version of record of estate ``name`` (NotFoundError when it has none)."""
    current = current_estate_version(session, name)
    if current is not None:
        return current
    newest = session.scalars(
        sa.select(EstateVersionRow).where(EstateVersionRow.name == name).order_by(EstateVersionRow.id.desc()).limit(1)
    ).first()
    if newest is None:
        raise NotFoundError(f"no estate named {name!r} has been uploaded")
    raise NotFoundError(
        f"estate {name!r} has no current version of record: its version {newest.id} is {newest.status}"
        + (", awaiting a second person's approval" if newest.status == PROPOSED else "")
    )


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


__all__ = [
    "ACCEPTED",
    "ESTATE_STATUSES",
    "KEPT",
    "PROPOSED",
    "REJECTED",
    "add_estate_version",
    "asset_holders",
    "current_estate_version",
    "current_estate_versions",
    "decide_estate_version",
    "get_estate_version",
    "hold_assets",
    "latest_estate_version",
    "list_estate_versions",
    "record_mark",
    "targets_of_record",
]
