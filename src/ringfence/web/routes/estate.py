"""The estate page at ``/``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ringfence.api.deps import Compiled, EngineDep
from ringfence.web.rendering import render
from ringfence.web.security import PageCaller, shown_as_page
from ringfence.web.views import estate as estate_views

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def estate_page(
    request: Request,
    caller: PageCaller,
    engine: EngineDep,
    cache: Compiled,
    estate: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    with shown_as_page():
        loaded = estate_views.current_estate(engine, cache, estate or None)
        choices = estate_views.estate_choices(engine)
        overview = estate_views.estate_overview(loaded) if loaded is not None else None
    return render(request, "estate.html.j2", caller=caller, section="estate", overview=overview, choices=choices)
