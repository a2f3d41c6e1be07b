"""Assurance: the evidence an estate's resilience rests on, the policy it is held to, and the findings.

Three things, each pure (the caller reads the files and passes ``as_of``; nothing here reads a clock):

* the **assurance file** (:class:`Assurance`, :func:`parse_assurance_text`): suppliers' assessments (DSPT, Cyber
  Essentials Plus, ISO 27001, …), escalation contacts and exit plans; continuity exercises per service; restore
  tests per asset or service with the measured time to restore. Validated with the estate's located errors
  (``assurance.yaml:12: suppliers[0].assessments[1].expires: …``), and every supplier, service or asset it names
  must be in the estate;
* the **policy file** (:class:`Policy`, :func:`parse_policy_text`): per clinical tier, what must hold;
* the **evaluation** (:func:`assess`): every finding, breaches and warnings, each naming the policy, the subject,
  the evidence (or its absence) and what to do.

Dates are days (``2025-06-30``). Evidence "holds through" a day: an assessment expiring on 2026-06-30 still holds
on that day and is expired on 2026-07-01; an age limit of 12 months on a test dated 2025-06-30 holds through
2026-06-30. Evidence dated after ``as_of`` did not exist yet, as of then, and is not counted.

Who a rule applies to:

* a service is held to the policy of its own tier;
* a supplier is held to the policy of the most critical tier it *supports*: a service of that tier requires,
  directly or through other services and assets (hard requirements and every member of an ``any`` group), an
  asset the supplier supplies (the asset's ``supplier`` or a software product's). Redundancy does not excuse
  an assessment: a supplier behind one of two replicas still handles the service's data.

"RTO achievable": the service's latest restore test, when it has one, is its measured time to restore. Without
one, the time is composed along its restore path: the recovery planner's restore steps when everything the
service requires is down (:func:`ringfence.core.recovery.plan_recovery`): the steps before the service's own, each
as long as the slowest *measured* asset of the service's path in it, one after the other. Assets with no measured
time are named, and while any is left the RTO is unproven (a warning), unless the measured steps alone exceed it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ringfence.core.clinical import TIERS, is_rto_at_risk
from ringfence.core.durations import format_duration, humanize_duration, parse_duration
from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import (
    ID_PATTERN,
    LONGEST_ID,
    MAX_PROBLEMS,
    Estate,
    load_document_text,
    locate_problems,
    problems_from_validation,
    without_control_characters,
)
from ringfence.core.graph import EstateGraph, Failure, IntArray, gather
from ringfence.core.impact import advice_for, find_single_points_of_failure, supplier_concentration
from ringfence.core.recovery import MeasuredRestore, plan_recovery
from ringfence.core.words import count, names

API_VERSION = "ringfence/v1"
DEFAULT_POLICY_FILE = "policy-acute.yaml"
"""The bundled policy (an acute trust's), in the examples folder: what an estate is assessed with when none is given."""
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2099, 12, 31)
"""Dates outside these are typos (a year of 20255, 1025): evidence of this century only."""
LONGEST_VALIDITY_YEARS = 10
"""The furthest an expiry or an action's due date may lie after the date it belongs to."""
LONGEST_AGE_DAYS = 120 * 31
"""The longest age a policy may set, in days as a unit counts them at most (a month as 31): ten years."""
LONGEST_TEXT = 4000
SHOWN = 5
"""How many ids a finding's sentence names before it counts the rest."""
DEFAULT_WARN_WITHIN = 30
"""Days: evidence whose last valid day falls within this of ``as_of`` is a warning, with its date."""


class AssuranceError(InputError):
    """An assurance or policy file that does not hold."""


# ----------------------------------------------------------------------------------------- values


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_day(value: object) -> date:
    """``"2025-06-30"`` → a date between :data:`EARLIEST_DAY` and :data:`LATEST_DAY`; nothing else is a day."""
    if isinstance(value, date):
        found = value
    elif isinstance(value, str) and _DAY.match(value.strip()):
        try:
            found = date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"'{value}' is not a day of the calendar") from None
    else:
        raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD (e.g. 2025-06-30)")
    if not EARLIEST_DAY <= found <= LATEST_DAY:
        raise ValueError(f"'{found}' is outside {EARLIEST_DAY} to {LATEST_DAY}; a typo in the year?")
    return found


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, on the same day of the month or the month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


_AGE = re.compile(r"^\s*(\d{1,4})\s*(days?|weeks?|months?|years?)\s*$")


@dataclass(frozen=True)
class Age:
    """How old evidence may be: ``90 days``, ``6 weeks``, ``12 months``, ``2 years``."""

    count: int
    unit: Literal["day", "week", "month", "year"]

    def last_day(self, since: date) -> date:
        """The last day evidence dated ``since`` is young enough."""
        if self.unit == "day":
            return since + timedelta(days=self.count)
        if self.unit == "week":
            return since + timedelta(weeks=self.count)
        return add_months(since, self.count * (12 if self.unit == "year" else 1))

    def __str__(self) -> str:
        return f"{self.count} {self.unit}{'' if self.count == 1 else 's'}"


def parse_age(value: object) -> Age:
    if isinstance(value, Age):
        return value
    match = _AGE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not an age; write N days, weeks, months or years (e.g. 12 months)")
    number, unit = int(match.group(1)), match.group(2).rstrip("s")
    # At most as many days as the unit can hold, so a large number is refused before any calendar sum overflows.
    if number < 1 or number * {"day": 1, "week": 7, "month": 31, "year": 366}[unit] > LONGEST_AGE_DAYS:
        raise ValueError(f"'{match.group(0).strip()}' is outside 1 day to 10 years")
    return Age(number, unit)  # type: ignore[arg-type]  # the pattern allows only the four units


def parse_share(value: object) -> float:
    """``50%`` or ``0.5`` → 0.5; a share is between 0 and 1."""
    text = str(value).strip() if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    if text is None:
        raise ValueError(f"{value!r} is not a share; write a percentage (50%) or a fraction (0.5)")
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"'{value}' is not a share; write a percentage (50%) or a fraction (0.5)") from None
    if not 0 <= share <= 1:
        raise ValueError(f"'{value}' is not between 0% and 100%")
    return share


def _time_to_restore(value: object) -> int:
    seconds = parse_duration(value)
    if seconds < 1:
        raise ValueError("a measured time to restore is at least 1s")
    return seconds


Day = Annotated[date, BeforeValidator(parse_day), PlainSerializer(date.isoformat, return_type=str)]
AgeLimit = Annotated[Age, BeforeValidator(parse_age), PlainSerializer(str, return_type=str)]
Share = Annotated[float, BeforeValidator(parse_share)]
RestoreTime = Annotated[
    int,
    BeforeValidator(_time_to_restore),
    PlainSerializer(format_duration, return_type=str),
]
Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=LONGEST_ID)]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=LONGEST_TEXT),
    AfterValidator(without_control_characters),
]
"""Free text on one line or a few (a link, a path, a plan): never empty, no control characters."""
Name = Annotated[str, Field(min_length=1, max_length=LONGEST_ID), AfterValidator(without_control_characters)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------------- the assurance file


class AssessmentKind(StrEnum):
    """What a supplier has been assessed against."""

    DSPT = "dspt"
    """The Data Security and Protection Toolkit return."""
    CYBER_ESSENTIALS = "cyber-essentials"
    CYBER_ESSENTIALS_PLUS = "cyber-essentials-plus"
    ISO_27001 = "iso-27001"
    ISO_22301 = "iso-22301"
    """Business continuity management."""
    SOC_2 = "soc-2"
    PENETRATION_TEST = "penetration-test"
    DPIA = "dpia"
    """A data protection impact assessment of what the supplier processes."""
    DTAC = "dtac"
    """The NHS Digital Technology Assessment Criteria."""
    EXIT_PLAN = "exit-plan"
    """A review of the contract's exit plan (the plan itself is the supplier's ``exit-plan``)."""
    ESCROW = "escrow"
    """Source code or data escrow, verified."""


class AssessmentResult(StrEnum):
    MET = "met"
    PARTIALLY_MET = "partially-met"
    NOT_MET = "not-met"


class Assessment(_Model):
    kind: AssessmentKind
    result: AssessmentResult
    date: Day
    expires: Day | None = None
    """The last day it holds: on or after ``date``, at most ten years later."""
    evidence: Text
    """A link or a file path: where the certificate, report or return can be read."""


class Contact(_Model):
    name: Text
    role: Text | None = None
    phone: Text | None = None
    email: Text | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if self.phone is None and self.email is None:
            raise ValueError(f"contact '{self.name}' needs a phone or an email")
        return self


class SupplierAssurance(_Model):
    id: Id
    assessments: tuple[Assessment, ...] = ()
    escalation: tuple[Contact, ...] = ()
    exit_plan: Text | None = Field(default=None, alias="exit-plan")
    """The exit or alternative plan: what the trust does if the supplier goes, or where that is written."""


class ExerciseKind(StrEnum):
    TABLETOP = "tabletop"
    LIVE_FAILOVER = "live-failover"
    RESTORE_TEST = "restore-test"


class ExerciseAction(_Model):
    action: Text
    owner: Text
    due: Day
    """On or after the exercise's date, at most ten years later."""
    done: bool = False


class Exercise(_Model):
    service: Id
    date: Day
    kind: ExerciseKind
    scenario: Text
    outcome: Text
    actions: tuple[ExerciseAction, ...] = ()


class RestoreTest(_Model):
    subject: Id
    """An asset or a service of the estate."""
    date: Day
    time_to_restore: RestoreTime = Field(alias="time-to-restore")
    evidence: Text | None = None


class Assurance(_Model):
    """The assurance file as written, validated field by field; :func:`parse_assurance_text` also checks that
    every id it names is in the estate."""

    api_version: Literal["ringfence/v1"] = Field(alias="apiVersion")
    assurance: Name
    suppliers: tuple[SupplierAssurance, ...] = ()
    exercises: tuple[Exercise, ...] = ()
    restore_tests: tuple[RestoreTest, ...] = Field(default=(), alias="restore-tests")

    @property
    def supplier_by_id(self) -> Mapping[str, SupplierAssurance]:
        return {s.id: s for s in self.suppliers}


def empty_assurance(name: str = "none") -> Assurance:
    """No evidence at all: what an estate is assessed against when it has no assurance file."""
    return Assurance.model_validate({"apiVersion": API_VERSION, "assurance": name})


def _validated(model: type[BaseModel], data: Any, source: str, what: str) -> Any:
    if not isinstance(data, Mapping):
        found = "nothing" if data is None else type(data).__name__
        raise AssuranceError(
            [Problem(f"{what} is a mapping with apiVersion: {API_VERSION}; found {found}", source=source)]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AssuranceError([_about_key(p) for p in problems_from_validation(exc, data, source)]) from None


def _about_key(problem: Problem) -> Problem:
    """Pydantic names a bad mapping key ``tiers.5.[key]``; a person reads ``tiers.5``, a key that is no tier."""
    if problem.path[-1:] != ("[key]",):
        return problem
    path = problem.path[:-1]
    message = (
        f"'{path[-1]}' is not a clinical tier; use 1, 2, 3 or 4"
        if path[:1] == ("tiers",)
        else f"'{path[-1]}' is not allowed here: {problem.message}"
    )
    return Problem(message, path=path, source=problem.source)


def parse_assurance_text(text: str, estate: Estate, source: str = "<assurance>") -> Assurance:
    """Parse and validate an assurance file against ``estate``; raises :class:`AssuranceError` naming file, line
    and field for every problem (an unknown field, a bad date, a supplier the estate does not have)."""
    try:
        data = load_document_text(text, source)
        assurance: Assurance = _validated(Assurance, data, source, "an assurance file")
        problems = consistency_problems(assurance, estate, source)
        if problems:
            raise AssuranceError(problems)
    except InputError as exc:
        raise AssuranceError(locate_problems(exc.problems, text)) from None
    return assurance


def _within(day: date, since: date) -> bool:
    return since <= day <= add_months(since, 12 * LONGEST_VALIDITY_YEARS)


def consistency_problems(assurance: Assurance, estate: Estate, source: str) -> list[Problem]:
    """What field validation cannot see: every id the assurance file names that the estate does not have, a
    supplier listed twice, an expiry or a due date before the day it belongs to (or a decade after it)."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, supplier in enumerate(assurance.suppliers):
        for j, assessment in enumerate(supplier.assessments):
            if assessment.expires is not None and not _within(assessment.expires, assessment.date):
                problems.append(
                    Problem(
                        f"supplier '{supplier.id}': expires {assessment.expires}, not between its date "
                        f"({assessment.date}) and {LONGEST_VALIDITY_YEARS} years after it",
                        path=("suppliers", i, "assessments", j, "expires"),
                        source=source,
                    )
                )
        if supplier.id in seen:
            problems.append(
                Problem(
                    f"supplier '{supplier.id}' is listed twice (first at suppliers[{seen[supplier.id]}])",
                    path=("suppliers", i, "id"),
                    source=source,
                )
            )
        elif supplier.id not in estate.supplier_by_id:
            problems.append(
                Problem(
                    f"supplier '{supplier.id}' is not in estate '{estate.name}' (neither listed nor named by an asset)",
                    path=("suppliers", i, "id"),
                    source=source,
                )
            )
        seen.setdefault(supplier.id, i)
    for i, exercise in enumerate(assurance.exercises):
        for j, action in enumerate(exercise.actions):
            if not _within(action.due, exercise.date):
                problems.append(
                    Problem(
                        f"action '{action.action[:40]}' is due {action.due}, not between the exercise "
                        f"({exercise.date}) and {LONGEST_VALIDITY_YEARS} years after it",
                        path=("exercises", i, "actions", j, "due"),
                        source=source,
                    )
                )
        if exercise.service not in estate.service_by_id:
            what = "an asset, not a service" if exercise.service in estate.asset_by_id else "not in the estate"
            problems.append(
                Problem(
                    f"service '{exercise.service}' is {what}: exercises rehearse a service's continuity",
                    path=("exercises", i, "service"),
                    source=source,
                )
            )
    for i, test in enumerate(assurance.restore_tests):
        if not estate.has_node(test.subject):
            problems.append(
                Problem(
                    f"'{test.subject}' is neither an asset nor a service of estate '{estate.name}'",
                    path=("restore-tests", i, "subject"),
                    source=source,
                )
            )
    return problems[:MAX_PROBLEMS]


# ----------------------------------------------------------------------------------------- the policy


SpofKind = Literal["asset", "supplier", "software", "site"]


class TierPolicy(_Model):
    """What must hold for one clinical tier; a rule left out is not checked."""

    max_single_points_of_failure: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        default=None, alias="max-single-points-of-failure"
    )
    supplier_assessments: dict[AssessmentKind, AgeLimit] = Field(default_factory=dict, alias="supplier-assessments")
    exit_plan: bool = Field(default=False, alias="exit-plan")
    continuity_exercise: AgeLimit | None = Field(default=None, alias="continuity-exercise")
    restore_test: AgeLimit | None = Field(default=None, alias="restore-test")
    max_supplier_share: Share | None = Field(default=None, alias="max-supplier-share")
    rto_achievable: bool = Field(default=False, alias="rto-achievable")


def _warn_within(value: object) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*d\s*", value):
        days = int(value.strip()[:-1])
        if days <= 366:
            return days
    raise ValueError(f"{value!r} is not a number of days up to 366 (e.g. 30d)")


class Policy(_Model):
    api_version: Literal["ringfence/v1"] = Field(alias="apiVersion")
    policy: Name
    warn_within: Annotated[int, BeforeValidator(_warn_within)] = Field(default=DEFAULT_WARN_WITHIN, alias="warn-within")
    """Days before evidence runs out at which it becomes a warning."""
    single_points_of_failure: tuple[SpofKind, ...] = Field(default=("asset", "site"), alias="single-points-of-failure")
    """Which single points of failure count against a tier's maximum. Suppliers and software products are held by
    their own rules (assessments, exit plans, the supplier share, staged rollouts), so by default they do not."""
    tiers: dict[Annotated[int, Field(ge=1, le=4)], TierPolicy] = Field(default_factory=dict)


def parse_policy_text(text: str, source: str = "<policy>") -> Policy:
    try:
        policy: Policy = _validated(Policy, load_document_text(text, source), source, "a policy file")
    except InputError as exc:
        raise AssuranceError(locate_problems(exc.problems, text)) from None
    return policy


# ----------------------------------------------------------------------------------------- findings


class Severity(StrEnum):
    BREACH = "breach"
    """A policy does not hold: ``assess`` exits 1."""
    WARNING = "warning"
    """Holds today, but not for long, or cannot be shown to hold."""


@dataclass(frozen=True)
class Finding:
    severity: Severity
    policy: str
    """Which rule: ``supplier-assessments``, ``exit-plan``, ``continuity-exercise``, ``exercise-actions``,
    ``restore-test``, ``single-points-of-failure``, ``max-supplier-share``, ``rto-achievable``."""
    problem: str
    """What is wrong with the evidence: ``missing``, ``expired``, ``too-old``, ``not-met``, ``expiring``, ``due``,
    ``overdue``, ``exceeded``, ``unproven``, ``no-rto``."""
    tier: int
    subject: str
    """``supplier:ID``, ``service:ID``, or a single point of failure's ref."""
    rule: str
    """The rule in words, as the policy sets it for the tier."""
    evidence: str
    """The evidence found, or its absence, in a sentence."""
    action: str
    """What to do."""
    day: date | None = None
    """The day that matters: when evidence runs out or ran out, when an action was due."""


@dataclass(frozen=True)
class AssessmentReport:
    estate: str
    assurance: str
    policy: str
    as_of: date
    findings: tuple[Finding, ...]
    checked: int
    """How many (rule, subject) pairs were checked."""

    @property
    def breaches(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.BREACH)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)

    @property
    def is_breached(self) -> bool:
        return any(f.severity is Severity.BREACH for f in self.findings)


def _tier_policies(policy: Policy) -> dict[int, TierPolicy]:
    return {t: policy.tiers[t] for t in TIERS if t in policy.tiers}


def assess(estate: Estate, graph: EstateGraph, assurance: Assurance, policy: Policy, as_of: date) -> AssessmentReport:
    """Every finding of ``policy`` on ``estate`` with the evidence of ``assurance``, as of the day ``as_of``.

    Findings are sorted breaches first, then by tier, policy, subject and problem."""
    context = _Context(estate, graph, assurance, policy, as_of)
    findings: list[Finding] = []
    checked = 0
    for check in (
        _check_suppliers,
        _check_exercises,
        _check_restore_tests,
        _check_single_points_of_failure,
        _check_supplier_share,
        _check_rto,
    ):
        found, count = check(context)
        findings.extend(found)
        checked += count
    findings.sort(key=lambda f: (f.severity is not Severity.BREACH, f.tier, f.policy, f.subject, f.problem, f.rule))
    return AssessmentReport(estate.name, assurance.assurance, policy.policy, as_of, tuple(findings), checked)


def latest_restore_tests(assurance: Assurance, as_of: date) -> dict[str, RestoreTest]:
    """The latest restore test of each subject as of ``as_of`` (on a tie of dates, the slowest: the cautious
    reading); tests dated after ``as_of`` did not exist yet."""
    restored: dict[str, RestoreTest] = {}
    for test in assurance.restore_tests:
        if test.date > as_of:
            continue
        known = restored.get(test.subject)
        if known is None or (test.date, test.time_to_restore) > (known.date, known.time_to_restore):
            restored[test.subject] = test
    return restored


def measured_restores(assurance: Assurance, as_of: date) -> dict[str, MeasuredRestore]:
    """What the recovery planner takes as measured (:func:`ringfence.core.recovery.plan_recovery`): each subject's
    latest restore test as of ``as_of``, the same test ``assess`` reads."""
    return {
        subject: MeasuredRestore(test.time_to_restore, test.date)
        for subject, test in latest_restore_tests(assurance, as_of).items()
    }


class _Context:
    """What every check reads: the inputs, and the evidence that existed on ``as_of`` (later evidence did not)."""

    def __init__(self, estate: Estate, graph: EstateGraph, assurance: Assurance, policy: Policy, as_of: date) -> None:
        self.estate, self.graph, self.policy, self.as_of = estate, graph, policy, as_of
        self.tiers = _tier_policies(policy)
        self.warn_until = as_of + timedelta(days=policy.warn_within)
        self.suppliers = assurance.supplier_by_id
        self.exercises: dict[str, list[Exercise]] = {}
        for exercise in assurance.exercises:
            if exercise.date <= as_of:
                self.exercises.setdefault(exercise.service, []).append(exercise)
        self.restored = latest_restore_tests(assurance, as_of)

    def age_finding(
        self,
        *,
        policy: str,
        tier: int,
        subject: str,
        rule: str,
        what: str,
        latest: date | None,
        age: Age,
        action: str,
    ) -> Finding | None:
        """The finding of an age rule (none, too old, or close to too old) for evidence last dated ``latest``."""
        if latest is None:
            return Finding(Severity.BREACH, policy, "missing", tier, subject, rule, f"no {what} recorded", action)
        last_day = age.last_day(latest)
        if self.as_of > last_day:
            evidence = f"last {what} {latest}, more than {age} before {self.as_of}"
            return Finding(Severity.BREACH, policy, "too-old", tier, subject, rule, evidence, action, last_day)
        if last_day <= self.warn_until:
            evidence = f"last {what} {latest}: {age} old on {last_day}"
            return Finding(Severity.WARNING, policy, "due", tier, subject, rule, evidence, action, last_day)
        return None


def supported_tiers(graph: EstateGraph) -> IntArray:
    """Per node, the most critical tier among the services that require it, directly or through other nodes (hard
    requirements and every member of an any-group); 5 (no service) when none does. A service supports itself."""
    tier = np.full(graph.n, 5, dtype=np.int64)
    tier[: graph.n_services] = graph.service_tier
    required, dependent = graph.requirement_edges
    needed = np.concatenate((required, graph.member_nodes))
    needs = np.concatenate((dependent, graph.group_owner[graph.member_groups]))
    # Pass each tier down to what it requires until nothing changes: as many rounds as the graph is deep.
    while needs.size:
        updated = tier.copy()
        np.minimum.at(updated, needed, tier[needs])
        if np.array_equal(updated, tier):
            break
        tier = updated
    return tier


def supported_services(graph: EstateGraph, nodes: IntArray) -> IntArray:
    """The services that require any of ``nodes``, directly or through other nodes (hard requirements and every
    member of an any-group: redundancy does not make a supplier's asset less needed), sorted; a service among
    ``nodes`` supports itself. What a supplier *supports*, as against what its loss takes down."""
    seen = np.zeros(graph.n, dtype=np.bool_)
    seen[nodes] = True
    frontier = np.unique(nodes)
    while frontier.size:
        hard = gather(graph.dependents_ptr, graph.dependents, frontier)
        owners = graph.group_owner[gather(graph.member_groups_ptr, graph.member_groups, frontier)]
        found = np.unique(np.concatenate((hard, owners)))
        frontier = found[~seen[found]]
        seen[frontier] = True
    return np.flatnonzero(seen[: graph.n_services])


def latest_assessments(supplier: SupplierAssurance | None, as_of: date) -> dict[AssessmentKind, Assessment]:
    """A supplier's latest assessment of each kind as of ``as_of``: the one ``assess`` judges. On one day, the one
    that runs out last, then one that is met; assessments dated after ``as_of`` did not exist yet."""
    latest: dict[AssessmentKind, Assessment] = {}
    for assessment in supplier.assessments if supplier else ():
        if assessment.date > as_of:
            continue
        known = latest.get(assessment.kind)
        if known is None or _recency(assessment) > _recency(known):
            latest[assessment.kind] = assessment
    return latest


def _recency(assessment: Assessment) -> tuple[date, date, bool]:
    return (assessment.date, assessment.expires or LATEST_DAY, assessment.result is AssessmentResult.MET)


def _supplier_tiers(graph: EstateGraph) -> dict[str, int]:
    tiers = supported_tiers(graph)
    found: dict[str, int] = {}
    for supplier in graph.estate.suppliers:
        nodes = graph.resolve_failure(f"supplier:{supplier.id}").nodes
        found[supplier.id] = int(tiers[nodes].min()) if nodes.size else 5
    return found


def _check_suppliers(context: _Context) -> tuple[list[Finding], int]:
    findings: list[Finding] = []
    checked = 0
    if not any(p.supplier_assessments or p.exit_plan for p in context.tiers.values()):
        return findings, checked
    as_of = context.as_of
    for supplier_id, tier in sorted(_supplier_tiers(context.graph).items()):
        rules = context.tiers.get(tier)
        if rules is None:
            continue
        subject = f"supplier:{supplier_id}"
        evidence = context.suppliers.get(supplier_id)
        held = latest_assessments(evidence, as_of)
        for kind, age in sorted(rules.supplier_assessments.items()):
            checked += 1
            rule = f"tier {tier}: {kind} met, at most {age} old"
            latest = held.get(kind)
            if latest is None:
                findings.append(
                    Finding(
                        Severity.BREACH,
                        "supplier-assessments",
                        "missing",
                        tier,
                        subject,
                        rule,
                        f"no {kind} assessment recorded",
                        f"obtain the supplier's {kind} and record it with its evidence in the assurance file",
                    )
                )
                continue
            findings.extend(_assessment_findings(context, latest, age, tier, subject, rule))
        if rules.exit_plan:
            checked += 1
            if evidence is None or evidence.exit_plan is None:
                findings.append(
                    Finding(
                        Severity.BREACH,
                        "exit-plan",
                        "missing",
                        tier,
                        subject,
                        f"tier {tier}: an exit or alternative plan",
                        "no exit plan recorded",
                        "agree an exit or alternative plan with the service owners and record it as the "
                        "supplier's exit-plan",
                    )
                )
    return findings, checked


def _assessment_findings(
    context: _Context, latest: Assessment, age: Age, tier: int, subject: str, rule: str
) -> list[Finding]:
    as_of, kind = context.as_of, latest.kind
    cited = f"{kind} {latest.result} on {latest.date} ({latest.evidence})"
    renew = f"renew the supplier's {kind} and record the new evidence"
    old_on = age.last_day(latest.date)
    if latest.expires is not None and as_of > latest.expires:
        return [
            Finding(
                Severity.BREACH,
                "supplier-assessments",
                "expired",
                tier,
                subject,
                rule,
                f"{cited} expired {latest.expires}",
                renew,
                latest.expires,
            )
        ]
    if as_of > old_on:
        evidence = f"{cited} is more than {age} old"
        return [
            Finding(Severity.BREACH, "supplier-assessments", "too-old", tier, subject, rule, evidence, renew, old_on)
        ]
    if latest.result is not AssessmentResult.MET:
        return [
            Finding(
                Severity.BREACH,
                "supplier-assessments",
                "not-met",
                tier,
                subject,
                rule,
                cited,
                f"agree an improvement plan with the supplier until its {kind} is met",
            )
        ]
    runs_out = old_on if latest.expires is None else min(latest.expires, old_on)
    if runs_out <= context.warn_until:
        return [
            Finding(
                Severity.WARNING,
                "supplier-assessments",
                "expiring",
                tier,
                subject,
                rule,
                f"{cited} runs out on {runs_out}",
                renew,
                runs_out,
            )
        ]
    return []


def _check_exercises(context: _Context) -> tuple[list[Finding], int]:
    findings: list[Finding] = []
    checked = 0
    for service in context.estate.services:
        exercises = context.exercises.get(service.id, [])
        rules = context.tiers.get(service.tier)
        subject = f"service:{service.id}"
        if rules is not None and rules.continuity_exercise is not None:
            checked += 1
            found = context.age_finding(
                policy="continuity-exercise",
                tier=service.tier,
                subject=subject,
                rule=f"tier {service.tier}: a continuity exercise in the last {rules.continuity_exercise}",
                what="continuity exercise",
                latest=max((e.date for e in exercises), default=None),
                age=rules.continuity_exercise,
                action="exercise the continuity plan (a tabletop at least) and record it with its actions",
            )
            if found is not None:
                findings.append(found)
        # An action an exercise raised and nobody closed is a plan known to be weak: said for every tier.
        for exercise in exercises:
            for action in exercise.actions:
                if not action.done and action.due < context.as_of:
                    findings.append(
                        Finding(
                            Severity.WARNING,
                            "exercise-actions",
                            "overdue",
                            service.tier,
                            subject,
                            "actions raised by an exercise are done by their due date",
                            f"'{action.action}' ({action.owner}), from the {exercise.kind} of {exercise.date}, "
                            f"was due {action.due}",
                            f"ask {action.owner} to close it, or record a new due date",
                            action.due,
                        )
                    )
    return findings, checked


def _check_restore_tests(context: _Context) -> tuple[list[Finding], int]:
    findings: list[Finding] = []
    checked = 0
    for service in context.estate.services:
        rules = context.tiers.get(service.tier)
        if rules is None or rules.restore_test is None:
            continue
        checked += 1
        test = context.restored.get(service.id)
        found = context.age_finding(
            policy="restore-test",
            tier=service.tier,
            subject=f"service:{service.id}",
            rule=f"tier {service.tier}: the service restored in a test in the last {rules.restore_test}",
            what="restore test",
            latest=test.date if test else None,
            age=rules.restore_test,
            action="restore the service from backup in a test, time it, and record the measured time",
        )
        if found is not None:
            findings.append(found)
    return findings, checked


def _check_single_points_of_failure(context: _Context) -> tuple[list[Finding], int]:
    limits = {t: p.max_single_points_of_failure for t, p in context.tiers.items()}
    limits_set = {t: n for t, n in limits.items() if n is not None}
    if not limits_set:
        return [], 0
    kinds = set(context.policy.single_points_of_failure)
    spofs = [
        s
        for s in find_single_points_of_failure(context.graph, max_tier=max(limits_set))
        if s.ref.partition(":")[0] in kinds
    ]
    counted = {t: [s for s in spofs if any(x.tier == t for x in s.services)] for t in limits_set}
    breached = {t for t, found in counted.items() if len(found) > limits_set[t]}
    findings = []
    for spof in spofs:
        tiers = sorted({x.tier for x in spof.services} & breached)
        if not tiers:
            continue
        # Said once, at the most critical tier whose limit it breaks.
        tier = tiers[0]
        services = [x.id for x in spof.services if x.tier == tier]
        findings.append(
            Finding(
                Severity.BREACH,
                "single-points-of-failure",
                "exceeded",
                tier,
                spof.ref,
                f"tier {tier}: at most {limits_set[tier]} single points of failure",
                f"its loss alone takes down tier-{tier} {names(services)}; one of {len(counted[tier])} for tier {tier}",
                advice_for(context.graph, spof),
            )
        )
    return findings, len(limits_set)


def _check_supplier_share(context: _Context) -> tuple[list[Finding], int]:
    limits = {t: p.max_supplier_share for t, p in context.tiers.items() if p.max_supplier_share is not None}
    if not limits:
        return [], 0
    findings = []
    rows = supplier_concentration(context.graph)
    for row in rows:
        for tier, limit in sorted(limits.items()):
            share = row.share_by_tier.get(tier)
            if share is None or share <= limit:
                continue
            services = [s.id for s in row.services_down if s.tier == tier]
            findings.append(
                Finding(
                    Severity.BREACH,
                    "max-supplier-share",
                    "exceeded",
                    tier,
                    f"supplier:{row.id}",
                    f"tier {tier}: one supplier takes down at most {limit:.0%} of the tier's services",
                    f"its loss takes down {share:.0%} of tier {tier}: {names(services)}",
                    "add an alternative supplier for some of these services, or a continuity plan that runs "
                    "without the supplier",
                )
            )
    return findings, len(rows) * len(limits)


def _check_rto(context: _Context) -> tuple[list[Finding], int]:
    findings: list[Finding] = []
    checked = 0
    estate, graph = context.estate, context.graph
    wanted = [s for s in estate.services if (p := context.tiers.get(s.tier)) is not None and p.rto_achievable]
    composer: _RestorePaths | None = None
    measured = np.zeros(0, dtype=np.int64)
    for service in wanted:
        checked += 1
        subject = f"service:{service.id}"
        tier = service.tier
        if service.rto is None:
            findings.append(
                Finding(
                    Severity.WARNING,
                    "rto-achievable",
                    "no-rto",
                    tier,
                    subject,
                    f"tier {tier}: the measured restore fits the RTO",
                    "the service has no RTO in the estate",
                    "agree an RTO with the service owner and write it in the estate",
                )
            )
            continue
        rule = f"tier {tier}: the measured restore fits the RTO of {format_duration(service.rto)}"
        test = context.restored.get(service.id)
        if test is not None:
            if is_rto_at_risk(service.rto, test.time_to_restore):
                findings.append(
                    Finding(
                        Severity.BREACH,
                        "rto-achievable",
                        "exceeded",
                        tier,
                        subject,
                        rule,
                        f"restored in {humanize_duration(test.time_to_restore)} in the test of {test.date}",
                        "shorten the restore (standby, faster backups) or agree a longer RTO with the service owner",
                    )
                )
            continue
        if composer is None:
            composer = _RestorePaths(graph)
            measured = np.full(graph.n, -1, dtype=np.int64)
            for restored_id, restore in context.restored.items():
                measured[graph.index[restored_id]] = restore.time_to_restore
        seconds, unmeasured = composer.time_to_restore(graph.index[service.id], measured)
        if is_rto_at_risk(service.rto, seconds):
            findings.append(
                Finding(
                    Severity.BREACH,
                    "rto-achievable",
                    "exceeded",
                    tier,
                    subject,
                    rule,
                    f"its restore path takes at least {humanize_duration(seconds)} from measured restore times",
                    "shorten the slowest restores on the path, or agree a longer RTO with the service owner",
                )
            )
        elif unmeasured.size:
            findings.append(
                Finding(
                    Severity.WARNING,
                    "rto-achievable",
                    "unproven",
                    tier,
                    subject,
                    rule,
                    f"{humanize_duration(seconds)} measured; no restore time for {count(unmeasured.size, 'asset')} "
                    f"on its path: {names(graph.ids[i] for i in unmeasured[:SHOWN].tolist())}"
                    + (f" and {unmeasured.size - SHOWN:,} more" if unmeasured.size > SHOWN else ""),
                    "test the restore of the service end to end, or of the assets without a measured time",
                )
            )
    return findings, checked


class _RestorePaths:
    """The recovery planner's restore steps with every asset down, and each service's restore path.

    A service's path holds everything it requires, directly or not; its requirements are all inside it, so each
    item's step is the same as when only the path is down: one plan serves every service."""

    def __init__(self, graph: EstateGraph) -> None:
        self.graph = graph
        everything = Failure("every asset", np.arange(graph.n_services, graph.n, dtype=np.int64))
        plan = plan_recovery(graph, [everything])
        self.step = np.zeros(graph.n, dtype=np.int64)
        for step in plan.steps:
            self.step[[graph.index[i] for i in step.restore]] = step.step
        # What each node requires, hard or as a group member, as CSR rows (the graph keeps them the other way).
        required, dependent = graph.requirement_edges
        needed = np.concatenate((required, graph.member_nodes))
        needs = np.concatenate((dependent, graph.group_owner[graph.member_groups]))
        order = np.argsort(needs, kind="stable")
        self.requires = needed[order]
        self.requires_ptr = np.zeros(graph.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(needs, minlength=graph.n), out=self.requires_ptr[1:])

    def path(self, node: int) -> IntArray:
        seen = np.zeros(self.graph.n, dtype=np.bool_)
        seen[node] = True
        frontier = np.asarray([node], dtype=np.int64)
        while frontier.size:
            nxt = gather(self.requires_ptr, self.requires, frontier)
            nxt = np.unique(nxt[~seen[nxt]])
            seen[nxt] = True
            frontier = nxt
        return np.flatnonzero(seen)

    def time_to_restore(self, node: int, measured: IntArray) -> tuple[int, IntArray]:
        """Seconds to restore ``node`` along its path from the measured times (``measured``: seconds per node, -1
        where none), and the path's assets without one, in estate order."""
        graph = self.graph
        path = self.path(node)
        steps = self.step[path]
        # A service is up once what it requires is; and the service waits only on earlier steps (an any-group's
        # members beyond the K it needs may come back with it or later).
        waited = path[(path >= graph.n_services) & (steps < self.step[node])]
        seconds = measured[waited]
        known = seconds >= 0
        slowest = np.zeros(int(self.step[node]) + 1, dtype=np.int64)
        np.maximum.at(slowest, self.step[waited[known]], seconds[known])
        return int(slowest.sum()), waited[~known]


# ------------------------------------------------------------------------------------------ document


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FindingOut(_Document):
    severity: Severity
    policy: str
    problem: str
    tier: int
    subject: str
    rule: str
    evidence: str
    action: str
    date: str | None


class AssessmentDocument(_Document):
    """``ringfence assess --json``."""

    estate: str
    assurance: str
    policy: str
    as_of: str
    breached: bool
    checked: int
    breaches: int
    warnings: int
    findings: list[FindingOut]


def assessment_document(report: AssessmentReport) -> AssessmentDocument:
    return AssessmentDocument(
        estate=report.estate,
        assurance=report.assurance,
        policy=report.policy,
        as_of=report.as_of.isoformat(),
        breached=report.is_breached,
        checked=report.checked,
        breaches=len(report.breaches),
        warnings=len(report.warnings),
        findings=[
            FindingOut(
                severity=f.severity,
                policy=f.policy,
                problem=f.problem,
                tier=f.tier,
                subject=f.subject,
                rule=f.rule,
                evidence=f.evidence,
                action=f.action,
                date=f.day.isoformat() if f.day else None,
            )
            for f in report.findings
        ],
    )
