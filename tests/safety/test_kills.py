"""Kills at random moments, over the SQL repository on a real SQLite file and the file-backed simulated world.

The controller's process dies at a random driver call — before it (the decision is persisted, nothing acted on)
or after it (the driver acted, nothing recorded) — and a *new* controller and a *new* driver, built from what was
persisted (the database and the world's JSON file), carry on, as ``ringfence rollout start`` does after a crash.
The referee watches every step across the restarts: rules 6 and 7, no asset installed twice, and an end.
(Real SIGKILLs of the CLI process are in tests/rollout/test_kill.py; here the deaths are placed precisely.)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import event, given, seed
from hypothesis import strategies as st

from ringfence.store.audit import verify_audit
from ringfence.store.db import make_engine, session_scope
from ringfence.store.decisions import list_decisions
from ringfence.store.records import DecisionStatus

from .conftest import SEED, hunt
from .harness import SqlRig, play
from .strategies import EstateCase, Run, adversarial_estates, adversarial_runs


@st.composite
def killed_runs(draw: st.DrawFn) -> tuple[EstateCase, Run]:
    case = draw(adversarial_estates(max_targets=6))
    run = draw(adversarial_runs(case, kills=True))
    if draw(st.booleans()):
        # A good release half the time, so that kills land deep in the rings too, not only in the canary's.
        clean = {"fault": frozenset(), "install_failures": frozenset(), "hung": frozenset(), "refuse": None}
        run = replace(run, interventions=(), **clean)
    return case, run


@seed(SEED)
@hunt(60)
@given(killed_runs())
def test_a_controller_killed_anywhere_is_carried_on_by_a_new_one_and_every_rule_holds(
    tmp_path_factory: pytest.TempPathFactory, drawn: tuple[EstateCase, Run]
) -> None:
    case, run = drawn
    directory: Path = tmp_path_factory.mktemp("killed")
    rig = SqlRig(case, run, directory)
    try:
        outcome = play(rig)
    finally:
        rig.engine.dispose()
    event(f"ended {outcome.phase}")
    event(f"{min(outcome.kills, 3)}{'+' if outcome.kills > 3 else ''} kills landed")
    # Nothing is left half-done in the store: every decision taken was acted on and recorded.
    engine = make_engine(f"sqlite:///{directory / 'ringfence.db'}")
    try:
        with session_scope(engine, readonly=True) as session:
            assert list_decisions(session, rig.rollout_id, status=DecisionStatus.PENDING) == []
            audit = verify_audit(session)
            assert audit.ok, audit.reason
    finally:
        engine.dispose()
