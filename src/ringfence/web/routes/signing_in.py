"""Signing in to the dashboard with an API token (kept in a SameSite=Strict cookie).

Signing in at the trust's identity provider, and signing out, are :mod:`.oidc`'s; ``/login`` offers its
button when a provider is configured (and, unless the configuration switches it off, this form too)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ringfence.core.errors import PermissionDeniedError
from ringfence.service.tokens import Role, TokenCache
from ringfence.web.rendering import SECURITY_HEADERS, Form, render
from ringfence.web.routes.oidc import sign_in_offer
from ringfence.web.security import COOKIE, PageError, SameOrigin, may, safe_next

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next_path: Annotated[str, Query(alias="next")] = "/") -> HTMLResponse:
    offer = sign_in_offer(request)
    return render(request, "login.html.j2", caller=None, next=safe_next(next_path), error="", offer=offer)


@router.post("/login", dependencies=[SameOrigin])
def login(request: Request, form: Form) -> Response:
    offer = sign_in_offer(request)
    if offer is not None and not offer.token_sign_in:
        raise PageError(403, "Not allowed", f"signing in with an API token is switched off here; use '{offer.button}'")
    token = form.get("token").strip()
    target = safe_next(form.get("next"))
    error = ""
    if not token:
        error = "Enter your API token."
    else:
        try:
            # Through the worker's token cache, as /v1 is: a secret not shaped like a token, or one refused a
            # moment ago, is refused without asking the database (the sign-in form is no way around that).
            cache: TokenCache = request.app.state.token_cache
            caller = cache.authenticate(token)
        except PermissionDeniedError:
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
