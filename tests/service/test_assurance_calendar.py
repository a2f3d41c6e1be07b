"""One evaluation serves the assessment and the evidence calendar: the report derived from the stretched window is
exactly what ``assess`` says with the policy as written, on any day; and what the notifier tells of, when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.core.assurance import Assurance, Policy, assess, parse_assurance_text, parse_policy_text
from ringfence.files.disk import examples_dir, sample_estate_path
from ringfence.service.assurance import (
    NOTICE_DAYS,
    AssessmentInputs,
    assess_with_calendar,
    default_policy_text,
    evidence_notices,
)
from ringfence.service.estates import CheckedEstate, LoadedEstate, check_estate_text


@dataclass(frozen=True)
class _Version:
    """What the calendar reads of a stored version (its name; its id and hash only key caches)."""

    id: int = 1
    name: str = "city-general"
    sha256: str = "sample"


@cache
def sample() -> tuple[CheckedEstate, Assurance, Policy]:
    checked = check_estate_text(sample_estate_path().read_text(encoding="utf-8"), source="estate.yaml")
    assurance = parse_assurance_text(
        (examples_dir() / "city-general" / "assurance.yaml").read_text(encoding="utf-8"), checked.estate
    )
    return checked, assurance, parse_policy_text(default_policy_text())


def view_on(day: date, warn_within: int | None = None):  # type: ignore[no-untyped-def]
    checked, assurance, policy = sample()
    if warn_within is not None:
        policy = policy.model_copy(update={"warn_within": warn_within})
    loaded = LoadedEstate(_Version(), checked)  # type: ignore[arg-type]
    return (
        assess_with_calendar(loaded, AssessmentInputs(assurance, policy, None, None), day),
        checked,
        assurance,
        policy,
    )


@settings(max_examples=25, deadline=None)
@given(
    day=st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 12, 31)),
    warn_within=st.sampled_from([None, 0, 7, 30, 90, 366]),
)
def test_the_derived_report_is_what_assess_says(day: date, warn_within: int | None) -> None:
    view, checked, assurance, policy = view_on(day, warn_within)
    assert view.report == assess(checked.estate, checked.graph, assurance, policy, day)


def test_the_calendar_holds_what_runs_out_within_a_year_and_what_ran_out() -> None:
    day = date(2026, 12, 1)
    view, *_ = view_on(day)
    days = [item.day for item in view.calendar]
    assert days == sorted(days)
    assert all(d <= day + timedelta(days=366) for d in days)
    expired = {(i.day.isoformat(), i.subject) for i in view.calendar if i.has_expired}
    assert expired == {
        ("2026-06-30", "supplier:medisoft"),
        ("2026-09-03", "service:lims"),
        ("2026-09-11", "supplier:advanced"),
    }
    assert all(i.day < day for i in view.calendar if i.has_expired)
    assert all(i.day >= day for i in view.calendar if not i.has_expired)
    # Every warning the policy's own window gives is on the calendar, with its day.
    warned = {(f.subject, f.day) for f in view.report.warnings if f.day is not None and f.problem != "overdue"}
    assert warned <= {(i.subject, i.day) for i in view.calendar}


def test_what_is_told_and_when() -> None:
    day = date(2026, 12, 1)
    view, *_ = view_on(day)
    told = evidence_notices("city-general", view, day)
    by_threshold = {(n.item.subject, n.threshold) for n in told}
    # Sectra's DSPT (last day 2026-12-18) is within 30 days: told.
    assert ("supplier:sectra", f"{NOTICE_DAYS}d") in by_threshold
    assert all(n.item.day <= day + timedelta(days=NOTICE_DAYS) for n in told)
    # Medisoft's DSPT ran out after 2026-06-30, five months before: history, not told as newly expired.
    assert ("supplier:medisoft", "expired") not in by_threshold
    # Told again the day after its last day, as expired; the key is the same on every later look.
    after = date(2026, 12, 19)
    view_after, *_ = view_on(after)
    sectra = [n for n in evidence_notices("city-general", view_after, after) if n.item.subject == "supplier:sectra"]
    assert [n.threshold for n in sectra] == ["expired"]
    later, *_ = view_on(after + timedelta(days=5))
    assert sectra[0].key in {n.key for n in evidence_notices("city-general", later, after + timedelta(days=5))}
    soon = next(n for n in told if n.item.subject == "supplier:sectra")
    assert soon.key != sectra[0].key  # another threshold: told again
    assert soon.key.startswith("evidence:city-general:")
    assert len(soon.key) <= 300
