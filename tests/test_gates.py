"""Health gates: data-driven cases, p-values against a hand-written exact oracle, and properties.

Each file in tests/cases/gates/ is one stratum sample and the verdict it must get:

    description: why this case exists, with its p-value worked out by hand
    stratum: [host, esxi, PowerEdge R750, city]     # null or "" is a missing value
    policy: {max_failures: 1}                        # GatePolicy fields; omitted = defaults
    updated:                                         # the ring's updated members in this stratum
      - {id: esx-01, status: failed, signal: heartbeat_lost, after: 840}   # after: seconds after install
      - {status: healthy, count: 11}                 # 11 assets named updated-healthy-1 … -11
    control: [{status: healthy, count: 6}]           # the stratum's assets not yet updated
    expect: {outcome: failed, p_value: 0.01, sentence: "stratum …: failed"}   # no p_value: no test ran
"""

from __future__ import annotations

import ast
import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.core.errors import InputError
from ringfence.core.gates import (
    AssetHealth,
    AssetStatus,
    FailureSignal,
    GateOutcome,
    GatePolicy,
    StratumSample,
    StratumVerdict,
    format_stratum,
    judge_ring,
    judge_stratum,
)

CASES = Path(__file__).parent / "cases" / "gates"
CASE_FILES = sorted(CASES.glob("*.yaml"))
STRATUM = ("host", "esxi", "PowerEdge R750", "city")

# scipy's first import can take seconds on a busy machine; hypothesis must not call that a slow example.
properties = settings(deadline=None, max_examples=150)


# --- data-driven cases ----------------------------------------------------------------------------------


def _group(entries: list[dict[str, Any]], name: str) -> tuple[AssetHealth, ...]:
    out: list[AssetHealth] = []
    for entry in entries:
        status = AssetStatus(entry["status"])
        signal = FailureSignal(entry["signal"]) if "signal" in entry else None
        ids = [entry["id"]] if "id" in entry else [f"{name}-{status}-{i}" for i in range(1, entry["count"] + 1)]
        out += [AssetHealth(i, status, signal, entry.get("after")) for i in ids]
    return tuple(out)


def _load_case(path: Path) -> tuple[StratumSample, GatePolicy, dict[str, Any]]:
    case = yaml.safe_load(path.read_text())
    sample = StratumSample(
        tuple(case["stratum"]), _group(case["updated"], "updated"), _group(case["control"], "control")
    )
    return sample, GatePolicy(**case.get("policy", {})), case["expect"]


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case(path: Path) -> None:
    sample, policy, expect = _load_case(path)
    verdict = judge_stratum(sample, policy)
    assert verdict.sentence == expect["sentence"]
    assert verdict.outcome == GateOutcome(expect["outcome"])
    if "p_value" in expect:
        assert verdict.p_value == pytest.approx(expect["p_value"], rel=1e-9)
    else:
        assert verdict.p_value is None


def test_cases_reach_every_outcome() -> None:
    reached = {GateOutcome(_load_case(p)[2]["outcome"]) for p in CASE_FILES}
    assert reached == set(GateOutcome)


# --- p-values against an exact oracle written from the definitions -----------------------------------


def binomial_tail(f: int, n: int, p: float) -> Fraction:
    """P(X ≥ f), X ~ Binomial(n, p), exactly (p taken as its exact binary value)."""
    q = Fraction(p)
    return sum((math.comb(n, k) * q**k * (1 - q) ** (n - k) for k in range(f, n + 1)), Fraction(0))


def hypergeometric_tail(f: int, n: int, c: int, m: int) -> Fraction:
    """One-sided Fisher: P(X ≥ f) when n of n + m assets are drawn and f + c of them failed."""
    failed, total = f + c, n + m
    hits = sum(math.comb(failed, k) * math.comb(total - failed, n - k) for k in range(f, min(failed, n) + 1))
    return Fraction(hits, math.comb(total, n))


def _sample(f: int, healthy: int, unknown: int, c: int, control_healthy: int) -> StratumSample:
    updated = (
        [AssetHealth(f"u-failed-{i}", AssetStatus.failed, FailureSignal.crashed) for i in range(f)]
        + [AssetHealth(f"u-healthy-{i}", AssetStatus.healthy) for i in range(healthy)]
        + [AssetHealth(f"u-unknown-{i}", AssetStatus.unknown) for i in range(unknown)]
    )
    control = [AssetHealth(f"c-failed-{i}", AssetStatus.failed) for i in range(c)] + [
        AssetHealth(f"c-healthy-{i}", AssetStatus.healthy) for i in range(control_healthy)
    ]
    return StratumSample(STRATUM, tuple(updated), tuple(control))


def test_hand_computed_p_values() -> None:
    # 1 of 1 canary crashed, baseline 1%: P = 0.01 exactly. Fisher against 6 healthy: 1/7.
    canary = judge_stratum(_sample(1, 0, 0, 0, 6), GatePolicy())
    assert binomial_tail(1, 1, 0.01) == Fraction(0.01)
    assert hypergeometric_tail(1, 1, 0, 6) == Fraction(1, 7)
    assert canary.p_binomial == pytest.approx(0.01, rel=1e-12)
    assert canary.p_fisher == pytest.approx(1 / 7, rel=1e-12)
    assert canary.p_value == canary.p_binomial  # a healthy control does not have to be out-tested
    # 3 of 3 crashed against 1 of 10: Fisher = C(4,3) C(9,0) / C(13,3) = 4/286, and it decides.
    worse = judge_stratum(_sample(3, 0, 0, 1, 9), GatePolicy())
    assert hypergeometric_tail(3, 3, 1, 10) == Fraction(4, 286)
    assert worse.p_fisher == pytest.approx(4 / 286, rel=1e-12)
    assert worse.p_binomial == pytest.approx(0.1**3, rel=1e-9)
    assert worse.p_value == worse.p_fisher
    assert worse.outcome is GateOutcome.failed


@properties
@given(
    f=st.integers(1, 12),
    healthy=st.integers(0, 12),
    unknown=st.integers(0, 3),
    c=st.integers(0, 6),
    control_healthy=st.integers(0, 25),
    baseline=st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.2]),
)
def test_p_values_match_the_exact_oracle(
    f: int, healthy: int, unknown: int, c: int, control_healthy: int, baseline: float
) -> None:
    policy = GatePolicy(baseline_failure_rate=baseline)
    verdict = judge_stratum(_sample(f, healthy, unknown, c, control_healthy), policy)
    n_tested, m = f + healthy + unknown, c + control_healthy  # the silent are counted as healthy
    p0 = max(baseline, c / m) if m else baseline
    expected_binomial = float(binomial_tail(f, n_tested, p0))
    assert verdict.p_binomial == pytest.approx(expected_binomial, rel=1e-7, abs=1e-14)
    if m:
        assert verdict.p_fisher == pytest.approx(float(hypergeometric_tail(f, n_tested, c, m)), rel=1e-7)
    else:
        assert verdict.p_fisher is None
    # Intersection-union: the binomial test always counts, Fisher only when the control has failures.
    deciding = max(verdict.p_binomial, verdict.p_fisher) if c and verdict.p_fisher is not None else verdict.p_binomial
    assert verdict.p_value == deciding
    assert (verdict.outcome is GateOutcome.failed) == (deciding < policy.alpha)


# --- properties of the outcome ---------------------------------------------------------------------------

statuses = st.sampled_from(list(AssetStatus))
policies = st.builds(
    GatePolicy,
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
    baseline_failure_rate=st.sampled_from([0.0, 0.01, 0.1]),
    max_failures=st.integers(0, 2),
    min_coverage=st.sampled_from([0.5, 0.8, 1.0]),
)


def _health(prefix: str, i: int, status: AssetStatus) -> AssetHealth:
    signal = FailureSignal.crashed if status is AssetStatus.failed else None
    return AssetHealth(f"{prefix}-{i}", status, signal)


@st.composite
def samples(draw: st.DrawFn, min_updated: int = 1, may_be_invalid: bool = False) -> StratumSample:
    updated = tuple(
        _health("u", i, s) for i, s in enumerate(draw(st.lists(statuses, min_size=min_updated, max_size=15)))
    )
    control = tuple(_health("c", i, s) for i, s in enumerate(draw(st.lists(statuses, max_size=15))))
    is_invalid: bool = draw(st.booleans()) if may_be_invalid else False
    if is_invalid and updated:
        control += (AssetHealth(updated[0].asset_id, AssetStatus.healthy),)  # on both sides: an error
    return StratumSample(STRATUM, updated, control)


def _add(sample: StratumSample, status: AssetStatus, *, to_control: bool = False) -> StratumSample:
    if to_control:
        return replace(sample, control=(*sample.control, _health("c-new", 0, status)))
    return replace(sample, updated=(*sample.updated, _health("u-new", 0, status)))


def _set_updated(sample: StratumSample, index: int, status: AssetStatus) -> StratumSample:
    updated = list(sample.updated)
    updated[index] = _health("u", index, status)
    return replace(sample, updated=tuple(updated))


@properties
@given(sample=samples(), policy=policies, data=st.data())
def test_more_failures_never_undo_a_failed_verdict(
    sample: StratumSample, policy: GatePolicy, data: st.DataObject
) -> None:
    if judge_stratum(sample, policy).outcome is not GateOutcome.failed:
        return
    assert judge_stratum(_add(sample, AssetStatus.failed), policy).outcome is GateOutcome.failed
    not_failed = [i for i, h in enumerate(sample.updated) if h.status is not AssetStatus.failed]
    if not_failed:
        index = data.draw(st.sampled_from(not_failed))
        worse = _set_updated(sample, index, AssetStatus.failed)
        assert judge_stratum(worse, policy).outcome is GateOutcome.failed


@properties
@given(sample=samples(), policy=policies, to_control=st.booleans(), data=st.data())
def test_more_healthy_reports_never_undo_a_pass(
    sample: StratumSample, policy: GatePolicy, to_control: bool, data: st.DataObject
) -> None:
    if judge_stratum(sample, policy).outcome is not GateOutcome.passed:
        return
    assert judge_stratum(_add(sample, AssetStatus.healthy, to_control=to_control), policy).outcome is (
        GateOutcome.passed
    )
    silent = [i for i, h in enumerate(sample.updated) if h.status is AssetStatus.unknown]
    if silent:
        heard = _set_updated(sample, data.draw(st.sampled_from(silent)), AssetStatus.healthy)
        assert judge_stratum(heard, policy).outcome is GateOutcome.passed


@properties
@given(sample=samples(), policy=policies)
def test_healthy_updates_and_control_failures_never_make_a_failure(sample: StratumSample, policy: GatePolicy) -> None:
    # The environmental rule: failures in the control group can only make the update look less guilty.
    if judge_stratum(sample, policy).outcome is GateOutcome.failed:
        return
    assert judge_stratum(_add(sample, AssetStatus.healthy), policy).outcome is not GateOutcome.failed
    control_failed = _add(sample, AssetStatus.failed, to_control=True)
    assert judge_stratum(control_failed, policy).outcome is not GateOutcome.failed


@properties
@given(unknown=st.integers(1, 20), control=st.lists(statuses, max_size=10), policy=policies)
def test_nobody_reporting_is_never_a_pass(unknown: int, control: list[AssetStatus], policy: GatePolicy) -> None:
    sample = StratumSample(
        STRATUM,
        tuple(_health("u", i, AssetStatus.unknown) for i in range(unknown)),
        tuple(_health("c", i, s) for i, s in enumerate(control)),
    )
    verdict = judge_stratum(sample, policy)
    assert verdict.outcome is GateOutcome.inconclusive
    assert "missing telemetry is never a pass" in verdict.sentence


@properties
@given(sample=samples(), policy=policies)
def test_coverage_below_the_policy_is_never_a_pass(sample: StratumSample, policy: GatePolicy) -> None:
    verdict = judge_stratum(sample, policy)
    if verdict.updated_reported / verdict.updated < policy.min_coverage:
        assert verdict.outcome in {GateOutcome.failed, GateOutcome.inconclusive}


@properties
@given(sample=samples(), policy=policies)
def test_a_verdict_is_one_sentence_with_its_counts(sample: StratumSample, policy: GatePolicy) -> None:
    verdict = judge_stratum(sample, policy)
    assert verdict.sentence.startswith(f"stratum {format_stratum(STRATUM)}: ")
    assert verdict.sentence.endswith(f": {verdict.outcome}")
    assert "\n" not in verdict.sentence
    assert f"of {verdict.updated} " in verdict.sentence
    if verdict.p_value is not None:
        assert "(p=" in verdict.sentence


# --- rings -----------------------------------------------------------------------------------------------


def _ring_oracle(verdicts: list[StratumVerdict], has_repeats: bool) -> GateOutcome:
    outcomes = {v.outcome for v in verdicts}
    if GateOutcome.failed in outcomes:
        return GateOutcome.failed
    if not verdicts or has_repeats or GateOutcome.error in outcomes:
        return GateOutcome.error
    if GateOutcome.inconclusive in outcomes:
        return GateOutcome.inconclusive
    return GateOutcome.passed


@properties
@given(
    parts=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), samples(min_updated=0, may_be_invalid=True)),
        max_size=6,
    ),
    policy=policies,
)
def test_ring_outcome_precedence(parts: list[tuple[str, StratumSample]], policy: GatePolicy) -> None:
    ring_samples = [replace(s, stratum=("host", name)) for name, s in parts]
    ring = judge_ring(2, ring_samples, policy)
    judged = [judge_stratum(s, policy) for s in ring_samples if s.updated]
    assert ring.strata == tuple(judged)  # strata without updated members are not judged
    has_repeats = len({s.stratum for s in ring_samples}) < len(ring_samples)
    assert ring.outcome is _ring_oracle(judged, has_repeats)
    assert ring.sentence.startswith(f"ring 2 {ring.outcome}: ")


def _stratum(name: str, outcome: GateOutcome) -> StratumSample:
    updated = {
        GateOutcome.passed: [AssetHealth(f"{name}-1", AssetStatus.healthy)],
        GateOutcome.failed: [AssetHealth(f"{name}-1", AssetStatus.failed, FailureSignal.crashed)],
        GateOutcome.inconclusive: [AssetHealth(f"{name}-1", AssetStatus.unknown)],
        GateOutcome.error: [],  # made an error below: the asset is on both sides
    }[outcome]
    control = [AssetHealth(f"{name}-c{i}", AssetStatus.healthy) for i in range(6)]
    if outcome is GateOutcome.error:
        updated = [control[0]]
    return StratumSample(("host", "esxi", name, "city"), tuple(updated), tuple(control))


def test_ring_sentence_names_the_failed_strata() -> None:
    samples_ = [_stratum("PowerEdge R750", GateOutcome.failed)] + [
        _stratum(f"model-{i}", GateOutcome.passed) for i in range(3)
    ]
    ring = judge_ring(1, samples_, GatePolicy())
    assert ring.outcome is GateOutcome.failed
    assert ring.sentence == "ring 1 failed: 1 of 4 strata failed (host/esxi/PowerEdge R750/city)"


def test_ring_sentence_lists_every_non_passing_kind_in_precedence_order() -> None:
    samples_ = [
        _stratum("m1", GateOutcome.inconclusive),
        _stratum("m2", GateOutcome.error),
        _stratum("m3", GateOutcome.passed),
        StratumSample(("host", "esxi", "untouched", "city"), (), (AssetHealth("x", AssetStatus.healthy),)),
    ]
    ring = judge_ring(3, samples_, GatePolicy())
    assert ring.outcome is GateOutcome.error
    assert ring.sentence == (
        "ring 3 error: 1 of 3 strata in error (host/esxi/m2/city); 1 inconclusive (host/esxi/m1/city)"
    )
    assert [v.stratum[2] for v in ring.strata] == ["m1", "m2", "m3"]


def test_ring_all_passed_and_long_name_lists() -> None:
    assert judge_ring(0, [_stratum("m", GateOutcome.passed)], GatePolicy()).sentence == (
        "ring 0 passed: 1 of 1 stratum passed"
    )
    many = judge_ring(1, [_stratum(f"m{i}", GateOutcome.inconclusive) for i in range(7)], GatePolicy())
    assert many.sentence == (
        "ring 1 inconclusive: 7 of 7 strata inconclusive (host/esxi/m0/city, host/esxi/m1/city, "
        "host/esxi/m2/city, host/esxi/m3/city, host/esxi/m4/city and 2 more)"
    )


def test_a_failed_stratum_outranks_one_in_error() -> None:
    samples_ = [_stratum("m1", GateOutcome.error), _stratum("m2", GateOutcome.failed)]
    ring = judge_ring(1, samples_, GatePolicy())
    assert [v.outcome for v in ring.strata] == [GateOutcome.error, GateOutcome.failed]
    assert ring.outcome is GateOutcome.failed
    assert ring.sentence == "ring 1 failed: 1 of 2 strata failed (host/esxi/m2/city); 1 in error (host/esxi/m1/city)"


def test_ring_with_nothing_to_judge_is_an_error() -> None:
    untouched = StratumSample(STRATUM, (), (AssetHealth("x", AssetStatus.healthy),))
    for ring_samples in ([], [untouched]):
        ring = judge_ring(1, ring_samples, GatePolicy())
        assert ring.outcome is GateOutcome.error
        assert ring.sentence == "ring 1 error: no stratum has updated members"
        assert ring.strata == ()


def test_ring_with_a_stratum_listed_twice_is_an_error() -> None:
    sample = _stratum("m", GateOutcome.passed)
    ring = judge_ring(1, [sample, sample], GatePolicy())
    assert ring.outcome is GateOutcome.error
    assert ring.sentence == "ring 1 error: 2 of 2 strata passed; stratum host/esxi/m/city listed more than once"


@pytest.mark.parametrize("ring", [-1, True, 1.0])
def test_ring_number_must_be_a_whole_number_from_zero(ring: Any) -> None:
    with pytest.raises(InputError, match="a ring is numbered from 0"):
        judge_ring(ring, [_stratum("m", GateOutcome.passed)], GatePolicy())


# --- the value objects -----------------------------------------------------------------------------------


def test_format_stratum_shows_missing_values_as_a_dash() -> None:
    assert format_stratum(("host", "esxi", "PowerEdge R750", "city")) == "host/esxi/PowerEdge R750/city"
    assert format_stratum(("host", None, "", "city")) == "host/-/-/city"
    assert format_stratum(()) == "-"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("alpha", 0.0, "gate.alpha: must be a number between 0 and 1, exclusive, got 0.0"),
        ("alpha", 1, "gate.alpha: must be a number between 0 and 1, exclusive, got 1"),
        ("alpha", math.nan, "gate.alpha: must be a number between 0 and 1, exclusive, got nan"),
        ("baseline_failure_rate", 1.0, "gate.baseline_failure_rate: must be a number from 0 up to"),
        ("baseline_failure_rate", -0.01, "gate.baseline_failure_rate: must be a number from 0 up to"),
        ("max_failures", -1, "gate.max_failures: must be a whole number ≥ 0, got -1"),
        ("max_failures", 1.5, "gate.max_failures: must be a whole number ≥ 0, got 1.5"),
        ("max_failures", True, "gate.max_failures: must be a whole number ≥ 0, got True"),
        ("min_coverage", 0, "gate.min_coverage: must be a number above 0 and at most 1, got 0"),
        ("min_coverage", 1.01, "gate.min_coverage: must be a number above 0 and at most 1, got 1.01"),
        ("min_coverage", "all", "gate.min_coverage: must be a number above 0 and at most 1, got 'all'"),
    ],
)
def test_policy_rejects_out_of_range_values(field: str, value: Any, message: str) -> None:
    with pytest.raises(InputError) as raised:
        GatePolicy(**{field: value})
    assert str(raised.value).startswith(message)
    assert raised.value.problems[0].path == ("gate", field)


def test_policy_reports_every_problem_at_once() -> None:
    with pytest.raises(InputError) as raised:
        GatePolicy(alpha=2.0, max_failures=-3)
    assert [p.path for p in raised.value.problems] == [("gate", "alpha"), ("gate", "max_failures")]


def test_policy_edges_are_accepted() -> None:
    GatePolicy(alpha=0.999, baseline_failure_rate=0.0, max_failures=0, min_coverage=1.0)
    GatePolicy(baseline_failure_rate=0.99, min_coverage=0.001, max_failures=100)


def test_asset_health_holds_its_invariants() -> None:
    with pytest.raises(InputError, match="asset 'h1' is healthy but carries the failure signal 'crashed'"):
        AssetHealth("h1", AssetStatus.healthy, FailureSignal.crashed)
    with pytest.raises(InputError, match="asset 'h1': seconds_after_install must be 0 or more, got -5"):
        AssetHealth("h1", AssetStatus.failed, seconds_after_install=-5)
    with pytest.raises(InputError, match="empty asset_id"):
        AssetHealth("", AssetStatus.unknown)
    assert AssetHealth("h1", AssetStatus.failed).signal is None  # a failure need not know its signal


_CORE_ALLOWANCE = {"ringfence.core.errors", "ringfence.core.durations", "ringfence.core.words"}


def test_gates_imports_only_the_domain_core_allowance() -> None:
    source = Path(__file__).parents[1] / "src" / "ringfence" / "core" / "gates.py"
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    allowed_roots = {"numpy", "scipy"}
    for module in modules:
        root = module.split(".")[0]
        assert module in _CORE_ALLOWANCE or root in allowed_roots or root in _stdlib(), module


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names)
