"""Signing in to the dashboard with an API token (kept in a SameSite=Strict cookie).

Signing in at the trust's identity provider, and signing out, are :mod:`.oidc`'s; ``/login`` offers its
button when a provider is configured (and, unless the configuration switches it off, this form too)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ringfence.api.gate import client_address, refusals_of
from ringfence.core.errors import PermissionDeniedError
from ringfence.service.tokens import Caller, Role, TokenCache
from ringfence.web.rendering import SECURITY_HEADERS, Form, render
from ringfence.web.routes.oidc import SignInOffer, sign_in_offer
from ringfence.web.security import COOKIE, PageError, SameOrigin, may, safe_next

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next_path: Annotated[str, Query(alias="next")] = "/") -> HTMLResponse:
    offer = sign_in_offer(request)
    return render(request, "login.html.j2", caller=None, next=safe_next(next_path), error="", offer=offer)


@router.post("/login", dependencies=[SameOrigin])
async def login(request: Request, form: Form) -> Response:
    """Async so the refusal limiter, the gate's, is used on the event loop only (it takes no lock)."""
    offer = sign_in_offer(request)
    if offer is not None and not offer.token_sign_in:
        raise PageError(403, "Not allowed", f"signing in with an API token is switched off here; use '{offer.button}'")
    token = form.get("token").strip()
    target = safe_next(form.get("next"))
    error = ""
    if not token:
        error = "Enter your API token."
    else:
        # Through the worker's token cache, as /v1 is: a secret not shaped like a token, or one refused a
        # moment ago, is refused without asking the database (the sign-in form is no way around that). And
        # counted against the address as /v1's refusals are, in the same buckets: guesses cannot be spread
        # over the two doors, and an address refused too often is told to wait (429) instead of being let
        # ask the database again. A token the cache knows is never limited.
        cache: TokenCache = request.app.state.token_cache
        limiter = refusals_of(request.scope)
        client = client_address(request.scope)
        caller: Caller | None = None
        try:
            if limiter.wait(client) > 0.0:
                caller = cache.cached(token)  # memory only: no lookup for an address past its limit
                if caller is None:
                    return _too_many(request, target, offer, limiter.wait(client))
            else:
                caller = await run_in_threadpool(cache.authenticate, token)
        except PermissionDeniedError:
            if not limiter.take(client):
                return _too_many(request, target, offer, limiter.wait(client))
            error = "That token is unknown or has been revoked."
        else:
            if not may(caller, Role.VIEWER):
                error = "Agent tokens speak for one asset and cannot sign in to the dashboard."
    if error:
        return render(request, "login.html.j2", caller=None, status=401, next=target, error=error, offer=offer)
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def _too_many(request: Request, target: str, offer: SignInOffer | None, wait: float) -> Response:
    """The sign-in page, 429, for an address refused too often (the gate's limit, shared with /v1)."""
    seconds = max(1, math.ceil(wait))
    error = (
        f"Too many unknown tokens were tried from this address; try again in {seconds} s. "
        "(A token this server knows is never limited.)"
    )
    response = render(request, "login.html.j2", caller=None, status=429, next=target, error=error, offer=offer)
    response.headers["Retry-After"] = str(seconds)
    return response
