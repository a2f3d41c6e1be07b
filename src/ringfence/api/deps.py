"""Request dependencies: the database engine, the calling token, and role checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from ringfence.api.problems import UnauthenticatedError
from ringfence.errors import PermissionDeniedError
from ringfence.service.tokens import Caller, Role, authenticate


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_caller(request: Request, engine: EngineDep) -> Caller:
    """The caller behind ``Authorization: Bearer <token>`` (or the dashboard's session cookie)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        token = request.cookies.get("ringfence_token", "")
    if not token:
        raise UnauthenticatedError(
            "send a token: Authorization: Bearer <token> (create one with `ringfence token create`)"
        )
    try:
        return authenticate(engine, token.strip())
    except PermissionDeniedError as exc:
        raise UnauthenticatedError(str(exc)) from None


CallerDep = Annotated[Caller, Depends(get_caller)]


def role(minimum: Role) -> Callable[[Caller], Caller]:
    """A dependency that admits callers with at least ``minimum`` role (reads need viewer, writes operator…)."""

    def check(caller: CallerDep) -> Caller:
        caller.require(minimum)
        return caller

    return check


Viewer = Annotated[Caller, Depends(role(Role.VIEWER))]
Operator = Annotated[Caller, Depends(role(Role.OPERATOR))]
Approver = Annotated[Caller, Depends(role(Role.APPROVER))]
Admin = Annotated[Caller, Depends(role(Role.ADMIN))]
