"""The dashboard: server-rendered pages at ``/``, mounted by ``ringfence.api.app`` like the API routers.

Pages are Jinja2 templates (``templates/``), rendered with autoescaping; the charts are SVG built and escaped
in Python. Every asset is served from this package (``/static``); nothing is loaded from anywhere else, and
the Content-Security-Policy says so to the browser. Live parts follow htmx's attribute conventions
(``hx-get`` + ``hx-trigger="every 5s"``, ``hx-post`` + ``hx-confirm`` + ``hx-target``), carried out by our own
small ``static/ringfence.js``; without JavaScript every link and form still works, a POST answering with a
redirect back to the page (post/redirect/get).

Who may do what is checked twice: the templates show only the buttons the caller's role allows, and the
handlers check the role (and the service layer its own rules, such as four eyes on approvals) again. Forms
are protected from cross-site posting as ``ringfence.web.security`` explains.

One module per page family (:mod:`.signing_in`, :mod:`.oidc` (sign-in at the identity provider, and
sign-out), :mod:`.estate`, :mod:`.assurance`, :mod:`.rollouts`, :mod:`.incidents`, :mod:`.drills`, :mod:`.audit`,
:mod:`.notifications`), each with its router and the view models of the same name in ``ringfence.web.views``; how a
page is rendered and a form read
is ``ringfence.web.rendering``'s.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ringfence.web.rendering import SECURITY_HEADERS, is_fragment_request, render
from ringfence.web.routes import (
    assurance,
    audit,
    drills,
    estate,
    incidents,
    notifications,
    oidc,
    rollouts,
    signing_in,
)
from ringfence.web.security import LoginRequired, PageError

router = APIRouter(include_in_schema=False)
for family in (signing_in, oidc, estate, assurance, rollouts, incidents, drills, audit, notifications):
    router.include_router(family.router)


def setup(app: FastAPI) -> None:
    """Serve the dashboard's own CSS and script, and answer its refusals with pages, not JSON."""
    app.mount("/static", StaticFiles(packages=[("ringfence.web", "static")]), name="dashboard-static")
    oidc.setup(app)  # the sign-in configuration, read (and refused if it does not hold) as the app is built

    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        target = f"/login?next={quote(exc.next_path, safe='')}"
        if is_fragment_request(request):
            # fetch() would follow a redirect and swap the sign-in page into the fragment; ask for a navigation.
            return Response(status_code=401, headers={"HX-Redirect": target, **SECURITY_HEADERS})
        return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)

    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        template = "_error.html.j2" if is_fragment_request(request) else "error.html.j2"
        return render(request, template, caller=None, status=exc.status, title=exc.title, message=exc.message)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(PageError, page_error)
