"""Authenticate first, cap every body, and refuse bad tokens cheaply (issue 12, items 4 and 5), on a real server.

- An anonymous request is answered 401 before its body is read: a server that would wait for a slow 50 MB
  body answers at once, and an anonymous malformed body is told nothing about its fields (401, not 422),
  on every write route of ``/openapi.json``.
- Bodies are capped by route: a writer's estate over the configured cap, or a big body to an ordinary
  route, is answered 413 (declared or streamed); an estate under the cap is stored as before.
- A token refused once is refused again from memory, without a query (counted with an event on the
  server's own engine); a secret that is not shaped like our tokens costs no query at all.
- A client refused too often is answered 429 with ``Retry-After``; a valid token from that same client is
  never limited, and a token issued after the refusals works at once.

Speed is measured by ``bench/token_flood.py``, not here.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from live_server import LiveServer, ServerProcess, SteppedClock, make_tokens, running_server
from ringfence.api.gate import AuthGate, RefusalLimiter
from ringfence.core.errors import PermissionDeniedError
from ringfence.service.tokens import TOKEN_CHECK_SECONDS, TOKEN_PREFIX, TokenCache, hash_token, issue_token
from ringfence.store.db import make_engine, session_scope
from ringfence.store.tokens import add_token

if TYPE_CHECKING:
    from conftest import Samples

PROBLEM_JSON = "application/problem+json"


def fake_token() -> str:
    """A secret shaped exactly like ours that no server issued."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def server(db_url: str, clock: SteppedClock) -> Iterator[LiveServer]:
    """A server of its own (its refusal counts start at zero) whose caches age only when the test says
    (``clock``), taking estates of up to 1 MiB from writers.

    No controller loop, so the only statements on ``api_tokens`` are the ones requests cause.
    """
    with running_server(db_url, controller=False, monotonic=clock, max_estate_bytes=1024 * 1024) as live:
        yield live


@pytest.fixture
def token_lookups(server: LiveServer) -> Iterator[list[str]]:
    """Every statement that looks a token up by its hash, as the server's own engine runs it."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "api_tokens.token_hash =" in statement:
            seen.append(statement)

    sa.event.listen(server.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(server.engine, "before_cursor_execute", record)


def raw_exchange(url: str, head: str, body: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``head`` and the first part of a body over a socket, send no more, and read what comes back."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pytest.fail(f"no answer within {timeout} s: the server waited for the body ({answer!r})")
        return answer


def write_routes(client: httpx.Client) -> list[tuple[str, str]]:
    """Every operation of ``/openapi.json`` that takes a body, with its path parameters filled in."""
    spec = client.get("/openapi.json").json()
    routes = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                filled = "/".join("x-1" if p.startswith("{") else p for p in path.split("/"))
                routes.append((method.upper(), filled))
    return routes


# ------------------------------------------------------------------------------------ item 4: who first


@pytest.mark.parametrize("token", ["", "unknown"])
def test_a_big_body_without_a_valid_token_is_refused_before_it_is_read(server: LiveServer, token: str) -> None:
    # 50 MB announced, 1 KB sent, and the rest never: answered at once, or the test fails on its timeout.
    authorization = f"Authorization: Bearer {fake_token()}\r\n" if token else ""
    head = (
        "POST /v1/estates HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"{authorization}Content-Length: 50000000\r\n\r\n"
    )
    answer = raw_exchange(server.url, head, b'{"content": "' + b"x" * 1000)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 401 Unauthorized", answer[:300]
    assert b"content-type: application/problem+json" in rest.lower()
    assert b"www-authenticate: bearer" in rest.lower()
    assert b"connection: close" in rest.lower()  # the rest of the body is not received to be thrown away


def test_an_anonymous_malformed_body_learns_nothing_of_its_fields(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        routes = write_routes(client)
        assert len(routes) >= 17
        unknown = {"Authorization": f"Bearer {fake_token()}"}  # looked up once, then refused from memory
        for number, (method, path) in enumerate(routes):
            # Each route from its own address (uvicorn takes X-Forwarded-For from the loopback proxy), so
            # that no address is refused often enough to be told to wait (429): that is another test.
            address = {"X-Forwarded-For": f"192.0.2.{number + 1}"}
            for token in ({}, unknown, {"Authorization": "Bearer nope"}):
                headers = {**address, **token}
                answer = client.request(
                    method,
                    path,
                    content=b'{"not": [the schema',
                    headers={"Content-Type": "application/json", **headers},
                )
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.headers["content-type"] == PROBLEM_JSON
                assert "errors" not in answer.json()


def test_bodies_are_capped_by_route_and_only_writers_may_send_a_large_estate(
    server: LiveServer, samples: Samples
) -> None:
    tokens = make_tokens(server.database_url)
    operator = tokens.headers(tokens.operator)
    viewer = tokens.headers(tokens.viewer)
    padding = "#" + "x" * 99 + "\n"
    within = samples.ward_estate + padding * 6_000  # 600 KB: under the writer's 1 MiB and the viewer's 4 MiB
    beyond = samples.ward_estate + padding * 12_000  # 1.2 MB: over the writer's 1 MiB
    yaml = {"Content-Type": "application/yaml"}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        stored = client.post("/v1/estates", content=within, headers={**operator, **yaml})
        assert stored.status_code == 201, stored.text
        declared = client.post("/v1/estates", content=beyond, headers={**operator, **yaml})
        assert declared.status_code == 413, declared.text
        assert declared.headers["content-type"] == PROBLEM_JSON
        assert "1 MiB" in declared.json()["detail"]

        def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            data = beyond.encode()
            for start in range(0, len(data), 65536):
                yield data[start : start + 65536]

        chunked = client.post("/v1/estates/validate", content=streamed(), headers={**operator, **yaml})
        assert chunked.status_code == 413, chunked.text
        # A viewer may check an estate, but not one this big (4 MiB for checks, a writer's cap above that).
        checked = client.post("/v1/estates/validate", content=within, headers={**viewer, **yaml})
        assert checked.status_code == 200, checked.text
        # Any other route takes a small body, whoever sends it.
        big_note = {"estate": "ward", "update": "x" * 2_000_000}
        assert client.post("/v1/rollouts", json=big_note, headers=operator).status_code == 413
        assert (
            client.post("/v1/tokens", json={"name": "x" * 100_000}, headers=tokens.headers(tokens.admin)).status_code
            == 413
        )


# ------------------------------------------------------------------------------------ item 5: refusing cheaply


def test_a_refused_token_is_refused_again_without_a_query(server: LiveServer, token_lookups: list[str]) -> None:
    unknown = {"Authorization": f"Bearer {fake_token()}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(5):
            answer = client.get("/v1/estates", headers=unknown)
            assert answer.status_code == 401
            assert answer.json()["detail"] == "the token is unknown or revoked"
        assert len(token_lookups) == 1  # the first refusal asked; the next four were answered from memory
        for junk in ("nope", "rf_short", "xx_" + secrets.token_urlsafe(32), TOKEN_PREFIX + "!" * 43):
            assert client.get("/v1/estates", headers={"Authorization": f"Bearer {junk}"}).status_code == 401
        assert len(token_lookups) == 1  # not shaped like our tokens: refused without a lookup


def test_a_client_refused_too_often_is_told_to_wait_but_valid_tokens_never_are(
    server: LiveServer, clock: SteppedClock
) -> None:
    tokens = make_tokens(server.database_url)
    viewer = tokens.headers(tokens.viewer)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v1/estates", headers=viewer).status_code == 200  # the cache now knows the viewer
        answers: list[httpx.Response] = []
        while len(answers) < 300 and (not answers or answers[-1].status_code != 429):
            # Junk (no lookup needed) so that only this address's own limit can answer 429.
            answers.append(client.get("/v1/estates", headers={"Authorization": f"Bearer junk-{len(answers)}"}))
        limited = answers[-1]
        assert limited.status_code == 429
        # 50 at once (then 2 a second): at least 50 plain refusals came first, however slow the machine.
        assert len(answers) > 50
        assert {a.status_code for a in answers[:-1]} == {401}
        assert limited.headers["content-type"] == PROBLEM_JSON
        assert int(limited.headers["retry-after"]) >= 1
        assert "this address was refused too often: try again" in limited.json()["detail"]
        # The same address with a valid token: never limited.
        for _ in range(5):
            assert client.get("/v1/estates", headers=viewer).status_code == 200
        # Nor with a token issued since, once this worker has looked at the table (every TOKEN_CHECK_SECONDS / 2
        # by its refresher; here the test moves its clock, and the refresher's next tick looks).
        fresh = tokens.headers(tokens.issue("fresh-viewer", "viewer"))
        clock.advance(TOKEN_CHECK_SECONDS / 2 + 0.1)
        deadline = time.monotonic() + 5
        while (answer := client.get("/v1/estates", headers=fresh)).status_code != 200:
            assert answer.status_code == 429
            assert time.monotonic() < deadline, "a token issued since is still refused"
            time.sleep(0.05)
        # Another client (behind the trusted proxy: uvicorn takes X-Forwarded-For) is not limited by this one.
        elsewhere = {"Authorization": f"Bearer {fake_token()}", "X-Forwarded-For": "192.0.2.7"}
        assert client.get("/v1/estates", headers=elsewhere).status_code == 401


def test_a_token_issued_after_it_was_refused_works_once_the_table_changed(
    server: LiveServer, clock: SteppedClock, token_lookups: list[str]
) -> None:
    """A secret refused, then issued (by another server, or a restored backup): the remembered refusal
    goes as soon as the cache sees the table change, not when it would have run out (10 s)."""
    secret = fake_token()
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v1/estates", headers=headers).status_code == 401
        assert client.get("/v1/estates", headers=headers).status_code == 401
        assert len(token_lookups) == 1  # remembered
        elsewhere = make_engine(server.database_url)
        try:
            with session_scope(elsewhere) as session:
                add_token(
                    session,
                    name="restored",
                    role="viewer",
                    token_hash=hash_token(secret),
                    asset_id=None,
                    created_at=datetime.now(UTC),
                )
        finally:
            elsewhere.dispose()
        clock.advance(TOKEN_CHECK_SECONDS / 2 + 0.1)  # the cache's next look at the table, well within 10 s
        deadline = time.monotonic() + 5
        while client.get("/v1/estates", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the refusal was remembered past the change of the table"
            time.sleep(0.05)


def test_a_new_token_works_at_once_after_a_refusal(server: LiveServer) -> None:
    tokens = make_tokens(server.database_url)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v1/estates", headers={"Authorization": f"Bearer {fake_token()}"}).status_code == 401
        fresh = tokens.issue("fresh-viewer", "viewer")  # not yet in the cache: looked up, found, kept
        assert client.get("/v1/estates", headers=tokens.headers(fresh)).status_code == 200


def test_the_sign_in_form_refuses_like_v1_without_a_query_for_a_token_refused_a_moment_ago(
    server: LiveServer, token_lookups: list[str]
) -> None:
    """The dashboard's sign-in form is no way around item 5: it refuses through the same cache."""
    unknown = fake_token()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(5):
            refused = client.post("/login", data={"token": unknown, "next": "/"}, headers={"Origin": server.url})
            assert refused.status_code == 401
            assert "unknown or has been revoked" in refused.text
        assert len(token_lookups) == 1  # the first refusal asked; the next four were answered from memory
        for junk in ("nope", "rf_short", TOKEN_PREFIX + "!" * 43):
            junked = client.post("/login", data={"token": junk, "next": "/"}, headers={"Origin": server.url})
            assert junked.status_code == 401
        assert len(token_lookups) == 1  # not shaped like our tokens: refused without a lookup


def test_the_sign_in_form_is_limited_per_address_in_the_same_buckets_as_v1(server: LiveServer) -> None:
    """Guessing tokens at ``POST /login`` is counted against the address as on /v1, by the gate's own limiter:
    past the burst the form answers 429 with ``Retry-After``, /v1 is limited for that address too (one count,
    whichever door), and a token the server knows still signs in from it."""
    tokens = make_tokens(server.database_url)
    origin = {"Origin": server.url}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v1/estates", headers=tokens.headers(tokens.viewer)).status_code == 200  # now cached
        answers: list[httpx.Response] = []
        while len(answers) < 300 and (not answers or answers[-1].status_code != 429):
            # Junk (no lookup needed): only this address's limit can answer 429.
            answers.append(client.post("/login", data={"token": f"junk-{len(answers)}", "next": "/"}, headers=origin))
        limited = answers[-1]
        assert limited.status_code == 429
        assert len(answers) > 50  # the burst (50) first, however slow the machine
        assert {a.status_code for a in answers[:-1]} == {401}
        assert int(limited.headers["retry-after"]) >= 1
        assert "Too many unknown tokens were tried from this address; try again in" in limited.text
        assert 'name="token"' in limited.text  # the sign-in page, to try again from
        # A shaped token never seen is not looked up for this address now: 429 too.
        assert client.post("/login", data={"token": fake_token(), "next": "/"}, headers=origin).status_code == 429
        # The same buckets as /v1's.
        v1 = client.get("/v1/estates", headers={"Authorization": "Bearer junk"})
        assert v1.status_code == 429
        # A token the server knows is never limited.
        signed_in = client.post("/login", data={"token": tokens.viewer, "next": "/"}, headers=origin)
        assert signed_in.status_code == 303
        # Another address (behind the trusted proxy) is not limited by this one.
        elsewhere = {**origin, "X-Forwarded-For": "192.0.2.9"}
        assert client.post("/login", data={"token": "junk", "next": "/"}, headers=elsewhere).status_code == 401


def test_the_access_log_is_off_by_default_and_never_logs_refusals(tmp_path: Path) -> None:
    """A line per refused token would cost more than the refusal (and bury the log): ``ringfence serve`` logs
    no request by default, and with ``--access-log`` (here ``RINGFENCE_ACCESS_LOG``) every one but refusals."""
    quiet = ServerProcess(f"sqlite:///{tmp_path / 'quiet.db'}", tmp_path / "quiet.log")
    logged = ServerProcess(
        f"sqlite:///{tmp_path / 'logged.db'}", tmp_path / "logged.log", env={"RINGFENCE_ACCESS_LOG": "1"}
    )
    try:
        for server in (quiet, logged):
            server.start()
            with httpx.Client(base_url=server.url, timeout=30) as client:
                assert client.get("/v1/health").status_code == 200
                statuses = set()
                for n in range(300):  # past the burst: 401s, then 429s
                    answer = client.get("/v1/estates", headers={"Authorization": f"Bearer junk-{n}"})
                    statuses.add(answer.status_code)
                    if answer.status_code == 429:
                        break
                assert statuses == {401, 429}
                assert client.get("/login").status_code == 200
            server.stop()
        assert "HTTP/1.1" not in quiet.log()
        lines = logged.log_path.read_text().splitlines()
        assert any('"GET /login HTTP/1.1" 200' in line for line in lines), lines
        assert not [line for line in lines if "/v1/estates" in line]
    finally:
        quiet.close()
        logged.close()


def test_a_session_cookie_still_signs_in_to_the_dashboard_and_reads_v1(server: LiveServer) -> None:
    tokens = make_tokens(server.database_url)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        signed_in = client.post(
            "/login", data={"token": tokens.viewer, "next": "/"}, headers={"Origin": server.url}, follow_redirects=False
        )
        assert signed_in.status_code == 303
        assert client.get("/v1/estates").status_code == 200  # the cookie, through the gate
        # A write the cookie authenticates must still come from this site (403 before the body is read).
        foreign = client.post("/v1/estates/validate", content=b"{", headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        # A dashboard form is capped too, before the sign-in page reads it.
        assert (
            client.post("/login", content=b"token=" + b"x" * 200_000, headers={"Origin": server.url}).status_code == 413
        )


def test_a_remembered_refusal_goes_when_the_table_changes(db_engine: Engine) -> None:
    """Even for a token the cache does not hold (it holds the newest ``max_tokens``): the refusal it
    remembered is forgotten at its next look at the changed table, and the token is looked up again."""
    ticks = [0.0]
    cache = TokenCache(db_engine, check=2, max_tokens=1, monotonic=lambda: ticks[0])
    secret = fake_token()
    cache.refresh()
    with pytest.raises(PermissionDeniedError):
        cache.authenticate(secret)
    with session_scope(db_engine) as session:  # issued elsewhere with that very secret, then one more after it
        add_token(
            session,
            name="restored",
            role="viewer",
            token_hash=hash_token(secret),
            asset_id=None,
            created_at=datetime.now(UTC),
        )
    newer = issue_token(db_engine, name="newer", role="viewer")
    ticks[0] = 1.5  # the next look: the cache keeps only the newest token, not the restored one
    cache.refresh()
    assert cache.cached(newer.secret) is not None
    assert cache.cached(secret) is None
    assert cache.authenticate(secret).name == "restored"


def test_unknown_tokens_from_many_addresses_are_looked_up_only_within_the_budget(db_engine: Engine) -> None:
    """A flood from many addresses (each within its own limit) gets 429, not the database, past the worker's
    budget of lookups; a token the cache knows still passes. The gate itself, on a real cache and database,
    its clocks stepped by the test."""
    now = [0.0]
    cache = TokenCache(db_engine, monotonic=lambda: now[0])
    known = issue_token(db_engine, name="known", role="viewer")
    passed: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        passed.append(scope["ringfence.caller"].name)

    budget = RefusalLimiter(burst=10, per_second=1, max_clients=1, monotonic=lambda: now[0])
    gate = AuthGate(app, tokens=cache, lookups=budget, refusals=RefusalLimiter(monotonic=lambda: now[0]))

    async def ask(address: str, secret: str) -> int:
        statuses: list[int] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/v1/estates",
            "headers": [(b"authorization", f"Bearer {secret}".encode())],
            "client": (address, 40000),
        }
        await gate(scope, None, send)
        return statuses[0] if statuses else 200

    async def flood() -> list[int]:
        answers = [await ask(f"198.18.0.{n}", fake_token()) for n in range(1, 31)]
        answers.append(await ask("198.18.0.99", known.secret))
        return answers

    # In a thread of its own: a browser test earlier in the session (Playwright's sync API) leaves an event loop
    # running in this one, where asyncio.run would refuse to start.
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(asyncio.run, flood()).result()
    assert answers[:10] == [401] * 10
    assert answers[10:30] == [429] * 20
    assert cache.lookups == 10
    assert answers[30] == 200
    assert passed == ["known"]
