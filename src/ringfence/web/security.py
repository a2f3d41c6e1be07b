"""Who is looking at the dashboard, and why its forms cannot be posted from another site.

Signing in
    ``/login`` takes an API token (the same tokens as the API: ``ringfence token create``) and keeps it in the
    ``ringfence_token`` cookie: ``HttpOnly`` (no script can read it), ``SameSite=Strict`` (the browser never
    sends it on a request another site started), ``Secure`` when the dashboard is served over HTTPS, and with
    no expiry, so closing the browser on a shared ward workstation signs out. ``deps.get_caller`` reads the
    cookie, so the dashboard and the API know a caller the same way (and through the same per-worker token
    cache). Agent tokens cannot sign in: an agent speaks for one asset, not for a person.

Cross-site request forgery: two independent locks on every POST
    1. the cookie is ``SameSite=Strict``: a form on another site that posts here arrives without it, as an
       anonymous request, and is refused;
    2. the request must say it came from this site: ``Origin`` (which browsers send with every POST and a
       page cannot forge) must name this server's host; when a browser sends no ``Origin``, ``Referer``
       must; ``Sec-Fetch-Site``, when sent, must be ``same-origin``. A request carrying none of them is
       refused. The check is ``deps.cross_site_reason``, the same one that guards ``/v1`` against a write
       authenticated by this cookie.
    We chose these over a per-session token because the dashboard keeps no server-side session to bind a
    token to (the cookie holds the API token itself), and both checks are done by the browser and the
    server without any state. The host is compared, not the scheme, so a TLS-terminating proxy in front of
    the server does not break the check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request

from ringfence.api.deps import COOKIE, cross_site_reason, get_caller
from ringfence.api.problems import UnauthenticatedError
from ringfence.core.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError, RingfenceError
from ringfence.service.tokens import Caller, Role

__all__ = [
    "COOKIE",
    "LoginRequired",
    "PageCaller",
    "PageError",
    "SameOrigin",
    "may",
    "page_caller",
    "require_same_origin",
    "safe_next",
    "shown_as_page",
]


class LoginRequired(Exception):  # noqa: N818 - an instruction to the browser, not a failure
    """The page needs a signed-in caller; the browser is sent to ``/login`` and back to ``next`` after."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(Exception):
    """A refusal shown as a page (or, for a fragment request, as a fragment) with an HTTP status."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


_STATUS: tuple[tuple[type[RingfenceError], int, str], ...] = (
    (NotFoundError, 404, "Not found"),
    (PermissionDeniedError, 403, "Not allowed"),
    (ConflictError, 409, "Refused"),
    (InputError, 422, "Invalid input"),
)


@contextmanager
def shown_as_page() -> Iterator[None]:
    """Turn a ringfence refusal from the service layer into a :class:`PageError` the dashboard renders."""
    try:
        yield
    except RingfenceError as exc:
        for kind, status, title in _STATUS:
            if isinstance(exc, kind):
                raise PageError(status, title, str(exc)) from exc
        raise PageError(400, "Refused", str(exc)) from exc


def may(caller: Caller, role: Role) -> bool:
    """Whether a person's role reaches ``role`` (agents never do)."""
    return caller.role is not Role.AGENT and caller.role.rank >= role.rank


async def page_caller(request: Request) -> Caller:
    """The signed-in person, or a redirect to the sign-in page. Viewers and up; agents are refused."""
    try:
        caller = await get_caller(request)
    except UnauthenticatedError:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target) from None
    except PermissionDeniedError as exc:  # a form from another site (SameOrigin, run first, says it better)
        raise PageError(403, "Refused", str(exc)) from None
    if not may(caller, Role.VIEWER):
        raise PageError(403, "Not allowed", f"'{caller.name}' is an agent token; the dashboard is for people")
    return caller


PageCaller = Annotated[Caller, Depends(page_caller)]


async def require_same_origin(request: Request) -> None:
    """Refuse a POST that another site could have made (see the module docstring), as a page."""
    reason = cross_site_reason(request, "form")
    if reason is not None:
        raise PageError(403, "Refused", f"{reason}; nothing was changed")


SameOrigin = Depends(require_same_origin)


def safe_next(next_path: str | None) -> str:
    """Where to go after signing in: a path on this site only (never ``//host`` or a full URL)."""
    if not next_path or not next_path.startswith("/") or next_path.startswith("//") or "\\" in next_path:
        return "/"
    return next_path
