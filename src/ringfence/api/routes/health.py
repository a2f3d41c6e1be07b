"""``/v1/health``: whether this server can do its work, its database and its controller loop. No token needed.

``200`` when the database answers and (if this server runs it) the controller loop is driving rollouts;
``503`` problem+json naming what is wrong otherwise: the database unreachable, with the driver's reason, or
the loop stopped or stalled. A load balancer or a monitor asks it every few seconds, so the database check
is one cheap query (:func:`~ringfence.store.health.ping_database`) and bounded in time: a database that does
not answer within :data:`DATABASE_TIMEOUT` seconds is reported unreachable, and while that check still hangs
no second one is started (it would only pile up behind the first).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from ringfence import __version__
from ringfence.api.outage import OUTAGE_ERRORS, RETRY_AFTER_SECONDS, outage_reason
from ringfence.api.problems import PROBLEM_JSON
from ringfence.store.health import ping_database

if TYPE_CHECKING:
    from ringfence.service.runner import ControllerLoop

router = APIRouter(tags=["service"])

DATABASE_TIMEOUT = 2.0
"""Seconds the database has to answer the health check before it is reported unreachable."""


@dataclass(frozen=True)
class DatabaseHealth:
    ok: bool
    reason: str | None
    """Why the database is unreachable, in the driver's words; None when it answered."""
    seconds: float
    """How long the check took (or has been waiting)."""

    def document(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "unreachable",
            "reason": self.reason,
            "seconds": round(self.seconds, 4),
        }


class DatabaseProbe:
    """Checks the database from one thread of its own, one check at a time, each waited for ``timeout`` seconds."""

    def __init__(self, engine: Engine, *, timeout: float = DATABASE_TIMEOUT) -> None:
        self.engine = engine
        self.timeout = timeout
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ringfence-health")
        self._running: Future[None] | None = None
        self._started = 0.0

    async def check(self) -> DatabaseHealth:
        now = time.monotonic()
        running = self._running
        if running is not None and not running.done():
            # The last check still hangs: that is the answer, without starting another behind it.
            return DatabaseHealth(False, f"the database has not answered for {now - self._started:.1f} s", 0.0)
        self._started = now
        running = self._running = self._thread.submit(ping_database, self.engine, timeout=self.timeout)
        answer = asyncio.wrap_future(running)
        # Should it end after the wait gave up, its error is read here, not reported as never retrieved.
        answer.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            await asyncio.wait_for(asyncio.shield(answer), self.timeout)
        except TimeoutError:
            return DatabaseHealth(False, f"the database did not answer within {self.timeout:g} s", self.timeout)
        except OUTAGE_ERRORS as exc:
            return DatabaseHealth(False, outage_reason(exc), time.monotonic() - now)
        return DatabaseHealth(True, None, time.monotonic() - now)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def setup(app: FastAPI) -> None:
    """One probe per app, closed when the app stops."""
    app.state.database_probe = DatabaseProbe(app.state.engine)

    async def close_probe(app: FastAPI) -> None:
        app.state.database_probe.close()

    app.state.shutdown_hooks.append(close_probe)


@router.get(
    "/v1/health",
    responses={
        503: {
            "description": "The database is unreachable, or the controller loop is not driving rollouts "
            "(problem+json, saying why)"
        }
    },
)
async def health(request: Request) -> JSONResponse:
    """The process answers, its database answers a query within 2 s, and, when this server runs the controller
    loop, the loop is driving rollouts: its thread is alive and its last turn ended within max(3 × its interval,
    30 s). Otherwise 503, naming what is wrong and why (``database.reason``, ``controller``). No token needed."""
    app = request.app
    database = await app.state.database_probe.check()
    loop: ControllerLoop | None = getattr(app.state, "controller_loop", None)
    # None: switched off (`ringfence serve --no-controller`), rollouts are driven elsewhere.
    report = None if loop is None else loop.health()
    controller = None if report is None else report.document()
    found = {"version": __version__, "database": database.document(), "controller": controller}
    problems = []
    if not database.ok:
        problems.append(f"the database is unreachable: {database.reason}")
    if report is not None and report.problem is not None:
        problems.append(report.problem)
    if not problems:
        return JSONResponse({"status": "ok", **found})
    body = {
        "type": "about:blank",
        "title": "Database unreachable" if not database.ok else "Controller loop not driving rollouts",
        "status": 503,
        "detail": "; ".join(problems),
        **found,
    }
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON, headers=headers)
