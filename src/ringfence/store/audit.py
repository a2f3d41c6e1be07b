"""Repository functions for the audit log: a hash chain, appended to only.

Everything that changes what a rollout is or does lands here in the same transaction as the change: a
created rollout, each phase transition, an uploaded estate version. Appenders take turns (an advisory lock
held to the end of the transaction on PostgreSQL; SQLite runs every read-write transaction alone), so each
one chains onto the entry really before it. Like every resource module of the store, these take a Session,
flush and never commit.

A chain shows any entry changed, removed, inserted or reordered, but not entries cut off its end (the
shorter chain still holds). An :class:`AuditAnchor` (``ringfence audit anchor``: the last entry's seq and
hash, kept somewhere else) closes that gap: :func:`verify_audit` with the anchor also fails when the log no
longer reaches the anchor's entry or holds a different entry there.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.core.audit import GENESIS_HASH, AuditEntry, AuditValue, ChainReport, chain_entry, verify_chain
from ringfence.core.errors import InputError, Problem
from ringfence.store.db import LOCK_NAMESPACE_AUDIT, advisory_lock
from ringfence.store.rows import CHUNK, record_of
from ringfence.store.tables import AuditRow


def append_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, AuditValue],
    at: datetime,
) -> AuditEntry:
    """Chain a new entry onto the last one in the log and store it.

    Appenders take turns until their transaction ends (PostgreSQL advisory lock; SQLite's single
    writer), so each reads the entry really before it; ``seq`` being the primary key makes a fork
    impossible even if that were bypassed.
    """
    advisory_lock(session, LOCK_NAMESPACE_AUDIT)
    last = session.scalars(sa.select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
    entry = chain_entry(
        None if last is None else _audit_entry(last),
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        detail=detail,
    )
    session.add(
        AuditRow(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            subject=entry.subject,
            detail=dict(entry.detail),
            prev_hash=entry.prev_hash,
            hash=entry.hash,
        )
    )
    session.flush()
    return entry


def list_audit(
    session: Session,
    *,
    after_seq: int = 0,
    limit: int | None = None,
    subject: str | None = None,
    action: str | None = None,
) -> list[AuditEntry]:
    """Audit entries after ``after_seq`` (about ``subject``, of ``action``, when given), in the order written."""
    stmt = (
        sa.select(AuditRow)
        .where(AuditRow.seq > after_seq)
        .order_by(AuditRow.seq)
        .execution_options(populate_existing=True)
    )
    if subject is not None:
        stmt = stmt.where(AuditRow.subject == subject)
    if action is not None:
        stmt = stmt.where(AuditRow.action == action)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_audit_entry(row) for row in session.scalars(stmt)]


@dataclass(frozen=True)
class AuditAnchor:
    """An entry of the log as it was when the anchor was taken: its ``seq`` and ``hash`` (``SEQ:HASH``).

    ``seq`` 0 with the genesis hash anchors an empty log (it holds for every log).
    """

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


_ANCHOR = re.compile(r"^(\d{1,18}):([0-9a-f]{64})$")


def parse_anchor(text: str, *, field: str = "anchor") -> AuditAnchor:
    """``SEQ:HASH`` (what ``ringfence audit anchor`` prints) as an anchor; InputError naming ``field`` otherwise."""
    found = _ANCHOR.match(text.strip().lower())
    if found is None:
        raise InputError(
            [
                Problem(
                    f"'{text[:100]}' is not an audit anchor: give SEQ:HASH, an entry's number and its 64-character "
                    "sha256 in hex, as `ringfence audit anchor` prints it",
                    path=(field,),
                )
            ]
        )
    anchor = AuditAnchor(int(found.group(1)), found.group(2))
    if anchor.seq == 0 and anchor.hash != GENESIS_HASH:
        raise InputError([Problem("entry 0 is the start of the log: its anchor's hash is 64 zeros", path=(field,))])
    return anchor


def audit_anchor(session: Session) -> AuditAnchor:
    """The anchor of the log as it stands: its last entry (``0:`` and the genesis hash when it is empty)."""
    last = session.execute(sa.select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)).first()
    return AuditAnchor(0, GENESIS_HASH) if last is None else AuditAnchor(last.seq, last.hash)


def verify_audit(session: Session, *, anchor: AuditAnchor | None = None) -> ChainReport:
    """Check the whole audit log as stored, streaming it in order of ``seq``; against ``anchor`` too, if given."""
    # Read the columns, not ORM objects: a row tampered with outside ringfence must be seen as stored,
    # and a long log should not fill the identity map.
    stmt = sa.select(AuditRow.__table__).order_by(AuditRow.seq).execution_options(yield_per=CHUNK)
    result = session.execute(stmt)
    try:
        if anchor is None:
            return verify_chain(_audit_entry(row) for row in result)
        watch = _AnchorWatch(anchor, (_audit_entry(row) for row in result))
        report = verify_chain(watch)
    finally:
        result.close()
    return watch.judge(report)


class _AnchorWatch(Iterator[AuditEntry]):
    """The entries as they stream past the chain check, noting the one at the anchor's ``seq`` and the last."""

    def __init__(self, anchor: AuditAnchor, entries: Iterable[AuditEntry]) -> None:
        self.anchor = anchor
        self._entries = iter(entries)
        self.at_anchor: AuditEntry | None = None
        self.last_seq = 0

    def __next__(self) -> AuditEntry:
        entry = next(self._entries)
        if entry.seq == self.anchor.seq:
            self.at_anchor = entry
        self.last_seq = max(self.last_seq, entry.seq)
        return entry

    def judge(self, report: ChainReport) -> ChainReport:
        """``report`` when the chain is already broken or the anchor holds; a failed report saying why otherwise.

        The chain holding up to the anchor's entry, and that entry being the one anchored, means every entry
        up to it is as it was when the anchor was taken: each seals the one before it.
        """
        if not report.ok:
            return report
        anchor = self.anchor
        if anchor.seq == 0:
            return report  # the anchor of an empty log (parse_anchor made sure of its hash)
        if self.at_anchor is None:
            ends = "is empty" if report.count == 0 else f"ends at entry {self.last_seq}"
            return self._failed(
                report,
                self.last_seq + 1,
                f"the log {ends}, but the anchor names entry {anchor.seq}: entries were cut off its end",
            )
        if self.at_anchor.hash != anchor.hash:
            return self._failed(
                report,
                anchor.seq,
                f"entry {anchor.seq} is not the entry anchored (its hash is {self.at_anchor.hash}, the anchor's "
                f"{anchor.hash}): the log was rewritten from there or before",
            )
        return report

    @staticmethod
    def _failed(report: ChainReport, seq: int, reason: str) -> ChainReport:
        return dataclasses.replace(report, ok=False, first_bad_seq=seq, reason=reason)


def _audit_entry(row: AuditRow | sa.Row[Any]) -> AuditEntry:
    """An entry from its ORM row, or from the plain columns of one (what :func:`verify_audit` streams)."""
    return record_of(AuditEntry, row)


__all__ = ["AuditAnchor", "append_audit", "audit_anchor", "list_audit", "parse_anchor", "verify_audit"]
