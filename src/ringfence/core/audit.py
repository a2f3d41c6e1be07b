"""The audit log as a hash chain: each entry seals its own fields and the hash of the entry before it.

Changing, deleting, inserting or reordering any entry breaks the chain at that point, and
:func:`verify_chain` says where in a sentence. What a chain cannot show on its own is that entries were
cut off its end; keep :attr:`ChainReport.last_hash` somewhere else (a ticket, a log shipper) to anchor it.

The hash is sha256 over a canonical JSON of every field but ``hash``: keys sorted, no spaces, UTF-8,
times as ISO-8601 in UTC with microseconds. The first entry's ``prev_hash`` is 64 zeros.

Pure: hashlib and json only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias

from ringfence.core.errors import InputError

AuditValue: TypeAlias = "str | int | float | bool | Sequence[AuditValue] | None"
"""What an entry's detail may hold: JSON scalars and (nested) lists of them."""

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry of a chain."""


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log. ``detail`` holds plain JSON values (lists, never tuples)."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: Mapping[str, AuditValue]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainReport:
    """The outcome of :func:`verify_chain`. ``reason`` is a sentence when ``ok`` is false."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None
    last_hash: str = GENESIS_HASH

    def __str__(self) -> str:
        if self.ok:
            return f"the audit log holds: {self.count} entries chained, last hash {self.last_hash}"
        return f"the audit log does not hold: {self.reason}"


def chain_entry(
    prev: AuditEntry | None,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, AuditValue],
) -> AuditEntry:
    """The entry that follows ``prev`` (or starts a chain when ``prev`` is None), sealed with its hash."""
    for name, value in (("actor", actor), ("action", action), ("subject", subject)):
        if not value.strip():
            raise InputError(f"an audit entry needs a non-empty {name}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise InputError(f"the audit time {at.isoformat()} has no timezone; give it in UTC")
    clean = _plain_detail(detail)
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS_HASH if prev is None else prev.hash
    at_utc = at.astimezone(UTC)
    digest = entry_hash(
        seq=seq, at=at_utc, actor=actor, action=action, subject=subject, detail=clean, prev_hash=prev_hash
    )
    return AuditEntry(
        seq=seq,
        at=at_utc,
        actor=actor,
        action=action,
        subject=subject,
        detail=clean,
        prev_hash=prev_hash,
        hash=digest,
    )


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, AuditValue],
    prev_hash: str,
) -> str:
    """sha256 (hex) of the canonical JSON of an entry's fields, ``hash`` excluded."""
    document = {
        "seq": seq,
        "at": _canonical_time(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_chain(entries: Iterable[AuditEntry], *, after: AuditEntry | None = None) -> ChainReport:
    """Check that ``entries``, in the order given, form an unbroken chain.

    From the start of the log (``after`` None) the first entry must be entry 1 with the genesis
    ``prev_hash``; to check a tail, pass the last entry already trusted as ``after``. Streams: holds
    one entry of lookahead, so a log of any length can be checked.
    """
    stream = _Peekable(iter(entries))
    prev = after
    count = 0
    for entry in stream:
        problem = _problem(prev, entry, stream.peek())
        if problem is not None:
            return ChainReport(ok=False, count=count, first_bad_seq=entry.seq, reason=problem)
        count += 1
        prev = entry
    return ChainReport(ok=True, count=count, last_hash=GENESIS_HASH if prev is None else prev.hash)


def _problem(prev: AuditEntry | None, entry: AuditEntry, following: AuditEntry | None) -> str | None:
    """What is wrong with ``entry`` coming after ``prev``, as a sentence; None when nothing is."""
    # The seal first: an entry whose own fields (its seq included) no longer match its hash was changed,
    # whatever else looks wrong about it.
    if _recomputed(entry) != entry.hash:
        return f"entry {entry.seq} was changed after it was written"
    expected_seq = 1 if prev is None else prev.seq + 1
    after_what = "the start of the log" if prev is None else f"entry {prev.seq}"
    if entry.seq != expected_seq:
        if prev is not None and entry.seq == prev.seq:
            return f"entry {entry.seq} appears twice"
        if entry.seq < expected_seq:
            return f"entry {entry.seq} comes after entry {expected_seq - 1}: the entries are out of order"
        if following is not None and expected_seq <= following.seq < entry.seq:
            return f"entry {entry.seq} comes before entry {following.seq}: the entries are out of order"
        missing = (
            f"entry {expected_seq} is missing"
            if entry.seq == expected_seq + 1
            else f"entries {expected_seq} to {entry.seq - 1} are missing"
        )
        return f"entry {entry.seq} does not follow {after_what}: {missing}"
    expected_prev = GENESIS_HASH if prev is None else prev.hash
    if entry.prev_hash != expected_prev:
        # Both entries seal themselves, so one of them was rewritten wholesale (or put in from elsewhere).
        return (
            f"entry {entry.seq} does not follow {after_what}: it was chained to a different entry, "
            f"so one of them was rewritten or inserted"
        )
    return None


def _recomputed(entry: AuditEntry) -> str:
    try:
        return entry_hash(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            detail=entry.detail,
            prev_hash=entry.prev_hash,
        )
    except (TypeError, ValueError):
        # A detail that no longer serialises was not written by chain_entry: it was changed.
        return ""


def _canonical_time(at: datetime) -> str:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("audit times are timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _plain_detail(detail: Mapping[str, AuditValue]) -> dict[str, AuditValue]:
    """A copy of ``detail`` as plain JSON values, refusing anything that would not survive a round trip."""
    out: dict[str, AuditValue] = {}
    for key, value in detail.items():
        if not isinstance(key, str):
            raise InputError(f"audit detail keys are strings; got {key!r}")
        out[key] = _plain_value(value, key)
    return out


def _plain_value(value: object, key: str) -> AuditValue:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"audit detail {key!r} is {value}, which JSON cannot hold")
        return value
    if isinstance(value, list | tuple):
        return [_plain_value(item, key) for item in value]
    raise InputError(
        f"audit detail {key!r} is a {type(value).__name__}; it may hold text, numbers, booleans, null and lists of them"
    )


class _Peekable(Iterator[AuditEntry]):
    """An iterator with one entry of lookahead, so verification can tell a swap from a gap."""

    def __init__(self, source: Iterator[AuditEntry]) -> None:
        self._source = source
        self._next: AuditEntry | None = next(source, None)

    def __next__(self) -> AuditEntry:
        if self._next is None:
            raise StopIteration
        current = self._next
        self._next = next(self._source, None)
        return current

    def peek(self) -> AuditEntry | None:
        return self._next


__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditValue",
    "ChainReport",
    "chain_entry",
    "entry_hash",
    "verify_chain",
]
