"""Signing in at the trust's identity provider (OpenID Connect), and signing out.

``GET /login/oidc``
    Begins a sign-in (:meth:`ringfence.service.oidc.RelyingParty.begin`): the browser goes to the provider,
    keeping the state, nonce and PKCE verifier in the ``ringfence_sign_in`` cookie, sealed with the server's
    sign-in key (a cookie changed or forged is refused at the callback with a page saying so). That cookie is
    ``SameSite=Lax``, unlike the session's: it must come back on the provider's redirect, a cross-site
    navigation. It is scoped to ``/auth/callback``, ``HttpOnly``, and lasts ten minutes.
``GET /auth/callback``
    Finishes it: the answer is checked and the ID token verified (the service), a session is stored with the
    role the person's groups map to (:mod:`ringfence.service.sessions`), and its secret set in the dashboard's
    ``ringfence_token`` cookie (``SameSite=Strict``, as for a token sign-in). The browser is then sent on by a
    page, not a redirect: a browser does not send a ``SameSite=Strict`` cookie on a redirect chain that
    another site began, so the first page would not know the person. Any refusal is a page saying why.
``POST /logout``
    Signs out: a session is revoked (and ``auth.sign_out`` audited), the cookie cleared, and, when the
    configuration asks and the provider has an ``end_session_endpoint``, the browser is sent there to sign out
    of the provider too (OpenID Connect RP-initiated logout). A dashboard signed in with an API token only
    forgets the cookie: the token is the admin's to revoke.

Without a sign-in configuration (``ringfence serve --oidc-config``) ``/login/oidc`` and ``/auth/callback``
answer 404 and ``/login`` offers the API token form only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ringfence.api.deps import EngineDep, get_caller
from ringfence.api.problems import UnauthenticatedError
from ringfence.core.errors import PermissionDeniedError
from ringfence.files.oidc_config import OIDC_CONFIG_ENV, load_oidc_config
from ringfence.service.oidc import PENDING_SECONDS, PendingSignIn, ProviderError, RelyingParty, SignInError
from ringfence.service.sessions import begin_session, end_session
from ringfence.web.rendering import SECURITY_HEADERS, render
from ringfence.web.security import COOKIE, PageError, SameOrigin, safe_next

router = APIRouter(include_in_schema=False)

PENDING_COOKIE = "ringfence_sign_in"
"""The pending sign-in (state, nonce, PKCE verifier, where to go after), for ``/auth/callback`` only."""
CALLBACK = "/auth/callback"


@dataclass(frozen=True)
class SignInOffer:
    """What ``/login`` offers when a provider is configured: its button, and whether the token form too."""

    button: str
    token_sign_in: bool


def setup(app: FastAPI) -> None:
    """Read the sign-in configuration (``Settings.oidc_config``, else ``RINGFENCE_OIDC_CONFIG``), if any.

    Read as the app is built, so a file that does not hold stops the server from starting, naming the
    file, line and field, rather than failing the first person who clicks the button."""
    path = app.state.settings.oidc_config or os.environ.get(OIDC_CONFIG_ENV) or None
    app.state.relying_party = RelyingParty(load_oidc_config(path)) if path else None


def relying_party(request: Request) -> RelyingParty | None:
    found: RelyingParty | None = getattr(request.app.state, "relying_party", None)
    return found


def sign_in_offer(request: Request) -> SignInOffer | None:
    """What ``/login`` shows beside (or instead of) the token form; None without a provider."""
    party = relying_party(request)
    if party is None:
        return None
    return SignInOffer(party.config.button, party.config.token_sign_in)


def _configured(request: Request) -> RelyingParty:
    party = relying_party(request)
    if party is None:
        raise PageError(404, "Not found", "signing in at an identity provider is not set up on this server")
    return party


@router.get("/login/oidc")
def begin(request: Request, next_path: Annotated[str, Query(alias="next")] = "/") -> Response:
    party = _configured(request)
    try:
        url, pending = party.begin(safe_next(next_path))
    except ProviderError as exc:
        raise PageError(502, "Identity provider unavailable", str(exc)) from None
    response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        PENDING_COOKIE,
        party.seal(pending),
        max_age=PENDING_SECONDS,
        path=CALLBACK,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get(CALLBACK)
def callback(request: Request, engine: EngineDep) -> Response:
    party = _configured(request)
    pending: PendingSignIn | None = None
    try:
        # A cookie changed or forged, or too old by its own sealed time, is refused before the code is used.
        pending = party.unseal(request.cookies.get(PENDING_COOKIE, ""))
        identity = party.finish(pending, dict(request.query_params))
        session = begin_session(engine, identity, party.config)
    except SignInError as exc:
        response = render(request, "error.html.j2", caller=None, status=403, title="Not signed in", message=str(exc))
    except ProviderError as exc:
        response = render(
            request, "error.html.j2", caller=None, status=502, title="Identity provider unavailable", message=str(exc)
        )
    else:
        assert pending is not None  # finish() refuses without one
        target = safe_next(pending.next_path)
        response = render(
            request,
            "moving_on.html.j2",
            caller=None,
            title="Signed in",
            message=f"Signed in as {session.person} ({session.role}).",
            target=target,
        )
        response.set_cookie(
            COOKIE,
            session.secret,
            max_age=party.config.session_lifetime,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    # One use only: a second visit to the same answer finds no pending sign-in.
    response.delete_cookie(PENDING_COOKIE, path=CALLBACK, httponly=True, samesite="lax")
    return response


@router.post("/logout", dependencies=[SameOrigin])
async def logout(request: Request, engine: EngineDep) -> Response:
    try:
        caller = await get_caller(request)
    except (UnauthenticatedError, PermissionDeniedError):
        caller = None  # already ended, revoked or never signed in: clearing the cookie is all there is to do
    provider_sign_out: str | None = None
    if caller is not None and caller.is_session:
        await run_in_threadpool(end_session, engine, caller)
        party = relying_party(request)
        if party is not None:
            provider_sign_out = await run_in_threadpool(party.sign_out_url)
    response: Response
    if provider_sign_out is None:
        response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    else:
        # A page, not a redirect: the CSP's form-action 'self' would stop a form's redirect to the provider.
        response = render(
            request,
            "moving_on.html.j2",
            caller=None,
            title="Signed out",
            message="Signed out of ringfence; signing you out at your organisation's identity provider too.",
            target=provider_sign_out,
        )
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
