"""The notifications page (``/notifications``, admins): recent deliveries and failures from the notifier's outbox,
and the notifier's own state. A GET; ``?status=`` shows one status only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ringfence.api.deps import EngineDep
from ringfence.service.tokens import Role
from ringfence.web.rendering import render
from ringfence.web.security import PageCaller, PageError, may
from ringfence.web.views import notifications as notification_views

router = APIRouter(include_in_schema=False)


@router.get("/notifications", response_class=HTMLResponse)
def notifications_page(
    request: Request,
    caller: PageCaller,
    engine: EngineDep,
    status: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    if not may(caller, Role.ADMIN):
        raise PageError(403, "Refused", f"'{caller.name}' is a {caller.role}: the notifications page is for admins")
    if status and status not in notification_views.STATUSES:
        shown = ", ".join(notification_views.STATUSES)
        raise PageError(422, "Invalid input", f"status is one of {shown}, not '{status}'")
    page = notification_views.notifications_page(engine, getattr(request.app.state, "notifier", None), status=status)
    return render(request, "notifications.html.j2", caller=caller, section="notifications", page=page)
