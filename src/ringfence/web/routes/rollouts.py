"""The rollouts list, a rollout's page and its live part, and its buttons."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Engine

from ringfence.api.deps import EngineDep
from ringfence.core.clock import utc_now
from ringfence.core.rollout.state import RolloutState
from ringfence.service import rollouts as rollout_service
from ringfence.service.tokens import Caller, Role
from ringfence.web.rendering import Form, LivePage, render
from ringfence.web.security import PageCaller, PageError, SameOrigin
from ringfence.web.views import rollouts as rollout_views

router = APIRouter(include_in_schema=False)


@router.get("/rollouts", response_class=HTMLResponse)
def rollouts_page(request: Request, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    rows = rollout_views.rollout_rows(engine)
    return render(request, "rollouts.html.j2", caller=caller, section="rollouts", rows=rows)


ROLLOUT = LivePage("rollouts", "rollout.html.j2", "_rollout_live.html.j2", model="r", view=rollout_views.rollout_page)


@router.get("/rollouts/{rollout_id}", response_class=HTMLResponse)
def rollout_page(request: Request, rollout_id: str, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    return ROLLOUT.show(request, caller, engine, rollout_id, fragment=False)


@router.get("/rollouts/{rollout_id}/live", response_class=HTMLResponse)
def rollout_fragment(request: Request, rollout_id: str, caller: PageCaller, engine: EngineDep) -> HTMLResponse:
    """The part of a rollout's page that changes: ringfence.js swaps it in every few seconds."""
    return ROLLOUT.show(request, caller, engine, rollout_id, fragment=True)


# Each button: the role it needs, the use case it calls, and the sentence saying it was done.
_Act = Callable[[Engine, str, Caller, datetime, str], RolloutState]


def _approve(engine: Engine, rollout_id: str, caller: Caller, at: datetime, _: str) -> RolloutState:
    # The signed-in token goes with the name: the two-person rule compares persons and who issued whose token.
    return rollout_service.approve_rollout(engine, rollout_id, actor=caller.name, at=at, actor_token=caller.token_id)


def _start(engine: Engine, rollout_id: str, caller: Caller, at: datetime, _: str) -> RolloutState:
    return rollout_service.start(engine, rollout_id, actor=caller.name, at=at)


def _pause(engine: Engine, rollout_id: str, caller: Caller, at: datetime, why: str) -> RolloutState:
    return rollout_service.pause(engine, rollout_id, actor=caller.name, at=at, why=why)


def _resume(engine: Engine, rollout_id: str, caller: Caller, at: datetime, why: str) -> RolloutState:
    return rollout_service.resume(engine, rollout_id, actor=caller.name, at=at, why=why)


def _abort(engine: Engine, rollout_id: str, caller: Caller, at: datetime, why: str) -> RolloutState:
    return rollout_service.abort(engine, rollout_id, actor=caller.name, at=at, why=why)


def _roll_back(engine: Engine, rollout_id: str, caller: Caller, at: datetime, why: str) -> RolloutState:
    return rollout_service.roll_back(engine, rollout_id, actor=caller.name, at=at, why=why)


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
        act(engine, rollout_id, caller, utc_now(), form.get("reason").strip())
        return f"Rollout {rollout_id} {done} by {caller.name}."

    return ROLLOUT.pressed(request, caller, engine, rollout_id, press)
