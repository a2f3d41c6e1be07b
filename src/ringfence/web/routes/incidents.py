"""The incidents list (and declaring one), an incident's page and its live part, and its buttons."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine

from ringfence.api.deps import EngineDep
from ringfence.api.schemas import LONGEST_NAME
from ringfence.core.clock import utc_now
from ringfence.core.durations import parse_duration
from ringfence.core.errors import InputError, Problem
from ringfence.core.words import count
from ringfence.service import incidents as incident_service
from ringfence.service.tokens import Caller, Role
from ringfence.web.rendering import SECURITY_HEADERS, Form, FormFields, LivePage, render
from ringfence.web.security import PageCaller, PageError, SameOrigin, may, shown_as_page
from ringfence.web.views import estate as estate_views
from ringfence.web.views import incidents as incident_views

router = APIRouter(include_in_schema=False)


def _incidents_list(
    request: Request, caller: Caller, engine: Engine, *, form: FormFields, error: str = "", status: int = 200
) -> HTMLResponse:
    return render(
        request,
        "incidents.html.j2",
        caller=caller,
        section="incidents",
        rows=incident_views.incident_rows(engine, utc_now()),
        choices=estate_views.estate_choices(engine),
        may_declare=may(caller, Role.OPERATOR),
        form=form,
        error=error,
        status=status,
    )


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    return _incidents_list(request, caller, engine, form=FormFields({}))


_FAILURE_FORMS = frozenset({"asset", "service", "supplier", "software", "site", "where"})


def _failure_lines(text: str) -> list[str]:
    """The failures a person typed, one per line, in order, once each.

    Lines, not commas or spaces: a ``where:`` selector joins its terms with commas and its values may hold
    spaces, so only a line break can end one failure.
    """
    failures = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    for n, ref in enumerate(failures):
        # "asset:a supplier:b" on one line is two failures typed the old way, not an asset named "a supplier:b".
        later = [word for word in ref.split()[1:] if word.partition(":")[0] in _FAILURE_FORMS and ":" in word]
        if later:
            problem = f"put one failure on each line: '{ref}' holds {count(len(later) + 1, 'failure')}"
            raise InputError([Problem(problem, path=("fail", n))])
    return failures


def _without_nul(form: FormFields) -> None:
    """A typed field holding a NUL (PostgreSQL cannot store one) is refused, naming it, as any other bad field."""
    for name, value in form.values.items():
        if "\x00" in value:
            raise InputError([Problem(f"cannot hold a NUL character (at {value.index(chr(0)) + 1})", path=(name,))])


def _incident_id(incident_id: str) -> str:
    """An id no incident can have (a NUL, longer than a name) is not looked for: no such incident."""
    if "\x00" in incident_id or len(incident_id) > LONGEST_NAME:
        raise PageError(404, "Not found", "there is no incident with that id")
    return incident_id


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
            _without_nul(form)
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
                fail=_failure_lines(form.get("fail")),
                actor=caller.name,
                at=utc_now(),
                title=form.get("title").strip() or None,
                estate_name=estate,
                step_seconds=step_seconds,
            )
    except PageError as exc:
        # Refused (not allowed, or the failures do not hold): the list again, the form as it was typed.
        return _incidents_list(request, caller, engine, form=form, error=exc.message, status=exc.status)
    return RedirectResponse(f"/incidents/{quote(found.id)}", status_code=303, headers=SECURITY_HEADERS)


def _incident_page(engine: Engine, incident_id: str, caller: Caller) -> incident_views.IncidentPage:
    """The incident as of now: its RTO clocks run on the wall clock."""
    return incident_views.incident_page(engine, incident_id, caller, utc_now())


INCIDENT = LivePage("incidents", "incident.html.j2", "_incident_live.html.j2", model="i", view=_incident_page)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(request: Request, incident_id: str, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    return INCIDENT.show(request, caller, engine, _incident_id(incident_id), fragment=False)


@router.get("/incidents/{incident_id}/live", response_class=HTMLResponse)
def incident_fragment(request: Request, incident_id: str, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    """The part of an incident's page that changes (the RTO clocks above all): swapped in every few seconds."""
    return INCIDENT.show(request, caller, engine, _incident_id(incident_id), fragment=True)


def _restore(engine: Engine, incident_id: str, actor: str, form: FormFields) -> str:
    items = _listed(form.get("items"))
    found = incident_service.restore(engine, incident_id, items, actor=actor, at=utc_now())
    return found.events[-1].text.capitalize() + "."


def _close(engine: Engine, incident_id: str, actor: str, form: FormFields) -> str:
    found = incident_service.close(engine, incident_id, actor=actor, at=utc_now(), reason=form.get("reason"))
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

    incident_id = _incident_id(incident_id)

    def press() -> str:
        caller.require(Role.OPERATOR)
        _without_nul(form)
        return act(engine, incident_id, caller.name, form)

    return INCIDENT.pressed(request, caller, engine, incident_id, press)
