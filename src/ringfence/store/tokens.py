"""Repository functions for API tokens: the ``api_tokens`` table, read and written here and nowhere else.

Only a token's SHA-256 is stored, never its secret. Like every resource module of the store, these take a
Session, flush and never commit. Roles are kept as the text stored; :mod:`ringfence.service.tokens` turns them
into its ``Role`` (the store does not know what a role allows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.core.errors import NotFoundError
from ringfence.store.tables import ApiTokenRow


@dataclass(frozen=True)
class StoredToken:
    """A token as stored: who it is for and whether it was revoked (its hash, never its secret)."""

    id: int
    name: str
    role: str
    asset_id: str | None
    token_hash: str
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    """When a signed-in session ends; None for an API token (it lasts until revoked)."""
    person: str = ""
    """Who the token is, as people are compared (see ``ringfence.service.people.person_of``)."""
    issued_by: int | None = None
    """The token that issued it; None when it was made on the CLI."""


class TokenTableMark(NamedTuple):
    """One row of counts that changes whenever a token is issued, revoked or removed by hand.

    A cache compares two marks to learn, in one cheap query, whether it must read the table again.
    """

    tokens: int
    highest_id: int
    revoked: int
    latest_revocation: datetime | None


def add_token(
    session: Session,
    *,
    name: str,
    role: str,
    token_hash: str,
    asset_id: str | None,
    created_at: datetime,
    expires_at: datetime | None = None,
    person: str = "",
    issued_by: int | None = None,
) -> int:
    """Store a new token (by its hash) and return its id; ``expires_at`` ends a signed-in session."""
    row = ApiTokenRow(
        name=name,
        role=role,
        token_hash=token_hash,
        asset_id=asset_id,
        created_at=created_at,
        revoked_at=None,
        expires_at=expires_at,
        person=person,
        issued_by=issued_by,
    )
    session.add(row)
    session.flush()
    return row.id


def find_token(session: Session, token_hash: str) -> StoredToken | None:
    """The token whose hash is ``token_hash`` (revoked or not), or None when no token has it."""
    row = session.execute(sa.select(ApiTokenRow).where(ApiTokenRow.token_hash == token_hash)).scalar_one_or_none()
    return None if row is None else _record(row)


def revoke_token(session: Session, token_id: int, *, at: datetime) -> None:
    """Mark the token revoked at ``at``; NotFoundError when there is no token with that id."""
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        raise NotFoundError(f"no token with id {token_id}")
    row.revoked_at = at
    session.flush()


def remove_ended_sessions(session: Session, *, ended_before: datetime, limit: int) -> int:
    """Delete at most ``limit`` signed-in sessions (rows with an ``expires_at``) that ended, by their end or by
    being revoked, before ``ended_before``, oldest first; how many were deleted. API tokens are never touched,
    nor a session that issued a token (the issuer chain of that token must stay whole)."""
    issued = sa.orm.aliased(ApiTokenRow)
    ended = sa.or_(ApiTokenRow.expires_at < ended_before, ApiTokenRow.revoked_at < ended_before)
    ids = (
        session.execute(
            sa.select(ApiTokenRow.id)
            .where(
                ApiTokenRow.expires_at.is_not(None),
                ended,
                ~sa.exists().where(issued.issued_by == ApiTokenRow.id),
            )
            .order_by(ApiTokenRow.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    if ids:
        session.execute(sa.delete(ApiTokenRow).where(ApiTokenRow.id.in_(ids)))
        session.flush()
    return len(ids)


def list_active_tokens(session: Session) -> list[StoredToken]:
    """Every token not revoked, oldest first."""
    rows = session.execute(sa.select(ApiTokenRow).where(ApiTokenRow.revoked_at.is_(None)).order_by(ApiTokenRow.id))
    return [_record(row) for row in rows.scalars()]


def read_token_mark(session: Session) -> TokenTableMark:
    """The table's :class:`TokenTableMark`, in one aggregate query."""
    count, highest, revoked, latest = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.max(ApiTokenRow.id),
            sa.func.count(ApiTokenRow.revoked_at),
            sa.func.max(ApiTokenRow.revoked_at),
        )
    ).one()
    return TokenTableMark(int(count), int(highest or 0), int(revoked), latest)


def newest_active_tokens(session: Session, *, above: int = 0, limit: int) -> list[StoredToken]:
    """Tokens not revoked with an id above ``above``: at most ``limit`` of the newest, returned oldest first."""
    rows = session.execute(
        sa.select(
            ApiTokenRow.id,
            ApiTokenRow.name,
            ApiTokenRow.role,
            ApiTokenRow.asset_id,
            ApiTokenRow.token_hash,
            ApiTokenRow.expires_at,
        )
        .where(ApiTokenRow.revoked_at.is_(None), ApiTokenRow.id > above)
        .order_by(ApiTokenRow.id.desc())
        .limit(limit)
    ).all()
    return [
        StoredToken(row.id, row.name, row.role, row.asset_id, row.token_hash, expires_at=row.expires_at)
        for row in reversed(rows)
    ]


def issuer_chain(session: Session, token_id: int) -> list[StoredToken]:
    """The tokens that issued ``token_id``: its issuer, the issuer's issuer, … up to one made on the CLI
    (revoked ones included: a revoked issuer still issued it). Empty for an unknown token or a CLI one."""
    chain: list[StoredToken] = []
    seen = {token_id}
    row = session.get(ApiTokenRow, token_id)
    while row is not None and row.issued_by is not None and row.issued_by not in seen:
        seen.add(row.issued_by)  # a hand-edited cycle ends the walk rather than looping
        row = session.get(ApiTokenRow, row.issued_by)
        if row is not None:
            chain.append(_record(row))
    return chain


def get_token(session: Session, token_id: int) -> StoredToken | None:
    """The token with id ``token_id`` (revoked or not), or None."""
    row = session.get(ApiTokenRow, token_id)
    return None if row is None else _record(row)


def _record(row: ApiTokenRow) -> StoredToken:
    return StoredToken(
        row.id,
        row.name,
        row.role,
        row.asset_id,
        row.token_hash,
        row.revoked_at,
        row.expires_at,
        person=row.person,
        issued_by=row.issued_by,
    )


__all__ = [
    "StoredToken",
    "TokenTableMark",
    "add_token",
    "find_token",
    "get_token",
    "issuer_chain",
    "list_active_tokens",
    "newest_active_tokens",
    "read_token_mark",
    "remove_ended_sessions",
    "revoke_token",
]
