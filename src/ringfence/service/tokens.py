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
from ringfence.service.people import person_of as person_of
from ringfence.store import tokens as stored
from ringfence.store.audit import append_audit
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
    expires_at: datetime | None = None
    """When a signed-in session ends (``ringfence.service.sessions``); None for an API token."""

    @property
    def is_session(self) -> bool:
        """A person signed in at the identity provider (a token with an end), not an API token."""
        return self.expires_at is not None

    def is_expired(self, now: datetime) -> bool:
        """Whether this is a session that has ended by ``now`` (API tokens never end on their own)."""
        return self.expires_at is not None and self.expires_at <= now

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
    engine: Engine,
    *,
    name: str,
    role: Role | str,
    asset_id: str | None = None,
    at: datetime | None = None,
    issued_by: int | None = None,
) -> IssuedToken:
    """A new token. ``issued_by`` is the token of the person issuing it (None on the CLI, whose access to the
    database is the root of trust): a token's issuers can never approve what it creates, nor it theirs."""
    try:
        role = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InputError([Problem(f"'{role}' is not a role; roles are {roles}", path=("role",))]) from None
    if (role is Role.AGENT) != (asset_id is not None):
        raise InputError([Problem("an agent token names exactly one asset; other roles name none", path=("asset",))])
    if not person_of(name):
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
            person=person_of(name)[:200],
            issued_by=issued_by,
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


@dataclass(frozen=True)
class AssetCheckWords:
    """How the caller names the asset, the override and where an estate comes from (CLI flags or API fields)."""

    asset: str = "--asset"
    force: str = "pass --force"
    estate: str = "name the estate file with --estate FILE (or upload the estate first)"


API_WORDS = AssetCheckWords(asset="asset", force='set "force": true', estate="upload the estate first")
"""The words of ``POST /v1/tokens``."""


def estate_holding(asset_id: str, estates: list[EstateText], words: AssetCheckWords = AssetCheckWords()) -> str:
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
                    f"there is no estate to check asset '{asset_id}' against: {words.estate}, or "
                    f"{words.force} to issue the token unchecked",
                    path=(words.asset,),
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
                f"asset '{asset_id}' is not in {where}; check the id, or {words.force} to issue the token anyway",
                path=(words.asset,),
            )
        ]
    )


def authenticate(engine: Engine, secret: str) -> Caller:
    """The caller a bearer token stands for; PermissionDeniedError for an unknown, revoked or ended one."""
    with session_scope(engine, readonly=True) as session:
        found = stored.find_token(session, hash_token(secret))
    if found is None or found.revoked_at is not None:
        raise PermissionDeniedError("the token is unknown or revoked")
    caller = _caller(found)
    if caller.is_expired(utc_now()):
        raise PermissionDeniedError("the session has ended; sign in again")
    return caller


def revoke_token(engine: Engine, token_id: int, *, at: datetime | None = None) -> None:
    """Revoke a token; caches of this process forget it at once, other processes' within their ``check``."""
    with session_scope(engine) as session:
        stored.revoke_token(session, token_id, at=at or utc_now())
    for cache in list(_CACHES):
        if cache.engine is engine:
            cache.forget(token_id)


def list_tokens(engine: Engine) -> list[Caller]:
    """Tokens in use: not revoked, and not sessions that have ended."""
    now = utc_now()
    with session_scope(engine, readonly=True) as session:
        return [c for c in map(_caller, stored.list_active_tokens(session)) if not c.is_expired(now)]


def _caller(found: stored.StoredToken) -> Caller:
    return Caller(found.id, found.name, Role(found.role), found.asset_id, expires_at=found.expires_at)


# ------------------------------------------------------------------------------------------ the cache

_CACHES: weakref.WeakSet[TokenCache] = weakref.WeakSet()
"""Every cache of this process, so that :func:`revoke_token` can make them forget a token at once."""

TOKEN_LENGTH = len(TOKEN_PREFIX) + 43
"""``TOKEN_PREFIX`` and ``secrets.token_urlsafe(32)``: 32 random bytes are 43 URL-safe base64 characters."""
_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

NOT_OURS = "the token is unknown or revoked"
"""The refusal of a secret :func:`could_be_ours` rejects: the same sentence as for any unknown token (what a
token looks like is in docs/api.md; a refusal tells a guesser nothing more)."""

REFUSED_SECONDS = 10.0
"""How long a :class:`TokenCache` remembers a token it refused (see its docstring)."""


def could_be_ours(secret: str) -> bool:
    """Whether ``secret`` has the shape of a token this server issues (``rf_`` and 43 URL-safe characters).

    One that does not cannot be in the table, so it is refused without hashing it or asking anything: a
    flood of junk costs a length check and a prefix comparison per request. The shape says nothing about
    the secret (every token has it), so checking it first leaks nothing.
    """
    return (
        len(secret) == TOKEN_LENGTH
        and secret.startswith(TOKEN_PREFIX)
        and _TOKEN_ALPHABET.issuperset(secret[len(TOKEN_PREFIX) :])
    )


def tokens_issued(engine: Engine) -> None:
    """Tell this process's caches on ``engine`` that a token was just issued here: they forget the tokens they
    refused and look at the table on their next request, so the new token works at once everywhere in this
    process, even for a client that was refused many times. (Other processes see the table's mark change
    within ``TOKEN_CHECK_SECONDS / 2``.)"""
    for cache in list(_CACHES):
        if cache.engine.url == engine.url:  # the same database, through whichever engine of this process
            cache.forget_refusals(look_again=True)


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
    the one held longest making room when the cache is full.

    Refusing is cheap too (issue 12): a secret without the shape of our tokens (:func:`could_be_ours`) is
    refused without a lookup, and a token refused after a lookup is remembered (its hash, never the
    secret) for ``refused_for`` seconds (10), at most ``max_refused`` of them (50,000; about 10 MB, the
    oldest making room), so a flood repeating fake tokens asks the database once per token, not once per
    request. Remembered refusals are forgotten as soon as the table's mark shows a token issued (or anything
    else changed), and at once when a token is issued in this process (:func:`tokens_issued`): a refusal is
    never remembered past the moment the token could have become valid. Tokens are found by the SHA-256 of
    the secret, never by comparing secrets, so how long a lookup takes says nothing about a secret.

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
        refused_for: float = REFUSED_SECONDS,
        max_refused: int = 50_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.check = check
        self.max_age = max_age
        self.max_tokens = max_tokens
        self.refused_for = refused_for
        self.max_refused = max_refused
        self.monotonic = monotonic
        self._refused: dict[str, float] = {}
        """Hash of a refused token → when the refusal stops being remembered; oldest first."""
        self.lookups = 0
        """How many tokens were looked up one by one in the database: for tests and benchmarks."""
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
        return self.known(hash_token(secret))

    @property
    def is_fresh(self) -> bool:
        """Whether the cache looked at the table within ``check`` seconds (so :meth:`known` may answer)."""
        return self._mark is not None and self.monotonic() - self._checked_at <= self.check

    def known(self, digest: str) -> Caller | None:
        """:meth:`cached`, by the token's hash (``hash_token``), for a caller that has hashed it already."""
        if not self.is_fresh:
            return None
        found = self._callers.get(digest)
        if found is not None and found.expires_at is not None and found.is_expired(utc_now()):
            return None  # a session that has ended: authenticate() refuses it
        return found

    def authenticate(self, secret: str) -> Caller:
        """The caller for ``secret`` (PermissionDeniedError for unknown or revoked), from the database if need be.

        A secret without our tokens' shape, or one refused within ``refused_for`` seconds, is refused
        without asking the database.
        """
        if not could_be_ours(secret):
            raise PermissionDeniedError(NOT_OURS)
        self.refresh()
        digest = hash_token(secret)
        found = self._callers.get(digest)
        if found is not None and not found.is_expired(utc_now()):
            return found
        if self.recently_refused(digest):
            raise PermissionDeniedError("the token is unknown or revoked")
        self.lookups += 1
        try:
            caller = authenticate(self.engine, secret)  # issued since the last look, or unknown: raises
        except PermissionDeniedError:
            self._remember_refusal(digest)
            raise
        with self._lock:
            self._remember(digest, caller)
        return caller

    def recently_refused(self, digest: str) -> bool:
        """Whether the token with this hash was refused within ``refused_for`` seconds (and nothing changed)."""
        until = self._refused.get(digest)
        return until is not None and self.monotonic() < until

    def forget_refusals(self, *, look_again: bool = False) -> None:
        """Forget every remembered refusal; with ``look_again``, look at the table on the next request too."""
        with self._lock:
            self._refused = {}  # swapped whole: the event loop may be reading the old one
            if look_again:
                self._checked_at = float("-inf")

    def _remember_refusal(self, digest: str) -> None:
        with self._lock:
            refused = self._refused
            while len(refused) >= self.max_refused:
                del refused[next(iter(refused))]
            refused.pop(digest, None)  # to the end: the oldest stays first
            refused[digest] = self.monotonic() + self.refused_for

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
            if mark != previous and self._refused:
                # Something changed (a token issued, say): a remembered refusal may be wrong now.
                self._refused = {}
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


# ------------------------------------------------------------------------- issuing and revoking, audited


def issue_token_audited(
    engine: Engine,
    *,
    actor: str,
    name: str,
    role: Role | str,
    asset_id: str | None = None,
    at: datetime | None = None,
    issued_by: int | None = None,
) -> IssuedToken:
    """Issue a token (:func:`issue_token`) and write ``token.create`` to the audit log, naming ``actor``.

    What ``POST /v1/tokens`` and ``ringfence token create`` both call: a token is an admin action wherever it is
    made. Two transactions, the token's then the entry's; should the entry fail to be written, the token is
    revoked again before the error goes on, so no token works that the log does not show (its secret was never
    shown either).
    """
    issued = issue_token(engine, name=name, role=role, asset_id=asset_id, at=at, issued_by=issued_by)
    detail: dict[str, str | int | None] = {"name": issued.name, "role": issued.role.value, "asset": issued.asset_id}
    try:
        _audit_token(engine, actor=actor, action="token.create", token_id=issued.id, detail=detail, at=at)
    except BaseException:
        revoke_token(engine, issued.id, at=at)
        raise
    return issued


def revoke_token_audited(engine: Engine, token_id: int, *, actor: str, at: datetime | None = None) -> None:
    """Revoke a token (:func:`revoke_token`) and write ``token.revoke`` to the audit log, naming ``actor``.

    The revocation comes first: it takes a right away, so it must not wait on (or fail with) the log.
    """
    revoke_token(engine, token_id, at=at)
    _audit_token(engine, actor=actor, action="token.revoke", token_id=token_id, detail={"id": token_id}, at=at)


def _audit_token(
    engine: Engine,
    *,
    actor: str,
    action: str,
    token_id: int,
    detail: dict[str, str | int | None],
    at: datetime | None,
) -> None:
    with session_scope(engine) as session:
        append_audit(
            session, actor=actor, action=action, subject=f"token:{token_id}", detail=detail, at=at or utc_now()
        )
