"""What the resource modules of the store share: numbering, batching, upserting, and rows into records.

Kept in one place so that every resource numbers, batches and reads its rows the same way; nothing here
knows of a particular resource beyond the table it is handed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Iterator, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from ringfence.store.db import advisory_lock
from ringfence.store.tables import IncidentRow, RolloutRow

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    RecordT = TypeVar("RecordT", bound=DataclassInstance)
else:
    RecordT = TypeVar("RecordT")

SelectT = TypeVar("SelectT", bound=sa.Select[Any])

CHUNK = 1000
"""Rows per executemany batch (psycopg pipelines them). Measured faster than one multi-row VALUES
statement, whose compilation dominates at this size; also the most ids in one ``IN (…)``."""


def chunks(rows: list[Any]) -> Iterator[list[Any]]:
    """``rows`` in batches of :data:`CHUNK`."""
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def next_id(session: Session, row: type[RolloutRow] | type[IncidentRow], prefix: str, namespace: int) -> str:
    """The next free id of ``row``'s table: ``r-000001``, ``inc-000001``, …"""
    # Creators take turns (PostgreSQL advisory lock; SQLite's single writer) so two never pick one id.
    advisory_lock(session, namespace)
    number = session.scalar(sa.select(sa.func.count()).select_from(row)) or 0
    while True:
        number += 1
        candidate = f"{prefix}-{number:06d}"
        if session.get(row, candidate) is None:
            return candidate


def next_seq(
    session: Session, seq: InstrumentedAttribute[int], owner: InstrumentedAttribute[str], owner_id: str
) -> int:
    """The number after the last one ``owner_id`` has in the ``seq`` column (1 for the first)."""
    last = session.scalar(sa.select(sa.func.max(seq)).where(owner == owner_id))
    return (last or 0) + 1


def where_in(
    stmt: SelectT, column: InstrumentedAttribute[Any], values: Collection[Any] | None, kind: type[StrEnum] | None = None
) -> SelectT:
    """``stmt`` narrowed to rows whose ``column`` is one of ``values`` (members of ``kind``, when given, stored
    as their values); unchanged when ``values`` is None."""
    if values is None:
        return stmt
    return stmt.where(column.in_([v if kind is None else kind(v).value for v in values]))


def upsert(session: Session, table: Any, keys: list[str], columns: Collection[str]) -> sa.Executable:
    """An INSERT of ``table`` that, on a row with the same ``keys``, sets ``columns`` to the new values instead."""
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(cast(sa.Table, table))
        return pg.on_conflict_do_update(index_elements=keys, set_={name: pg.excluded[name] for name in columns})
    lite = sqlite.insert(cast(sa.Table, table))
    return lite.on_conflict_do_update(index_elements=keys, set_={name: lite.excluded[name] for name in columns})


@functools.cache
def _field_names(record: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(record))


def record_of(record: type[RecordT], row: object, **read: Any) -> RecordT:
    """A ``record`` with each field the row's attribute of the same name, except the fields given in ``read``.

    ``row`` is an ORM row or a row of plain columns; ``read`` holds the fields that need converting (enums,
    nested records).
    """
    values: Mapping[str, Any] = {name: getattr(row, name) for name in _field_names(record) if name not in read}
    return record(**values, **read)


__all__ = ["CHUNK", "chunks", "next_id", "next_seq", "record_of", "upsert", "where_in"]
