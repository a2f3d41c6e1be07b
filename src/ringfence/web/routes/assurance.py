"""The assurance page (``/assurance``): an estate's findings by tier and by supplier, and the calendar of its
evidence running out, from the assurance file and policy stored for it (``ringfence estate assurance``,
``PUT /v1/estates/NAME/assurance``). A read, so a GET: ``?estate=`` picks the estate, ``?as_of=`` the day."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ringfence.api.deps import Compiled, EngineDep
from ringfence.core.assurance import parse_day
from ringfence.core.clock import utc_now
from ringfence.core.errors import InputError, Problem
from ringfence.web.rendering import render
from ringfence.web.security import PageCaller, shown_as_page
from ringfence.web.views import assurance as assurance_views
from ringfence.web.views import estate as estate_views

router = APIRouter(include_in_schema=False)


def as_of_day(text: str) -> date:
    """``?as_of=``: a day (YYYY-MM-DD), or today (UTC) when empty; a bad one is a page with the sentence (422)."""
    if not text.strip():
        return utc_now().date()
    try:
        return parse_day(text)
    except ValueError as exc:
        raise InputError([Problem(str(exc), path=("as_of",))]) from None


@router.get("/assurance", response_class=HTMLResponse)
def assurance_page(
    request: Request,
    caller: PageCaller,
    engine: EngineDep,
    cache: Compiled,
    estate: Annotated[str, Query(max_length=200)] = "",
    as_of: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    with shown_as_page():
        day = as_of_day(as_of)
        loaded = estate_views.current_estate(engine, cache, estate or None)
        choices = estate_views.estate_choices(engine)
        page = assurance_views.assurance_page(engine, loaded, day) if loaded is not None else None
    return render(
        request,
        "assurance.html.j2",
        caller=caller,
        section="assurance",
        page=page,
        choices=choices,
        as_of=as_of,
    )
