"""Signing in to the dashboard with an API token (kept in a SameSite=Strict cookie), and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ringfence.api.deps import EngineDep
from ringfence.core.errors import PermissionDeniedError
from ringfence.service.tokens import Role, authenticate
from ringfence.web.rendering import SECURITY_HEADERS, Form, render
from ringfence.web.security import COOKIE, SameOrigin, may, safe_next

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next_path: Annotated[str, Query(alias="next")] = "/") -> HTMLResponse:
    return render(request, "login.html.j2", caller=None, next=safe_next(next_path), error="")


@router.post("/login", dependencies=[SameOrigin])
def login(request: Request, engine: EngineDep, form: Form) -> Response:
    token = form.get("token").strip()
    target = safe_next(form.get("next"))
    error = ""
    if not token:
        error = "Enter your API token."
    else:
        try:
            caller = authenticate(engine, token)
        except PermissionDeniedError:
            error = "That token is unknown or has been revoked."
        else:
            if not may(caller, Role.VIEWER):
                error = "Agent tokens speak for one asset and cannot sign in to the dashboard."
    if error:
        return render(request, "login.html.j2", caller=None, status=401, next=target, error=error)
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


@router.post("/logout", dependencies=[SameOrigin])
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
