"""The drill page: a bundled scenario replayed on a stored estate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ringfence.api.deps import Compiled, EngineDep
from ringfence.service.drills import scenario_ids
from ringfence.web.rendering import render
from ringfence.web.security import PageCaller, PageError, shown_as_page
from ringfence.web.views import drills as drill_views
from ringfence.web.views import estate as estate_views

router = APIRouter(include_in_schema=False)


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
    choices = estate_views.estate_choices(engine)
    result = None
    error = ""
    status = 200
    if scenario:
        try:
            with shown_as_page():
                loaded = estate_views.current_estate(engine, cache, estate or None)
                if loaded is None:
                    raise PageError(409, "No estate", "upload an estate first: a drill replays a release against it")
                result = drill_views.drill_page(loaded, scenario)
        except PageError as exc:
            error, status = exc.message, exc.status
    return render(
        request,
        "drills.html.j2",
        caller=caller,
        section="drills",
        scenarios=scenario_ids(),
        choices=choices,
        chosen=scenario or "",
        chosen_estate=estate or "",
        result=result,
        error=error,
        status=status,
    )
