"""``/v1/estates``: upload (and only check) estate files, list estates and their versions, read them back.

An upload is checked whole before anything is stored; a bad one answers 422 with every problem's field and
line and leaves the current version as it was.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ringfence.api.deps import Approver, EngineDep, Operator, Viewer
from ringfence.api.deps import Compiled as Compiled
from ringfence.api.schemas import (
    AssetMoveOut,
    EstateDetail,
    EstateDiffOut,
    EstateList,
    EstateListItem,
    EstateProposal,
    EstateProposalList,
    EstateUpload,
    EstateUploaded,
    EstateVersionList,
    EstateVersionOut,
    Name,
    ProblemOut,
    RecordId,
    RequirementDroppedOut,
    TierChangeOut,
)

# Compiled is re-exported: the analysis and rollout routes take it from here.
from ringfence.core.clock import utc_now
from ringfence.core.documents import CheckDocument, check_document
from ringfence.core.errors import InputError, NotFoundError, Problem
from ringfence.service import estates
from ringfence.service.compiled import compiled_estates
from ringfence.service.estates import CheckedEstate, EstateDiff
from ringfence.service.people import Actor
from ringfence.store.records import EstateFormat, EstateVersion

router = APIRouter(prefix="/v1/estates", tags=["estates"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
UPLOAD_SOURCE = "body"
"""How an uploaded text is named in problems (``body:12: assets[3].kind: …``)."""

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": EstateUpload.model_json_schema()},
            "application/yaml": {"schema": {"type": "string", "description": "The estate file itself."}},
        },
    }
}


async def estate_upload(request: Request) -> EstateUpload:
    """The upload body: JSON (:class:`EstateUpload`) or the raw YAML file."""
    kind = request.headers.get("content-type", "application/json").partition(";")[0].strip().lower()
    raw = await request.body()
    if kind in YAML_TYPES:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError([Problem(f"is not UTF-8 text (byte {exc.start})", source=UPLOAD_SOURCE)]) from None
        return EstateUpload(content=text)
    if kind != "application/json":
        raise HTTPException(415, f"an estate is sent as application/json or application/yaml, not {kind}")
    try:
        return EstateUpload.model_validate_json(raw)
    except ValidationError as exc:
        # The same 422 as any other body FastAPI validates: field paths under "body".
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        ) from None


Upload = Annotated[EstateUpload, Depends(estate_upload)]


def version_out(version: EstateVersion) -> EstateVersionOut:
    return EstateVersionOut(
        id=version.id,
        name=version.name,
        sha256=version.sha256,
        format="json" if version.format is EstateFormat.JSON else "yaml",
        created_at=version.created_at,
        created_by=version.created_by,
        assets=version.asset_count,
        services=version.service_count,
        status=version.status,
        decided_by=version.decided_by,
    )


def diff_out(diff: EstateDiff) -> EstateDiffOut:
    return EstateDiffOut(
        against=diff.against,
        tiers_lowered=[TierChangeOut(service=t.service, was=t.was, now=t.now) for t in diff.tiers_lowered],
        services_removed=list(diff.services_removed),
        requirements_removed=[
            RequirementDroppedOut(owner=r.owner, requirement=r.requirement) for r in diff.requirements_removed
        ],
        assets_moved=[AssetMoveOut(asset=m.asset, from_estate=m.from_estate) for m in diff.assets_moved],
        changes=diff.sentences(),
    )


def problems_out(problems: tuple[Problem, ...]) -> list[ProblemOut]:
    return [
        ProblemOut(field=p.field or None, line=p.line, source=p.source, message=p.message, detail=str(p))
        for p in problems
    ]


def _check(checked: CheckedEstate) -> CheckDocument:
    return check_document(checked.estate, checked.warnings)


@router.post(
    "",
    response_model=EstateUploaded,
    status_code=201,
    openapi_extra=_UPLOAD_BODY,
    summary="Upload an estate as a new version",
    responses={200: {"description": "The same text was stored before: that version.", "model": EstateUploaded}},
)
def upload_estate(body: Upload, caller: Operator, engine: EngineDep, response: Response) -> EstateUploaded:
    """Check the estate and keep it as a version of its name (201), or return the version that already holds
    this exact text (200). A text that does not hold stores nothing: 422 with every problem.

    The version is current at once unless it weakens the estate of record (a service's tier lowered, a
    service or a requirement removed or loosened, assets taken from another estate): then it is stored
    ``proposed`` (``"proposed": true``, the changes under ``diff``) and a second person approves it at
    ``POST /v1/estates/{name}/versions/{id}/approve``."""
    stored = estates.upload_estate(
        engine,
        body.content,
        actor=caller.name,
        at=utc_now(),
        source=UPLOAD_SOURCE,
        name=body.name,
        format=body.format,
        actor_token=caller.token_id,
    )
    if not stored.created:
        response.status_code = 200
    current = _current_id(engine, stored.version.name)
    return EstateUploaded(
        created=stored.created,
        current=current == stored.version.id,
        version=version_out(stored.version),
        check=_check(stored.checked),
        warnings=problems_out(stored.checked.warnings),
        proposed=stored.is_proposed,
        diff=diff_out(stored.diff) if stored.diff is not None else None,
    )


def _current_id(engine: EngineDep, name: str) -> int | None:
    try:
        return estates.estate_version(engine, name).id
    except NotFoundError:
        return None  # only proposals: nothing is current yet


@router.post(
    "/validate",
    response_model=CheckDocument,
    openapi_extra=_UPLOAD_BODY,
    summary="Check an estate without storing it",
)
def validate_estate(body: Upload, caller: Viewer) -> CheckDocument:
    """The ``ringfence check --json`` document; 422 with every problem's field and line when it does not hold."""
    checked = estates.check_estate_text(body.content, source=UPLOAD_SOURCE, name=body.name, format=body.format)
    return _check(checked)


@router.get("", response_model=EstateList, summary="Estates and their current versions")
def list_estates(caller: Viewer, engine: EngineDep) -> EstateList:
    return EstateList(
        estates=[
            EstateListItem(name=s.name, versions=s.versions, latest=version_out(s.latest), proposals=s.proposals)
            for s in estates.list_estates(engine)
        ]
    )


@router.get("/{name}/proposals", response_model=EstateProposalList, summary="Versions awaiting a second person")
def list_proposals(name: Name, caller: Viewer, engine: EngineDep) -> EstateProposalList:
    """Each proposed version with how it weakens the current version of record, judged now."""
    estates.estate_versions(engine, name)  # 404 for an estate never uploaded
    return EstateProposalList(
        name=name,
        proposals=[
            EstateProposal(version=version_out(p.version), diff=diff_out(p.diff))
            for p in estates.estate_proposals(engine, name)
        ],
    )


@router.post(
    "/{name}/versions/{version_id}/approve",
    response_model=EstateProposal,
    summary="Approve a proposed version: it becomes current",
)
def approve_version(name: Name, version_id: RecordId, caller: Approver, engine: EngineDep) -> EstateProposal:
    """A second person makes a proposed version current (it takes the assets it claims); answers the changes
    as judged at approval. 403 for its proposer (people are compared by normalised name and by who issued
    whose token); 409 unless it is proposed."""
    decided = estates.approve_estate_version(
        engine, name, version_id, actor=Actor(caller.name, caller.token_id), at=utc_now()
    )
    return EstateProposal(version=version_out(decided.version), diff=diff_out(decided.diff))


@router.post(
    "/{name}/versions/{version_id}/reject",
    response_model=EstateVersionOut,
    summary="Reject a proposed version: it never becomes current",
)
def reject_version(name: Name, version_id: RecordId, caller: Approver, engine: EngineDep) -> EstateVersionOut:
    """409 unless it is proposed. Uploading the same text again proposes it again."""
    return version_out(
        estates.reject_estate_version(engine, name, version_id, actor=Actor(caller.name, caller.token_id), at=utc_now())
    )


@router.get("/{name}/versions", response_model=EstateVersionList, summary="Every version of an estate")
def list_versions(name: Name, caller: Viewer, engine: EngineDep) -> EstateVersionList:
    return EstateVersionList(name=name, versions=[version_out(v) for v in estates.estate_versions(engine, name)])


@router.get("/{name}", response_model=EstateDetail, summary="An estate version summarised, with its warnings")
def get_estate(
    name: Name,
    caller: Viewer,
    engine: EngineDep,
    cache: Compiled,
    version: Annotated[RecordId | None, Query(description="Version id; default: the current one.")] = None,
) -> EstateDetail:
    loaded = cache.get(engine, name, version)
    versions = estates.estate_versions(engine, name)
    estate = loaded.estate
    by_tier: dict[str, int] = {}
    for service in estate.services:
        by_tier[str(service.tier)] = by_tier.get(str(service.tier), 0) + 1
    by_kind: dict[str, int] = {}
    for asset in estate.assets:
        by_kind[str(asset.kind)] = by_kind.get(str(asset.kind), 0) + 1
    return EstateDetail(
        name=name,
        version=version_out(loaded.version),
        current=_current_id(engine, name) == loaded.version.id,
        versions=len(versions),
        assets=len(estate.assets),
        services=len(estate.services),
        suppliers=estate.declared_suppliers,
        sites=list(estate.sites),
        services_by_tier=dict(sorted(by_tier.items())),
        assets_by_kind=dict(sorted(by_kind.items())),
        warnings=problems_out(loaded.checked.warnings),
    )


@router.get(
    "/{name}/versions/{version_id}/content",
    summary="A version's text exactly as uploaded",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}, "application/json": {}}}},
)
def version_content(name: Name, version_id: RecordId, caller: Viewer, engine: EngineDep) -> Response:
    version = estates.estate_version(engine, name, version_id)
    media = "application/json" if version.format is EstateFormat.JSON else "application/yaml"
    return Response(version.content, media_type=media, headers={"ETag": f'"{version.sha256}"'})


def setup(app: FastAPI) -> None:
    """Load the bundled sample estate on start when the settings ask for it and no estate is stored yet."""
    compiled_estates(app.state)  # the app starts with an empty cache of its own
    if not app.state.settings.sample_estate:
        return

    async def load_sample(app: FastAPI) -> None:
        import asyncio

        await asyncio.to_thread(estates.load_sample_estate, app.state.engine, at=utc_now())

    app.state.startup_hooks.append(load_sample)
