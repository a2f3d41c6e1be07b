"""Policy evaluation on small estates built for one rule each: the edges random inputs seldom reach (a tie of two
assessments on one day, evidence dated after ``as_of``, an any-group member that comes back with the service).
Each case is checked against what the rule says and against the brute force of the property tests."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from ringfence.core.assurance import Assurance, Policy, assess
from ringfence.core.estate import parse_estate_document
from ringfence.core.graph import compile_estate
from test_assurance_properties import AS_OF, brute_force

Key = tuple[str, str, str, int, str, date | None]


def evaluate(estate_doc: dict[str, Any], assurance_doc: dict[str, Any], policy_doc: dict[str, Any]) -> list[Key]:
    """The evaluator's findings, after checking that the brute force finds the very same."""
    estate = parse_estate_document(estate_doc)
    report = assess(
        estate,
        compile_estate(estate),
        Assurance.model_validate(assurance_doc),
        Policy.model_validate(policy_doc),
        AS_OF,
    )
    got = [(f.severity.value, f.policy, f.problem, f.tier, f.subject, f.day) for f in report.findings]
    assert Counter(got) == Counter(brute_force(estate, assurance_doc, policy_doc, AS_OF))
    return got


def estate(services: list[dict[str, Any]], assets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "ringfence/v1",
        "estate": "unit",
        "suppliers": [{"id": "acme"}],
        "services": services,
        "assets": assets,
    }


def assurance(**sections: Any) -> dict[str, Any]:
    doc = {"apiVersion": "ringfence/v1", "assurance": "unit", "suppliers": [], "exercises": [], "restore-tests": []}
    doc.update({k.replace("_", "-"): v for k, v in sections.items()})
    return doc


def policy(**rules: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ringfence/v1",
        "policy": "unit",
        "warn-within": "30d",
        "single-points-of-failure": ["asset", "site"],
        "tiers": {"1": {k.replace("_", "-"): v for k, v in rules.items()}},
    }


ONE_SERVICE = estate(
    [{"id": "epr", "tier": 1, "rto": "1h", "requires": ["app"]}], [{"id": "app", "kind": "vm", "supplier": "acme"}]
)


def test_of_two_assessments_on_one_day_with_one_expiry_the_met_one_counts() -> None:
    same_day = {"kind": "dspt", "date": "2026-01-10", "expires": "2027-01-10", "evidence": "x"}
    suppliers = [
        {"id": "acme", "assessments": [{**same_day, "result": "met"}, {**same_day, "result": "not-met"}]},
    ]
    rules = {"supplier-assessments": {"dspt": "12 months"}, "exit-plan": False}
    assert evaluate(ONE_SERVICE, assurance(suppliers=suppliers), policy(**rules)) == []
    # The same, listed the other way round: the order of the file decides nothing.
    suppliers[0]["assessments"].reverse()
    assert evaluate(ONE_SERVICE, assurance(suppliers=suppliers), policy(**rules)) == []


def test_evidence_dated_after_as_of_does_not_count() -> None:
    tests = [
        {"subject": "epr", "date": "2024-01-10", "time-to-restore": "30m"},
        {"subject": "epr", "date": "2026-06-16", "time-to-restore": "30m"},  # a day after AS_OF (2026-06-15)
    ]
    found = evaluate(ONE_SERVICE, assurance(restore_tests=tests), policy(restore_test="12 months"))
    assert found == [("breach", "restore-test", "too-old", 1, "service:epr", date(2025, 1, 10))]


def test_evidence_holds_through_its_last_day() -> None:
    tests = [{"subject": "epr", "date": "2025-06-15", "time-to-restore": "30m"}]
    found = evaluate(ONE_SERVICE, assurance(restore_tests=tests), policy(restore_test="12 months"))
    assert found == [("warning", "restore-test", "due", 1, "service:epr", AS_OF)]


def test_a_service_waits_only_on_the_steps_before_its_own() -> None:
    # epr needs any 1 of app-a and app-b; app-b needs db. Restore: app-a and db in step 1, then app-b with epr in
    # step 2. The slow app-b comes back with epr (or after): it is not on the time epr waits for.
    doc = estate(
        [{"id": "epr", "tier": 1, "rto": "1h", "requires": [{"any": 1, "of": ["app-a", "app-b"]}]}],
        [{"id": "app-a", "kind": "vm"}, {"id": "app-b", "kind": "vm", "requires": ["db"]}, {"id": "db", "kind": "vm"}],
    )
    tests = [
        {"subject": "app-a", "date": "2026-05-01", "time-to-restore": "10m"},
        {"subject": "db", "date": "2026-05-01", "time-to-restore": "20m"},
        {"subject": "app-b", "date": "2026-05-01", "time-to-restore": "5h"},
    ]
    assert evaluate(doc, assurance(restore_tests=tests), policy(rto_achievable=True)) == []
    # A slow db, though, is in step 1: epr waits for the whole step.
    tests[1]["time-to-restore"] = "2h"
    assert evaluate(doc, assurance(restore_tests=tests), policy(rto_achievable=True)) == [
        ("breach", "rto-achievable", "exceeded", 1, "service:epr", None)
    ]
