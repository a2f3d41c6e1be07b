"""Sessions of people signed in at the trust's identity provider: begun, ended, and audited by name.

A session is a row of ``api_tokens`` with an end (``expires_at``): its secret lives only in the browser's
``ringfence_token`` cookie, its hash in the table, so every check that guards an API token guards a
session too: the role, revocation (signing out revokes it, in every worker within the token cache's
``check``), and :func:`ringfence.service.tokens.authenticate`, which refuses a session past its end (the
token cache does not answer for one either). The session is named after the person (the configured
``person_claim``, an email address or user principal name), so every audit entry of what they do names
them, and the two-person rule compares people, not tokens.

The role is the highest that any of the person's groups (or app roles: ``roles_from``) is mapped to in the
sign-in configuration; a person in no mapped group is refused (and the refusal audited), never given a
default role. A person whose groups the provider did not send because there are too many (Entra ID's groups
overage) is refused with the fix named.

Ended sessions do not pile up: each sign-in deletes up to :data:`PURGED_PER_SIGN_IN` sessions that ended
(expired or signed out) more than :data:`ENDED_SESSIONS_KEPT` ago, and audits how many. Only a sign-in makes
a session, and each removes more than it adds, so the ended ones never outgrow a day's worth of sign-ins,
and no sign-in does more than a bounded piece of that work.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from ringfence.core.clock import utc_now
from ringfence.core.errors import NotFoundError
from ringfence.core.words import and_list
from ringfence.files.oidc_config import OidcConfig
from ringfence.service.oidc import Identity, SignInError
from ringfence.service.tokens import TOKEN_PREFIX, Caller, Role, hash_token, person_of, revoke_token
from ringfence.store import tokens as stored
from ringfence.store.audit import append_audit
from ringfence.store.db import session_scope

PURGE_ACTOR = "server (sign-in housekeeping)"
"""Who the audit log says removed ended sessions: no person asked for it."""
PURGED_PER_SIGN_IN = 100
"""Ended sessions deleted by one sign-in at most: bounded work, and still far more than the one it adds."""
ENDED_SESSIONS_KEPT = timedelta(days=1)
"""How long an ended session stays in ``ringfence token list`` (the audit log keeps its sign-in and sign-out
for good)."""


@dataclass(frozen=True)
class Session:
    """A session begun: its secret (for the cookie, never stored), whom it is for and when it ends."""

    token_id: int
    person: str
    role: Role
    expires_at: datetime
    secret: str


def role_for(groups: tuple[str, ...], config: OidcConfig) -> tuple[Role | None, tuple[str, ...]]:
    """The highest role the groups are mapped to (None for none), and the groups that were mapped."""
    mapped = tuple(g for g in groups if g in config.roles)
    if not mapped:
        return None, ()
    return max((Role(config.roles[g]) for g in mapped), key=lambda r: r.rank), mapped


def begin_session(engine: Engine, identity: Identity, config: OidcConfig, *, at: datetime | None = None) -> Session:
    """Store a session for a verified ``identity`` and write ``auth.sign_in``; SignInError (audited as
    ``auth.sign_in_refused``) when none of the person's groups has a role."""
    now = at or utc_now()
    role, mapped = role_for(identity.groups, config)
    if role is None:
        with session_scope(engine) as session:
            append_audit(
                session,
                actor=identity.person,
                action="auth.sign_in_refused",
                subject=f"person:{identity.person}",
                detail={
                    "issuer": identity.issuer,
                    "subject": identity.subject,
                    "groups": len(identity.groups),
                    "groups_overage": identity.overage,
                },
                at=now,
            )
        raise SignInError(_no_role(identity, config))
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=config.session_lifetime)
    with session_scope(engine) as session:
        token_id = stored.add_token(
            session,
            name=identity.person,
            role=role.value,
            token_hash=hash_token(secret),
            asset_id=None,
            created_at=now,
            expires_at=expires_at,
            person=person_of(identity.person)[:200],
        )
        # In the same transaction as the session: no one is signed in whom the log does not show.
        append_audit(
            session,
            actor=identity.person,
            action="auth.sign_in",
            subject=f"session:{token_id}",
            detail={
                "name": identity.display_name,
                "role": role.value,
                "groups": and_list(mapped),
                "issuer": identity.issuer,
                "subject": identity.subject,
                "expires_at": expires_at.isoformat(),
            },
            at=now,
        )
    purge_ended_sessions(engine, at=now)
    return Session(token_id, identity.person, role, expires_at, secret)


def purge_ended_sessions(engine: Engine, *, at: datetime | None = None, limit: int = PURGED_PER_SIGN_IN) -> int:
    """Delete up to ``limit`` sessions that ended more than :data:`ENDED_SESSIONS_KEPT` before ``at`` (oldest
    first) and write ``auth.sessions_purged`` when any were; how many. Every worker's token cache notices the
    table changed (its mark) and forgets them: their secrets are then unknown, as a revoked one is."""
    now = at or utc_now()
    before = now - ENDED_SESSIONS_KEPT
    with session_scope(engine) as session:
        removed = stored.remove_ended_sessions(session, ended_before=before, limit=limit)
        if removed:
            append_audit(
                session,
                actor=PURGE_ACTOR,
                action="auth.sessions_purged",
                subject="sessions",
                detail={"sessions": removed, "ended_before": before.isoformat()},
                at=now,
            )
    return removed


def end_session(engine: Engine, caller: Caller, *, at: datetime | None = None) -> None:
    """Sign ``caller`` out: revoke the session (every worker forgets it) and write ``auth.sign_out``.

    Only sessions are ended: an API token used to sign in to the dashboard is the admin's to revoke, and
    may be in use elsewhere."""
    if not caller.is_session:
        return
    now = at or utc_now()
    try:
        revoke_token(engine, caller.token_id, at=now)
    except NotFoundError:
        return  # removed by hand meanwhile: nothing left to end
    with session_scope(engine) as session:
        append_audit(
            session,
            actor=caller.name,
            action="auth.sign_out",
            subject=f"session:{caller.token_id}",
            detail={"role": caller.role.value},
            at=now,
        )


def _no_role(identity: Identity, config: OidcConfig) -> str:
    if identity.overage:
        return (
            f"you signed in as {identity.person}, but you are in more groups than the identity provider puts in "
            f"an ID token (Entra ID sends at most 200; past that it sends only a link to Microsoft Graph, the "
            f"'groups overage'), so ringfence cannot tell your role. Ask your administrator to do one of these: "
            "give ringfence's roles as app roles (in Entra ID, define app roles on the app registration and assign "
            "them to groups; then set roles_from: app_roles in the sign-in configuration), or send only the "
            "groups assigned to the application (app registration, Token configuration, groups claim: 'Groups "
            "assigned to the application')."
        )
    if not identity.groups_sent and config.roles_from == "app_roles":
        return (
            f"you signed in as {identity.person}, but you have no app role for ringfence (the ID token has no "
            f"'{config.role_claim}' claim). Ask your administrator to assign you, or a group you are in, one of "
            "the app's roles."
        )
    if not identity.groups_sent:
        return (
            f"you signed in as {identity.person}, but the identity provider sent no '{config.groups_claim}' claim, "
            "so ringfence cannot tell your role. Ask your administrator to add the groups claim to the ID token "
            "(Entra ID leaves it out for people in more than 200 groups unless the app is given only its "
            "assigned groups)."
        )
    if config.roles_from == "app_roles":
        return (
            f"you signed in as {identity.person}, but none of your app roles is given a role in ringfence. "
            "Ask your administrator to assign you one of the app roles it maps."
        )
    return (
        f"you signed in as {identity.person}, but none of your groups is given a role in ringfence. "
        "Ask your administrator to add you to one of the groups that may use it."
    )


__all__ = [
    "ENDED_SESSIONS_KEPT",
    "PURGED_PER_SIGN_IN",
    "Session",
    "begin_session",
    "end_session",
    "purge_ended_sessions",
    "role_for",
]
