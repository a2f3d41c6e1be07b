"""Every admin action at the console is in the audit chain, and an anchor catches a log cut back (issue #12, item 8).

``ringfence token create/revoke`` write the entries ``POST``/``DELETE /v1/tokens`` write, through the same service
function, naming ``cli:`` and who acted; ``ringfence db upgrade`` of a database in use is an entry too.
``ringfence audit verify --json`` carries ``last_hash``; ``ringfence audit anchor`` prints ``SEQ:HASH`` and
``audit verify --anchor`` (and ``GET /v1/audit/verify?anchor=``) fail when entries were cut off the log's end below
it or the entry there is another one. Real CLI processes, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from live_server import make_tokens, running_server
from ringfence.core.audit import GENESIS_HASH
from ringfence.store.audit import append_audit, list_audit
from ringfence.store.db import make_engine, session_scope, upgrade

from .conftest import RINGFENCE


def ringfence(*args: str, database_url: str, actor: str | None = "alice") -> subprocess.CompletedProcess[str]:
    assert RINGFENCE is not None
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    env["RINGFENCE_DATABASE_URL"] = database_url
    env.pop("RINGFENCE_ACTOR", None)
    if actor is not None:
        env["RINGFENCE_ACTOR"] = actor
    return subprocess.run([RINGFENCE, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def entries(database_url: str) -> list[tuple[str, str, str]]:
    engine = make_engine(database_url)
    try:
        with session_scope(engine, readonly=True) as session:
            return [(e.actor, e.action, e.subject) for e in list_audit(session)]
    finally:
        engine.dispose()


def create_token(database_url: str, name: str, *extra: str) -> int:
    made = ringfence("token", "create", name, "--role", "operator", "--json", *extra, database_url=database_url)
    assert made.returncode == 0, made.stderr
    return int(json.loads(made.stdout)["id"])


def test_token_create_and_revoke_at_the_console_are_audited(db_url: str) -> None:
    first = create_token(db_url, "night-shift")
    second = create_token(db_url, "day-shift", "--actor", "bob")
    revoked = ringfence("token", "revoke", str(first), database_url=db_url, actor="carol")
    assert revoked.returncode == 0, revoked.stderr

    assert entries(db_url) == [
        ("cli:alice", "token.create", f"token:{first}"),
        ("cli:bob", "token.create", f"token:{second}"),
        ("cli:carol", "token.revoke", f"token:{first}"),
    ]
    # An unknown token: refused (exit 4, not found) and nothing written.
    unknown = ringfence("token", "revoke", "999", database_url=db_url)
    assert unknown.returncode != 0
    assert "no token with id 999" in unknown.stderr
    assert len(entries(db_url)) == 3


def test_the_json_verification_has_the_last_hash_and_the_anchor_matches_it(db_url: str) -> None:
    create_token(db_url, "night-shift")
    verified = ringfence("audit", "verify", "--json", database_url=db_url)
    assert verified.returncode == 0, verified.stderr
    document = json.loads(verified.stdout)
    assert document["ok"] is True
    assert document["entries"] == 1
    anchor = ringfence("audit", "anchor", "--json", database_url=db_url)
    assert anchor.returncode == 0, anchor.stderr
    kept = json.loads(anchor.stdout)
    assert kept == {"seq": 1, "hash": document["last_hash"], "anchor": f"1:{document['last_hash']}"}
    plain = ringfence("audit", "anchor", database_url=db_url)
    assert plain.stdout.strip() == kept["anchor"]


def test_an_anchor_catches_entries_cut_off_the_end(db_url: str) -> None:
    for name in ("a", "b", "c"):
        create_token(db_url, name)
    anchor = ringfence("audit", "anchor", database_url=db_url).stdout.strip()
    assert anchor.startswith("3:")
    # Still holds while the log only grows.
    create_token(db_url, "d")
    assert ringfence("audit", "verify", "--anchor", anchor, database_url=db_url).returncode == 0

    # Someone with the database cuts the last two entries off: the chain that is left still holds.
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM audit_log WHERE seq >= 3"))
    finally:
        engine.dispose()
    assert ringfence("audit", "verify", database_url=db_url).returncode == 0

    caught = ringfence("audit", "verify", "--anchor", anchor, database_url=db_url)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    message = " ".join(caught.stderr.split())
    assert "the log ends at entry 2, but the anchor names entry 3: entries were cut off its end" in message
    as_json = json.loads(ringfence("audit", "verify", "--anchor", anchor, "--json", database_url=db_url).stdout)
    assert (as_json["ok"], as_json["first_bad_seq"]) == (False, 3)


def test_an_anchor_catches_a_log_rewritten_from_its_entry(db_url: str) -> None:
    create_token(db_url, "a")
    create_token(db_url, "b")
    anchor = ringfence("audit", "anchor", database_url=db_url).stdout.strip()
    # Cut entry 2 and chain a different entry 2 (and 3) in its place: a chain that holds, with a different history.
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM audit_log WHERE seq = 2"))
        with session_scope(engine) as session:
            for subject in ("token:2", "token:3"):
                at = datetime.now(UTC)
                append_audit(session, actor="mallory", action="token.create", subject=subject, detail={}, at=at)
    finally:
        engine.dispose()
    assert ringfence("audit", "verify", database_url=db_url).returncode == 0
    caught = ringfence("audit", "verify", "--anchor", anchor, database_url=db_url)
    assert caught.returncode == 1
    assert "entry 2 is not the entry anchored" in " ".join(caught.stderr.split())


def test_a_malformed_anchor_is_refused_naming_the_option(db_url: str) -> None:
    for bad in ("3", "x:" + "a" * 64, "3:" + "g" * 64, "3:abc", "0:" + "1" * 64, "-1:" + "a" * 64):
        refused = ringfence("audit", "verify", "--anchor", bad, database_url=db_url)
        assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
        assert "--anchor" in refused.stderr
        assert "Traceback" not in refused.stderr
    empty = ringfence("audit", "verify", "--anchor", f"0:{GENESIS_HASH}", database_url=db_url)
    assert empty.returncode == 0, empty.stderr


def test_upgrading_a_database_in_use_is_audited(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0005_gate_verdicts")
    finally:
        engine.dispose()
    upgraded = ringfence("db", "upgrade", database_url=db_url, actor="dba")
    assert upgraded.returncode == 0, upgraded.stderr
    assert entries(db_url) == [("cli:dba", "database.upgrade", "database")]
    # Nothing to do: nothing written.
    assert ringfence("db", "upgrade", database_url=db_url).returncode == 0
    assert len(entries(db_url)) == 1


def test_every_command_audits_migrating_a_database_in_use(db_url: str) -> None:
    """Not only `db upgrade`: every command migrates the database first (and the server on start, below)."""
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0005_gate_verdicts")
    finally:
        engine.dispose()
    listed = ringfence("incident", "list", database_url=db_url, actor="carol")
    assert listed.returncode == 0, listed.stderr
    assert entries(db_url) == [("cli:carol", "database.upgrade", "database")]


def test_the_server_audits_migrating_a_database_in_use(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0005_gate_verdicts")  # as if the server's new version met last week's schema
    finally:
        engine.dispose()
    with running_server(db_url, controller=False):
        pass
    assert ("server", "database.upgrade", "database") in entries(db_url)


@pytest.mark.parametrize("cut", [False, True])
def test_the_api_checks_an_anchor_too(db_url: str, cut: bool) -> None:
    with running_server(db_url, controller=False) as server:
        tokens = make_tokens(db_url)
        admin = tokens.headers(tokens.admin)
        with httpx.Client(base_url=server.url, headers=admin, timeout=30) as client:
            for name in ("a", "b"):
                assert client.post("/v1/tokens", json={"name": name, "role": "viewer"}).status_code == 201
            kept = client.get("/v1/audit/anchor").json()
            assert kept["seq"] == 2
            assert kept["anchor"] == f"2:{kept['hash']}"
            if cut:
                with server.engine.begin() as connection:
                    connection.execute(sa.text("DELETE FROM audit_log WHERE seq = 2"))
            checked = client.get("/v1/audit/verify", params={"anchor": kept["anchor"]})
            assert checked.status_code == 200, checked.text
            assert checked.json()["ok"] is not cut
            if cut:
                assert "entries were cut off its end" in checked.json()["reason"]
            bad = client.get("/v1/audit/verify", params={"anchor": "2:nothex"})
            assert bad.status_code == 422
            assert bad.headers["content-type"].startswith("application/problem+json")
            assert bad.json()["errors"][0]["field"] == "anchor"
