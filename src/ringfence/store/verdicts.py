"""Repository functions for gate verdicts: each ring's verdict as facts (outcome, each stratum's numbers) and
the sentences that explain them, in ``gate_verdicts``.

The controller records a verdict in the transaction that acts on it (``SqlRolloutSession.record_verdict``),
so a verdict is stored exactly when the phase change it caused is. Readers (``/metrics``) count outcomes
from the column, never from the words: a sentence may be reworded without changing what was decided.

This module is the one codec of a verdict's strata to and from their JSON document; nothing else builds
or reads that document. Like every resource module of the store, these take a Session, flush and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.core.errors import ConflictError
from ringfence.core.gates import GateOutcome, RingVerdict, StratumVerdict
from ringfence.store.records import GateVerdict, JSONValue
from ringfence.store.rollouts import require_rollout
from ringfence.store.rows import next_seq
from ringfence.store.tables import GateVerdictRow


def add_gate_verdict(session: Session, rollout_id: str, verdict: RingVerdict, *, at: datetime) -> GateVerdict:
    """Record ``verdict`` as the newest gate verdict of ``rollout_id``, numbered after its last one."""
    require_rollout(session, rollout_id)
    row = GateVerdictRow(
        rollout_id=rollout_id,
        seq=next_seq(session, GateVerdictRow.seq, GateVerdictRow.rollout_id, rollout_id),
        ring=verdict.ring,
        at=at,
        outcome=GateOutcome(verdict.outcome).value,
        sentence=verdict.sentence,
        strata=[_stratum_document(s) for s in verdict.strata],
    )
    session.add(row)
    session.flush()
    return _gate_verdict(row)


def list_gate_verdicts(session: Session, rollout_id: str, *, ring: int | None = None) -> list[GateVerdict]:
    """The gate verdicts of ``rollout_id`` (on ``ring`` only, when given), in the order they were judged."""
    stmt = sa.select(GateVerdictRow).where(GateVerdictRow.rollout_id == rollout_id).order_by(GateVerdictRow.seq)
    if ring is not None:
        stmt = stmt.where(GateVerdictRow.ring == ring)
    return [_gate_verdict(row) for row in session.scalars(stmt)]


def count_gate_verdicts(session: Session) -> dict[GateOutcome, int]:
    """How many verdicts of every rollout had each outcome (every outcome present, 0 when none)."""
    counts = dict.fromkeys(GateOutcome, 0)
    rows = session.execute(sa.select(GateVerdictRow.outcome, sa.func.count()).group_by(GateVerdictRow.outcome))
    for outcome, count in rows:
        counts[GateOutcome(outcome)] = int(count)
    return counts


# --------------------------------------------------------------------------------------------- the codec


def _stratum_document(verdict: StratumVerdict) -> dict[str, JSONValue]:
    return {
        "stratum": list(verdict.stratum),
        "outcome": GateOutcome(verdict.outcome).value,
        "sentence": verdict.sentence,
        "p_value": verdict.p_value,
        "updated": verdict.updated,
        "updated_reported": verdict.updated_reported,
        "updated_failed": verdict.updated_failed,
        "control": verdict.control,
        "control_reported": verdict.control_reported,
        "control_failed": verdict.control_failed,
        "p_binomial": verdict.p_binomial,
        "p_fisher": verdict.p_fisher,
    }


def _stratum_from_document(document: Mapping[str, Any]) -> StratumVerdict:
    def count(name: str) -> int:
        value = document[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} is {value!r}, not a whole number")
        return value

    def probability(name: str) -> float | None:
        value = document.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} is {value!r}, not a number")
        return float(value)

    stratum = document["stratum"]
    if not isinstance(stratum, Sequence) or isinstance(stratum, str):
        raise TypeError(f"stratum is {stratum!r}, not a list of attribute values")
    return StratumVerdict(
        stratum=tuple(None if v is None else str(v) for v in stratum),
        outcome=GateOutcome(document["outcome"]),
        sentence=str(document["sentence"]),
        p_value=probability("p_value"),
        updated=count("updated"),
        updated_reported=count("updated_reported"),
        updated_failed=count("updated_failed"),
        control=count("control"),
        control_reported=count("control_reported"),
        control_failed=count("control_failed"),
        p_binomial=probability("p_binomial"),
        p_fisher=probability("p_fisher"),
    )


def _gate_verdict(row: GateVerdictRow) -> GateVerdict:
    try:
        if not isinstance(row.strata, list):
            raise TypeError(f"strata is {row.strata!r}, not a list")
        strata = tuple(_stratum_from_document(s) for s in row.strata)
        verdict = RingVerdict(row.ring, GateOutcome(row.outcome), strata, row.sentence)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConflictError(
            f"rollout {row.rollout_id} has a gate verdict (number {row.seq}, ring {row.ring}) that cannot be read "
            f"({exc!r})"
        ) from None
    return GateVerdict(rollout_id=row.rollout_id, seq=row.seq, at=row.at, verdict=verdict)


__all__ = ["add_gate_verdict", "count_gate_verdicts", "list_gate_verdicts"]
