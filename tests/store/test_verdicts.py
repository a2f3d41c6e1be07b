"""Gate verdicts stored as facts (``ringfence.store.verdicts``), on real SQLite and PostgreSQL.

A verdict judged by the real gate, several strata and their p-values included, comes back equal to what was
judged; arbitrary verdicts do too (hypothesis); a row that cannot be read is refused with a sentence naming it;
and the controller stores each verdict it acts on — a canary wave's included — in the step that acts on it,
over the SQL store and the in-memory one alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ringfence.core.errors import ConflictError, NotFoundError
from ringfence.core.estate import parse_estate_text
from ringfence.core.gates import (
    AssetHealth,
    AssetStatus,
    FailureSignal,
    GateOutcome,
    GatePolicy,
    RingVerdict,
    StratumSample,
    StratumVerdict,
    judge_ring,
)
from ringfence.core.graph import compile_estate
from ringfence.core.rollout.controller import Controller, StepReport, start_rollout
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.simulation import FaultModel, SimulatedClock, SimulationDriver
from ringfence.core.update import parse_update_text
from ringfence.service import rollouts
from ringfence.store.audit import list_audit
from ringfence.store.db import session_scope
from ringfence.store.estates import add_estate_version
from ringfence.store.rollouts import create_rollout
from ringfence.store.verdicts import add_gate_verdict, count_gate_verdicts, list_gate_verdicts

T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)


def _rollout(engine: Engine, rollout_id: str) -> None:
    with session_scope(engine) as session:
        version = add_estate_version(
            session,
            name=f"e-{rollout_id}",
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
            plan={},
            created_by="ana",
            needs_approval=False,
            at=T0,
            rollout_id=rollout_id,
        )


@pytest.fixture
def engine(db_engine: Engine) -> Engine:
    """A migrated database holding rollouts r-1 and r-2."""
    _rollout(db_engine, "r-1")
    _rollout(db_engine, "r-2")
    return db_engine


def _healthy(asset: str) -> AssetHealth:
    return AssetHealth(asset, AssetStatus.healthy)


def _judged() -> RingVerdict:
    """A real verdict on three strata: one failed (with both p-values), one silent, one passed."""
    crashed = [AssetHealth(f"esx-{i}", AssetStatus.failed, FailureSignal.crashed, 840.0 + i, "PSOD") for i in (1, 2)]
    samples = [
        StratumSample(
            ("host", "esxi", "PowerEdge R750", "city"),
            (*crashed, _healthy("esx-3")),
            (*(_healthy(f"esx-{i}") for i in range(4, 30)), AssetHealth("esx-30", AssetStatus.failed)),
        ),
        StratumSample(("host", "esxi", None, "north"), (AssetHealth("esx-40", AssetStatus.unknown),), ()),
        StratumSample(("vm", "windows-2019", "", "south"), (_healthy("vm-1"),), (_healthy("vm-2"),)),
    ]
    return judge_ring(2, samples, GatePolicy())


def test_a_verdict_with_several_strata_comes_back_as_it_was_judged(engine: Engine) -> None:
    verdict = _judged()
    # The sample is what it claims to be: three strata, each with another outcome, and real p-values.
    assert [s.outcome for s in verdict.strata] == [GateOutcome.failed, GateOutcome.inconclusive, GateOutcome.passed]
    assert verdict.outcome is GateOutcome.failed
    assert verdict.strata[0].p_binomial is not None
    assert verdict.strata[0].p_fisher is not None

    with session_scope(engine) as session:
        stored = add_gate_verdict(session, "r-1", verdict, at=T0)
    with session_scope(engine, readonly=True) as session:
        (found,) = list_gate_verdicts(session, "r-1")
    assert found == stored
    assert (found.rollout_id, found.seq, found.at) == ("r-1", 1, T0)
    assert found.verdict == verdict  # every field of every stratum, floats bit for bit, None kept apart from ""
    assert found.verdict.strata[1].stratum == ("host", "esxi", None, "north")
    assert found.verdict.strata[2].stratum == ("vm", "windows-2019", "", "south")


def test_verdicts_are_numbered_per_rollout_listed_in_order_and_counted_by_outcome(engine: Engine) -> None:
    failed = _judged()
    passed = RingVerdict(0, GateOutcome.passed, (), "ring 0 passed: this strategy has no gate")
    paused = RingVerdict(1, GateOutcome.inconclusive, failed.strata[1:2], "ring 1 inconclusive: 1 of 1 stratum")
    with session_scope(engine) as session:
        add_gate_verdict(session, "r-1", passed, at=T0)
        add_gate_verdict(session, "r-2", passed, at=T0)
        add_gate_verdict(session, "r-1", paused, at=T0 + timedelta(hours=1))
        add_gate_verdict(session, "r-1", failed, at=T0 + timedelta(hours=2))
    with session_scope(engine, readonly=True) as session:
        mine = list_gate_verdicts(session, "r-1")
        assert [(v.seq, v.verdict) for v in mine] == [(1, passed), (2, paused), (3, failed)]
        assert [v.seq for v in list_gate_verdicts(session, "r-2")] == [1]
        assert [v.verdict for v in list_gate_verdicts(session, "r-1", ring=1)] == [paused]
        assert list_gate_verdicts(session, "r-1", ring=7) == []
        assert count_gate_verdicts(session) == {
            GateOutcome.passed: 2,
            GateOutcome.failed: 1,
            GateOutcome.inconclusive: 1,
            GateOutcome.error: 0,
        }


def test_a_verdict_on_a_rollout_that_does_not_exist_is_refused(engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="rollout r-9 does not exist"), session_scope(engine) as session:
        add_gate_verdict(session, "r-9", _judged(), at=T0)
    with session_scope(engine, readonly=True) as session:
        assert count_gate_verdicts(session) == dict.fromkeys(GateOutcome, 0)


def test_the_database_holds_the_outcomes_to_the_four_a_gate_has(engine: Engine) -> None:
    insert = sa.text(
        "INSERT INTO gate_verdicts (rollout_id, seq, ring, at, outcome, sentence, strata) "
        "VALUES ('r-1', 1, 0, :at, :outcome, 'ring 0 passed', '[]')"
    )
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert, {"at": T0, "outcome": "probably"})
    with engine.begin() as connection:
        connection.execute(insert, {"at": T0, "outcome": "passed"})


@pytest.mark.parametrize(
    "strata",
    [
        '{"stratum": []}',
        '[{"stratum": ["vm"], "outcome": "passed", "sentence": "s"}]',
        '[{"stratum": "vm", "outcome": "passed", "sentence": "s", "updated": 1, "updated_reported": 1, '
        '"updated_failed": 0, "control": 0, "control_reported": 0, "control_failed": 0}]',
        '[{"stratum": ["vm"], "outcome": "fine", "sentence": "s", "updated": 1, "updated_reported": 1, '
        '"updated_failed": 0, "control": 0, "control_reported": 0, "control_failed": 0}]',
        '[{"stratum": ["vm"], "outcome": "passed", "sentence": "s", "updated": "1", "updated_reported": 1, '
        '"updated_failed": 0, "control": 0, "control_reported": 0, "control_failed": 0}]',
    ],
)
def test_a_row_that_cannot_be_read_is_refused_with_a_sentence_naming_it(engine: Engine, strata: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO gate_verdicts (rollout_id, seq, ring, at, outcome, sentence, strata) "
                "VALUES ('r-2', 4, 1, :at, 'passed', 'ring 1 passed', :strata)"
            ),
            {"at": T0, "strata": strata},
        )
    with (
        pytest.raises(ConflictError, match=r"rollout r-2 has a gate verdict \(number 4, ring 1\) that cannot be read"),
        session_scope(engine, readonly=True) as session,
    ):
        list_gate_verdicts(session, "r-2")


# ------------------------------------------------------------------------------------------ any verdict

# Attribute values as an estate file may hold them. NUL is left out: PostgreSQL refuses it in any text column
# (an estate attribute holding one already cannot be halted on there: rollouts.halt_reason is text too).
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
_count = st.integers(min_value=0, max_value=2**31 - 1)
_p = st.none() | st.floats(min_value=0.0, max_value=1.0, allow_subnormal=True)

_stratum_verdicts = st.builds(
    StratumVerdict,
    stratum=st.lists(st.none() | _text, max_size=6).map(tuple),
    outcome=st.sampled_from(GateOutcome),
    sentence=_text,
    p_value=_p,
    updated=_count,
    updated_reported=_count,
    updated_failed=_count,
    control=_count,
    control_reported=_count,
    control_failed=_count,
    p_binomial=_p,
    p_fisher=_p,
)
_ring_verdicts = st.builds(
    RingVerdict,
    ring=st.integers(min_value=0, max_value=2**31 - 1),
    outcome=st.sampled_from(GateOutcome),
    strata=st.lists(_stratum_verdicts, max_size=5).map(tuple),
    sentence=_text,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verdict=_ring_verdicts)
def test_any_verdict_comes_back_equal(engine: Engine, verdict: RingVerdict) -> None:
    with session_scope(engine) as session:
        seq = add_gate_verdict(session, "r-1", verdict, at=T0).seq
    with session_scope(engine, readonly=True) as session:
        found = list_gate_verdicts(session, "r-1")[-1]
    assert (found.seq, found.verdict) == (seq, verdict)


# ------------------------------------------------------------------------------------- from the controller

AGENT = "software: [{product: acme/agent, version: '1'}]"
ESTATE = "\n".join(
    [
        "apiVersion: ringfence/v1",
        "estate: strata",
        "services:",
        "  - {id: desk, name: Desk, tier: 3, requires: [{any: 1, where: 'kind=vm'}]}",
        "assets:",
        *(
            f"  - {{id: {os[:3]}-{i}, kind: vm, attrs: {{os: {os}}}, {AGENT}}}"
            for os, n in (("linux", 6), ("windows", 3))
            for i in range(1, n + 1)
        ),
    ]
)
UPDATE = """\
apiVersion: ringfence/v1
update:
  {id: agent-2, product: acme/agent, version: "2", bake: 30m, rings: [1, "50%", "100%"], strata: [kind, attrs.os],
   rollback: snapshot, timing: {apply: 5m, rollback: 5m, restore_point: 2m}}
"""
LINUX = frozenset(f"lin-{i}" for i in range(1, 7))


def _driver(clock: SimulatedClock, canaries: tuple[str, ...]) -> SimulationDriver:
    """The linux canary fails its restore point (so a replacement goes in a further canary wave), and every linux
    host crashes a minute after its install: ring 0 passes on windows, then fails on linux."""
    canary = next(a for a in canaries if a in LINUX)
    return SimulationDriver(
        clock=clock,
        timing=parse_update_text(UPDATE, "u.yaml").timing,
        fault=FaultModel(affected=LINUX, after=60.0),
        restore_point_failures=frozenset({canary}),
    )


def _judged_by(reports: list[StepReport]) -> list[RingVerdict]:
    return [r.verdict for r in reports if r.verdict is not None]


def test_the_controller_stores_each_verdict_it_acts_on_a_canary_wave_included(db_engine: Engine) -> None:
    created = rollouts.create_rollout(
        db_engine,
        estate_text=ESTATE,
        estate_source="strata.yaml",
        update_text=UPDATE,
        update_source="u.yaml",
        actor="ana",
        at=T0,
    )
    assert created.rollout is not None
    rollout_id = created.rollout.id
    clock = SimulatedClock(T0)
    rollouts.start(db_engine, rollout_id, actor="ana", at=clock())
    reports: list[StepReport] = []
    final = rollouts.controller(db_engine, _driver(clock, created.strategy.rings[0]), clock).run_until_settled(
        rollout_id,
        wait_until=lambda at: clock.advance_to(at) if at else clock.advance(60),
        on_step=reports.append,
    )
    assert final.phase is RolloutPhase.ROLLED_BACK

    judged = _judged_by(reports)
    with session_scope(db_engine, readonly=True) as session:
        stored = list_gate_verdicts(session, rollout_id)
        log = list_audit(session, subject=f"rollout:{rollout_id}")
    assert [v.verdict for v in stored] == judged
    # Ring 0 twice: passed on windows alone (the linux canary skipped: a canary wave follows), then failed on linux.
    assert [(v.ring, v.outcome) for v in judged] == [(0, GateOutcome.passed), (0, GateOutcome.failed)]
    assert [s.stratum for s in judged[0].strata] == [("vm", "windows")]
    assert {s.stratum for s in judged[1].strata} == {("vm", "linux"), ("vm", "windows")}
    # Each stored in the step that acted on it: with the transition out of judging it caused, at the same time.
    left_judging = [e for e in log if e.action == "rollout.transition" and e.detail["from"] == "judging"]
    assert [(e.at, e.detail["to"]) for e in left_judging] == [
        (stored[0].at, RolloutPhase.TAKING_RESTORE_POINTS.value),
        (stored[1].at, RolloutPhase.HALTED.value),
    ]
    assert all(
        str(e.detail["reason"]).startswith(v.verdict.sentence) for e, v in zip(left_judging, stored, strict=True)
    )


def test_the_memory_store_keeps_the_same_verdicts() -> None:
    update = parse_update_text(UPDATE, "u.yaml")
    strategy = plan_strategy("ringfence", compile_estate(parse_estate_text(ESTATE, "strata.yaml")), update)
    clock = SimulatedClock(T0)
    memory = MemoryRolloutRepository()
    memory.add("r-1", update, strategy, at=clock())
    start_rollout(memory, "r-1", actor="ana", at=clock())
    reports: list[StepReport] = []
    Controller(memory, _driver(clock, strategy.rings[0]), clock).run_until_settled(
        "r-1", wait_until=lambda at: clock.advance_to(at) if at else clock.advance(60), on_step=reports.append
    )
    judged = _judged_by(reports)
    assert [(v.ring, v.outcome) for v in judged] == [(0, GateOutcome.passed), (0, GateOutcome.failed)]
    assert memory.verdicts("r-1") == tuple(judged)
