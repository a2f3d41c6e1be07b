"""The agent gate: ``GET /v1/agents/{asset}/directive`` and ``POST /v1/heartbeats``.

The directive endpoint is the hottest path of the service (every agent asks every few seconds). The token
is looked up in the worker's token cache (``ringfence.service.tokens.TokenCache``, the one every route
uses) and the answer comes from the worker's snapshot of the agent rollouts
(``ringfence.service.agents``), both kept fresh by a background thread while the server runs; such a
request is answered by :class:`DirectiveFastLane` before routing. Only a token issued since the last
look, a refusal, or a snapshot that fell behind goes through the route, and reads the database there (in
the thread pool) when it must.

The server's controller loop finds the ``agent`` driver in the driver registry like any other
(``ringfence.drivers.agent.AgentDriver.for_server``); nothing is registered here.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, FastAPI, Path, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from ringfence.api.deps import CallerDep, get_caller
from ringfence.api.schemas import LONGEST_NAME, Name, Text
from ringfence.core.clock import utc_now
from ringfence.core.errors import PermissionDeniedError
from ringfence.core.gates import FailureSignal
from ringfence.core.rollout.directive import Directive
from ringfence.service import agents
from ringfence.service.heartbeats import (
    Heartbeat,
    HeartbeatStatus,
    ReportedOperation,
    ReportedResult,
    record_heartbeats,
)
from ringfence.service.tokens import TokenCache

router = APIRouter(prefix="/v1", tags=["agents"])

MAX_BATCH = 5000
"""Heartbeats in one request; a proxy with more sends several."""
EARLIEST_HEARTBEAT = datetime(2000, 1, 1, tzinfo=UTC)
"""A heartbeat dated before this comes from a clock that is wrong, not from an agent that was offline: refused
(and a date near year 1 cannot even be moved to UTC, nor have a timeout added to it, without overflowing)."""


class DirectiveOut(BaseModel):
    """What an asset should do now. ``retry_after``: seconds until it is worth asking again."""

    action: Literal["install", "rollback", "wait"]
    asset: str
    reason: str
    retry_after: int
    rollout: str | None = None
    product: str | None = None
    version: str | None = None
    ring: int | None = None


class ResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: Literal["install", "rollback"]
    status: Literal["succeeded", "failed"]
    detail: Annotated[Text, Field(max_length=4000)] = ""


class HeartbeatIn(BaseModel):
    """One heartbeat; ``at`` defaults to when the server received it."""

    model_config = ConfigDict(extra="forbid")

    asset: Annotated[Name, Field(min_length=1)]
    at: AwareDatetime | None = None
    status: Literal["ok", "failed"]
    signal: Literal["crashed", "heartbeat_lost", "reboot_loop", "service_check_failed", "install_failed"] | None = None
    detail: Annotated[Text, Field(max_length=4000)] | None = None
    rollout: Annotated[Name, Field(max_length=64)] | None = None
    result: ResultIn | None = None

    @field_validator("at")
    @classmethod
    def _at_in_utc(cls, at: datetime | None) -> datetime | None:
        if at is None:
            return None
        try:
            utc = at.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before the first moment a date can hold
            utc = datetime.min.replace(tzinfo=UTC)
        if utc < EARLIEST_HEARTBEAT:
            raise ValueError(
                f"{at.isoformat()} is before {EARLIEST_HEARTBEAT.date().isoformat()}: the agent's clock is wrong"
            )
        return utc


class HeartbeatReceiptOut(BaseModel):
    heartbeats: int
    results: int


def setup(app: FastAPI) -> None:
    engine: Engine = app.state.engine
    board = agents.DirectiveBoard(engine, monotonic=app.state.settings.monotonic)
    tokens: TokenCache = app.state.token_cache  # the app's own, shared with every route
    refresher = agents.Refresher(board, tokens)
    app.state.directive_board = board

    async def start_refresher(app: FastAPI) -> None:
        refresher.start()

    async def stop_refresher(app: FastAPI) -> None:
        await asyncio.to_thread(refresher.stop)

    app.state.startup_hooks.append(start_refresher)
    app.state.shutdown_hooks.append(stop_refresher)
    app.add_middleware(DirectiveFastLane, board=board, tokens=tokens)


@router.get(
    "/agents/{asset}/directive",
    response_model=DirectiveOut,
    responses={200: {"description": "What the asset should do now", "model": DirectiveOut}},
    # The token is read in the body (no dependency on this hot path), so the scheme is declared by hand.
    openapi_extra={"security": [{"token": []}]},
)
async def get_directive(
    asset: Annotated[Name, Path(description="The asset's id in the estate.")], request: Request
) -> Response:
    """Whether ``asset`` may install which update now (its ring is open), must roll back, or waits.

    An agent token may ask only for its own asset; an operator (a proxy in front of a vendor's agents)
    may ask for any. ``Cache-Control`` and ``Retry-After`` say how long the answer holds.
    """
    # Called here rather than as a dependency: this is the hottest path, and a dependency costs more.
    caller = await get_caller(request)
    caller.require_asset(asset)
    board: agents.DirectiveBoard = request.app.state.directive_board
    now = utc_now()
    found = board.answer_from_snapshot(asset, now)
    if found is None:
        found = await run_in_threadpool(board.directive, asset, now)
    body, headers = _directive_body(found)
    return Response(body, media_type="application/json", headers=headers)


def _directive_body(found: Directive) -> tuple[bytes, dict[str, str]]:
    body = DirectiveOut(
        action=found.action.value,
        asset=found.asset_id,
        reason=found.reason,
        retry_after=found.retry_after,
        rollout=found.rollout,
        product=found.product,
        version=found.version,
        ring=found.ring,
    )
    # An order to act is for now only; a wait may be reused until it is worth asking again.
    cache = "no-store" if found.is_actionable else f"private, max-age={found.retry_after}"
    return body.model_dump_json(exclude_none=True).encode(), {
        "Cache-Control": cache,
        "Retry-After": str(found.retry_after),
    }


_DIRECTIVE_PREFIX = "/v1/agents/"
_DIRECTIVE_SUFFIX = "/directive"


class DirectiveFastLane:
    """ASGI middleware answering ``GET /v1/agents/{asset}/directive`` from memory, before routing.

    Why: routing a request through every router and FastAPI's dependency machinery costs more than the
    answer itself, and thousands of agents ask every few seconds. It answers only what needs nothing but
    memory: a bearer token the worker's token table knows, allowed to ask for that asset, and a directive
    the snapshot can give. Anything else (no token, a refusal, a snapshot too old, a cookie) goes on to the
    route above, which gives the same answers and every error, so there is one behaviour, served two ways.
    """

    def __init__(self, app: ASGIApp, *, board: agents.DirectiveBoard, tokens: TokenCache) -> None:
        self.app = app
        self.board = board
        self.tokens = tokens
        # Named for the metrics middleware, which labels requests by their route's template.
        self.route = next(r for r in router.routes if getattr(r, "endpoint", None) is get_directive)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(_DIRECTIVE_PREFIX) and path.endswith(_DIRECTIVE_SUFFIX):
                found = self._answer(scope, path[len(_DIRECTIVE_PREFIX) : -len(_DIRECTIVE_SUFFIX)])
                if found is not None:
                    scope["route"] = self.route
                    body, headers = _directive_body(found)
                    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
                    await send({"type": "http.response.start", "status": 200, "headers": raw})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope, asset: str) -> Directive | None:
        # A name the route would refuse (a NUL, longer than a name) goes to it, for the same 422.
        if not asset or "/" in asset or "\x00" in asset or len(asset) > LONGEST_NAME:
            return None
        token = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                token = token.strip() if scheme.lower() == "bearer" else ""
                break
        caller = self.tokens.cached(token) if token else None
        if caller is None:
            return None
        try:
            caller.require_asset(asset)
        except PermissionDeniedError:
            return None  # the route refuses it, as a problem document
        return self.board.answer_from_snapshot(asset, utc_now())


@router.post("/heartbeats", response_model=HeartbeatReceiptOut)
def post_heartbeats(
    request: Request,
    caller: CallerDep,
    batch: Annotated[list[HeartbeatIn], Body(max_length=MAX_BATCH)],
) -> HeartbeatReceiptOut:
    """Store a batch of heartbeats and install/rollback results.

    An agent token reports only for its own asset: a batch naming another asset is refused whole (403);
    a batch with an invalid item is refused whole (422, with the item's index in the field path);
    either way nothing of it is stored. Operators (a proxy) may report for any asset.
    """
    heartbeats = [_heartbeat(item) for item in batch]
    receipt = record_heartbeats(request.app.state.engine, caller, heartbeats, utc_now())
    return HeartbeatReceiptOut(heartbeats=receipt.heartbeats, results=receipt.results)


def _heartbeat(item: HeartbeatIn) -> Heartbeat:
    result = None
    if item.result is not None:
        result = ReportedResult(
            ReportedOperation(item.result.operation), item.result.status == "succeeded", item.result.detail
        )
    at: datetime | None = item.at
    return Heartbeat(
        asset_id=item.asset,
        status=HeartbeatStatus(item.status),
        at=at,
        signal=FailureSignal(item.signal) if item.signal else None,
        detail=item.detail,
        rollout_id=item.rollout,
        result=result,
    )
