"""``gate_verdicts``: each ring's gate verdict as facts (its outcome, each stratum's numbers) beside its sentence.

Revision ID: 0005_gate_verdicts
Revises: 0004_driver_state
Create Date: 2026-12-08

A verdict lived only as English: the reason of the transition out of ``judging`` in the audit log, which
/metrics parsed back with a regular expression. It now has a row of its own, written with the transition.

The upgrade fills the table with the verdicts the audit log already holds, found by the rules /metrics used
until now, so the verdict counter keeps its total across the upgrade: the outcome and ring read from the
sentence (or, for a sentence that names neither, from where the rollout went), the transition's reason as
the sentence, and no strata (the log kept no numbers). That reading of prose is done once, here, and never
again. A database migrated with the SQL that ``alembic upgrade --sql`` renders starts with the table empty:
SQL alone cannot read the sentences. The downgrade drops the table; the audit log, never touched, still
holds every sentence.

Written by hand and frozen, like 0001: the rules and value lists below are copied, not imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0005_gate_verdicts"
down_revision: str | None = "0004_driver_state"
branch_labels: str | None = None
depends_on: str | None = None

OUTCOMES = "'passed', 'failed', 'inconclusive', 'error'"

# How /metrics told a verdict from other transitions out of judging, as of 0004.
_VERDICT = re.compile(r"^(?:ring|batch) (\d+) (passed|failed|inconclusive|error)\b")
_BY_A_PERSON = ("paused by ", "aborted by ")
_OUTCOME_BY_TARGET = {
    "completed": "passed",
    "applying": "passed",
    "taking_restore_points": "passed",
    "halted": "failed",
    "paused": "inconclusive",
}
# Leaving judging for these starts the next ring, so the ring judged is the one before the transition's.
_NEXT_RING = ("applying", "taking_restore_points")


def upgrade() -> None:
    verdicts = op.create_table(
        "gate_verdicts",
        sa.Column("rollout_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("ring", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("sentence", sa.Text(), nullable=False),
        sa.Column("strata", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", "seq", name=op.f("pk_gate_verdicts")),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], name=op.f("fk_gate_verdicts_rollout_id_rollouts")),
        sa.CheckConstraint(f"outcome IN ({OUTCOMES})", name=op.f("ck_gate_verdicts_outcome")),
    )
    if context.is_offline_mode():
        return  # rendered as SQL there is no log to read: the table starts empty
    rows = _verdicts_in_the_audit_log()
    if rows:
        op.bulk_insert(verdicts, rows)


def downgrade() -> None:
    op.drop_table("gate_verdicts")


def _verdicts_in_the_audit_log() -> list[dict[str, Any]]:
    bind = op.get_bind()
    audit = sa.table(
        "audit_log",
        sa.column("seq", sa.BigInteger()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("action", sa.String()),
        sa.column("subject", sa.String()),
        sa.column("detail", sa.JSON()),
    )
    rollouts = sa.table("rollouts", sa.column("id", sa.String()))
    existing = set(bind.execute(sa.select(rollouts.c.id)).scalars())
    found = bind.execute(
        sa.select(audit.c.at, audit.c.subject, audit.c.detail)
        .where(audit.c.action == "rollout.transition")
        .order_by(audit.c.seq)
    )
    rows: list[dict[str, Any]] = []
    numbered: dict[str, int] = {}
    for at, subject, detail in found:
        rollout_id = str(subject).removeprefix("rollout:")
        judged = _verdict_of(detail) if isinstance(detail, Mapping) else None
        if judged is None or rollout_id not in existing:
            continue
        ring, outcome = judged
        numbered[rollout_id] = numbered.get(rollout_id, 0) + 1
        rows.append(
            {
                "rollout_id": rollout_id,
                "seq": numbered[rollout_id],
                "ring": ring,
                "at": at,
                "outcome": outcome,
                "sentence": str(detail.get("reason") or ""),
                "strata": [],
            }
        )
    return rows


def _verdict_of(detail: Mapping[str, Any]) -> tuple[int, str] | None:
    """(ring judged, outcome) of an audited transition that recorded a gate verdict, else None."""
    if detail.get("from") != "judging":
        return None
    reason = str(detail.get("reason") or "")
    if reason.startswith(_BY_A_PERSON):
        return None
    to = str(detail.get("to"))
    ring = detail.get("ring")
    found = _VERDICT.match(reason)
    if found:
        return int(found.group(1)), found.group(2)
    outcome = _OUTCOME_BY_TARGET.get(to)
    if outcome is None or not isinstance(ring, int):
        return None
    return (ring - 1 if to in _NEXT_RING else ring), outcome
