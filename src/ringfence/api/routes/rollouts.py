"""Plans and rollouts: ``/v1/plans`` (nothing stored) and ``/v1/rollouts`` (create, approve, start, pause,
resume, abort, roll back, status, events, and what an approver must read first).

Two-person rule: a rollout whose targets include an asset of impact tier 1 or 2, or that overrides a vendor
hold, is created awaiting approval, and the person who created it cannot approve it. Every move is audited
with the token's name as the actor. The server's controller loop (``ringfence.service.runner``, started
here when ``Settings.controller`` is on) drives started rollouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Body, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from ringfence.api.deps import Approver, EngineDep, Operator, Viewer
from ringfence.api.routes.audit import audit_page
from ringfence.api.routes.estates import Compiled
from ringfence.api.schemas import (
    AuditPage,
    LogPosition,
    Name,
    PlanRequest,
    RolloutAction,
    RolloutCreate,
    RolloutList,
    RolloutSummary,
)
from ringfence.core.clock import utc_now
from ringfence.core.documents import (
    HoldOverrideOut,
    PlanDocument,
    RolloutStatusDocument,
    calendar_document,
    plan_document,
)
from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import locate_problems
from ringfence.core.planner import Plan, plan_rings
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.update import Hold, Update, check_holds, parse_holds_text, parse_update_text
from ringfence.core.windows import plan_calendar
from ringfence.service import rollouts
from ringfence.service.estates import LoadedEstate
from ringfence.service.runner import ControllerLoop, check_driver
from ringfence.store import rollouts as stored_rollouts
from ringfence.store.audit import list_audit
from ringfence.store.db import session_scope
from ringfence.store.records import EstateFormat

router = APIRouter(prefix="/v1", tags=["rollouts"])

UPDATE_SOURCE = "update"
"""How the update text of a request is named in problems (``update:4: update.rings: …``)."""

APPROVAL_TIER = 2
"""Targets of this impact tier or more critical need a second person's approval."""

ActionBody = Annotated[RolloutAction | None, Body(description="Why (optional).")]


@lru_cache(maxsize=1)
def bundled_holds() -> tuple[Hold, ...]:
    """The vendor holds shipped with ringfence (withdrawn releases), as ``ringfence plan`` uses by default."""
    from ringfence.files.disk import examples_dir, read_with

    path = examples_dir() / "holds.yaml"
    return read_with(path, parse_holds_text) if path.exists() else ()


@contextmanager
def located_in(text: str) -> Iterator[None]:
    """Problems the planner finds with an update's fields are reported against the update text's lines."""
    try:
        yield
    except InputError as exc:
        # Only the update's own problems are located in its text; anything else keeps its own source.
        mine = [replace(p, source=UPDATE_SOURCE) for p in exc.problems if p.source in (None, UPDATE_SOURCE)]
        others = [p for p in exc.problems if p.source not in (None, UPDATE_SOURCE)]
        raise InputError([*locate_problems(mine, text), *others]) from None


def _plan(loaded: LoadedEstate, update: Update, update_text: str, override_hold: str | None) -> Plan:
    override = check_holds(update, bundled_holds(), override_hold)
    with located_in(update_text):
        return plan_rings(loaded.graph, update, hold_override=override)


def controller_loop(request: Request) -> ControllerLoop | None:
    loop: ControllerLoop | None = getattr(request.app.state, "controller_loop", None)
    return loop


def _status(engine: Engine, rollout_id: str) -> RolloutStatusDocument:
    from ringfence.service.workers import worker_status

    found = rollouts.status(engine, rollout_id)
    document = rollouts.status_document(found)
    # Who drives it, or that nobody can: what a person needs when an ansible rollout started here seems idle.
    document.driven_by, document.waiting_for_worker = worker_status(engine, found.rollout, utc_now())
    return document


# ------------------------------------------------------------------------------------------------ plans


@router.post("/plans", response_model=PlanDocument, tags=["plans"], summary="Plan an update's rings (nothing stored)")
def plan(body: PlanRequest, caller: Viewer, engine: EngineDep, cache: Compiled) -> PlanDocument:
    """The rings an update would go through on the estate (``ringfence plan --json``). A release under a
    vendor hold answers 409 unless ``override_hold`` says why."""
    loaded = cache.get(engine, body.estate, body.version)
    update = parse_update_text(body.update, UPDATE_SOURCE)
    planned = _plan(loaded, update, body.update, body.override_hold)
    # With change windows, the calendar from now: when each ring can start and be done at the earliest.
    now = utc_now()
    with located_in(body.update):
        slots = plan_calendar(loaded.graph, planned, now)
    calendar = calendar_document([r.name for r in planned.rings], slots, now) if slots is not None else None
    return plan_document(planned, calendar)


# --------------------------------------------------------------------------------------------- rollouts


@router.post("/rollouts", response_model=RolloutStatusDocument, status_code=201, summary="Create a rollout")
def create_rollout(body: RolloutCreate, caller: Operator, engine: EngineDep, cache: Compiled) -> RolloutStatusDocument:
    """Plan the update on the estate and store it as a rollout: ``pending`` (start it), or
    ``awaiting_approval`` when a target has impact tier 1 or 2 or a vendor hold was overridden.

    Only on the estate of record: 409, naming what differs, when the version named is not its estate's
    current one (a proposal awaiting a second person, an older version), or when another estate holds a
    target."""
    from ringfence.drivers.registry import available_drivers

    loaded = cache.get(engine, body.estate, body.version)
    update = parse_update_text(body.update, UPDATE_SOURCE)
    if body.driver not in available_drivers():
        installed = ", ".join(available_drivers()) or "none"
        raise InputError(
            [Problem(f"there is no driver '{body.driver}'; the installed drivers are: {installed}", path=("driver",))]
        )
    rollouts.check_health_source(body.health_source)  # 422 naming the known sources, nothing planned or stored
    planned = _plan(loaded, update, body.update, body.override_hold)
    # Four eyes where it matters: an asset whose loss alone takes down a tier 1 or 2 service.
    critical = any(tier <= APPROVAL_TIER for ring in planned.rings for tier in ring.tiers)
    version = loaded.version
    suffix = "json" if version.format is EstateFormat.JSON else "yaml"
    with located_in(body.update):
        created = rollouts.create_rollout(
            engine,
            estate_text=version.content,
            estate_source=f"{version.name}@{version.id}.{suffix}",
            update_text=body.update,
            update_source=UPDATE_SOURCE,
            actor=caller.name,
            at=utc_now(),
            holds=bundled_holds(),
            override_hold=body.override_hold,
            driver=body.driver,
            strategy=body.strategy,
            require_approval=critical,
            health_source=body.health_source,
            actor_token=caller.token_id,
        )
    assert created.rollout is not None  # not a dry run
    return _status(engine, created.rollout.id)


@router.get("/rollouts", response_model=RolloutList, summary="Rollouts, oldest first")
def list_rollouts(
    caller: Viewer,
    engine: EngineDep,
    phase: Annotated[list[RolloutPhase] | None, Query(description="Only rollouts in these phases.")] = None,
) -> RolloutList:
    with session_scope(engine, readonly=True) as session:
        found = stored_rollouts.list_rollouts(session, phases=phase)
    return RolloutList(
        rollouts=[
            RolloutSummary(
                id=r.id,
                update=r.update_id,
                estate_version=r.estate_version_id,
                phase=r.state.phase.value,
                ring=r.state.ring,
                halt_reason=r.state.halt_reason,
                created_by=r.created_by,
                approved_by=r.approved_by,
                needs_approval=r.needs_approval,
                created_at=r.created_at,
                updated_at=r.state.updated_at,
            )
            for r in found
        ]
    )


@router.get("/rollouts/{rollout_id}", response_model=RolloutStatusDocument, summary="A rollout's status")
def get_rollout(rollout_id: Name, caller: Viewer, engine: EngineDep) -> RolloutStatusDocument:
    """Phase, rings and each target's progress (``ringfence rollout status --json``)."""
    return _status(engine, rollout_id)


@router.get("/rollouts/{rollout_id}/events", response_model=AuditPage, summary="A rollout's audit entries")
def rollout_events(
    rollout_id: Name,
    caller: Viewer,
    engine: EngineDep,
    after: Annotated[LogPosition, Query(description="Only entries after this sequence number (for polling).")] = 0,
) -> AuditPage:
    """Its creation, every transition (who, why) and any hold override, oldest first."""
    with session_scope(engine, readonly=True) as session:
        stored_rollouts.get_rollout(session, rollout_id)
        entries = list_audit(session, after_seq=after, subject=f"rollout:{rollout_id}")
    return audit_page(entries, after)


class RolloutApproval(BaseModel):
    """What a person deciding on a rollout's approval must read first, and where the decision stands."""

    model_config = ConfigDict(extra="forbid")

    id: str
    phase: str
    needs_approval: bool
    awaiting_approval: bool = Field(description="True while the rollout waits for a second person's approval.")
    created_by: str = Field(description="Who created it: the one person who may not approve it.")
    approved_by: str | None
    hold_override: HoldOverrideOut | None = Field(
        description="The vendor hold the rollout goes ahead despite: the held release, the vendor's reason for "
        "the hold and the justification recorded when the rollout was created. null when no hold was overridden."
    )


@router.get(
    "/rollouts/{rollout_id}/approval", response_model=RolloutApproval, summary="What an approver must read first"
)
def approval(rollout_id: Name, caller: Viewer, engine: EngineDep) -> RolloutApproval:
    """Whether the rollout waits for approval, who created it, and any vendor hold it overrides: the hold's
    reason and the justification recorded when it was created. Read this before ``/approve``."""
    with session_scope(engine, readonly=True) as session:
        r = stored_rollouts.get_rollout(session, rollout_id)
    held = rollouts.stored_plan(r).hold_override
    return RolloutApproval(
        id=r.id,
        phase=r.state.phase.value,
        needs_approval=r.needs_approval,
        awaiting_approval=r.state.phase is RolloutPhase.AWAITING_APPROVAL,
        created_by=r.created_by,
        approved_by=r.approved_by,
        hold_override=(
            HoldOverrideOut(
                release=held.get("release", ""),
                reason=held.get("reason", ""),
                justification=held.get("justification", ""),
            )
            if held
            else None
        ),
    )


@router.post("/rollouts/{rollout_id}/approve", response_model=RolloutStatusDocument, summary="Approve a rollout")
def approve(rollout_id: Name, caller: Approver, engine: EngineDep, body: ActionBody = None) -> RolloutStatusDocument:
    """Approve a rollout awaiting approval. Not by the person who created it (403): people are compared by
    their normalised names and by who issued whose token; 409 unless awaiting.
    Read ``/approval`` first: it says which vendor hold, if any, the rollout overrides, and why."""
    rollouts.approve_rollout(engine, rollout_id, actor=caller.name, at=utc_now(), actor_token=caller.token_id)
    return _status(engine, rollout_id)


def _wake_controller(request: Request) -> None:
    loop = controller_loop(request)
    if loop is not None:
        loop.wake()  # drive it now rather than at the next interval


def _acted(request: Request, engine: Engine, rollout_id: str) -> RolloutStatusDocument:
    """After a person's action: let the controller act on it now, and answer with the rollout's status."""
    _wake_controller(request)
    return _status(engine, rollout_id)


def _why(body: RolloutAction | None) -> str:
    return body.reason if body else ""


@router.post("/rollouts/{rollout_id}/start", response_model=RolloutStatusDocument, summary="Start a rollout")
def start(
    rollout_id: Name, request: Request, caller: Operator, engine: EngineDep, body: ActionBody = None
) -> RolloutStatusDocument:
    """Start a pending rollout (409 while it awaits approval; 422, nothing changed, when its driver cannot
    carry its update through, e.g. the agent driver and `rollback: snapshot`); the server's controller loop
    drives it."""
    check_driver(engine, rollout_id)
    rollouts.start(engine, rollout_id, actor=caller.name, at=utc_now())
    return _acted(request, engine, rollout_id)


@router.post("/rollouts/{rollout_id}/pause", response_model=RolloutStatusDocument, summary="Pause a rollout")
def pause(
    rollout_id: Name, request: Request, caller: Operator, engine: EngineDep, body: ActionBody = None
) -> RolloutStatusDocument:
    """Pause a running rollout where it is (409 when it is not running)."""
    rollouts.pause(engine, rollout_id, actor=caller.name, at=utc_now(), why=_why(body))
    return _acted(request, engine, rollout_id)


@router.post("/rollouts/{rollout_id}/resume", response_model=RolloutStatusDocument, summary="Resume a rollout")
def resume(
    rollout_id: Name, request: Request, caller: Operator, engine: EngineDep, body: ActionBody = None
) -> RolloutStatusDocument:
    """Resume a paused rollout where it paused (409 when it is not paused)."""
    rollouts.resume(engine, rollout_id, actor=caller.name, at=utc_now(), why=_why(body))
    return _acted(request, engine, rollout_id)


@router.post("/rollouts/{rollout_id}/abort", response_model=RolloutStatusDocument, summary="Abort a rollout")
def abort(
    rollout_id: Name, request: Request, caller: Operator, engine: EngineDep, body: ActionBody = None
) -> RolloutStatusDocument:
    """Halt a running or paused rollout now; nothing more is updated (roll it back with ``/rollback``)."""
    rollouts.abort(engine, rollout_id, actor=caller.name, at=utc_now(), why=_why(body))
    return _acted(request, engine, rollout_id)


@router.post("/rollouts/{rollout_id}/rollback", response_model=RolloutStatusDocument, summary="Roll a rollout back")
def rollback(
    rollout_id: Name, request: Request, caller: Operator, engine: EngineDep, body: ActionBody = None
) -> RolloutStatusDocument:
    """Roll back every asset a halted rollout updated (409 unless halted, or when the update has no rollback)."""
    rollouts.roll_back(engine, rollout_id, actor=caller.name, at=utc_now(), why=_why(body))
    return _acted(request, engine, rollout_id)


def setup(app: FastAPI) -> None:
    """Run the controller loop in this server while it is up, unless the settings turn it off."""
    settings = app.state.settings
    if not settings.controller:
        return
    loop = ControllerLoop(app.state.engine, interval=settings.controller_interval, role="serve")
    app.state.controller_loop = loop

    async def start_loop(app: FastAPI) -> None:
        loop.start()

    async def stop_loop(app: FastAPI) -> None:
        await asyncio.to_thread(loop.stop)

    app.state.startup_hooks.append(start_loop)
    app.state.shutdown_hooks.append(stop_loop)
