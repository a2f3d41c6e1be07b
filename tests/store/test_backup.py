"""``ringfence db backup`` / ``db restore``: ringfence's own state copied out and back, on SQLite and PostgreSQL.

SQLite for real (its online backup API, taken while another thread keeps writing to the audit chain: the copy
is a consistent database whose chain verifies). PostgreSQL through pg_dump/pg_restore when they are on PATH.
Restore refuses a database that holds anything unless forced, refuses a backup of a schema revision this
ringfence does not know, migrates an older one, and appends ``database.restore`` to the restored chain.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from live_server import RINGFENCE
from ringfence.core.clock import utc_now
from ringfence.core.errors import ConflictError, InputError
from ringfence.service.backup import backup, restore
from ringfence.service.tokens import issue_token
from ringfence.store.audit import append_audit, verify_audit
from ringfence.store.db import current_revision, head_revision, make_engine, session_scope, upgrade


def sqlite_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def token_names(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(str(n) for n in connection.execute(sa.text("SELECT name FROM api_tokens")).scalars())


def last_action(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(sa.text("SELECT action FROM audit_log ORDER BY seq DESC LIMIT 1")).scalar())


def last_seq(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one())


def chain_ok(engine: Engine) -> bool:
    with session_scope(engine, readonly=True) as session:
        return verify_audit(session).ok


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    engine = sqlite_engine(tmp_path / "ringfence.db")
    try:
        yield engine
    finally:
        engine.dispose()


def test_a_sqlite_backup_taken_while_the_chain_grows_is_consistent(db: Engine, tmp_path: Path) -> None:
    issue_token(db, name="ops", role="admin")
    stop = threading.Event()
    written: list[int] = []

    def keep_writing() -> None:
        while not stop.is_set():
            with session_scope(db) as session:
                for _ in range(20):
                    append_audit(session, actor="t", action="test.write", subject="x", detail={}, at=utc_now())
            written.append(1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while len(written) < 5:  # the chain is growing when the backup starts
            stop.wait(0.01)
        done = backup(db, tmp_path / "copy.db", actor="cli:tester")
    finally:
        stop.set()
        writer.join()
    copy = make_engine(f"sqlite:///{done.path}")
    try:
        assert chain_ok(copy)  # whole transactions only: a torn copy breaks the chain or the database
        assert token_names(copy) == ["ops"]
        assert current_revision(copy) == head_revision() == done.revision
        with copy.connect() as connection:
            actions = list(connection.execute(sa.text("SELECT action FROM audit_log ORDER BY seq")).scalars())
        assert "database.backup" in actions  # audited before it was taken: the backup holds its own record
        assert actions.count("test.write") % 20 == 0
    finally:
        copy.dispose()


def test_restore_refuses_a_database_in_use_unless_forced_and_then_brings_the_backup_back(
    db: Engine, tmp_path: Path
) -> None:
    issue_token(db, name="before", role="admin")
    backup(db, tmp_path / "copy.db", actor="cli:tester")
    issue_token(db, name="after", role="viewer")

    with pytest.raises(ConflictError, match=r"not empty \(2 rows in api_tokens"):
        restore(db, tmp_path / "copy.db", actor="cli:tester")
    assert token_names(db) == ["after", "before"]  # refused: nothing changed

    done = restore(db, tmp_path / "copy.db", actor="cli:tester", force=True)
    assert token_names(db) == ["before"]
    assert done.revision == head_revision()
    assert last_action(db) == "database.restore"
    assert chain_ok(db)  # the restored chain, continued by the restore's own entry


def test_a_backup_from_an_older_ringfence_is_restored_into_an_empty_database_and_migrated(tmp_path: Path) -> None:
    old = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(old, "0008_notifications")
    old.dispose()
    fresh = sqlite_engine(tmp_path / "new.db")
    try:
        done = restore(fresh, tmp_path / "old.db", actor="cli:tester")
        assert done.revision == "0008_notifications"
        assert current_revision(fresh) == head_revision()
        assert "workers" in sa.inspect(fresh).get_table_names()
        assert last_action(fresh) == "database.restore"
    finally:
        fresh.dispose()


def test_a_backup_from_a_newer_ringfence_or_no_backup_at_all_is_refused(db: Engine, tmp_path: Path) -> None:
    copy = backup(db, tmp_path / "copy.db", actor="cli:tester").path
    with sqlite3.connect(copy) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(ConflictError, match="9999_from_the_future, which this ringfence does not know"):
        restore(db, copy, actor="cli:tester", force=True)
    (tmp_path / "junk").write_text("not a database")
    with pytest.raises(InputError, match="not a ringfence backup"):
        restore(db, tmp_path / "junk", actor="cli:tester", force=True)
    with pytest.raises(InputError, match="exists; give --force"):
        backup(db, copy, actor="cli:tester")


def test_the_commands_exit_2_on_bad_input_and_1_on_a_database_in_use(db: Engine, tmp_path: Path) -> None:
    assert RINGFENCE is not None
    env = {**os.environ, "RINGFENCE_DATABASE_URL": str(db.url), "RINGFENCE_ACTOR": "tester"}
    issue_token(db, name="ops", role="admin")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RINGFENCE, "db", *args], env=env, capture_output=True, text=True, timeout=120)

    made = run("backup", str(tmp_path / "copy.db"))
    assert made.returncode == 0, made.stderr
    assert "Backed up" in made.stdout
    missing = run("restore", str(tmp_path / "nope.db"))
    assert missing.returncode == 2
    assert "nope.db: there is no such backup file" in missing.stderr
    assert "Traceback" not in missing.stderr
    in_use = run("restore", str(tmp_path / "copy.db"))
    assert in_use.returncode == 1
    assert "give --force" in in_use.stderr
    # A folder is never a backup file, --force or not: refused before anything is written or recorded.
    folder = tmp_path / "backups"
    folder.mkdir()
    before = last_seq(db)
    for args in (("backup", str(folder)), ("backup", str(folder), "--force"), ("restore", str(folder), "--force")):
        refused = run(*args)
        assert refused.returncode == 2, (args, refused.stderr)
        assert "is a folder" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert list(folder.iterdir()) == []
    assert last_seq(db) == before


@pytest.mark.postgres
def test_postgres_backup_and_restore_through_pg_dump(postgres_url: str, tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        if os.environ.get("RINGFENCE_REQUIRE_SERVICES") == "1":
            pytest.fail("pg_dump/pg_restore are not on PATH, and RINGFENCE_REQUIRE_SERVICES=1")
        pytest.skip("pg_dump/pg_restore are not on PATH")
    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        issue_token(engine, name="before", role="admin")
        done = backup(engine, tmp_path / "ringfence.dump", actor="cli:tester")
        assert done.size > 0
        issue_token(engine, name="after", role="viewer")
        with pytest.raises(ConflictError, match="not empty"):
            restore(engine, done.path, actor="cli:tester")
        assert token_names(engine) == ["after", "before"]
        restored = restore(engine, done.path, actor="cli:tester", force=True)
        assert restored.revision == head_revision()
        assert token_names(engine) == ["before"]
        assert last_action(engine) == "database.restore"
        assert chain_ok(engine)
        issue_token(engine, name="later", role="viewer")  # sequences came back too: no id clash
        assert token_names(engine) == ["before", "later"]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_backup_without_pg_dump_says_what_to_install_and_records_nothing(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        monkeypatch.setenv("PATH", str(tmp_path))  # no PostgreSQL client tools here
        with pytest.raises(InputError, match=r"pg_dump is not on PATH.*postgresql-client"):
            backup(engine, tmp_path / "x.dump", actor="cli:tester")
        assert not (tmp_path / "x.dump").exists()
        assert last_action(engine) != "database.backup"
    finally:
        engine.dispose()
