"""Request dependencies: the database engine, the calling token, and role checks.

Who is calling
    :func:`get_caller` takes the token from ``Authorization: Bearer <token>``, or else from the
    dashboard's ``ringfence_token`` cookie, and looks it up in the worker's
    :class:`~ringfence.service.tokens.TokenCache` (the database only when the cache does not hold it).
    On ``/v1`` this was done already, before the request's body was read, by the gate
    (:mod:`ringfence.api.gate`), which leaves the caller in the scope; ``get_caller`` takes it from there.

Why a cookie may not change anything from another site
    A browser sends a cookie with every request to this server, whichever page started it, so a request
    authenticated by the cookie could have been forged by another site (cross-site request forgery); a
    bearer header never could, since a browser adds none on its own. The cookie is ``SameSite=Strict``,
    and on top of that a request authenticated by the cookie with a method that changes something (POST,
    PUT, PATCH, DELETE) must show it came from this site's own pages (:func:`cross_site_reason`), on
    ``/v1`` as on the dashboard's forms; reads need no such proof. The dashboard itself never calls
    ``/v1``; the cookie is honoured there so that a signed-in person can use the explorer at ``/docs``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from ringfence.api.problems import UnauthenticatedError
from ringfence.core.errors import PermissionDeniedError
from ringfence.service import compiled
from ringfence.service.estates import CompiledEstates
from ringfence.service.tokens import Caller, Role, TokenCache

COOKIE = "ringfence_token"
"""The dashboard's sign-in cookie; it holds the API token itself (see ``ringfence.web.security``)."""

CALLER_KEY = "ringfence.caller"
"""Where ``ringfence.api.gate.AuthGate`` leaves the caller it found in the ASGI scope, before the body was read."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: a request with one needs no proof of where it came from."""


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def compiled_estates(request: Request) -> CompiledEstates:
    """The app's cache of compiled estate versions (``ringfence.service.compiled``), for the API and the dashboard."""
    return compiled.compiled_estates(request.app.state)


Compiled = Annotated[CompiledEstates, Depends(compiled_estates)]


def presented_token(request: Request) -> tuple[str, bool]:
    """The token a request carries (``""`` for none), and whether it came in the cookie."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if token:
        return token, False
    return request.cookies.get(COOKIE, "").strip(), True


def cross_site_reason(request: Request, what: str = "request") -> str | None:
    """Why ``request`` may have been sent by another site's page, or None when it shows it came from this one.

    ``Origin`` (which browsers send with every POST and a page cannot forge) must name this server's
    host; when a browser sends no ``Origin``, ``Referer`` must; ``Sec-Fetch-Site``, when sent, must be
    ``same-origin`` (or ``none``: typed by the person). A request carrying none of them is refused. The
    host is compared, not the scheme, so a TLS-terminating proxy in front of the server does not break it.
    ``what`` names the request in the sentence ("form" on the dashboard).
    """
    host = request.headers.get("host", "").lower()
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"this {what} was sent from another site ({fetch_site})"
    origin = request.headers.get("origin")
    source = origin if origin is not None else request.headers.get("referer")
    if not source or source == "null":
        return f"the browser did not say which page sent this {what} (no Origin or Referer)"
    if not host or urlsplit(source).netloc.lower() != host:
        return f"this {what} was sent from {source}, not from {host}"
    return None


BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token, as `Authorization: Bearer <token>` (create one with `ringfence token create`).",
)
"""Declares the bearer scheme in the OpenAPI document, so the explorer at /docs can send a token ("Authorize").
:func:`get_caller` reads the header itself, as it also takes the dashboard's cookie."""


async def get_caller(
    request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None
) -> Caller:
    """The caller behind ``Authorization: Bearer <token>`` (or the dashboard's cookie; see the module docstring).

    401 without a token or with one the server does not know (or that was revoked); 403 for a request
    authenticated by the cookie that changes something and does not show it came from this site.
    Async, so that a token the cache holds is answered on the event loop, without a thread or a query.
    On ``/v1`` the gate (``ringfence.api.gate``) has already found the caller, and made every one of these
    checks, before the body was read: its caller is taken as it is.
    """
    found: Caller | None = request.scope.get(CALLER_KEY)
    if found is not None:
        return found
    token, from_cookie = presented_token(request)
    if not token:
        raise UnauthenticatedError(
            "send a token: Authorization: Bearer <token> (create one with `ringfence token create`)"
        )
    if from_cookie and request.method not in SAFE_METHODS:
        reason = cross_site_reason(request)
        if reason is not None:
            raise PermissionDeniedError(
                f"{reason}; a change signed in with the dashboard's cookie must come from this site's own "
                "pages (send Authorization: Bearer <token> from other clients); nothing was changed"
            )
    cache: TokenCache = request.app.state.token_cache
    caller = cache.cached(token)
    if caller is not None:
        return caller
    try:
        return await run_in_threadpool(cache.authenticate, token)
    except PermissionDeniedError as exc:
        raise UnauthenticatedError(str(exc)) from None


CallerDep = Annotated[Caller, Depends(get_caller)]


def role(minimum: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that admits callers with at least ``minimum`` role (reads need viewer, writes operator…)."""

    # Async because it does no I/O: FastAPI would run a plain function in a worker thread.
    async def check(caller: CallerDep) -> Caller:
        caller.require(minimum)
        return caller

    return check


Viewer = Annotated[Caller, Depends(role(Role.VIEWER))]
Operator = Annotated[Caller, Depends(role(Role.OPERATOR))]
Approver = Annotated[Caller, Depends(role(Role.APPROVER))]
Admin = Annotated[Caller, Depends(role(Role.ADMIN))]
