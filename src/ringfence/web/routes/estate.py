"""The estate pages: the overview at ``/``, uploading an estate, walking it (service → requirements → assets →
suppliers, and back), a what-if of failures, and its single points of failure filtered and paged.

Every page under ``/estates/NAME/`` shows the estate's current version. Reads are GET (a what-if changes
nothing, so its form is a GET and its answer a link that can be shared); the upload is the one POST, guarded
like every dashboard form (``ringfence.web.security``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PureWindowsPath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from ringfence.api.deps import Compiled, EngineDep
from ringfence.core.clock import utc_now
from ringfence.core.errors import InputError, Problem
from ringfence.service import estates as estates_service
from ringfence.service.tokens import Caller, Role
from ringfence.web.rendering import SECURITY_HEADERS, render
from ringfence.web.security import PageCaller, PageError, SameOrigin, may, shown_as_page
from ringfence.web.views import estate as estate_views
from ringfence.web.views.assurance import supplier_assurance

router = APIRouter(include_in_schema=False)

UPLOAD_FIELD = "estate_file"
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
"""The largest estate file the dashboard takes (a 200,000-asset estate is well under it)."""

Name = Annotated[str, Query(max_length=200)]


@router.get("/", response_class=HTMLResponse)
def estate_page(
    request: Request,
    caller: PageCaller,
    engine: EngineDep,
    cache: Compiled,
    estate: Annotated[str | None, Query(max_length=200)] = None,
    stored: Annotated[int | None, Query(ge=1, description="The version an upload just stored.")] = None,
    again: Annotated[bool, Query(description="The upload's text was stored before.")] = False,
) -> HTMLResponse:
    with shown_as_page():
        loaded = estate_views.current_estate(engine, cache, estate or None)
        choices = estate_views.estate_choices(engine)
        overview = estate_views.estate_overview(loaded) if loaded is not None else None
    return render(
        request,
        "estate.html.j2",
        caller=caller,
        section="estate",
        overview=overview,
        choices=choices,
        stored=stored,
        again=again,
        may_upload=may(caller, Role.OPERATOR),
    )


# ------------------------------------------------------------------------------------------ uploading


def _upload_page(
    request: Request,
    caller: Caller,
    *,
    status: int = 200,
    error: str = "",
    source: str = "",
    problems: tuple[Problem, ...] = (),
    checked: estates_service.CheckedEstate | None = None,
    proposed: estates_service.StoredEstate | None = None,
) -> HTMLResponse:
    return render(
        request,
        "upload.html.j2",
        caller=caller,
        section="estate",
        status=status,
        may_store=may(caller, Role.OPERATOR),
        error=error,
        source=source,
        problems=problems,
        checked=checked,
        proposed=proposed,
        max_mib=MAX_UPLOAD_BYTES // (1024 * 1024),
    )


@router.get("/estates/upload", response_class=HTMLResponse)
def upload_form(request: Request, caller: PageCaller) -> HTMLResponse:
    """The upload form: anyone signed in may check a file; operators and up may also store it."""
    return _upload_page(request, caller)


def _file_name(given: str | None) -> str:
    """The name problems are located in: the file's own name as the browser sent it, without any folder
    (older browsers send ``C:\\Users\\…\\estate.yaml``)."""
    return PureWindowsPath(given or "").name.strip() or "upload"


@router.post("/estates/upload", dependencies=[SameOrigin])
async def upload_estate(request: Request, caller: PageCaller, engine: EngineDep) -> Response:
    """Check an estate file, and (``action=store``, operators and up) keep it as the estate's newest version.

    The check is the one ``ringfence check``, ``ringfence estate upload`` and ``POST /v1/estates`` use:
    a file that does not hold stores nothing and answers 422 with every problem's file, line and field.
    """
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise PageError(
            415, "Unsupported form", f"an estate file is sent as multipart/form-data, not {kind or 'nothing'}"
        )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
        return _upload_page(
            request, caller, status=413, error=f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB"
        )
    try:
        async with request.form(max_files=1, max_fields=4) as form:
            action = str(form.get("action") or "check")
            upload = form.get(UPLOAD_FIELD)
            if not isinstance(upload, UploadFile) or not upload.filename:
                return _upload_page(request, caller, status=422, error="choose an estate file (YAML or JSON) first")
            source = _file_name(upload.filename)
            raw = await upload.read()
    except MultiPartException as exc:
        return _upload_page(request, caller, status=400, error=f"the form could not be read: {exc.message}")
    if action not in ("check", "store"):
        return _upload_page(request, caller, status=422, error=f"action is check or store, not '{action}'")
    if action == "store" and not may(caller, Role.OPERATOR):
        return _upload_page(
            request,
            caller,
            status=403,
            source=source,
            error=f"'{caller.name}' is a {caller.role}: storing an estate needs an operator; nothing was stored",
        )
    try:
        text = estates_service.decode_estate_bytes(raw, source=source)
        if action == "check":
            checked = await run_in_threadpool(estates_service.check_estate_text, text, source=source)
            return _upload_page(request, caller, source=source, checked=checked)
        stored = await run_in_threadpool(
            lambda: estates_service.upload_estate(
                engine, text, actor=caller.name, at=utc_now(), source=source, actor_token=caller.token_id
            )
        )
    except InputError as exc:
        return _upload_page(request, caller, status=422, source=source, problems=exc.problems)
    if stored.is_proposed:
        # It weakens the estate of record: stored, not current. Say so, with what it changes, on the form's page
        # (the estate's page shows its current version, which this is not).
        return _upload_page(request, caller, status=202, source=source, proposed=stored)
    target = f"/?estate={quote(stored.version.name, safe='')}&stored={stored.version.id}"
    if not stored.created:
        target += "&again=true"
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)


# ------------------------------------------------------------------------------------------ walking


def _walked(request: Request, caller: Caller, template: str, build: Callable[[], object]) -> HTMLResponse:
    """One page of the walk through the estate: a part that is not there is a page with a sentence (404)."""
    with shown_as_page():
        page = build()
    return render(request, template, caller=caller, section="estate", page=page)


@router.get("/estates/{name}/services/{service_id}", response_class=HTMLResponse)
def service_page(
    request: Request, name: str, service_id: str, caller: PageCaller, engine: EngineDep, cache: Compiled
) -> HTMLResponse:
    return _walked(
        request,
        caller,
        "estate_service.html.j2",
        lambda: estate_views.service_page(cache.get(engine, name), service_id),
    )


@router.get("/estates/{name}/assets/{asset_id}", response_class=HTMLResponse)
def asset_page(
    request: Request, name: str, asset_id: str, caller: PageCaller, engine: EngineDep, cache: Compiled
) -> HTMLResponse:
    return _walked(
        request, caller, "estate_asset.html.j2", lambda: estate_views.asset_page(cache.get(engine, name), asset_id)
    )


@router.get("/estates/{name}/suppliers/{supplier_id}", response_class=HTMLResponse)
def supplier_page(
    request: Request, name: str, supplier_id: str, caller: PageCaller, engine: EngineDep, cache: Compiled
) -> HTMLResponse:
    with shown_as_page():
        loaded = cache.get(engine, name)
        page = estate_views.supplier_page(loaded, supplier_id)
        # Its assessments, as of today, beside what its loss takes down (web.views.assurance).
        assurance = supplier_assurance(engine, loaded, supplier_id, utc_now().date())
    return render(request, "estate_supplier.html.j2", caller=caller, section="estate", page=page, assurance=assurance)


# ------------------------------------------------------------------------------------------ asking


@router.get("/estates/{name}/whatif", response_class=HTMLResponse)
def whatif_page(
    request: Request,
    name: str,
    caller: PageCaller,
    engine: EngineDep,
    cache: Compiled,
    # How many failures at most is the view's to say (a sentence on the page, not a JSON refusal).
    fail: Annotated[list[str] | None, Query()] = None,
    failures: Annotated[str, Query(max_length=20_000)] = "",
) -> HTMLResponse:
    """Pick failures (boxes, or typed one a line as ``ringfence impact --fail`` takes them) and see what goes
    down. A failure that names nothing answers 422 with the reason, and the form as it was."""
    with shown_as_page():
        loaded = cache.get(engine, name)
    try:
        page = estate_views.whatif_page(loaded, fail or [], failures)
    except InputError as exc:
        page = estate_views.whatif_form(loaded, fail or [], failures)
        messages = [p.message for p in exc.problems]
        return render(
            request, "whatif.html.j2", caller=caller, section="estate", page=page, errors=messages, status=422
        )
    return render(request, "whatif.html.j2", caller=caller, section="estate", page=page, errors=[])


@router.get("/estates/{name}/spofs", response_class=HTMLResponse)
def spofs_page(
    request: Request,
    name: str,
    caller: PageCaller,
    engine: EngineDep,
    cache: Compiled,
    tier: Annotated[str, Query(max_length=2)] = "",
    kind: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[str, Query(max_length=9)] = "1",
) -> HTMLResponse:
    """Single points of failure, filtered by tier (that tier or more critical) and kind, a page at a time.

    The parameters are read here, not by FastAPI, so that a bad one is answered as a page with a sentence.
    """
    with shown_as_page():
        found = estate_views.spof_list_page(
            cache.get(engine, name),
            tier_filter=_number(tier, "tier") if tier else None,
            kind=kind or None,
            page=_number(page or "1", "page"),
        )
    return render(request, "spof.html.j2", caller=caller, section="estate", page=found)


def _number(text: str, field: str) -> int:
    if not text.strip().isdigit():
        raise InputError([Problem(f"is a whole number, not '{text}'", path=(field,))])
    return int(text)
