"""Measured times to restore in the recovery plan: used exactly where a restore test measured an item, the
estimate everywhere else, and every time says which it is.

The expected times are computed here by hand from the plan's own restore order (which the recovery properties
hold against their oracle): a step takes its slowest item, an item its measured time or the step estimate, and a
service is back when the steps up to its own are done, one after the other.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

import oracle
from ringfence.core.assurance import parse_assurance_text
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.recovery import MeasuredRestore, plan_recovery
from ringfence.files.continuity import ESTIMATED_STEP, continuity_sheets
from test_recovery_properties import PROPERTY, RAW_FAILURES, estate_documents, oracle_steps, plan, scenario

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "src" / "ringfence" / "examples" / "city-general"
DAY = date(2026, 3, 4)

MEASURES = st.lists(st.tuples(st.integers(0, 63), st.integers(1, 6 * 3600), st.integers(0, 400)), max_size=40)


def measured_for(ids: list[str], raws: list[tuple[int, int, int]]) -> dict[str, MeasuredRestore]:
    return {ids[i % len(ids)]: MeasuredRestore(seconds, DAY - timedelta(days=back)) for i, seconds, back in raws}


@PROPERTY
@given(
    doc=estate_documents(),
    raws=RAW_FAILURES,
    measures=MEASURES,
    parallel=st.one_of(st.none(), st.integers(1, 3)),
    step_seconds=st.sampled_from((60, 1800, 3600)),
)
def test_measured_times_are_used_exactly_where_present(
    doc: dict[str, Any],
    raws: list[tuple[str, int]],
    measures: list[tuple[int, int, int]],
    parallel: int | None,
    step_seconds: int,
) -> None:
    estate, refs, down = scenario(doc, raws)
    assume(oracle_steps(down, oracle.rules_of(estate)) is not None)
    ids = [n.id for n in oracle.nodes(estate)]
    measured = measured_for(ids, measures)
    guessed = plan(estate, refs, parallel=parallel, step_seconds=step_seconds)
    got = plan(estate, refs, parallel=parallel, step_seconds=step_seconds, measured=measured)

    # Measured times change how long steps take, never the order.
    assert [s.restore for s in got.steps] == [s.restore for s in guessed.steps]
    ends = [0]
    oldest: list[date | None] = [None]
    for step in got.steps:
        times = [measured[i].seconds if i in measured else step_seconds for i in step.restore]
        assert step.seconds == max(times)
        assert step.measured == tuple(i for i in step.restore if i in measured)
        every = all(i in measured for i in step.restore)
        assert step.measured_on == (min(measured[i].day for i in step.restore) if every else None)
        assert step.basis == (f"measured {step.measured_on}" if every else "estimate")
        ends.append(ends[-1] + step.seconds)
        days = [measured[i].day for s in got.steps[: step.step] for i in s.restore if i in measured]
        all_measured = all(i in measured for s in got.steps[: step.step] for i in s.restore)
        oldest.append(min(days) if all_measured else None)
    step_of = got.step_of()
    expected = [
        (c.service, ends[step_of[c.service]], oldest[step_of[c.service]])
        for c in got.continuity
        if c.rto is not None and ends[step_of[c.service]] > c.rto
    ]
    assert [(r.service, r.restored_by, r.measured_on) for r in got.rto_at_risk] == expected
    assert all(
        r.basis == ("estimate" if r.measured_on is None else f"measured {r.measured_on}") for r in got.rto_at_risk
    )
    # No measured time at all: every step is the estimate, as before.
    assert all((s.seconds, s.measured_on, s.measured) == (step_seconds, None, ()) for s in guessed.steps)


CHAIN = """\
apiVersion: ringfence/v1
estate: chain
services:
  - {id: lab, tier: 1, rto: 2h, requires: [app]}
assets:
  - {id: app, kind: vm, requires: [db]}
  - {id: db, kind: vm, requires: [san]}
  - {id: san, kind: storage}
"""
CHAIN_ASSURANCE = """\
apiVersion: ringfence/v1
assurance: chain
restore-tests:
  - {subject: san, date: 2026-01-10, time-to-restore: 20m}
  - {subject: db, date: 2026-03-04, time-to-restore: 40m}
  - {subject: db, date: 2025-03-04, time-to-restore: 4h}
  - {subject: app, date: 2026-02-01, time-to-restore: 30m}
  - {subject: lab, date: 2026-02-02, time-to-restore: 10m}
  - {subject: lab, date: 2027-02-02, time-to-restore: 9h}
"""


def test_a_fully_measured_chain_fits_its_rto_and_a_guess_does_not() -> None:
    """san 20m, db 40m (its latest test, not the 4h one before), app 30m, lab 10m: 1h 40m, within the 2h RTO,
    measured as of the oldest test (2026-01-10); the 2027 test did not exist yet on 2026-06-01."""
    from ringfence.core.assurance import measured_restores

    estate = parse_estate_text(CHAIN, "chain.yaml")
    graph = compile_estate(estate)
    measured = measured_restores(parse_assurance_text(CHAIN_ASSURANCE, estate, "a.yaml"), date(2026, 6, 1))
    assert measured["db"] == MeasuredRestore(40 * 60, date(2026, 3, 4))
    assert measured["lab"] == MeasuredRestore(10 * 60, date(2026, 2, 2))
    failure = graph.resolve_failures(["san"])
    got = plan_recovery(graph, failure, measured=measured)
    assert [(s.restore, s.seconds, s.basis) for s in got.steps] == [
        (("san",), 1200, "measured 2026-01-10"),
        (("db",), 2400, "measured 2026-03-04"),
        (("app",), 1800, "measured 2026-02-01"),
        (("lab",), 600, "measured 2026-02-02"),
    ]
    assert got.rto_at_risk == ()
    assert got.restored_by(4) == (6000, date(2026, 1, 10))
    # Without the measured times, four estimated hours put the 2h RTO at risk, and say it is a guess.
    guessed = plan_recovery(graph, failure)
    assert [(r.service, r.restored_by, r.basis) for r in guessed.rto_at_risk] == [("lab", 4 * 3600, "estimate")]
    # One item without a test makes its step and everything after it an estimate.
    partly = plan_recovery(graph, failure, measured={k: v for k, v in measured.items() if k != "app"})
    assert [s.basis for s in partly.steps] == [
        "measured 2026-01-10",
        "measured 2026-03-04",
        "estimate",
        "measured 2026-02-02",
    ]
    assert [(r.service, r.restored_by, r.basis) for r in partly.rto_at_risk] == [
        ("lab", 1200 + 2400 + 3600 + 600, "estimate")
    ]


def test_the_continuity_sheet_times_each_step_of_its_own_items() -> None:
    from ringfence.core.assurance import measured_restores

    estate = parse_estate_text(CHAIN, "chain.yaml")
    graph = compile_estate(estate)
    measured = measured_restores(parse_assurance_text(CHAIN_ASSURANCE, estate, "a.yaml"), date(2026, 6, 1))
    (sheet,) = continuity_sheets(graph, measured=measured)
    assert [(line.items, line.seconds, line.basis) for line in sheet.restore] == [
        (("san",), 1200, "measured 2026-01-10"),
        (("db",), 2400, "measured 2026-03-04"),
        (("app",), 1800, "measured 2026-02-01"),
        (("lab",), 600, "measured 2026-02-02"),
    ]
    assert (sheet.restored_after, sheet.restored_basis) == (6000, "measured 2026-01-10")
    assert sheet.restored_text == "Back after about 1h 40m (measured 2026-01-10)."
    (guessed,) = continuity_sheets(graph)
    assert {(line.seconds, line.basis) for line in guessed.restore} == {(ESTIMATED_STEP, "estimate")}
    assert (guessed.restored_after, guessed.restored_basis) == (4 * ESTIMATED_STEP, "estimate")


def test_recover_and_the_continuity_pack_take_the_assurance_file(tmp_path: Path) -> None:
    from cli.conftest import run_cli  # the suite's one way of running the console script

    estate, assurance = tmp_path / "chain.yaml", tmp_path / "assurance.yaml"
    estate.write_text(CHAIN)
    assurance.write_text(CHAIN_ASSURANCE.replace("2027-02-02", "2026-02-02"))
    result = run_cli("recover", str(estate), "--fail", "san", "--assurance", str(assurance), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [s["basis"] for s in document["steps"]] == [
        "measured 2026-01-10",
        "measured 2026-03-04",
        "measured 2026-02-01",
        "measured 2026-02-02",
    ]
    # The latest test of lab (9h on 2026-02-02, the slowest of that day) puts it at risk, measured.
    assert document["rto_at_risk"] == [
        {
            "service": "lab",
            "tier": 1,
            "rto": 7200,
            "restored_by": 1200 + 2400 + 1800 + 9 * 3600,
            "basis": "measured 2026-01-10",
        }
    ]
    text = run_cli("recover", str(estate), "--fail", "san", "--assurance", str(assurance))
    assert "measured 2026-03-04" in text.stdout
    result = run_cli(
        "continuity", "pack", str(estate), "--out", str(tmp_path / "pack"), "--assurance", str(assurance), "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["restored_after"] == {
        "lab": {"seconds": 1200 + 2400 + 1800 + 9 * 3600, "basis": "measured 2026-01-10"}
    }
    assert "measured 2026-03-04" in (tmp_path / "pack" / "lab.html").read_text()
    # A bad assurance file is refused with its file, line and field, and nothing is written.
    assurance.write_text(CHAIN_ASSURANCE.replace("subject: db", "subject: nowhere"))
    refused = run_cli("recover", str(estate), "--fail", "san", "--assurance", str(assurance))
    assert refused.returncode == 2
    assert f"{assurance}:5" in refused.stderr
    assert "nowhere" in refused.stderr
