"""API tokens: who is calling, and what their role lets them do.

Tokens are 32 random bytes shown once; only their SHA-256 is stored (a slow password hash buys nothing for
a random secret of that length). An agent token is bound to one asset and speaks only for it. A token's
name, role and asset never change: to change a role, issue a new token and revoke the old one.

Every request names its token, so each server worker keeps a :class:`TokenCache` instead of reading
``api_tokens`` per request; a revocation reaches it at once in the process that revoked the token and
within ``TokenCache.check`` seconds (2) in every other worker and server.

The ``api_tokens`` table is read and written through :mod:`ringfence.store.tokens` only; this module decides
what a token means (its role, whom it speaks for) and how long a worker may remember it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.core.clock import utc_now
from ringfence.core.errors import InputError, PermissionDeniedError, Problem
from ringfence.store import tokens as stored
from ringfence.store.db import session_scope

TOKEN_PREFIX = "rf_"

TOKEN_CHECK_SECONDS = 2.0
"""How often a :class:`TokenCache` looks at the table: a revocation elsewhere takes effect within this."""


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
        token_id = stored.add_token(
            session,
            name=name.strip(),
            role=role.value,
            token_hash=hash_token(secret),
            asset_id=asset_id,
            created_at=at or utc_now(),
        )
    return IssuedToken(token_id, name.strip(), role, asset_id, secret)


@dataclass(frozen=True)
class EstateText:
    """An estate to check an agent token's asset against: its text and where it came from."""

    text: str
    source: str


def stored_estates(engine: Engine) -> list[EstateText]:
    """The newest version of every estate kept in the database, by name."""
    from ringfence.service.estates import list_estates

    return [EstateText(e.latest.content, f"{e.name} (stored version {e.latest.id})") for e in list_estates(engine)]


def estate_holding(asset_id: str, estates: list[EstateText]) -> str:
    """The estate (its name) that has an asset ``asset_id``; InputError naming the asset and the estates otherwise.

    An agent token for an asset no estate has would be accepted and then never be asked anything: a typo
    that costs an afternoon. Ids are ``[a-z0-9._-]``, which neither YAML nor JSON writers escape, so an
    estate whose text does not contain the id cannot have it, and only one that does is parsed.
    """
    from ringfence.core.estate import parse_estate_text

    if not estates:
        raise InputError(
            [
                Problem(
                    f"there is no estate to check asset '{asset_id}' against: name the estate file with "
                    "--estate FILE (or upload the estate first), or pass --force to issue the token unchecked",
                    path=("--asset",),
                )
            ]
        )
    for found in estates:
        if asset_id not in found.text:
            continue
        estate = parse_estate_text(found.text, found.source)
        if any(a.id == asset_id for a in estate.assets):
            return estate.name
    where = ", ".join(e.source for e in estates)
    raise InputError(
        [
            Problem(
                f"asset '{asset_id}' is not in {where}; check the id, or pass --force to issue the token anyway",
                path=("--asset",),
            )
        ]
    )


def authenticate(engine: Engine, secret: str) -> Caller:
    """The caller a bearer token stands for; PermissionDeniedError for an unknown or revoked token."""
    with session_scope(engine, readonly=True) as session:
        found = stored.find_token(session, hash_token(secret))
    if found is None or found.revoked_at is not None:
        raise PermissionDeniedError("the token is unknown or revoked")
    return _caller(found)


def revoke_token(engine: Engine, token_id: int, *, at: datetime | None = None) -> None:
    """Revoke a token; caches of this process forget it at once, other processes' within their ``check``."""
    with session_scope(engine) as session:
        stored.revoke_token(session, token_id, at=at or utc_now())
    for cache in list(_CACHES):
        if cache.engine is engine:
            cache.forget(token_id)


def list_tokens(engine: Engine) -> list[Caller]:
    with session_scope(engine, readonly=True) as session:
        return [_caller(found) for found in stored.list_active_tokens(session)]


def _caller(found: stored.StoredToken) -> Caller:
    return Caller(found.id, found.name, Role(found.role), found.asset_id)


# ------------------------------------------------------------------------------------------ the cache

_CACHES: weakref.WeakSet[TokenCache] = weakref.WeakSet()
"""Every cache of this process, so that :func:`revoke_token` can make them forget a token at once."""


class TokenCache:
    """Who each token is, kept per process, so a request does not read ``api_tokens``.

    Why a cache is safe: a token's name, role and asset never change; the only change that takes a right
    away is a revocation. At most every ``check`` seconds (2) one look at the table (one row of counts)
    says whether tokens were issued or revoked since; after a revocation the table is read again. So a
    token revoked by another worker or server stops working within ``check`` seconds, and one revoked in
    this process (:func:`revoke_token`) at once. Every ``max_age`` seconds (300) the table is read again
    whatever the counts say, so a hand edit of the table is seen within five minutes too.

    Bounded: it holds at most ``max_tokens`` callers (100,000; about 30 MB). The first look reads the
    newest of the tokens not revoked (their hashes, as stored, never secrets); a token it does not hold is
    looked up on its own (one indexed query), so a token issued a moment ago works at once, and is kept,
    the one held longest making room when the cache is full. An unknown token is never remembered.

    Thread-safe: :meth:`cached` only reads (the event loop calls it); everything that changes the cache
    holds the lock.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        check: float = TOKEN_CHECK_SECONDS,
        max_age: float = 300.0,
        max_tokens: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.check = check
        self.max_age = max_age
        self.max_tokens = max_tokens
        self.monotonic = monotonic
        self._callers: dict[str, Caller] = {}
        """Token hash → caller; in the order they were read, so the oldest is the first to make room."""
        self._mark: stored.TokenTableMark | None = None
        self._checked_at = 0.0
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self.reads = 0
        """How many times the table was read (whole or in part): for tests and benchmarks."""
        _CACHES.add(self)

    def cached(self, secret: str) -> Caller | None:
        """The caller when the cache is fresh and holds the token; None when the database must be asked."""
        if self._mark is None or self.monotonic() - self._checked_at > self.check:
            return None
        return self._callers.get(hash_token(secret))

    def authenticate(self, secret: str) -> Caller:
        """The caller for ``secret`` (PermissionDeniedError for unknown or revoked), from the database if need be."""
        self.refresh()
        digest = hash_token(secret)
        found = self._callers.get(digest)
        if found is not None:
            return found
        caller = authenticate(self.engine, secret)  # issued since the last look, or unknown: raises
        with self._lock:
            self._remember(digest, caller)
        return caller

    def refresh(self) -> None:
        """Look at the table once half of ``check`` has passed (what a request or a refresher thread calls).

        Half, not all: the server's refresher thread calls this every 0.1 s, so the cache is looked at well
        before :meth:`cached` would call it stale. Were it let to expire, every request of that moment
        would miss at once and queue for the database (measured: stalls of 30–200 ms every 2 s under
        3,000 requests/s), while a revocation is seen no later for looking early.
        """
        due = self.check / 2
        if self._mark is not None and self.monotonic() - self._checked_at <= due:
            return
        with self._lock:
            now = self.monotonic()
            if self._mark is not None and now - self._checked_at <= due:
                return  # another thread looked while this one waited
            with session_scope(self.engine, readonly=True) as session:
                mark = stored.read_token_mark(session)
                previous = self._mark
                if previous is None or now - self._loaded_at > self.max_age or _revoked_or_removed(previous, mark):
                    self._callers = self._read_newest(session)
                    self._loaded_at = now
                    self.reads += 1
                elif mark.highest_id > previous.highest_id:
                    # Only issued since: read just the new ones (revocations would have changed the mark).
                    for digest, caller in self._read_newest(session, above=previous.highest_id).items():
                        self._remember(digest, caller)
                    self.reads += 1
            self._mark = mark
            self._checked_at = now

    def forget(self, token_id: int) -> None:
        """Drop the token with this id at once (it was revoked in this process)."""
        with self._lock:
            # A copy without it, swapped in whole: the event loop may be reading the old one meanwhile.
            self._callers = {d: c for d, c in self._callers.items() if c.token_id != token_id}

    def _remember(self, digest: str, caller: Caller) -> None:
        """Keep ``caller`` (under the lock), the longest-held making room when the cache is full."""
        while len(self._callers) >= self.max_tokens:
            del self._callers[next(iter(self._callers))]
        self._callers[digest] = caller

    def _read_newest(self, session: Session, *, above: int = 0) -> dict[str, Caller]:
        """Tokens not revoked with an id above ``above``, at most ``max_tokens`` of the newest, oldest first."""
        newest = stored.newest_active_tokens(session, above=above, limit=self.max_tokens)
        return {found.token_hash: _caller(found) for found in newest}


def _revoked_or_removed(previous: stored.TokenTableMark, mark: stored.TokenTableMark) -> bool:
    """Whether the table changed in a way that may take a right away (anything but tokens issued)."""
    issued = mark.highest_id - previous.highest_id
    return (
        (mark.revoked, mark.latest_revocation) != (previous.revoked, previous.latest_revocation)
        or mark.tokens - previous.tokens != issued
        or issued < 0
    )
