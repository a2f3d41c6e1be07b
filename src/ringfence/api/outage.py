"""What every route answers while the database cannot be reached: 503 with ``Retry-After``, never a bare 500.

A database outage is not a bug of the request: the client should come back, and a person should be told
what is wrong in words. So an error of SQLAlchemy that means "no database to talk to" (the connection was
refused, dropped or timed out, the pool had none to give, SQLite could not open or lock its file) is answered

* on the API (``/v1/…``, ``/openapi.json``, ``/metrics``) as ``503`` ``application/problem+json``;
* on the dashboard as a ``503`` HTML page saying the database is unreachable, which looks again by itself;

both with ``Retry-After``, and logged once per request with the driver's reason. The reason itself is not
sent to the caller (it names hosts and ports); ``/v1/health`` says it to whoever runs the service.

Two places catch it, one answer: a handler for errors raised by a route (so the middlewares around the
routes, the metrics among them, see a 503 response), and :class:`DatabaseOutageGuard` around the whole app
for those raised before routing (the gate looks tokens up in the database).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ringfence.api.problems import PROBLEM_JSON

log = logging.getLogger(__name__)

OUTAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
"""SQLAlchemy's errors for a database that cannot be reached or cannot answer now, as opposed to a bad query."""

RETRY_AFTER_SECONDS = 10
"""How long a client is asked to wait before trying again (``Retry-After``)."""

API_PREFIXES = ("/v1/",)
API_PATHS = frozenset({"/openapi.json", "/metrics"})

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{retry}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Database unreachable · ringfence</title>
<link rel="stylesheet" href="/static/ringfence.css">
</head>
<body>
<main>
<h1>The database is unreachable</h1>
<p>ringfence cannot reach its database just now, so this page cannot be shown. Nothing you did caused it.</p>
<p>This page will look again in {retry} seconds. If it stays like this, tell whoever runs ringfence:
<code>/v1/health</code> says why the database cannot be reached.</p>
</main>
</body>
</html>
"""


def database_outage(exc: BaseException) -> BaseException | None:
    """The error among ``exc``, what caused it and any group it is in that means the database is out; else None."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 50:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OUTAGE_ERRORS):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return None


def outage_reason(error: BaseException) -> str:
    """The driver's own words for an outage, on one line (what ``/v1/health`` and the log say)."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    text = lines[0].strip() if lines else type(original).__name__
    return text[:300]


def outage_response(path: str) -> Response:
    """The 503 for a request to ``path`` while the database is out: problem+json for the API, a page otherwise."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    if path.startswith(API_PREFIXES) or path in API_PATHS:
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": "Database unreachable",
            "status": 503,
            "detail": "the database cannot be reached, so this request could not be answered; "
            f"try again in {RETRY_AFTER_SECONDS} s (GET /v1/health says why)",
        }
        return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON, headers=headers)
    return HTMLResponse(_PAGE.format(retry=RETRY_AFTER_SECONDS), status_code=503, headers=headers)


def _log(request_path: str, error: BaseException) -> None:
    log.warning("database unreachable while answering %s: %s", request_path, outage_reason(error))


class DatabaseOutageGuard:
    """ASGI middleware around the whole app: an outage error that escaped everything else becomes the 503.

    Only before the response has started; once it has, the status is sent and the error goes on as it was.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            error = database_outage(exc)
            if error is None or started:
                raise
            _log(scope["path"], error)
            await outage_response(scope["path"])(scope, receive, send)


def install_outage_handling(app: FastAPI) -> None:
    """Answer database outages with a 503 on every route (see the module docstring). Call it after the other
    middlewares are added, so the guard is outside them."""

    async def route_outage(request: Request, exc: Exception) -> Response:
        _log(request.url.path, exc)
        return outage_response(request.url.path)

    for kind in OUTAGE_ERRORS:
        app.add_exception_handler(kind, route_outage)
    app.add_middleware(DatabaseOutageGuard)


__all__ = [
    "OUTAGE_ERRORS",
    "RETRY_AFTER_SECONDS",
    "DatabaseOutageGuard",
    "database_outage",
    "install_outage_handling",
    "outage_reason",
    "outage_response",
]
