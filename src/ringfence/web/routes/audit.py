"""The audit log page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ringfence.api.deps import EngineDep
from ringfence.web.rendering import render
from ringfence.web.security import PageCaller
from ringfence.web.views import audit as audit_views

router = APIRouter(include_in_schema=False)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    caller: PageCaller,
    engine: EngineDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    subject: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    found = audit_views.audit_page(engine, page=page, subject=subject or None)
    return render(request, "audit.html.j2", caller=caller, section="audit", audit=found)
