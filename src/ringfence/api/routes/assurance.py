"""``/v1/estates/{name}/assurance``, ``/policy`` and ``/assessment``: an estate of record's evidence and policy,
stored on the server, and the estate assessed with them (``ringfence assess`` on the server).

A file is the body itself (YAML or JSON, as on disk). It is checked whole before anything is stored: the
assurance file against the estate's current version, the policy alone; one that does not hold answers 422 with
every problem's line and field (``body:12: suppliers[0].assessments[1].expires: …``) and leaves the stored file as
it was. Writers (operator and up) store; anyone signed in reads.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from ringfence.api.deps import Compiled, EngineDep, Operator, Viewer
from ringfence.api.schemas import Name
from ringfence.core.assurance import AssessmentDocument, assessment_document, parse_day
from ringfence.core.clock import utc_now
from ringfence.core.errors import InputError, NotFoundError, Problem
from ringfence.service import assurance as assurance_service
from ringfence.service.assurance import StoredFile
from ringfence.service.estates import estate_versions
from ringfence.store.assurance import AssuranceDocument, AssuranceKind

router = APIRouter(prefix="/v1/estates", tags=["assurance"])

FILE_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json", "text/plain")
SOURCE = "body"
"""How a stored text is named in problems (``body:12: …``)."""

_FILE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {
                "schema": {"type": "string", "description": "The file itself (docs/assurance-format.md)."}
            },
            "application/json": {"schema": {"type": "object", "description": "The file itself, as JSON."}},
        },
    }
}


class AssuranceFileOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    estate: str
    kind: str
    """``assurance`` or ``policy``."""
    id: int
    name: str
    """The file's own name (its ``assurance:`` or ``policy:``)."""
    sha256: str
    created_at: datetime
    created_by: str
    changed: bool
    """False when the text was the one already stored: nothing was stored again."""


def _out(stored: StoredFile) -> AssuranceFileOut:
    d = stored.document
    return AssuranceFileOut(
        estate=d.estate,
        kind=d.kind.value,
        id=d.id,
        name=d.name,
        sha256=d.sha256,
        created_at=d.created_at,
        created_by=d.created_by,
        changed=stored.changed,
    )


async def _body(request: Request) -> bytes:
    kind = request.headers.get("content-type", "application/yaml").partition(";")[0].strip().lower()
    if kind not in FILE_TYPES:
        raise HTTPException(415, f"a file is sent as application/yaml or application/json, not {kind}")
    raw = await request.body()
    if not raw.strip():
        raise InputError([Problem("the body is empty: send the file itself", source=SOURCE)])
    return raw


def _file_response(document: AssuranceDocument) -> Response:
    media = "application/json" if document.content.lstrip().startswith("{") else "application/yaml"
    headers = {"ETag": f'"{document.sha256}"', "Ringfence-File-Id": str(document.id)}
    return Response(document.content, media_type=media, headers=headers)


@router.put(
    "/{name}/assurance",
    response_model=AssuranceFileOut,
    openapi_extra=_FILE_BODY,
    summary="Store the estate's assurance file",
)
async def put_assurance(
    name: Name, request: Request, caller: Operator, engine: EngineDep, cache: Compiled
) -> AssuranceFileOut:
    """Check the assurance file against the estate's current version and keep it; 422 with every problem when it
    does not hold (nothing stored), 404 for an estate never uploaded. Audited (``assurance.store``)."""
    raw = await _body(request)
    loaded = await run_in_threadpool(cache.get, engine, name)
    stored = await run_in_threadpool(
        lambda: assurance_service.store_assurance(engine, loaded, raw, actor=caller.name, at=utc_now(), source=SOURCE)
    )
    return _out(stored)


@router.put(
    "/{name}/policy", response_model=AssuranceFileOut, openapi_extra=_FILE_BODY, summary="Store the estate's policy"
)
async def put_policy(name: Name, request: Request, caller: Operator, engine: EngineDep) -> AssuranceFileOut:
    """Check the policy file and keep it as the estate's; 422 with every problem when it does not hold, 404 for an
    estate never uploaded. Audited (``policy.store``)."""
    raw = await _body(request)
    stored = await run_in_threadpool(
        lambda: assurance_service.store_policy(engine, name, raw, actor=caller.name, at=utc_now(), source=SOURCE)
    )
    return _out(stored)


@router.get(
    "/{name}/assurance",
    summary="The estate's assurance file as stored",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}, "application/json": {}}}},
)
def get_assurance(name: Name, caller: Viewer, engine: EngineDep) -> Response:
    """404 when none is stored (the estate is then assessed with no evidence at all)."""
    estate_versions(engine, name)
    stored = assurance_service.stored_file(engine, name, AssuranceKind.ASSURANCE)
    if stored is None:
        raise NotFoundError(f"no assurance file is stored for estate '{name}'")
    return _file_response(stored)


@router.get(
    "/{name}/policy",
    summary="The policy the estate is assessed with",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}, "application/json": {}}}},
)
def get_policy(name: Name, caller: Viewer, engine: EngineDep) -> Response:
    """The stored policy; when none is stored, the bundled policy for an acute trust, with the header
    ``Ringfence-Policy: bundled``."""
    estate_versions(engine, name)
    stored = assurance_service.stored_file(engine, name, AssuranceKind.POLICY)
    if stored is None:
        return Response(
            assurance_service.default_policy_text(),
            media_type="application/yaml",
            headers={"Ringfence-Policy": "bundled"},
        )
    response = _file_response(stored)
    response.headers["Ringfence-Policy"] = "stored"
    return response


@router.get("/{name}/assessment", response_model=AssessmentDocument, summary="The estate assessed (`assess --json`)")
def get_assessment(
    name: Name,
    caller: Viewer,
    engine: EngineDep,
    cache: Compiled,
    as_of: Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD; default: today (UTC).")] = None,
) -> AssessmentDocument:
    """Every finding of the estate's policy on its current version with its stored evidence: the document of
    ``ringfence assess --json`` (``breached`` is true where the command exits 1). 409 when the stored assurance
    file no longer holds for the current version."""
    day = _day(as_of)
    loaded = cache.get(engine, name)
    return assessment_document(assurance_service.assessment_report(engine, loaded, day))


def _day(text: str | None) -> date:
    if text is None:
        return utc_now().date()
    try:
        return parse_day(text)
    except ValueError as exc:
        raise InputError([Problem(str(exc), path=("as_of",))]) from None
