"""Sessions of people signed in at the trust's identity provider: begun, ended, and audited by name.

A session is a row of ``api_tokens`` with an end (``expires_at``): its secret lives only in the browser's
``ringfence_token`` cookie, its hash in the table, so every check that guards an API token guards a
session too: the role, revocation (signing out revokes it, in every worker within the token cache's
``check``), and :func:`ringfence.service.tokens.authenticate`, which refuses a session past its end (the
token cache does not answer for one either). The session is named after the person (the configured
``person_claim``, an email address or user principal name), so every audit entry of what they do names
them, and the two-person rule compares people, not tokens.

The role is the highest that any of the person's groups is mapped to in the sign-in configuration; a person
in no mapped group is refused (and the refusal audited), never given a default role.
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
                detail={"issuer": identity.issuer, "subject": identity.subject, "groups": len(identity.groups)},
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
    return Session(token_id, identity.person, role, expires_at, secret)


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
    if not identity.groups_sent:
        return (
            f"you signed in as {identity.person}, but the identity provider sent no '{config.groups_claim}' claim, "
            "so ringfence cannot tell your role. Ask your administrator to add the groups claim to the ID token "
            "(Entra ID leaves it out for people in more than 200 groups unless the app is given only its "
            "assigned groups)."
        )
    return (
        f"you signed in as {identity.person}, but none of your groups is given a role in ringfence. "
        "Ask your administrator to add you to one of the groups that may use it."
    )


__all__ = ["Session", "begin_session", "end_session", "role_for"]
