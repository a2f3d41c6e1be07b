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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy.engine import Engine

from ringfence import __version__
from ringfence.api.deps import EngineDep
from ringfence.api.routes.estates import Compiled
from ringfence.core.durations import parse_duration
from ringfence.core.errors import InputError, PermissionDeniedError, Problem
from ringfence.core.rollout.state import RolloutState
from ringfence.service import incidents as incident_service
from ringfence.service import rollouts as rollout_service
from ringfence.service.tokens import Caller, Role, authenticate
from ringfence.web import views
from ringfence.web.security import (
    COOKIE,
    LoginRequired,
    PageCaller,
    PageError,
    SameOrigin,
    may,
    safe_next,
    shown_as_page,
)

router = APIRouter(include_in_schema=False)

REFRESH_SECONDS = 5
"""How often a rollout's live page asks for a fresh fragment."""
_MAX_FORM_BYTES = 16_384

# Everything the page loads comes from this server: scripts and styles only from /static, no inline script
# (so an injected <script> would not run), no framing (clickjacking), forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Same-origin requests carry a Referer (the CSRF check's fallback); other sites learn nothing.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_ENV = Environment(
    loader=PackageLoader("ringfence.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["thousands"] = lambda n: f"{n:,}"
_ENV.filters["phase_words"] = lambda phase: str(phase).replace("_", " ")


def render(
    request: Request, template: str, *, caller: Caller | None, status: int = 200, **context: Any
) -> HTMLResponse:
    html = _ENV.get_template(template).render(
        caller=caller,
        path=request.url.path,
        version=__version__,
        refresh_seconds=REFRESH_SECONDS,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def is_fragment_request(request: Request) -> bool:
    """A request from ringfence.js (htmx's ``HX-Request`` header) wants a fragment, not a page."""
    return request.headers.get("hx-request") == "true"


@dataclass(frozen=True)
class FormFields:
    """A posted ``application/x-www-form-urlencoded`` form (the only kind the dashboard sends)."""

    values: Mapping[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


async def form_fields(request: Request) -> FormFields:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise PageError(415, "Unsupported form", f"the dashboard's forms are url-encoded, not {kind}")
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise PageError(413, "Form too large", f"a dashboard form is at most {_MAX_FORM_BYTES:,} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise PageError(400, "Unreadable form", "the form was not UTF-8 text") from None
    return FormFields(dict(pairs))


Form = Annotated[FormFields, Depends(form_fields)]


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------------ signing in


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


# ------------------------------------------------------------------------------------------ the estate


@router.get("/", response_class=HTMLResponse)
def estate_page(
    request: Request,
    caller: PageCaller,
    engine: EngineDep,
    cache: Compiled,
    estate: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    with shown_as_page():
        loaded = views.current_estate(engine, cache, estate or None)
        choices = views.estate_choices(engine)
        overview = views.estate_overview(loaded) if loaded is not None else None
    return render(request, "estate.html.j2", caller=caller, section="estate", overview=overview, choices=choices)


# ------------------------------------------------------------------------------------------ rollouts


@router.get("/rollouts", response_class=HTMLResponse)
def rollouts_page(request: Request, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    rows = views.rollout_rows(engine)
    return render(request, "rollouts.html.j2", caller=caller, section="rollouts", rows=rows)


@router.get("/rollouts/{rollout_id}", response_class=HTMLResponse)
def rollout_page(request: Request, rollout_id: str, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    with shown_as_page():
        page = views.rollout_page(engine, rollout_id, caller)
    return render(request, "rollout.html.j2", caller=caller, section="rollouts", r=page, error="", notice="")


@router.get("/rollouts/{rollout_id}/live", response_class=HTMLResponse)
def rollout_fragment(request: Request, rollout_id: str, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    """The part of a rollout's page that changes: ringfence.js swaps it in every few seconds."""
    with shown_as_page():
        page = views.rollout_page(engine, rollout_id, caller)
    return render(request, "_rollout_live.html.j2", caller=caller, r=page, error="", notice="")


# Each button: the role it needs, the use case it calls, and the sentence saying it was done.
_Act = Callable[[Engine, str, str, datetime, str], RolloutState]


def _approve(engine: Engine, rollout_id: str, actor: str, at: datetime, _: str) -> RolloutState:
    return rollout_service.approve_rollout(engine, rollout_id, actor=actor, at=at)


def _start(engine: Engine, rollout_id: str, actor: str, at: datetime, _: str) -> RolloutState:
    return rollout_service.start(engine, rollout_id, actor=actor, at=at)


def _pause(engine: Engine, rollout_id: str, actor: str, at: datetime, why: str) -> RolloutState:
    return rollout_service.pause(engine, rollout_id, actor=actor, at=at, why=why)


def _resume(engine: Engine, rollout_id: str, actor: str, at: datetime, why: str) -> RolloutState:
    return rollout_service.resume(engine, rollout_id, actor=actor, at=at, why=why)


def _abort(engine: Engine, rollout_id: str, actor: str, at: datetime, why: str) -> RolloutState:
    return rollout_service.abort(engine, rollout_id, actor=actor, at=at, why=why)


def _roll_back(engine: Engine, rollout_id: str, actor: str, at: datetime, why: str) -> RolloutState:
    return rollout_service.roll_back(engine, rollout_id, actor=actor, at=at, why=why)


ACTIONS: dict[str, tuple[Role, _Act, str]] = {
    "approve": (Role.APPROVER, _approve, "approved"),
    "start": (Role.OPERATOR, _start, "started"),
    "pause": (Role.OPERATOR, _pause, "paused"),
    "resume": (Role.OPERATOR, _resume, "resumed"),
    "abort": (Role.OPERATOR, _abort, "aborted"),
    "rollback": (Role.OPERATOR, _roll_back, "being rolled back"),
}


@router.post("/rollouts/{rollout_id}/{action}", dependencies=[SameOrigin])
def rollout_action(
    request: Request, rollout_id: str, action: str, caller: PageCaller, engine: EngineDep, form: Form
) -> Response:
    """Press a button: approve, start, pause, resume, abort or roll back, as the signed-in person."""
    found = ACTIONS.get(action)
    if found is None:
        raise PageError(404, "Not found", f"there is no rollout action {action!r}; try {', '.join(ACTIONS)}")
    needed, act, done = found

    def press() -> str:
        caller.require(needed)
        act(engine, rollout_id, caller.name, _now(), form.get("reason").strip())
        return f"Rollout {rollout_id} {done} by {caller.name}."

    def show(error: str, notice: str, status: int, fragment: bool) -> Response:
        with shown_as_page():
            page = views.rollout_page(engine, rollout_id, caller)
        template = "_rollout_live.html.j2" if fragment else "rollout.html.j2"
        return render(
            request, template, caller=caller, section="rollouts", r=page, error=error, notice=notice, status=status
        )

    return _pressed(request, press, f"/rollouts/{quote(rollout_id)}", show)


def _pressed(
    request: Request, press: Callable[[], str], page_url: str, show: Callable[[str, str, int, bool], Response]
) -> Response:
    """A button pressed on a page: ``press`` acts and says what it did. A plain form is then sent back to the
    page (so reloading it presses nothing again); the live part asks for itself again with the notice. A
    refusal (not allowed, or not now) changes nothing and is shown, with its reason, by ``show``."""
    error = notice = ""
    status = 200
    try:
        with shown_as_page():
            notice = press()
    except PageError as exc:
        error, status = exc.message, exc.status
    fragment = is_fragment_request(request)
    if not fragment and not error:
        return RedirectResponse(page_url, status_code=303, headers=SECURITY_HEADERS)
    return show(error, notice, status, fragment)


# ------------------------------------------------------------------------------------------ incidents


def _incidents_list(
    request: Request, caller: Caller, engine: Engine, *, form: FormFields, error: str = "", status: int = 200
) -> HTMLResponse:
    return render(
        request,
        "incidents.html.j2",
        caller=caller,
        section="incidents",
        rows=views.incident_rows(engine, _now()),
        choices=views.estate_choices(engine),
        may_declare=may(caller, Role.OPERATOR),
        form=form,
        error=error,
        status=status,
    )


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    return _incidents_list(request, caller, engine, form=FormFields({}))


def _listed(text: str) -> list[str]:
    """What a person typed in a list field (failure refs, item ids), separated by spaces, commas or lines: in
    order, once each."""
    return list(dict.fromkeys(ref for ref in text.replace(",", " ").split() if ref))


@router.post("/incidents", dependencies=[SameOrigin])
def declare_incident(request: Request, caller: PageCaller, engine: EngineDep, form: Form) -> Response:
    """Declare an incident on a stored estate from failure refs, as the signed-in operator."""
    try:
        with shown_as_page():
            caller.require(Role.OPERATOR)
            step_text = form.get("step_time").strip() or "1h"
            try:
                step_seconds = parse_duration(step_text)
            except ValueError as exc:
                raise InputError([Problem(str(exc), path=("step_time",))]) from None
            estate = form.get("estate").strip()
            if not estate:
                raise InputError([Problem("choose the estate the failures happened on", path=("estate",))])
            found = incident_service.declare(
                engine,
                fail=_listed(form.get("fail")),
                actor=caller.name,
                at=_now(),
                title=form.get("title").strip() or None,
                estate_name=estate,
                step_seconds=step_seconds,
            )
    except PageError as exc:
        # Refused (not allowed, or the failures do not hold): the list again, the form as it was typed.
        return _incidents_list(request, caller, engine, form=form, error=exc.message, status=exc.status)
    return RedirectResponse(f"/incidents/{quote(found.id)}", status_code=303, headers=SECURITY_HEADERS)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(request: Request, incident_id: str, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    with shown_as_page():
        page = views.incident_page(engine, incident_id, caller, _now())
    return render(request, "incident.html.j2", caller=caller, section="incidents", i=page, error="", notice="")


@router.get("/incidents/{incident_id}/live", response_class=HTMLResponse)
def incident_fragment(request: Request, incident_id: str, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    """The part of an incident's page that changes (the RTO clocks above all): swapped in every few seconds."""
    with shown_as_page():
        page = views.incident_page(engine, incident_id, caller, _now())
    return render(request, "_incident_live.html.j2", caller=caller, i=page, error="", notice="")


def _restore(engine: Engine, incident_id: str, actor: str, form: FormFields) -> str:
    items = _listed(form.get("items"))
    found = incident_service.restore(engine, incident_id, items, actor=actor, at=_now())
    return found.events[-1].text.capitalize() + "."


def _close(engine: Engine, incident_id: str, actor: str, form: FormFields) -> str:
    found = incident_service.close(engine, incident_id, actor=actor, at=_now(), reason=form.get("reason"))
    return f"Incident {found.id} {found.events[-1].text}."


INCIDENT_ACTIONS: dict[str, Callable[[Engine, str, str, FormFields], str]] = {"restore": _restore, "close": _close}


@router.post("/incidents/{incident_id}/{action}", dependencies=[SameOrigin])
def incident_action(
    request: Request, incident_id: str, action: str, caller: PageCaller, engine: EngineDep, form: Form
) -> Response:
    """Mark items restored, or close the incident, as the signed-in operator; a refusal is shown with its reason."""
    act = INCIDENT_ACTIONS.get(action)
    if act is None:
        raise PageError(404, "Not found", f"there is no incident action {action!r}; try {', '.join(INCIDENT_ACTIONS)}")

    def press() -> str:
        caller.require(Role.OPERATOR)
        return act(engine, incident_id, caller.name, form)

    def show(error: str, notice: str, status: int, fragment: bool) -> Response:
        with shown_as_page():
            page = views.incident_page(engine, incident_id, caller, _now())
        template = "_incident_live.html.j2" if fragment else "incident.html.j2"
        return render(
            request, template, caller=caller, section="incidents", i=page, error=error, notice=notice, status=status
        )

    return _pressed(request, press, f"/incidents/{quote(incident_id)}", show)


# ------------------------------------------------------------------------------------------ drills


@router.get("/drills", response_class=HTMLResponse)
def drills_page(
    request: Request,
    caller: PageCaller,
    engine: EngineDep,
    cache: Compiled,
    scenario: Annotated[str | None, Query(max_length=200)] = None,
    estate: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """Pick a bundled scenario and replay it (a simulation: nothing changes, so a plain GET form)."""
    choices = views.estate_choices(engine)
    result = None
    error = ""
    status = 200
    if scenario:
        try:
            with shown_as_page():
                loaded = views.current_estate(engine, cache, estate or None)
                if loaded is None:
                    raise PageError(409, "No estate", "upload an estate first: a drill replays a release against it")
                result = views.drill_page(loaded, scenario)
        except PageError as exc:
            error, status = exc.message, exc.status
    return render(
        request,
        "drills.html.j2",
        caller=caller,
        section="drills",
        scenarios=views.scenario_ids(),
        choices=choices,
        chosen=scenario or "",
        chosen_estate=estate or "",
        result=result,
        error=error,
        status=status,
    )


# ------------------------------------------------------------------------------------------ audit log


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    caller: PageCaller,
    engine: EngineDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    subject: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    found = views.audit_page(engine, page=page, subject=subject or None)
    return render(request, "audit.html.j2", caller=caller, section="audit", audit=found)


# ------------------------------------------------------------------------------------------ wiring


def setup(app: FastAPI) -> None:
    """Serve the dashboard's own CSS and script, and answer its refusals with pages, not JSON."""
    app.mount("/static", StaticFiles(packages=[("ringfence.web", "static")]), name="dashboard-static")

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
