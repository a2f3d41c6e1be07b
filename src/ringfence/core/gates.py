"""Health gates: after a ring bakes, judge each stratum's updated members against its not-yet-updated ones.

A *stratum* is a tuple of attribute values (``("host", "esxi", "PowerEdge R750", "city")``). For each stratum
the ring touched, the *updated* group is the stratum's members updated so far and the *control* group is the
stratum's assets not updated yet. Each member reports an :class:`AssetHealth`: healthy, failed (with the
signal seen) or unknown (no telemetry in the judging window).

Counts, per stratum
    ``N`` updated members, of which ``n`` reported (healthy or failed), ``f`` failed and ``u = N - n`` are
    unknown; ``m`` control members reported, ``c`` of them failed. Control members with unknown status are
    no evidence either way and are left out of the control counts.

The decision, in this order (:func:`judge_stratum`)
    1. **error** — the sample itself does not hold: no updated members, an asset listed twice, or the same
       asset both updated and not yet updated.
    2. **The tests**, run only when ``f > max_failures``. Both are one-sided ("the update made it worse")
       and exact. Updated members that did not report are counted as healthy here, so a failure that is
       proved with telemetry missing stays proved whatever the missing reports turn out to say; with full
       coverage this is simply ``f`` of ``n``.

       - binomial: ``P(X ≥ f)`` for ``X ~ Binomial(N, p0)``, ``p0 = max(baseline_failure_rate, c / m)``
         (``c / m`` only when ``m ≥ 1``) — are there more failures than the estate fails at anyway?
       - Fisher (when ``m ≥ 1``): ``P(X ≥ f)`` for ``X`` hypergeometric with the table's margins, i.e. is
         the updated group's failure rate above the control group's, allowing for chance in both?

       They combine as an intersection-union test: the update is judged worse only when every test that
       applies says so, and the verdict's ``p_value`` is the largest of their p-values. The binomial test
       always applies. The Fisher test applies when the control group has failures (``c ≥ 1``): only then
       can the control explain the updated failures (a network outage hits updated and not-updated alike),
       and only then does the control estimate ``c / m`` carry chance that the binomial test ignores. With
       ``c = 0`` the control shows no environmental trouble and the baseline is the reference; requiring
       Fisher there would make a lone canary unjudgeable in any stratum smaller than 20 assets. (``p_fisher``
       is still computed and kept whenever ``m ≥ 1``.)

       ``p_value < alpha`` → **failed**, even with telemetry missing.
    3. **inconclusive** — coverage ``n / N`` is below ``min_coverage``: missing telemetry is never a pass.
    4. **passed** — ``f ≤ max_failures``. (``N ≥ 1`` and ``min_coverage > 0``, so someone reported.)
    5. **inconclusive** — more failures than tolerated but not significantly worse. The sentence says why:
       "the control group is failing too" when ``c ≥ 1`` and either ``c / m`` is above the baseline (the
       control set ``p0``) or the binomial test alone was significant (Fisher could not separate the
       groups); otherwise the failures are not significantly above the baseline rate.

A ring (:func:`judge_ring`) is judged on the strata with updated members; its outcome is **failed** if any
stratum failed (a failure halts and rolls back, whatever else is wrong), else **error** if any stratum could
not be judged, else **inconclusive** if any was, else **passed**. A ring with no stratum to judge, or with a
stratum listed twice, is an error (unless a stratum failed).

Every verdict is one sentence with its numbers, e.g.
``stratum host/esxi/PowerEdge R750/city: 1 of 1 updated lost heartbeat 14 min after install; 0 of 6 not yet
updated failed (p=0.010 < 0.05): failed``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from ringfence.core.durations import humanize_duration
from ringfence.core.errors import InputError, Problem
from ringfence.core.words import count, names

Stratum = tuple[str | None, ...]
"""Attribute values of a stratum, in the update's ``strata`` order; ``None`` or ``""`` is a missing value."""


class AssetStatus(StrEnum):
    healthy = "healthy"
    failed = "failed"
    unknown = "unknown"  # no telemetry in the judging window


class FailureSignal(StrEnum):
    heartbeat_lost = "heartbeat_lost"
    crashed = "crashed"
    reboot_loop = "reboot_loop"
    service_check_failed = "service_check_failed"
    install_failed = "install_failed"


# How a signal reads after "1 of 3 updated …".
_SIGNAL_WORDS: dict[FailureSignal | None, str] = {
    FailureSignal.heartbeat_lost: "lost heartbeat",
    FailureSignal.crashed: "crashed",
    FailureSignal.reboot_loop: "went into a reboot loop",
    FailureSignal.service_check_failed: "failed a service check",
    FailureSignal.install_failed: "failed to install",
    None: "failed",
}


class GateOutcome(StrEnum):
    passed = "passed"
    failed = "failed"  # halt and roll back
    inconclusive = "inconclusive"  # pause for a human
    error = "error"  # the sample could not be judged


@dataclass(frozen=True)
class AssetHealth:
    """What one asset reported in the judging window. Only a failed asset carries a signal."""

    asset_id: str
    status: AssetStatus
    signal: FailureSignal | None = None
    seconds_after_install: float | None = None  # when the failure was seen, for failed assets
    detail: str | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.asset_id:
            problems.append("an asset's health must name the asset, got an empty asset_id")
        if self.signal is not None and self.status is not AssetStatus.failed:
            problems.append(
                f"asset '{self.asset_id}' is {self.status} but carries the failure signal '{self.signal}'; "
                "only a failed asset has a signal"
            )
        t = self.seconds_after_install
        if t is not None and not (math.isfinite(t) and t >= 0):
            problems.append(f"asset '{self.asset_id}': seconds_after_install must be 0 or more, got {t}")
        if problems:
            raise InputError(problems[0] if len(problems) == 1 else [Problem(p) for p in problems])


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds of a gate, from the update file's optional ``gate:`` mapping."""

    alpha: float = 0.05  # significance for "the update made it worse"
    baseline_failure_rate: float = 0.01  # expected failures per asset per bake window without the update
    max_failures: int = 0  # failures tolerated among a stratum's updated members before a test is run
    min_coverage: float = 1.0  # share of updated members that must report telemetry for a pass

    def __post_init__(self) -> None:
        problems: list[Problem] = []

        def check(name: str, value: object, ok: bool, expected: str) -> None:
            if not ok:
                problems.append(Problem(f"must be {expected}, got {value!r}", path=("gate", name)))

        def is_number(value: object) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

        a, b, k, cov = self.alpha, self.baseline_failure_rate, self.max_failures, self.min_coverage
        check("alpha", a, is_number(a) and 0 < a < 1, "a number between 0 and 1, exclusive")
        check("baseline_failure_rate", b, is_number(b) and 0 <= b < 1, "a number from 0 up to (not including) 1")
        check("max_failures", k, isinstance(k, int) and not isinstance(k, bool) and k >= 0, "a whole number ≥ 0")
        # 0 would let a stratum where nobody reported pass: missing telemetry is never a pass.
        check("min_coverage", cov, is_number(cov) and 0 < cov <= 1, "a number above 0 and at most 1")
        if problems:
            raise InputError(problems)


@dataclass(frozen=True)
class StratumSample:
    """One stratum's reports after a ring baked: its updated members and its not-yet-updated control."""

    stratum: Stratum
    updated: tuple[AssetHealth, ...]
    control: tuple[AssetHealth, ...]


@dataclass(frozen=True)
class StratumVerdict:
    """The judgement of one stratum. ``p_value`` is the deciding p-value, ``None`` when no test ran."""

    stratum: Stratum
    outcome: GateOutcome
    sentence: str
    p_value: float | None
    updated: int  # N: updated members
    updated_reported: int  # n
    updated_failed: int  # f
    control: int  # control members, reported or not
    control_reported: int  # m
    control_failed: int  # c
    p_binomial: float | None = None
    p_fisher: float | None = None


@dataclass(frozen=True)
class RingVerdict:
    """The judgement of a ring: the strata with updated members, and the outcome they add up to."""

    ring: int
    outcome: GateOutcome
    strata: tuple[StratumVerdict, ...]
    sentence: str


def format_stratum(stratum: Stratum) -> str:
    """``("host", "esxi", None, "city")`` → ``host/esxi/-/city``."""
    return "/".join(value if value else "-" for value in stratum) or "-"


def judge_stratum(sample: StratumSample, policy: GatePolicy) -> StratumVerdict:
    """Judge one stratum by the rules in the module docstring."""
    head = f"stratum {format_stratum(sample.stratum)}: "
    updated, control = sample.updated, sample.control
    failures = [h for h in updated if h.status is AssetStatus.failed]
    big_n = len(updated)
    n = sum(1 for h in updated if h.status is not AssetStatus.unknown)
    f, u = len(failures), big_n - n
    m = sum(1 for h in control if h.status is not AssetStatus.unknown)
    c = sum(1 for h in control if h.status is AssetStatus.failed)

    def verdict(
        outcome: GateOutcome,
        body: str,
        p: float | None = None,
        pb: float | None = None,
        pf: float | None = None,
    ) -> StratumVerdict:
        return StratumVerdict(
            stratum=sample.stratum,
            outcome=outcome,
            sentence=f"{head}{body}: {outcome}",
            p_value=p,
            updated=big_n,
            updated_reported=n,
            updated_failed=f,
            control=len(control),
            control_reported=m,
            control_failed=c,
            p_binomial=pb,
            p_fisher=pf,
        )

    problem = _sample_problem(sample)
    if problem:
        return verdict(GateOutcome.error, problem)

    seen = _describe_updated(failures, big_n)
    coverage_ok = n / big_n >= policy.min_coverage

    if f <= policy.max_failures:
        if f:
            seen += f" ({count(policy.max_failures, 'failure')} tolerated)"
        if not coverage_ok:
            missing = f"{seen}, {u} of {big_n} did not report" if f else f"{u} of {big_n} updated did not report"
            return verdict(GateOutcome.inconclusive, f"{missing}: missing telemetry is never a pass")
        required = f" (at least {policy.min_coverage * 100:g}% required)" if u else ""
        return verdict(GateOutcome.passed, f"{seen}, {n} of {big_n} reported{required}")

    # f > max_failures: is the update worse? Unknown members count as healthy (see the module docstring).
    control_rate = c / m if m else 0.0
    p0 = max(policy.baseline_failure_rate, control_rate)
    p_binomial, p_fisher = _binomial_tail(f, big_n, p0), (_fisher_tail(f, big_n, c, m) if m else None)
    p = p_binomial if c == 0 or p_fisher is None else max(p_binomial, p_fisher)
    is_worse = p < policy.alpha
    evidence = f"{seen}{f', {u} of {big_n} did not report' if u else ''}; {_describe_control(control, m, c)}"
    evidence += f" (p={_format_p(p, policy.alpha)} {'<' if is_worse else '≥'} {policy.alpha:g})"

    if is_worse:
        # Proved even if every silent member turns out healthy: halt and roll back.
        return verdict(GateOutcome.failed, evidence, p, p_binomial, p_fisher)
    if not coverage_ok:
        reason = "missing telemetry is never a pass"
    elif c and (control_rate > policy.baseline_failure_rate or p_binomial < policy.alpha):
        # The failures are explained as well by the environment as by the update (an outage, a storm).
        reason = "the control group is failing too"
    else:
        reason = (
            f"more than the {count(policy.max_failures, 'failure')} tolerated, but not significantly "
            f"more than the baseline rate of {policy.baseline_failure_rate:.4g} per asset"
        )
    return verdict(GateOutcome.inconclusive, f"{evidence}: {reason}", p, p_binomial, p_fisher)


def judge_ring(ring: int, samples: Sequence[StratumSample], policy: GatePolicy) -> RingVerdict:
    """Judge every stratum the ring updated; a stratum without updated members is not judged."""
    if isinstance(ring, bool) or not isinstance(ring, int) or ring < 0:
        raise InputError(f"a ring is numbered from 0 (the canary), got {ring!r}")
    strata = tuple(judge_stratum(s, policy) for s in samples if s.updated)
    counts = Counter(s.stratum for s in samples)
    repeated = sorted(format_stratum(s) for s, k in counts.items() if k > 1)

    if not strata:
        return RingVerdict(ring, GateOutcome.error, (), f"ring {ring} error: no stratum has updated members")

    by_outcome = {o: [format_stratum(v.stratum) for v in strata if v.outcome is o] for o in GateOutcome}
    # A failure wins over everything: the ring halts and rolls back even if another stratum is in error.
    precedence = (GateOutcome.failed, GateOutcome.error, GateOutcome.inconclusive)
    outcome = next((o for o in precedence if by_outcome[o]), GateOutcome.passed)
    if repeated and outcome is not GateOutcome.failed:
        outcome = GateOutcome.error

    words = {
        GateOutcome.failed: "failed",
        GateOutcome.error: "in error",
        GateOutcome.inconclusive: "inconclusive",
    }
    total = count(len(strata), "stratum")
    worst = [o for o in precedence if by_outcome[o]]
    if worst:
        first, *rest = worst
        body = f"{len(by_outcome[first])} of {total} {words[first]} ({names(by_outcome[first])})"
        body += "".join(f"; {len(by_outcome[o])} {words[o]} ({names(by_outcome[o])})" for o in rest)
    else:
        body = f"{len(strata)} of {total} passed"
    if repeated:
        body += f"; {'stratum' if len(repeated) == 1 else 'strata'} {names(repeated)} listed more than once"
    return RingVerdict(ring, outcome, strata, f"ring {ring} {outcome}: {body}")


# --- the tests ---------------------------------------------------------------------------------------------
# scipy.stats takes about a second to import; it is imported when a test runs so that reading verdicts
# (the CLI's `rollout status`) does not pay for it.


def _binomial_tail(f: int, n: int, p0: float) -> float:
    """P(X ≥ f) for X ~ Binomial(n, p0)."""
    from scipy.stats import binomtest

    return float(binomtest(f, n, p0, alternative="greater").pvalue)


def _fisher_tail(f: int, n: int, c: int, m: int) -> float:
    """One-sided Fisher exact test: P(X ≥ f) with the margins of [[f, n - f], [c, m - c]] held fixed."""
    from scipy.stats import fisher_exact

    return float(fisher_exact([[f, n - f], [c, m - c]], alternative="greater").pvalue)


# --- sentences -------------------------------------------------------------------------------------------


def _sample_problem(sample: StratumSample) -> str | None:
    """Why the sample cannot be judged, or None."""
    if not sample.updated:
        return "no updated members to judge"
    for group, name in ((sample.updated, "updated"), (sample.control, "not yet updated")):
        twice = sorted(a for a, k in Counter(h.asset_id for h in group).items() if k > 1)
        if twice:
            return f"{_asset_list(twice)} listed more than once among the {name} assets"
    both = sorted({h.asset_id for h in sample.updated} & {h.asset_id for h in sample.control})
    if both:
        return f"{_asset_list(both)} both updated and not yet updated"
    return None


def _describe_updated(failures: Sequence[AssetHealth], total: int) -> str:
    """``1 of 1 updated lost heartbeat 14 min after install``; ``3 of 9 updated failed (2 crashed, …)``."""
    f = len(failures)
    if f == 0:
        return f"0 of {total} updated failed"
    signals = Counter(h.signal for h in failures)
    if len(signals) == 1:
        what = _SIGNAL_WORDS[failures[0].signal]
    else:
        order = [*FailureSignal, None]
        what = "failed (" + ", ".join(f"{signals[s]} {_SIGNAL_WORDS[s]}" for s in order if signals[s]) + ")"
    times = sorted(h.seconds_after_install for h in failures if h.seconds_after_install is not None)
    when = ""
    if times:
        first, last = humanize_duration(times[0]), humanize_duration(times[-1])
        when = f" {first} after install" if first == last else f" {first} to {last} after install"
    return f"{f} of {total} updated {what}{when}"


def _describe_control(control: Sequence[AssetHealth], m: int, c: int) -> str:
    silent = len(control) - m
    if not control:
        return "no assets left not yet updated"
    if m == 0:
        return f"none of the {len(control)} not yet updated reported"
    return f"{c} of {m} not yet updated failed" + (f", {silent} more did not report" if silent else "")


def _format_p(p: float, alpha: float) -> str:
    """Three decimals, more when rounding would make the comparison with alpha read wrongly."""
    if 0 < p < 0.001:
        return f"{p:.1e}"
    for decimals in range(3, 17):
        shown = f"{p:.{decimals}f}"
        if (float(shown) < alpha) == (p < alpha):
            return shown
    return repr(p)


def _asset_list(ids: Sequence[str]) -> str:
    quoted = [f"'{a}'" for a in ids]
    shown = names(quoted)
    return f"asset {shown} is" if len(ids) == 1 else f"assets {shown} are"
