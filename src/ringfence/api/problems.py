"""Errors as RFC 9457 problem details (``application/problem+json``), mapped in one place.

Every ringfence error becomes a problem with a status; input problems carry their field paths in ``errors``.

Bad input is refused where it is read, by the types of the API (``ringfence.api.schemas``: bounded ids, names,
texts without NUL) and of the files (bounded durations and counts, nesting). A last-resort handler answers what
still slips through and can only come from what was sent (a nesting that exhausts a parser's stack, a number too
large for a date or the database, a text the database cannot store) with a 422 instead of a 500, and logs it:
each one logged is a validation still to add.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ringfence.core.errors import (
    ConflictError,
    DriverError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    RingfenceError,
    format_path,
)

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("ringfence.api")

INPUT_FAULTS: list[tuple[type[Exception], str]] = [
    (RecursionError, "the input is nested too deeply to be read"),
    (OverflowError, "a number or date in the input is out of range"),
    (UnicodeError, "the input is not valid UTF-8 text"),
    (DataError, "a value does not fit what the database stores (a number too large, a text too long or holding a NUL)"),
]
"""Errors that only what a caller sent can cause, and the sentence a 422 answers them with (see the module's
docstring). A bare ValueError is not among them: raised by our own code, it is a bug, and stays a 500."""

STATUS: list[tuple[type[Exception], int, str]] = [
    (InputError, 422, "Invalid input"),
    (NotFoundError, 404, "Not found"),
    (PermissionDeniedError, 403, "Forbidden"),
    (ConflictError, 409, "Conflict"),
    (DriverError, 502, "Driver failed"),
    (RingfenceError, 400, "Refused"),
]


def problem_response(status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _problem_entries(problems: tuple[Problem, ...]) -> list[dict[str, Any]]:
    return [
        {"field": p.field or None, "line": p.line, "source": p.source, "message": p.message, "detail": str(p)}
        for p in problems
    ]


class UnauthenticatedError(RingfenceError):
    """No bearer token, or one the server does not know: HTTP 401."""


def install_problem_handlers(app: FastAPI) -> None:
    async def ringfence_error(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, UnauthenticatedError):
            return problem_response(401, "UnauthenticatedError", str(exc))
        for kind, status, title in STATUS:
            if isinstance(exc, kind):
                errors = _problem_entries(exc.problems) if isinstance(exc, InputError) else None
                return problem_response(status, title, str(exc), errors)
        return problem_response(500, "Internal error", "unexpected error")

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = []
        for error in exc.errors():
            path = tuple(part for part in error["loc"] if part != "body")
            # A validator's own sentence is shown as written, without pydantic's "Value error, " before it.
            message = error["msg"].removeprefix("Value error, ")
            errors.append({"field": format_path(path) or None, "message": message, "type": error["type"]})
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        return problem_response(422, "Invalid input", detail, errors)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(exc.status_code, str(exc.detail), str(exc.detail))

    async def input_fault(request: Request, exc: Exception) -> JSONResponse:
        detail = next(sentence for kind, sentence in INPUT_FAULTS if isinstance(exc, kind))
        # Logged with its traceback: the answer is right, but the input should have been refused where it was read.
        log.warning("%s %s: input refused by the last-resort handler", request.method, request.url.path, exc_info=exc)
        return problem_response(422, "Invalid input", detail)

    app.add_exception_handler(RingfenceError, ringfence_error)
    for kind, _ in INPUT_FAULTS:
        app.add_exception_handler(kind, input_fault)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
