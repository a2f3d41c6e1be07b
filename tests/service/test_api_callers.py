"""Who is calling, on a real server: the per-worker token cache, and the dashboard's cookie on ``/v1``.

- A known token costs no query per request; a token revoked through the API stops at once, one revoked by
  another process (another worker, ``ringfence token revoke``) within the cache's ``check`` seconds.
- The dashboard's cookie authenticates reads on ``/v1``, but a write it authenticates must show it came
  from this site (Origin / Referer / Sec-Fetch-Site), or it is refused with 403 and nothing is written.
  A bearer token needs no such proof: a browser never adds one to a request another site starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ringfence.core.errors import PermissionDeniedError
from ringfence.service.tokens import TOKEN_CHECK_SECONDS, Role, TokenCache, issue_token, list_tokens, revoke_token
from ringfence.store.db import make_engine

if TYPE_CHECKING:
    from conftest import Samples, Tokens
    from live_server import LiveServer


@pytest.fixture
def token_queries(module_server: LiveServer) -> Iterator[list[str]]:
    """Every statement the server runs on ``api_tokens`` while the test runs (an event on its own engine)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "api_tokens" in statement:
            seen.append(statement)

    sa.event.listen(module_server.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(module_server.engine, "before_cursor_execute", record)


def cookie(secret: str) -> dict[str, str]:
    return {"Cookie": f"ringfence_token={secret}"}


def estate_named(samples: Samples, name: str) -> str:
    return samples.ward_estate.replace("estate: ward", f"estate: {name}")


def estate_names(client: httpx.Client, tokens: Tokens) -> list[str]:
    found = client.get("/v1/estates", headers=tokens.headers(tokens.viewer)).json()["estates"]
    return [e["name"] for e in found]


# ------------------------------------------------------------------------------------------ the cache


def test_a_known_token_costs_no_query_per_request(
    client: httpx.Client, module_tokens: Tokens, token_queries: list[str]
) -> None:
    viewer = module_tokens.headers(module_tokens.viewer)
    assert client.get("/v1/estates", headers=viewer).status_code == 200  # seen once: now it is held
    token_queries.clear()
    for _ in range(30):
        assert client.get("/v1/estates", headers=viewer).status_code == 200
    # At most the cache's periodic look at the table (one row of counts), never a look-up per request.
    lookups = [q for q in token_queries if "token_hash =" in q]
    assert lookups == []
    assert len(token_queries) <= 2


def test_a_token_revoked_elsewhere_stops_working_within_the_check_interval(
    client: httpx.Client, module_server: LiveServer, module_tokens: Tokens
) -> None:
    secret = module_tokens.issue("temp-viewer", Role.VIEWER)
    headers = module_tokens.headers(secret)
    assert client.get("/v1/estates", headers=headers).status_code == 200
    # Another process revokes it (its own engine, as `ringfence token revoke` or another worker would).
    elsewhere = make_engine(module_server.database_url)
    try:
        token_id = next(t.token_id for t in list_tokens(elsewhere) if t.name == "temp-viewer")
        revoke_token(elsewhere, token_id)
    finally:
        elsewhere.dispose()
    revoked_at = time.monotonic()
    while client.get("/v1/estates", headers=headers).status_code == 200:
        # The bound the docs promise, with a margin for a loaded machine.
        assert time.monotonic() - revoked_at < TOKEN_CHECK_SECONDS + 3.0, "the revoked token still works"
        time.sleep(0.05)
    answer = client.get("/v1/estates", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["detail"] == "the token is unknown or revoked"


def test_the_cache_is_bounded_and_reads_only_what_changed(db_engine: Engine) -> None:
    ticks = [0.0]
    cache = TokenCache(db_engine, check=2, max_age=60, max_tokens=2, monotonic=lambda: ticks[0])
    a, b, c = (issue_token(db_engine, name=n, role="viewer") for n in ("a", "b", "c"))
    cache.refresh()  # the first look reads the two newest: b, then c
    assert cache.reads == 1
    assert [cache.cached(s) is not None for s in (a.secret, b.secret, c.secret)] == [False, True, True]
    assert cache.authenticate(a.secret).name == "a"  # a query of its own answers a…
    # …which is held from now on; b, held longest, made room.
    assert [cache.cached(s) is not None for s in (a.secret, b.secret, c.secret)] == [True, False, True]
    assert cache.authenticate(b.secret).name == "b"  # a token that made room still works
    # A token issued since is read at the next look, on its own: the table is not read whole again.
    d = issue_token(db_engine, name="d", role="operator")
    ticks[0] = 2.5
    cache.refresh()
    assert cache.reads == 2
    found = cache.cached(d.secret)
    assert found is not None
    assert (found.name, found.role) == ("d", Role.OPERATOR)
    with pytest.raises(PermissionDeniedError, match="unknown or revoked"):
        cache.authenticate("rf_nobody")
    assert cache.cached("rf_nobody") is None


def test_a_revocation_in_this_process_is_forgotten_at_once(db_engine: Engine) -> None:
    ticks = [0.0]
    cache = TokenCache(db_engine, check=2, monotonic=lambda: ticks[0])
    kept = issue_token(db_engine, name="kept", role="viewer")
    gone = issue_token(db_engine, name="gone", role="viewer")
    cache.refresh()
    assert cache.cached(gone.secret) is not None
    revoke_token(db_engine, gone.id)  # the same engine: this process
    assert cache.cached(gone.secret) is None  # no wait for the next look at the table
    assert cache.cached(kept.secret) is not None
    with pytest.raises(PermissionDeniedError, match="unknown or revoked"):
        cache.authenticate(gone.secret)


def test_a_hand_edit_of_the_table_is_seen_within_max_age(db_engine: Engine) -> None:
    ticks = [0.0]
    cache = TokenCache(db_engine, check=2, max_age=60, monotonic=lambda: ticks[0])
    issued = issue_token(db_engine, name="vic", role="viewer")
    assert cache.authenticate(issued.secret).role is Role.VIEWER
    with db_engine.begin() as connection:  # no API changes a role; a person editing the table might
        connection.execute(sa.text("UPDATE api_tokens SET role = 'admin' WHERE id = :id"), {"id": issued.id})
    ticks[0] = 30.0
    assert cache.authenticate(issued.secret).role is Role.VIEWER  # the counts did not change…
    ticks[0] = 61.0
    assert cache.authenticate(issued.secret).role is Role.ADMIN  # …the whole table is read every minute


# ------------------------------------------------------------------------------------------ the cookie on /v1


def test_the_cookie_reads_the_api(client: httpx.Client, module_tokens: Tokens) -> None:
    answer = client.get("/v1/estates", headers=cookie(module_tokens.viewer))
    assert answer.status_code == 200
    assert "estates" in answer.json()


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({}, "the browser did not say which page sent this request (no Origin or Referer)"),
        ({"Origin": "null"}, "the browser did not say which page sent this request"),
        ({"Origin": "https://evil.example"}, "this request was sent from https://evil.example, not from 127.0.0.1"),
        ({"Referer": "https://evil.example/page"}, "this request was sent from https://evil.example/page"),
        ({"Origin": "{own}", "Sec-Fetch-Site": "cross-site"}, "this request was sent from another site (cross-site)"),
    ],
)
def test_a_write_signed_in_by_the_cookie_from_another_site_changes_nothing(
    client: httpx.Client,
    module_server: LiveServer,
    module_tokens: Tokens,
    samples: Samples,
    extra: dict[str, str],
    why: str,
) -> None:
    headers = cookie(module_tokens.operator) | {k: v.replace("{own}", module_server.url) for k, v in extra.items()}
    answer = client.post("/v1/estates", json={"content": estate_named(samples, "forged")}, headers=headers)
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    detail = answer.json()["detail"]
    assert why in detail
    assert "Authorization: Bearer" in detail
    assert detail.endswith("nothing was changed")
    assert "forged" not in estate_names(client, module_tokens)


def test_every_kind_of_write_is_guarded(client: httpx.Client, module_tokens: Tokens) -> None:
    forged = cookie(module_tokens.admin) | {"Origin": "https://evil.example"}
    victim = module_tokens.issue("victim", Role.VIEWER)
    victim_id = next(t["id"] for t in _token_list(client, module_tokens) if t["name"] == "victim")
    assert client.delete(f"/v1/tokens/{victim_id}", headers=forged).status_code == 403
    assert client.get("/v1/estates", headers=module_tokens.headers(victim)).status_code == 200  # not revoked
    made = client.post("/v1/tokens", json={"name": "mallory", "role": "admin"}, headers=forged)
    assert made.status_code == 403
    assert "mallory" not in [t["name"] for t in _token_list(client, module_tokens)]
    beats = client.post("/v1/heartbeats", json=[{"asset": "ws-1", "status": "failed"}], headers=forged)
    assert beats.status_code == 403


def _token_list(client: httpx.Client, tokens: Tokens) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = client.get("/v1/tokens", headers=tokens.headers(tokens.admin)).json()["tokens"]
    return listed


def test_a_write_from_this_sites_own_pages_may_use_the_cookie(
    client: httpx.Client, module_server: LiveServer, module_tokens: Tokens, samples: Samples
) -> None:
    # The explorer at /docs, used by a signed-in person: same-origin fetches carry the cookie and Origin.
    headers = cookie(module_tokens.operator) | {"Origin": module_server.url, "Sec-Fetch-Site": "same-origin"}
    answer = client.post("/v1/estates", json={"content": estate_named(samples, "from-docs")}, headers=headers)
    assert answer.status_code == 201, answer.text
    assert "from-docs" in estate_names(client, module_tokens)


def test_a_bearer_token_needs_no_origin(client: httpx.Client, module_tokens: Tokens, samples: Samples) -> None:
    headers = module_tokens.headers(module_tokens.operator)
    answer = client.post("/v1/estates", json={"content": estate_named(samples, "by-bearer")}, headers=headers)
    assert answer.status_code == 201, answer.text
