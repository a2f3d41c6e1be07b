"""Incidents: ``/v1/incidents`` — declare, list, get, restore, note, close, review (HTML or Markdown).

Reads need a viewer token, writes an operator's; every write is audited with the token's name as the
actor. A refused move (an item whose requirements are still down, closing with items down and no reason,
anything on a closed incident) answers 409 with the reason as the problem's detail.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ringfence.api.deps import EngineDep, Operator, Viewer
from ringfence.api.schemas import Name, RecordId, Text
from ringfence.core.clock import utc_now
from ringfence.core.estate import LARGEST_COUNT
from ringfence.core.incident import DEFAULT_STEP_SECONDS, LONGEST_STEP, IncidentStatus
from ringfence.files.incident_review import render_review_html, render_review_markdown
from ringfence.service import incidents
from ringfence.service.incidents import IncidentListOut, IncidentOut

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FailureRef = Annotated[Text, Field(max_length=4000)]
"""One failure reference (``where:`` takes a selector, so longer than a name)."""
IncidentId = Annotated[Name, Path(description="The incident's id (inc-000001).")]


class IncidentDeclare(_In):
    estate: Name = Field(description="Estate name (as uploaded).")
    version: RecordId | None = Field(default=None, description="Estate version id; default: the current one.")
    fail: Annotated[
        list[FailureRef],
        Field(
            min_length=1,
            max_length=LARGEST_COUNT,
            description="What failed: asset:ID, service:ID, supplier:ID, software:P[@V], site:N…",
        ),
    ]
    title: Annotated[Text | None, Field(max_length=500, description="A title people will recognise.")] = None
    # Bounded like every duration (a year): it is stored with the incident and multiplied into its clocks.
    step_seconds: Annotated[
        int,
        Field(ge=1, le=LONGEST_STEP, description="How long one restore step takes, for RTO estimates (seconds)."),
    ] = DEFAULT_STEP_SECONDS


class IncidentRestore(_In):
    items: Annotated[
        list[Name], Field(min_length=1, max_length=LARGEST_COUNT, description="Items back up; restored together.")
    ]


class IncidentNote(_In):
    text: Annotated[Text, Field(min_length=1, max_length=10_000)]


class IncidentClose(_In):
    reason: Annotated[
        Text | None, Field(max_length=2000, description="Why it closes; needed while items are still down.")
    ] = None


@router.post("", response_model=IncidentOut, status_code=201, summary="Declare an incident")
def declare(body: IncidentDeclare, caller: Operator, engine: EngineDep) -> IncidentOut:
    """Snapshot what the failures take down on the estate: impact, continuity plans, restore order, RTO clocks."""
    now = utc_now()
    found = incidents.declare(
        engine,
        fail=body.fail,
        actor=caller.name,
        at=now,
        title=body.title,
        estate_name=body.estate,
        estate_version=body.version,
        step_seconds=body.step_seconds,
    )
    return incidents.incident_document(found, now)


@router.get("", response_model=IncidentListOut, summary="Incidents, by id")
def list_incidents(
    caller: Viewer,
    engine: EngineDep,
    status: Annotated[IncidentStatus | None, Query(description="Only open or only closed incidents.")] = None,
) -> IncidentListOut:
    now = utc_now()
    return IncidentListOut(
        incidents=[incidents.incident_summary(i, now) for i in incidents.list_incidents(engine, status=status)]
    )


@router.get("/{incident_id}", response_model=IncidentOut, summary="An incident, with its RTO clocks now")
def get_incident(incident_id: IncidentId, caller: Viewer, engine: EngineDep) -> IncidentOut:
    return incidents.incident_document(incidents.get(engine, incident_id), utc_now())


@router.post("/{incident_id}/restore", response_model=IncidentOut, summary="Mark items restored")
def restore(incident_id: IncidentId, body: IncidentRestore, caller: Operator, engine: EngineDep) -> IncidentOut:
    """409, with the reason, while an item's requirements are still down."""
    now = utc_now()
    return incidents.incident_document(
        incidents.restore(engine, incident_id, body.items, actor=caller.name, at=now), now
    )


@router.post("/{incident_id}/notes", response_model=IncidentOut, summary="Add a note to the timeline")
def add_note(incident_id: IncidentId, body: IncidentNote, caller: Operator, engine: EngineDep) -> IncidentOut:
    now = utc_now()
    return incidents.incident_document(incidents.note(engine, incident_id, body.text, actor=caller.name, at=now), now)


@router.post("/{incident_id}/close", response_model=IncidentOut, summary="Close an incident")
def close(
    incident_id: IncidentId, caller: Operator, engine: EngineDep, body: IncidentClose | None = None
) -> IncidentOut:
    """Everything restored, or a reason: 409 otherwise."""
    now = utc_now()
    reason = body.reason if body is not None else None
    return incidents.incident_document(
        incidents.close(engine, incident_id, actor=caller.name, at=now, reason=reason), now
    )


@router.get(
    "/{incident_id}/review",
    summary="The post-incident review",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}, "text/markdown": {}}}},
)
def review(
    incident_id: IncidentId,
    caller: Viewer,
    engine: EngineDep,
    format: Annotated[Literal["html", "markdown"], Query(description="html (a page) or markdown.")] = "html",
) -> Response:
    """Timeline, impact by tier, time to restore per service against its RTO, the rollout that caused it."""
    found = incidents.review(engine, incident_id, utc_now())
    if format == "markdown":
        return PlainTextResponse(render_review_markdown(found), media_type="text/markdown; charset=utf-8")
    return HTMLResponse(render_review_html(found))
