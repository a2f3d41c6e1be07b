"""API tokens: who is calling, and what their role lets them do.

Tokens are 32 random bytes shown once; only their SHA-256 is stored (a slow password hash buys nothing for
a random secret of that length). An agent token is bound to one asset and speaks only for it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ringfence.errors import InputError, NotFoundError, PermissionDeniedError, Problem
from ringfence.store.db import session_scope
from ringfence.store.tables import ApiTokenRow

TOKEN_PREFIX = "rf_"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"
    AGENT = "agent"

    @property
    def rank(self) -> int:
        """People's roles are ordered: each may do what the ones below it may. Agents stand apart."""
        return {"viewer": 1, "operator": 2, "approver": 3, "admin": 4, "agent": 0}[self.value]


@dataclass(frozen=True)
class Caller:
    """Who made a request: a token's name and role (and, for an agent, its asset)."""

    token_id: int
    name: str
    role: Role
    asset_id: str | None = None

    def require(self, role: Role) -> None:
        """Refuse unless this caller's role is at least ``role`` (agents never pass a people's check)."""
        if self.role is Role.AGENT or self.role.rank < role.rank:
            raise PermissionDeniedError(f"'{self.name}' is a {self.role}; this needs the {role} role or higher")

    def require_asset(self, asset_id: str) -> None:
        """An agent token speaks only for its own asset."""
        if self.role is Role.AGENT and self.asset_id != asset_id:
            raise PermissionDeniedError(f"agent token '{self.name}' speaks for '{self.asset_id}', not '{asset_id}'")
        if self.role is not Role.AGENT and self.role.rank < Role.OPERATOR.rank:
            raise PermissionDeniedError(f"'{self.name}' is a {self.role}; agents and operators report for assets")


@dataclass(frozen=True)
class IssuedToken:
    id: int
    name: str
    role: Role
    asset_id: str | None
    secret: str
    """Shown once; never stored."""


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def issue_token(
    engine: Engine, *, name: str, role: Role | str, asset_id: str | None = None, at: datetime | None = None
) -> IssuedToken:
    try:
        role = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InputError([Problem(f"'{role}' is not a role; roles are {roles}", path=("role",))]) from None
    if (role is Role.AGENT) != (asset_id is not None):
        raise InputError([Problem("an agent token names exactly one asset; other roles name none", path=("asset",))])
    if not name.strip():
        raise InputError([Problem("a token needs a name saying whose it is", path=("name",))])
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with session_scope(engine) as session:
        row = ApiTokenRow(
            name=name.strip(),
            role=role.value,
            token_hash=hash_token(secret),
            asset_id=asset_id,
            created_at=at or datetime.now(UTC),
            revoked_at=None,
        )
        session.add(row)
        session.flush()
        token_id = row.id
    return IssuedToken(token_id, name.strip(), role, asset_id, secret)


def authenticate(engine: Engine, secret: str) -> Caller:
    """The caller a bearer token stands for; PermissionDeniedError for an unknown or revoked token."""
    with session_scope(engine, readonly=True) as session:
        query = sa.select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(secret))
        row = session.execute(query).scalar_one_or_none()
        if row is None or row.revoked_at is not None:
            raise PermissionDeniedError("the token is unknown or revoked")
        return Caller(row.id, row.name, Role(row.role), row.asset_id)


def revoke_token(engine: Engine, token_id: int, *, at: datetime | None = None) -> None:
    with session_scope(engine) as session:
        row = session.get(ApiTokenRow, token_id)
        if row is None:
            raise NotFoundError(f"no token with id {token_id}")
        row.revoked_at = at or datetime.now(UTC)


def list_tokens(engine: Engine) -> list[Caller]:
    with session_scope(engine, readonly=True) as session:
        rows = session.execute(sa.select(ApiTokenRow).where(ApiTokenRow.revoked_at.is_(None)).order_by(ApiTokenRow.id))
        return [Caller(r.id, r.name, Role(r.role), r.asset_id) for r in rows.scalars()]
