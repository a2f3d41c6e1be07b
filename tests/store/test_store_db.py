"""Engines, migrations, transactions and the per-rollout lock, on real SQLite and PostgreSQL."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from pg_schemas import isolated_postgres_schema, postgres_base_url
from ringfence.core.errors import ConflictError, InputError
from ringfence.core.rollout.state import RolloutPhase, transition
from ringfence.store.audit import list_audit, verify_audit
from ringfence.store.db import (
    LOCK_NAMESPACE_AUDIT,
    LOCK_NAMESPACE_ROLLOUT_IDS,
    SCOPED_KEY_SQL,
    advisory_lock,
    alembic_config,
    current_revision,
    database_url,
    head_revision,
    lock_key,
    make_engine,
    normalise_url,
    rollout_lock,
    session_scope,
    try_rollout_lock,
    upgrade,
)
from ringfence.store.decisions import add_decision, list_decisions
from ringfence.store.estates import add_estate_version, get_estate_version, list_estate_versions
from ringfence.store.locks import RolloutClaims
from ringfence.store.rollouts import apply_transition, create_rollout, get_rollout, list_rollouts
from ringfence.store.tables import metadata

T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)
WAIT = 30.0  # generous bound for "eventually"; a passing run never waits this long


# --------------------------------------------------------------------------------------------- URLs


def test_the_default_database_is_a_file_in_ringfence_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "state" / "home"
    monkeypatch.delenv("RINGFENCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("RINGFENCE_HOME", str(home))
    assert database_url() == f"sqlite:///{home / 'ringfence.db'}"
    assert home.is_dir()


def test_without_ringfence_home_the_database_is_in_the_xdg_data_home_not_the_current_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A server started straight from uvicorn (no CLI to settle the home) uses the same database as the CLI."""
    monkeypatch.delenv("RINGFENCE_DATABASE_URL", raising=False)
    monkeypatch.delenv("RINGFENCE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert database_url() == f"sqlite:///{(tmp_path / 'data' / 'ringfence' / 'ringfence.db').resolve()}"
    assert not (tmp_path / ".ringfence").exists()


def test_the_environment_names_the_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RINGFENCE_DATABASE_URL", "postgresql://rf@db.example/ringfence")
    monkeypatch.setenv("RINGFENCE_HOME", str(tmp_path / "unused"))
    assert database_url() == "postgresql://rf@db.example/ringfence"
    assert not (tmp_path / "unused").exists()
    monkeypatch.setenv("RINGFENCE_DATABASE_URL", "  ")
    assert database_url().startswith("sqlite:///")


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://rf@db/ringfence", "postgresql+psycopg"),
        ("postgres://rf@db/ringfence", "postgresql+psycopg"),
        ("postgresql+psycopg://rf@db/ringfence", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_postgresql_urls_use_psycopg_3(url: str, driver: str) -> None:
    assert normalise_url(url).drivername == driver


def test_other_databases_are_refused() -> None:
    with pytest.raises(InputError, match="names mysql; ringfence keeps its state in SQLite or PostgreSQL"):
        normalise_url("mysql://root:secret@db/rf")
    with pytest.raises(InputError, match="is not a URL"):
        make_engine("not a url")


def test_a_refused_url_does_not_show_its_password() -> None:
    with pytest.raises(InputError) as caught:
        normalise_url("mysql://root:hunter2@db/rf")
    assert "hunter2" not in str(caught.value)


# --------------------------------------------------------------------------------------- migrations


def test_migrations_bring_an_empty_database_to_head(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision() is not None
        upgrade(engine)  # nothing left to do
        assert current_revision(engine) == head_revision()
        tables = set(sa.inspect(engine).get_table_names())
        assert {t.name for t in metadata.sorted_tables} | {"alembic_version"} == tables
    finally:
        engine.dispose()


def _schema_differences(engine: Engine, target: sa.MetaData) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, target))


def test_the_migrated_schema_is_the_declared_one(db_engine: Engine) -> None:
    assert _schema_differences(db_engine, metadata) == []


def test_the_schema_comparison_sees_a_difference(db_engine: Engine) -> None:
    # Shows the check above can fail: declare one more column than the migration created.
    changed = sa.MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        copy = table.to_metadata(changed)
        if table.name == "rollouts":
            copy.append_column(sa.Column("owner", sa.String(200)))
    diffs = _schema_differences(db_engine, changed)
    assert len(diffs) == 1
    assert "owner" in str(diffs[0])


def test_upgrade_does_not_need_an_alembic_ini(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nowhere near the source tree
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrations_render_as_sql_for_a_dba() -> None:
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", "postgresql+psycopg://rf@db/ringfence")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    script = config.output_buffer.getvalue()
    for table in metadata.sorted_tables:
        assert f"CREATE TABLE {table.name} (" in script
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001_initial')" in script


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("rollouts", "phase", "exploded"),
        ("rollouts", "paused_from", "nowhere"),
    ],
)
def test_the_database_refuses_values_outside_the_sets(db_engine: Engine, table: str, column: str, value: str) -> None:
    with session_scope(db_engine) as session:
        version = add_estate_version(
            session,
            name="e",
            content="x",
            format="yaml",
            created_by="ana",
            asset_count=1,
            service_count=1,
            at=T0,
        )
        create_rollout(
            session,
            estate_version_id=version.id,
            update_id="u",
            update_doc={},
            plan=[],
            created_by="ana",
            needs_approval=False,
            at=T0,
            rollout_id="r-1",
        )
    with pytest.raises(IntegrityError), db_engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {table} SET {column} = :v WHERE id = 'r-1'"), {"v": value})


def test_foreign_keys_are_enforced(db_engine: Engine) -> None:
    with pytest.raises(IntegrityError), db_engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO decisions (rollout_id, seq, created_at, kind, payload, status) "
                "VALUES ('r-nowhere', 1, :at, 'apply', '{}', 'pending')"
            ),
            {"at": T0},
        )


# ------------------------------------------------------------------------------------- transactions


def _estate(session: sa.orm.Session) -> int:
    return add_estate_version(
        session,
        name="city-general",
        content="apiVersion: ringfence/v1\n",
        format="yaml",
        created_by="ana",
        asset_count=3,
        service_count=1,
        at=T0,
    ).id


def test_a_scope_commits_when_it_ends(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        version_id = _estate(session)
    with session_scope(db_engine, readonly=True) as session:
        assert get_estate_version(session, version_id).name == "city-general"


def test_no_half_written_state_when_a_repository_call_raises(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout = create_rollout(
            session,
            estate_version_id=_estate(session),
            update_id="u",
            update_doc={},
            plan=[],
            created_by="ana",
            needs_approval=False,
            at=T0,
        )
    stale = rollout.state

    def use_case() -> None:
        # One transaction: a decision, a transition, then the same transition again from a stale state.
        with session_scope(db_engine) as session:
            add_decision(session, rollout.id, kind="start", payload={"ring": 0}, at=T0)
            new, record = transition(stale, RolloutPhase.APPLYING, "start", at=T0)
            apply_transition(session, record, new, actor="controller")
            apply_transition(session, record, new, actor="controller")  # raises: the row moved on

    with pytest.raises(ConflictError, match="was changed by someone else"):
        use_case()
    with session_scope(db_engine, readonly=True) as session:
        assert get_rollout(session, rollout.id).state == stale
        assert list_decisions(session, rollout.id) == []
        assert [e.action for e in list_audit(session)] == ["estate.upload", "rollout.create"]
        assert verify_audit(session).ok


def test_any_exception_rolls_back(db_engine: Engine) -> None:
    def interrupted() -> None:
        with session_scope(db_engine) as session:
            _estate(session)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    with session_scope(db_engine, readonly=True) as session:
        assert list_estate_versions(session) == []


def test_a_read_only_scope_cannot_write(db_engine: Engine) -> None:
    with pytest.raises(DBAPIError, match=r"read-?only"), session_scope(db_engine, readonly=True) as session:
        _estate(session)
    with session_scope(db_engine, readonly=True) as session:
        assert list_estate_versions(session) == []
    # The connection goes back to the pool read-only; the next read-write scope must still write.
    with session_scope(db_engine) as session:
        _estate(session)
    with session_scope(db_engine, readonly=True) as session:
        assert len(list_estate_versions(session)) == 1


def test_a_read_only_scope_cannot_lock(db_engine: Engine) -> None:
    message = "rollout r-1 cannot be locked from a read-only transaction"
    with session_scope(db_engine, readonly=True) as session, pytest.raises(ConflictError, match=message):
        rollout_lock(session, "r-1")


def test_times_come_back_in_utc_with_microseconds(db_engine: Engine) -> None:
    at = datetime(2024, 3, 31, 3, 30, 0, 999999, tzinfo=timezone(timedelta(hours=-5)))
    with session_scope(db_engine) as session:
        version_id = add_estate_version(
            session,
            name="e",
            content="x",
            format="json",
            created_by="ana",
            asset_count=0,
            service_count=0,
            at=at,
        ).id
    with session_scope(db_engine, readonly=True) as session:
        stored = get_estate_version(session, version_id).created_at
    assert stored == at
    assert stored.tzinfo is UTC
    assert stored.microsecond == 999999


def test_naive_times_are_refused(db_engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive time"), session_scope(db_engine) as session:
        add_estate_version(
            session,
            name="e",
            content="x",
            format="json",
            created_by="ana",
            asset_count=0,
            service_count=0,
            at=datetime(2024, 1, 1),
        )


# --------------------------------------------------------------------------------------------- locks


class _Holder:
    """A thread that takes a lock in its own transaction and keeps it until told to commit."""

    def __init__(self, engine: Engine, rollout_id: str, events: list[str], name: str) -> None:
        self.locked = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.backend_pid: int | None = None
        self._thread = threading.Thread(target=self._run, args=(engine, rollout_id, events, name))

    def _run(self, engine: Engine, rollout_id: str, events: list[str], name: str) -> None:
        try:
            with session_scope(engine) as session:
                if engine.dialect.name == "postgresql":
                    self.backend_pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                self.started.set()
                rollout_lock(session, rollout_id)
                events.append(f"{name} locked")
                self.locked.set()
                if not self.release.wait(WAIT):
                    raise TimeoutError(f"{name} was never released")
                events.append(f"{name} commits")
            self.done.set()
        except BaseException as exc:  # surfaced by the test thread
            self.error = exc
            self.started.set()
            self.locked.set()

    def start(self) -> _Holder:
        self._thread.start()
        return self

    def finish(self) -> None:
        self.release.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive()
        assert self.error is None, self.error


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _is_waiting_for_advisory_lock(engine: Engine, backend_pid: int | None) -> bool:
    with engine.connect() as connection:
        waiting = connection.execute(
            sa.text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND locktype = 'advisory' AND NOT granted"),
            {"pid": backend_pid},
        ).scalar_one()
    return bool(waiting)


def test_rollout_lock_serialises_two_controllers_on_postgresql(pg_engine: Engine) -> None:
    events: list[str] = []
    first = _Holder(pg_engine, "r-000001", events, "first").start()
    assert first.locked.wait(WAIT)
    second = _Holder(pg_engine, "r-000001", events, "second").start()
    assert second.started.wait(WAIT)
    # Wait until PostgreSQL itself shows the second transaction queued behind the first.
    deadline = time.monotonic() + WAIT
    while not _is_waiting_for_advisory_lock(pg_engine, second.backend_pid):
        assert second.error is None, second.error
        if time.monotonic() > deadline:
            pytest.fail("the second controller never queued for the lock")
        time.sleep(0.02)
    assert not second.locked.is_set()
    assert events == ["first locked"]
    first.finish()
    assert second.locked.wait(WAIT)
    second.finish()
    assert events == ["first locked", "first commits", "second locked", "second commits"]


def test_other_rollouts_are_not_held_up_on_postgresql(pg_engine: Engine) -> None:
    events: list[str] = []
    first = _Holder(pg_engine, "r-000001", events, "first").start()
    assert first.locked.wait(WAIT)
    try:
        with session_scope(pg_engine) as session:
            assert try_rollout_lock(session, "r-000002") is True
            assert try_rollout_lock(session, "r-000001") is False
    finally:
        first.finish()
    with session_scope(pg_engine) as session:
        assert try_rollout_lock(session, "r-000001") is True


def test_two_schemas_of_one_database_never_share_a_lock(pg_engine: Engine) -> None:
    """PostgreSQL's advisory locks belong to the whole database. Keyed by the rollout id alone, another
    installation (or test worker) in another schema that held r-000002 refused this one its lock on r-000002
    (it did, in CI), and one writing its audit chain held up every writer of this one's."""
    with isolated_postgres_schema(postgres_base_url()) as other_url:
        other = make_engine(other_url)
        upgrade(other)
        theirs_claims, ours_claims = RolloutClaims(other), RolloutClaims(pg_engine)
        try:
            assert theirs_claims.claim("r-000002") is True
            with session_scope(other) as theirs:
                rollout_lock(theirs, "r-000002")
                advisory_lock(theirs, LOCK_NAMESPACE_ROLLOUT_IDS)  # and the audit chain's lock before it
                with session_scope(pg_engine) as ours:
                    assert try_rollout_lock(ours, "r-000002") is True
                    # A lock another schema held would make this wait: fail at once instead of hanging.
                    ours.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                    advisory_lock(ours, LOCK_NAMESPACE_ROLLOUT_IDS)
                assert ours_claims.claim("r-000002") is True
            # Within one schema the claim is still one worker's alone.
            second_worker = RolloutClaims(other)
            try:
                assert second_worker.claim("r-000002") is False
            finally:
                second_worker.close()
        finally:
            theirs_claims.close()
            ours_claims.close()
            other.dispose()


def test_the_lock_key_python_computes_is_the_one_postgresql_takes(pg_engine: Engine) -> None:
    """Tests (and an operator reading ``pg_locks``) find a lock by the key :func:`lock_key` computes."""
    with pg_engine.connect() as connection:
        schema = connection.execute(sa.text("SELECT current_schema()")).scalar_one()
        for name in ["", "r-000001", "inc-000042", "ward/ü/名", "x" * 300]:
            in_sql = connection.execute(sa.text(f"SELECT {SCOPED_KEY_SQL}"), {"name": name}).scalar_one()
            assert in_sql == lock_key(schema, name)
    assert lock_key("a", "b") != lock_key("b", "b")


def test_sqlite_writers_wait_for_each_other(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rf.db'}")
    upgrade(engine)
    try:
        events: list[str] = []
        first = _Holder(engine, "r-000001", events, "first").start()
        assert first.locked.wait(WAIT)
        second = _Holder(engine, "r-000002", events, "second").start()
        # SQLite cannot show a waiter; the order of events can. Were writers not serialised, the
        # second would lock while the first still holds, and the order below would differ.
        assert not second.locked.wait(0.5)
        first.finish()
        assert second.locked.wait(WAIT)
        second.finish()
        assert events == ["first locked", "first commits", "second locked", "second commits"]
        # Readers are not held up by a writer (WAL).
        third = _Holder(engine, "r-000003", events, "third").start()
        assert third.locked.wait(WAIT)
        try:
            with session_scope(engine, readonly=True) as session:
                assert list_rollouts(session) == []
        finally:
            third.finish()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_two_writers_taking_the_audit_and_id_locks_in_either_order_never_deadlock(postgres_url: str) -> None:
    """One transaction audits (an estate version) and then wants the next rollout id, while another numbers a
    rollout and then audits it: with the two locks taken in the order each asks for them, PostgreSQL found a
    deadlock and failed one (it did, in CI). Every lock takes the audit lock first, so the second waits."""
    engine = make_engine(postgres_url)
    audited, numbering = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def audit_then_number() -> None:
        try:
            with session_scope(engine) as session:
                advisory_lock(session, LOCK_NAMESPACE_AUDIT)
                audited.set()
                assert numbering.wait(10)
                time.sleep(0.3)  # the other is now waiting for (or holding) the id lock
                advisory_lock(session, LOCK_NAMESPACE_ROLLOUT_IDS)
        except BaseException as exc:
            failures.append(exc)

    def number_then_audit() -> None:
        try:
            assert audited.wait(10)
            with session_scope(engine) as session:
                numbering.set()
                advisory_lock(session, LOCK_NAMESPACE_ROLLOUT_IDS)
                advisory_lock(session, LOCK_NAMESPACE_AUDIT)
        except BaseException as exc:
            failures.append(exc)

    try:
        threads = [threading.Thread(target=audit_then_number), threading.Thread(target=number_then_audit)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
    finally:
        engine.dispose()
