"""The gate in front of every route: who is calling, before a byte of the body is read, and how much may be sent.

Why a middleware and not a dependency
    FastAPI reads and validates a route's body before it resolves the route's dependencies, so a token
    checked by a dependency is checked after the body was read and parsed: an anonymous 48 MB POST cost
    about 480 MB before its 401, and an anonymous malformed body was told which fields were wrong (422).
    :class:`AuthGate` is plain ASGI, in front of routing: for every ``/v1`` path but the public ones
    (:data:`PUBLIC_PATHS`) it finds the caller from the ``Authorization: Bearer`` header or the dashboard's
    cookie through the worker's :class:`~ringfence.service.tokens.TokenCache`, and answers 401
    problem+json at once, the body unread, when there is none. The caller it found is left in the scope
    (:data:`CALLER_KEY`), where ``deps.get_caller`` takes it instead of looking the token up again.

What may be sent (:class:`BodyLimits`)
    Every request's body is capped by its route: 64 KiB by default, more for the few routes whose
    documents are bigger (heartbeat batches, incidents' lists of failures, plans and drills), and the
    estate routes' large cap (256 MiB; ``RINGFENCE_MAX_ESTATE_BYTES``) only for writers (operator and up):
    other signed-in people may check an estate of up to 4 MiB; an estate's assurance or policy file 32 MiB, for
    writers only. A declared ``Content-Length`` over the cap
    is answered 413 before anything is read; a body sent without one is counted as it streams and
    answered 413 the moment it passes the cap.

What a refusal costs (issue 12: a flood of fake tokens slowed a real agent's heartbeat from 3 ms to
500 ms)
    A secret without the shape of our tokens is refused without a lookup; a token the cache refused a
    moment ago is refused from memory (both in ``TokenCache``). Each client address may be refused
    ``burst`` times and then ``per_second`` times a second (:class:`RefusalLimiter`); past that it is
    answered 429 with ``Retry-After``, and its unknown tokens are not looked up (but for a small budget
    shared by all such clients, 5 a second, so a token issued a moment ago mostly works at once even
    there). A token the cache knows is never limited: every token used before, or issued before the cache's
    last look at the table (every second). Unknown tokens are looked up at most 20 a second in all (20 at
    once), :data:`LOOKUPS_AT_ONCE` at a time, never more than :data:`LOOKUPS_WAITING` waiting, per worker;
    past that they are answered 429 (``Retry-After: 1``): a flood from many addresses cannot take the
    database, nor the thread pool and connections that heartbeats and directives need.

Measured by ``bench/token_flood.py``: each refusal costs the server about 110–230 µs of CPU in all, against
1.5–2.1 ms when every one was a query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ringfence.api.deps import CALLER_KEY, COOKIE, cross_site_reason
from ringfence.api.headers import ALWAYS, RESOURCE_POLICY
from ringfence.api.problems import PROBLEM_JSON
from ringfence.core.errors import InputError, PermissionDeniedError, Problem
from ringfence.service.tokens import NOT_OURS, Caller, Role, TokenCache, could_be_ours, hash_token

KiB = 1024
MiB = 1024 * KiB

PUBLIC_PATHS = frozenset({"/v1/health"})
"""``/v1`` paths anyone may ask (everything outside ``/v1`` — the dashboard, /docs, /openapi.json, /metrics,
/static — is not gated here: the dashboard's pages send a stranger to /login themselves)."""

_COOKIE = COOKIE.encode()

REFUSALS_KEY = "ringfence.refusals"
"""Where the gate leaves its :class:`RefusalLimiter` in every request's scope, for a route that refuses secrets
itself (the dashboard's token sign-in form): one count per address, whichever door the guesses come by."""

LOOKUPS_AT_ONCE = 2
"""Unknown tokens looked up in the database at the same time, per worker."""
LOOKUPS_WAITING = 256
"""Unknown tokens waiting for a lookup, per worker, before the next one is told to retry (429)."""

BUSY = "too many unknown tokens are being checked now; try again in 1 s (a token this server knows is never limited)"
"""The 429 for an unknown token once this worker looks up as many as it will (``AuthGate.lookups``)."""

ESTATE_ENV = "RINGFENCE_MAX_ESTATE_BYTES"
"""The environment variable that sets :attr:`BodyLimits.estate` (bytes) in ``ringfence serve``."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ESTATE_ROUTES = frozenset({("POST", "/v1/estates"), ("POST", "/v1/estates/validate"), ("POST", "/estates/upload")})
_BATCH_ROUTES = frozenset({("POST", "/v1/heartbeats")})
_DOCUMENT_ROUTES = frozenset({("POST", "/v1/plans"), ("POST", "/v1/rollouts"), ("POST", "/v1/drills")})
_DOCUMENT_PATTERN = re.compile(r"^/v1/incidents(/[^/]+/(restore|notes|close))?$")
_ASSURANCE_PATTERN = re.compile(r"^/v1/estates/[^/]+/(assurance|policy)$")


@dataclass(frozen=True)
class BodyLimits:
    """The largest body each route takes, in bytes (see the module docstring)."""

    default: int = 64 * KiB
    """Every other route: a few fields of JSON, a dashboard form."""
    documents: int = 1 * MiB
    """Plans, rollouts and drills (an update or scenario file) and incidents (their lists of failures)."""
    batch: int = 4 * MiB
    """A batch of heartbeats (up to 5,000, as a proxy in front of a vendor's agents sends them)."""
    estate_check: int = 4 * MiB
    """An estate checked (not stored) by someone who may not store one: about 18,000 assets."""
    estate: int = 256 * MiB
    """An estate uploaded by a writer (operator and up): about a million assets, as the dashboard's."""
    assurance: int = 32 * MiB
    """An assurance or policy file stored by a writer: restore tests for some 100,000 assets."""

    @classmethod
    def from_environment(cls) -> BodyLimits:
        """The defaults, with :attr:`estate` from ``RINGFENCE_MAX_ESTATE_BYTES`` when it is set."""
        raw = os.environ.get(ESTATE_ENV, "").strip()
        if not raw:
            return cls()
        if not raw.isdigit() or int(raw) < 64 * KiB:
            raise InputError([Problem(f"'{raw}' is not a number of bytes of at least 65536", path=(ESTATE_ENV,))])
        return cls(estate=int(raw))

    def for_request(self, method: str, path: str, caller: Caller | None) -> int:
        """The cap for ``method path`` sent by ``caller`` (None: nobody signed in)."""
        route = (method, path.rstrip("/") or "/")
        if route in _ESTATE_ROUTES:
            if caller is None:
                return self.default
            writer = caller.role is not Role.AGENT and caller.role.rank >= Role.OPERATOR.rank
            return self.estate if writer else self.estate_check
        if route in _BATCH_ROUTES:
            return self.batch
        if method == "PUT" and _ASSURANCE_PATTERN.match(route[1]):
            writer = caller is not None and caller.role is not Role.AGENT and caller.role.rank >= Role.OPERATOR.rank
            return self.assurance if writer else self.default
        if route in _DOCUMENT_ROUTES or (method == "POST" and _DOCUMENT_PATTERN.match(route[1])):
            return self.documents
        return self.default


class RefusalLimiter:
    """A token bucket per client address that only refusals draw from.

    Each client may be refused ``burst`` times at once (50) and then ``per_second`` times a second (2); an agent
    polling every few seconds with a revoked token never reaches it, a script trying random tokens does at
    once. Bounded: at most ``max_clients`` buckets (the one least recently refused makes room). Used on the
    event loop only, so it needs no lock.
    """

    def __init__(
        self,
        *,
        burst: float = 50.0,
        per_second: float = 2.0,
        max_clients: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_clients = max_clients
        self.monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}
        """Client → (refusals left, when counted); least recently refused first."""

    def wait(self, client: str) -> float:
        """Seconds before ``client`` may be refused again without being limited (0.0: it may be now)."""
        found = self._buckets.get(client)
        if found is None:
            return 0.0
        left = self._left(found)
        return 0.0 if left >= 1.0 else (1.0 - left) / self.per_second

    def take(self, client: str) -> bool:
        """Count a refusal of ``client``; False (nothing counted) when it has none left."""
        found = self._buckets.pop(client, None)
        left = self.burst if found is None else self._left(found)
        if left < 1.0:
            if found is not None:
                self._buckets[client] = found
            return False
        while len(self._buckets) >= self.max_clients:
            del self._buckets[next(iter(self._buckets))]
        self._buckets[client] = (left - 1.0, self.monotonic())
        return True

    def _left(self, found: tuple[float, float]) -> float:
        left, at = found
        return min(self.burst, left + (self.monotonic() - at) * self.per_second)


def refusals_of(scope: Scope) -> RefusalLimiter:
    """The gate's :class:`RefusalLimiter` (see :data:`REFUSALS_KEY`); the gate is in front of every route."""
    limiter: RefusalLimiter = scope[REFUSALS_KEY]
    return limiter


def client_address(scope: Scope) -> str:
    """Whom a refusal is counted against: the client's address, an IPv6 client by its /64 (one host's share).

    Behind a reverse proxy, uvicorn puts the address from ``X-Forwarded-For`` here when the proxy is
    trusted (``FORWARDED_ALLOW_IPS``; 127.0.0.1 by default).
    """
    client = scope.get("client")
    host = str(client[0]) if client else ""
    if ":" in host:
        try:
            return str(ipaddress.IPv6Network(f"{host}/64", strict=False))
        except ValueError:
            return host
    return host


@dataclass(frozen=True)
class Refusal:
    status: int
    title: str
    detail: str
    retry_after: int = 0


class AuthGate:
    """ASGI middleware: authenticate ``/v1`` first and cap every body (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: TokenCache,
        routes: Iterable[Any] = (),
        limits: BodyLimits | None = None,
        max_estate_bytes: int | None = None,
        refusals: RefusalLimiter | None = None,
        probes: RefusalLimiter | None = None,
        lookups: RefusalLimiter | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.limits = limits or BodyLimits.from_environment()
        if max_estate_bytes is not None:
            self.limits = replace(self.limits, estate=max_estate_bytes)
        # Real time, not the cache's clock (which tests step): these are rates of requests.
        self.refusals = refusals or RefusalLimiter()
        # Lookups for clients past their limit: a few a second in all, so that a token issued a moment ago
        # mostly works at once for such a client too, while a flood of random tokens gets none to speak of.
        self.probes = probes or RefusalLimiter(burst=5.0, per_second=5.0, max_clients=1)
        self._lookups = asyncio.Semaphore(LOOKUPS_AT_ONCE)
        self._waiting = 0
        # Lookups of unknown tokens in all, for clients within their limit: enough for every agent and
        # person with a new or mistyped token; a flood from many addresses gets 429 past it, not the database.
        self.lookups = lookups or RefusalLimiter(burst=20.0, per_second=20.0, max_clients=1)
        # The routes, so a refusal is counted under its route's template by the metrics middleware.
        self._all_routes = routes
        self._routes: list[tuple[re.Pattern[str], APIRoute]] = []
        self._route_of: dict[str, Any] = {}
        self._answers: dict[Refusal, tuple[list[tuple[bytes, bytes]], bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        caller: Caller | None = None
        scope[REFUSALS_KEY] = self.refusals
        if path.startswith("/v1/") and path not in PUBLIC_PATHS:
            found = await self._identify(scope)
            if isinstance(found, Refusal):
                route = self._route(scope)
                if route is None and self._routes:
                    # No such route: the router's 404 (it reads no body) is the truer answer.
                    await self.app(scope, receive, send)
                    return
                if route is not None:
                    scope["route"] = route  # the metrics middleware labels the refusal by its route's template
                await self._refuse(scope, send, found)
                return
            caller = found
            scope[CALLER_KEY] = caller
        elif (method, path) in _ESTATE_ROUTES:
            # The dashboard's upload: its page sends a stranger to /login; the gate only sizes the cap.
            found = await self._identify(scope, count=False)
            caller = None if isinstance(found, Refusal) else found
        length = _body_length(scope)
        if length is None:
            await self.app(scope, receive, send)
            return
        cap = self.limits.for_request(method, path, caller)
        if length > cap:
            await self._refuse(scope, send, _too_large(cap))
            return
        await self._capped(scope, receive, send, cap)

    # ------------------------------------------------------------------------------------- who calls

    async def _identify(self, scope: Scope, *, count: bool = True) -> Caller | Refusal:
        token, from_cookie = _presented(scope)
        client = client_address(scope)
        if not token:
            return self._refusal(
                client, "send a token: Authorization: Bearer <token> (create one with `ringfence token create`)", count
            )
        if not could_be_ours(token):
            return self._refusal(client, NOT_OURS, count)
        digest = hash_token(token)
        tokens = self.tokens
        if not tokens.is_fresh:
            await run_in_threadpool(tokens.refresh)  # one look at the table, shared by every request
        caller = tokens.known(digest)
        if caller is None:
            if tokens.recently_refused(digest):
                return self._refusal(client, "the token is unknown or revoked", count)
            if self.refusals.wait(client) > 0.0:
                if not self.probes.take(""):
                    return self._refusal(client, "the token is unknown or revoked", count)
            elif not self.lookups.take(""):
                return Refusal(429, "Too many requests", BUSY, 1)
            found = await self._look_up(token)
            if isinstance(found, Refusal):
                if found.status == 401:
                    return self._refusal(client, found.detail, count)
                return found
            caller = found
        if from_cookie and scope["method"] not in _SAFE_METHODS:
            reason = cross_site_reason(Request(scope))
            if reason is not None:
                return Refusal(
                    403,
                    "Forbidden",
                    f"{reason}; a change signed in with the dashboard's cookie must come from this site's own "
                    "pages (send Authorization: Bearer <token> from other clients); nothing was changed",
                )
        return caller

    async def _look_up(self, token: str) -> Caller | Refusal:
        """Ask the database about a token the cache does not know, a few at a time."""
        if self._waiting >= LOOKUPS_WAITING:
            return Refusal(429, "Too many requests", BUSY, 1)
        self._waiting += 1
        try:
            async with self._lookups:
                return await run_in_threadpool(self.tokens.authenticate, token)
        except PermissionDeniedError as exc:
            return Refusal(401, "UnauthenticatedError", str(exc))
        finally:
            self._waiting -= 1

    def _refusal(self, client: str, detail: str, count: bool) -> Refusal:
        """A 401, counted against ``client``; a 429 when the client has been refused too often already."""
        if not count or self.refusals.take(client):
            return Refusal(401, "UnauthenticatedError", detail)
        wait = max(1, math.ceil(self.refusals.wait(client)))
        return Refusal(
            429,
            "Too many requests",
            f"{detail}; this address was refused too often: try again in {wait} s (a valid token is never limited)",
            wait,
        )

    # ------------------------------------------------------------------------------------- answering

    async def _refuse(self, scope: Scope, send: Send, refusal: Refusal) -> None:
        # A flood is answered with a handful of different refusals: each is encoded once.
        answer = self._answers.get(refusal)
        if answer is None:
            answer = _encoded(refusal)
            if len(self._answers) < 256:
                self._answers[refusal] = answer
        headers, body = answer
        if _body_length(scope) not in (None, 0):
            # A body is on its way that will never be read: close rather than receive it to throw it away.
            headers = [*headers, (b"connection", b"close")]
        await send({"type": "http.response.start", "status": refusal.status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})

    def _route(self, scope: Scope) -> Any:
        """The route ``scope``'s path names (None for none), remembered for the paths asked most recently."""
        path: str = scope["path"]
        if path in self._route_of:
            return self._route_of[path]
        if not self._routes:
            self._routes = [(r.path_regex, r) for r in _api_routes(self._all_routes) if r.path.startswith("/v1/")]
        found = next((route for regex, route in self._routes if regex.match(path)), None)
        if len(self._route_of) >= 4096:
            del self._route_of[next(iter(self._route_of))]
        self._route_of[path] = found
        return found

    async def _capped(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        """Run the app with a receive that answers 413 (and tells the app the client left) past ``cap``."""
        received = 0
        answered = False
        started = False

        async def capped_receive() -> Message:
            nonlocal received, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    answered = True
                    if not started:
                        await self._refuse(scope, send, _too_large(cap))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 went out; whatever the app says now is not sent
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not answered:
                raise
            # The app gave up on a body it was told was cut off; the 413 has been sent.


def _encoded(refusal: Refusal) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of ``refusal`` as problem+json."""
    body = json.dumps(
        {"type": "about:blank", "title": refusal.title, "status": refusal.status, "detail": refusal.detail}
    ).encode()
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    # The browser's protections, as SecurityHeaders would add them: a refusal (the answer a flood gets) then
    # passes through it with nothing to add.
    headers += [(name.encode(), value.encode()) for name, value in ALWAYS.items()]
    headers.append((b"content-security-policy", RESOURCE_POLICY.encode()))
    if refusal.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if refusal.retry_after:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    return headers, body


def _too_large(cap: int) -> Refusal:
    shown = f"{cap // MiB} MiB" if cap >= MiB else f"{cap // KiB} KiB"
    return Refusal(413, "Content too large", f"the body is larger than this route takes ({shown})")


def _presented(scope: Scope) -> tuple[str, bool]:
    """The token a request carries (``""`` for none) and whether it came in the cookie (``deps.presented_token``)."""
    cookie = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip() if scheme.lower() == "bearer" else ""
            if token:
                return token, False
        elif name == b"cookie":
            cookie = value
    if cookie:
        for part in cookie.split(b";"):
            key, _, value = part.strip().partition(b"=")
            if key == _COOKIE:
                return value.decode("latin-1").strip().strip('"'), True
    return "", False


def _body_length(scope: Scope) -> int | None:
    """The declared ``Content-Length``; -1 for a body of unknown length (chunked); None for no body at all."""
    length: int | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
        if name == b"transfer-encoding":
            length = -1
    return length


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute under ``routes``, included routers' too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (inner := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(inner.routes)
        elif (children := getattr(route, "routes", None)) is not None:
            yield from _api_routes(children)
