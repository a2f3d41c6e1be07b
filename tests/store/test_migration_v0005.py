"""Migration 0005 (``gate_verdicts``) on a database holding rollouts whose verdicts 0004's code left only as
sentences in the audit log, on real SQLite and PostgreSQL.

The upgrade finds those verdicts by the rules /metrics used until now (so the verdict counter keeps its total),
each with its ring, outcome, time and sentence; transitions that were no verdict (a person's pause or abort,
anything not leaving judging) stay out. The downgrade takes the table away and leaves the audit log and the
rollouts as they were; upgrading again finds the same verdicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from old_schema import add_old_rollouts, old_update_id
from ringfence.core.gates import GateOutcome, RingVerdict
from ringfence.store.audit import append_audit, list_audit, verify_audit
from ringfence.store.db import alembic_config, current_revision, head_revision, make_engine, session_scope, upgrade
from ringfence.store.verdicts import add_gate_verdict, count_gate_verdicts, list_gate_verdicts

T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)
BEFORE = "0004_driver_state"

# (rollout, action, from, to, ring after the move, reason) as 0004's store audited them, in order.
HISTORY = [
    ("r-1", "rollout.transition", "pending", "taking_restore_points", 0, "started by olga: ring 0 of 2 (1 asset)"),
    ("r-1", "rollout.transition", "baking", "judging", 0, "ring 0 baked for 1h"),
    ("r-1", "rollout.transition", "judging", "applying", 1, "ring 0 passed: 4 of 4 strata passed; starting ring 1"),
    ("r-1", "rollout.transition", "judging", "paused", 1, "ring 1 inconclusive: 1 of 3 strata inconclusive (y)"),
    ("r-1", "rollout.transition", "judging", "paused", 1, "paused by olga: lunch"),
    ("r-1", "rollout.transition", "judging", "paused", 1, "the agent driver could not read health: timed out"),
    ("r-1", "rollout.transition", "judging", "halted", 1, "ring 1 failed: 1 of 4 strata failed (x) — stratum x: …"),
    ("r-1", "rollout.transition", "halted", "rolling_back", 1, "ring 1 failed its gate: rolling back"),
    ("r-2", "rollout.hold_override", "judging", "completed", 0, "ring 0 passed: not a transition at all"),
    (
        "r-2",
        "rollout.transition",
        "judging",
        "applying",
        0,
        "ring 0 error: no stratum has updated members — 1 stratum not judged yet: another canary wave of ring 0",
    ),
    ("r-2", "rollout.transition", "judging", "applying", 1, "ring 0 passed: 1 of 1 stratum passed; starting ring 1"),
    ("r-2", "rollout.transition", "judging", "halted", 1, "aborted by olga"),
    ("r-2", "rollout.transition", "judging", "applying", 2, "a sentence no gate wrote"),
    ("r-2", "rollout.transition", "judging", "halted", 2, "batch 2 failed: 2 of 9 updated assets failed (a, b)"),
]
# What 0005 finds: (rollout, seq, ring judged, outcome, index into HISTORY of the transition it came from).
FOUND = [
    ("r-1", 1, 0, GateOutcome.passed, 2),
    ("r-1", 2, 1, GateOutcome.inconclusive, 3),
    ("r-1", 3, 1, GateOutcome.inconclusive, 5),  # no gate sentence: paused, so it counted as inconclusive
    ("r-1", 4, 1, GateOutcome.failed, 6),
    ("r-2", 1, 0, GateOutcome.error, 9),
    ("r-2", 2, 0, GateOutcome.passed, 10),
    ("r-2", 3, 1, GateOutcome.passed, 12),  # left judging for the next ring (2): ring 1 was judged
    ("r-2", 4, 2, GateOutcome.failed, 13),
]


@pytest.fixture
def old_engine(db_url: str) -> Iterator[Engine]:
    """A database at 0004 holding two rollouts and the audit log of their phase changes."""
    engine = make_engine(db_url)
    upgrade(engine, BEFORE)
    with session_scope(engine) as session:
        # Plain SQL: the store's functions write columns this revision does not have yet (tests/old_schema.py).
        add_old_rollouts(session, ["r-1", "r-2"], at=T0)
        for i, (rollout_id, action, was, to, ring, reason) in enumerate(HISTORY):
            append_audit(
                session,
                actor="controller",
                action=action,
                subject=f"rollout:{rollout_id}",
                detail={"from": was, "to": to, "ring": ring, "reason": reason, "version": i + 2},
                at=T0 + timedelta(minutes=i),
            )
    try:
        yield engine
    finally:
        engine.dispose()


def _found(engine: Engine) -> list[tuple[str, int, int, GateOutcome, datetime, str, tuple[object, ...]]]:
    with session_scope(engine, readonly=True) as session:
        stored = [*list_gate_verdicts(session, "r-1"), *list_gate_verdicts(session, "r-2")]
    return [
        (g.rollout_id, g.seq, g.verdict.ring, g.verdict.outcome, g.at, g.verdict.sentence, g.verdict.strata)
        for g in stored
    ]


def _expected() -> list[tuple[str, int, int, GateOutcome, datetime, str, tuple[object, ...]]]:
    return [(r, seq, ring, outcome, T0 + timedelta(minutes=i), HISTORY[i][5], ()) for r, seq, ring, outcome, i in FOUND]


def test_upgrade_finds_the_verdicts_the_audit_log_holds(old_engine: Engine) -> None:
    assert "gate_verdicts" not in sa.inspect(old_engine).get_table_names()

    upgrade(old_engine)

    assert current_revision(old_engine) == head_revision()
    assert _found(old_engine) == _expected()
    with session_scope(old_engine) as session:
        assert count_gate_verdicts(session) == {
            GateOutcome.passed: 3,
            GateOutcome.failed: 2,
            GateOutcome.inconclusive: 2,
            GateOutcome.error: 1,
        }
        # The controller numbers the next verdict after the ones found.
        later = RingVerdict(2, GateOutcome.passed, (), "ring 2 passed: 1 of 1 stratum passed")
        assert add_gate_verdict(session, "r-1", later, at=T0 + timedelta(hours=1)).seq == 5


def test_downgrade_takes_the_table_away_and_leaves_the_log_and_the_rollouts(old_engine: Engine) -> None:
    upgrade(old_engine)
    with session_scope(old_engine) as session:
        add_gate_verdict(session, "r-1", RingVerdict(2, GateOutcome.passed, (), "ring 2 passed"), at=T0)
    with old_engine.begin() as connection:
        command.downgrade(alembic_config(connection), BEFORE)

    assert current_revision(old_engine) == BEFORE
    assert "gate_verdicts" not in sa.inspect(old_engine).get_table_names()
    with session_scope(old_engine, readonly=True) as session:
        assert old_update_id(session, "r-2") == "u"
        assert len(list_audit(session)) == len(HISTORY) + 3  # two rollouts created, one estate uploaded
        assert verify_audit(session).ok

    upgrade(old_engine)  # and up again: the same verdicts, found again in the log
    assert _found(old_engine) == _expected()
