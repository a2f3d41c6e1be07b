"""The hash-chained audit log: the pure chain (``ringfence.core.audit``) and the log as stored in a database."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ringfence.core.audit import GENESIS_HASH, AuditEntry, chain_entry, entry_hash, verify_chain
from ringfence.core.errors import InputError
from ringfence.store.audit import append_audit, list_audit, verify_audit
from ringfence.store.db import make_engine, session_scope, upgrade

T0 = datetime(2024, 7, 19, 4, 9, 0, 123456, tzinfo=UTC)


def build_chain(length: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for i in range(length):
        entries.append(
            chain_entry(
                entries[-1] if entries else None,
                at=T0 + timedelta(seconds=i),
                actor=f"user-{i % 3}",
                action="rollout.transition",
                subject=f"rollout:r-{i % 4}",
                detail={
                    "from": "applying",
                    "to": "baking",
                    "ring": i,
                    "share": 0.25,
                    "ok": True,
                    "none": None,
                    "assets": ["a-1", "a-2"],
                },
            )
        )
    return entries


# ---------------------------------------------------------------------------------------- the pure chain


def test_a_chain_links_each_entry_to_the_one_before() -> None:
    chain = build_chain(3)
    assert [e.seq for e in chain] == [1, 2, 3]
    assert chain[0].prev_hash == GENESIS_HASH == "0" * 64
    assert chain[1].prev_hash == chain[0].hash
    assert chain[2].prev_hash == chain[1].hash
    report = verify_chain(chain)
    assert (report.ok, report.count, report.first_bad_seq, report.reason) == (True, 3, None, None)
    assert report.last_hash == chain[2].hash


def test_an_empty_log_holds() -> None:
    report = verify_chain([])
    assert (report.ok, report.count, report.last_hash) == (True, 0, GENESIS_HASH)


def test_the_hash_is_sha256_of_the_canonical_json() -> None:
    # Pinned byte for byte: changing the canonical form would orphan every log already written.
    entry = chain_entry(
        None,
        at=datetime(2024, 7, 19, 6, 9, 0, 5, tzinfo=timezone(timedelta(hours=2))),
        actor="ana",
        action="estate.upload",
        subject="estate:city-general",
        detail={"z": [1, "é"], "a": 0.5, "n": None, "b": False},
    )
    canonical = (
        '{"action":"estate.upload","actor":"ana","at":"2024-07-19T04:09:00.000005+00:00",'
        '"detail":{"a":0.5,"b":false,"n":null,"z":[1,"é"]},'
        f'"prev_hash":"{GENESIS_HASH}","seq":1,"subject":"estate:city-general"}}'
    )
    assert entry.hash == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert entry.at == datetime(2024, 7, 19, 4, 9, 0, 5, tzinfo=UTC)


FIELDS_AND_FORGERIES: list[tuple[str, Callable[[AuditEntry], object]]] = [
    ("seq", lambda e: e.seq + 100),
    ("at", lambda e: e.at + timedelta(microseconds=1)),
    ("actor", lambda e: e.actor + "x"),
    ("action", lambda e: "rollout.approve"),
    ("subject", lambda e: "rollout:r-999"),
    ("detail", lambda e: {**e.detail, "ring": 99}),
    ("detail", lambda e: {k: v for k, v in e.detail.items() if k != "ok"}),
    ("detail", lambda e: {**e.detail, "assets": ["a-1"]}),
    ("prev_hash", lambda e: "f" * 64),
    ("hash", lambda e: "0" * 63 + "1"),
]


@pytest.mark.parametrize("position", range(5))
@pytest.mark.parametrize(("field", "forge"), FIELDS_AND_FORGERIES)
def test_changing_any_field_of_any_entry_is_detected(
    position: int, field: str, forge: Callable[[AuditEntry], object]
) -> None:
    chain = build_chain(5)
    chain[position] = dataclasses.replace(chain[position], **{field: forge(chain[position])})
    report = verify_chain(chain)
    assert not report.ok
    assert report.count == position
    assert report.first_bad_seq == chain[position].seq
    assert report.reason == f"entry {chain[position].seq} was changed after it was written"


def test_a_deleted_entry_is_named() -> None:
    chain = build_chain(20)
    del chain[16]  # entry 17
    report = verify_chain(chain)
    assert (report.ok, report.first_bad_seq, report.count) == (False, 18, 16)
    assert report.reason == "entry 18 does not follow entry 16: entry 17 is missing"


def test_several_deleted_entries_are_named() -> None:
    chain = build_chain(10)
    del chain[3:6]  # entries 4, 5, 6
    assert verify_chain(chain).reason == "entry 7 does not follow entry 3: entries 4 to 6 are missing"


def test_deleting_the_first_entry_is_detected() -> None:
    report = verify_chain(build_chain(3)[1:])
    assert report.reason == "entry 2 does not follow the start of the log: entry 1 is missing"


def test_reordered_entries_are_detected() -> None:
    chain = build_chain(5)
    chain[2], chain[3] = chain[3], chain[2]
    report = verify_chain(chain)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert report.reason == "entry 4 comes before entry 3: the entries are out of order"


def test_an_entry_moved_back_is_detected() -> None:
    chain = build_chain(5)
    chain.append(chain.pop(1))  # 1, 3, 4, 5, 2
    assert not verify_chain(chain).ok


def test_a_duplicated_entry_is_detected() -> None:
    chain = build_chain(4)
    chain.insert(2, chain[1])
    assert verify_chain(chain).reason == "entry 2 appears twice"


def test_an_inserted_well_formed_entry_is_detected() -> None:
    # The forger chains a valid-looking entry onto entry 2 and slips it in before the real entry 3.
    chain = build_chain(5)
    forged = chain_entry(chain[1], at=T0, actor="mallory", action="rollout.approve", subject="rollout:r-1", detail={})
    chain.insert(2, forged)
    report = verify_chain(chain)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert report.reason == "entry 3 appears twice"


def test_a_rewritten_and_resealed_entry_breaks_the_next_link() -> None:
    chain = build_chain(5)
    resealed = chain_entry(
        chain[1],
        at=chain[2].at,
        actor="mallory",
        action=chain[2].action,
        subject=chain[2].subject,
        detail=chain[2].detail,
    )
    chain[2] = resealed
    report = verify_chain(chain)
    assert (report.ok, report.first_bad_seq, report.count) == (False, 4, 3)
    assert report.reason is not None
    assert report.reason.startswith("entry 4 does not follow entry 3: it was chained to a different entry")


def test_a_tail_can_be_verified_from_a_trusted_entry() -> None:
    chain = build_chain(6)
    assert verify_chain(chain[3:], after=chain[2]).ok
    assert not verify_chain(chain[4:], after=chain[2]).ok


def test_a_cut_off_end_changes_the_last_hash() -> None:
    # A chain alone cannot show that its end was removed; the last hash, kept elsewhere, can.
    chain = build_chain(6)
    full, cut = verify_chain(chain), verify_chain(chain[:-1])
    assert full.ok
    assert cut.ok
    assert full.last_hash != cut.last_hash


@pytest.mark.parametrize(
    ("detail", "message"),
    [
        ({"x": float("nan")}, "'x' is nan, which JSON cannot hold"),
        ({"when": T0}, "'when' is a datetime"),
        ({"nested": {"a": 1}}, "'nested' is a dict"),
        ({"items": [1, {2}]}, "'items' is a set"),
    ],
)
def test_details_that_json_cannot_round_trip_are_refused(detail: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        chain_entry(None, at=T0, actor="a", action="b", subject="c", detail=detail)  # type: ignore[arg-type]


def test_tuples_become_lists_and_times_must_be_aware() -> None:
    entry = chain_entry(None, at=T0, actor="a", action="b", subject="c", detail={"t": (1, 2)})
    assert entry.detail == {"t": [1, 2]}
    with pytest.raises(InputError, match="has no timezone"):
        chain_entry(None, at=datetime(2024, 1, 1), actor="a", action="b", subject="c", detail={})
    with pytest.raises(InputError, match="non-empty actor"):
        chain_entry(None, at=T0, actor=" ", action="b", subject="c", detail={})


def test_entry_hash_matches_chain_entry() -> None:
    entry = build_chain(2)[1]
    assert entry.hash == entry_hash(
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        detail=entry.detail,
        prev_hash=entry.prev_hash,
    )


# -------------------------------------------------------------------------------------- the stored log


def append_some(engine: Engine, count: int, *, start: int = 0) -> list[AuditEntry]:
    written = []
    for i in range(start, start + count):
        with session_scope(engine) as session:
            written.append(
                append_audit(
                    session,
                    actor="ana",
                    action="drill.run",
                    subject=f"drill:d-{i}",
                    detail={"i": i, "share": i / 7, "tags": ["x", str(i)], "ok": i % 2 == 0, "none": None},
                    at=T0 + timedelta(minutes=i),
                )
            )
    return written


def test_the_stored_log_round_trips_and_verifies(db_engine: Engine) -> None:
    written = append_some(db_engine, 12)
    with session_scope(db_engine, readonly=True) as session:
        stored = list_audit(session)
        report = verify_audit(session)
        assert list_audit(session, after_seq=10) == written[10:]
        assert list_audit(session, subject="drill:d-3") == [written[3]]
        assert list_audit(session, limit=2) == written[:2]
    assert stored == written
    assert all(e.at.tzinfo is UTC for e in stored)
    assert (report.ok, report.count, report.last_hash) == (True, 12, written[-1].hash)


@pytest.mark.parametrize(
    ("column", "sql_value"),
    [
        ("detail", """'{"i": 4, "share": 0.5, "tags": [], "ok": true, "none": null}'"""),
        ("actor", "'mallory'"),
        ("action", "'drill.skip'"),
        ("subject", "'drill:d-x'"),
    ],
)
def test_a_row_changed_with_sql_is_detected(db_engine: Engine, column: str, sql_value: str) -> None:
    append_some(db_engine, 8)
    with db_engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE audit_log SET {column} = {sql_value} WHERE seq = 5")
    with session_scope(db_engine, readonly=True) as session:
        report = verify_audit(session)
    assert (report.ok, report.first_bad_seq, report.count) == (False, 5, 4)
    assert report.reason == "entry 5 was changed after it was written"


def test_a_changed_time_is_detected(db_engine: Engine) -> None:
    append_some(db_engine, 4)
    with session_scope(db_engine) as session:
        session.execute(sa.text("UPDATE audit_log SET at = :at WHERE seq = 2"), {"at": T0 + timedelta(microseconds=1)})
    with session_scope(db_engine, readonly=True) as session:
        assert verify_audit(session).reason == "entry 2 was changed after it was written"


def test_a_row_deleted_with_sql_is_detected(db_engine: Engine) -> None:
    append_some(db_engine, 20)
    with db_engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM audit_log WHERE seq = 17")
    with session_scope(db_engine, readonly=True) as session:
        report = verify_audit(session)
    assert report.reason == "entry 18 does not follow entry 16: entry 17 is missing"


def test_appending_continues_the_stored_chain_across_engines(db_url: str) -> None:
    first = make_engine(db_url)
    upgrade(first)
    append_some(first, 3)
    first.dispose()
    second = make_engine(db_url)
    try:
        more = append_some(second, 2, start=3)
        assert more[0].seq == 4
        with session_scope(second, readonly=True) as session:
            assert verify_audit(session).count == 5
    finally:
        second.dispose()


def test_concurrent_appenders_take_turns(db_engine: Engine) -> None:
    # Without serialisation two appenders read the same last entry and one fails on the seq key.
    workers, each = 4, 15
    failures: list[BaseException] = []
    start = threading.Barrier(workers)

    def append(worker: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(each):
                with session_scope(db_engine) as session:
                    append_audit(session, actor=f"w{worker}", action="x.y", subject=f"s:{i}", detail={"i": i}, at=T0)
        except BaseException as exc:  # reported below, in the test's own thread
            failures.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    with session_scope(db_engine, readonly=True) as session:
        report = verify_audit(session)
        actors = {e.actor for e in list_audit(session)}
    assert (report.ok, report.count) == (True, workers * each)
    assert actors == {f"w{w}" for w in range(workers)}
