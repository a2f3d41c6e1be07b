"""The assurance page: an estate's findings by tier and by supplier and its evidence calendar, and each supplier's
assessments on its own page. Everything comes from one evaluation (``ringfence.service.assurance``), the one
``ringfence assess`` and ``GET /v1/estates/NAME/assessment`` make."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from urllib.parse import quote

from sqlalchemy.engine import Engine

from ringfence.core.assurance import Assessment, Finding, Severity
from ringfence.core.errors import ConflictError
from ringfence.core.impact import TIERS
from ringfence.core.words import count
from ringfence.service import assurance as assurance_service
from ringfence.service.assurance import NOTICE_DAYS, AssuranceView, CalendarItem
from ringfence.service.estates import LoadedEstate
from ringfence.web.views.estate import page_href
from ringfence.web.views.shared import Tier, tier

POLICY_WORDS = {
    "supplier-assessments": "supplier assessment",
    "exit-plan": "exit plan",
    "continuity-exercise": "continuity exercise",
    "exercise-actions": "exercise action",
    "restore-test": "restore test",
    "single-points-of-failure": "single points of failure",
    "max-supplier-share": "supplier share",
    "rto-achievable": "RTO achievable",
}


def assurance_href(estate: str) -> str:
    return f"/assurance?estate={quote(estate, safe='')}"


@dataclass(frozen=True)
class Subject:
    """What a finding is about, as a link into the estate where it is a supplier, a service or an asset."""

    text: str
    href: str | None


def _subject(estate: str, ref: str) -> Subject:
    kind, _, ident = ref.partition(":")
    section = {"supplier": "suppliers", "service": "services", "asset": "assets"}.get(kind)
    return Subject(ref, page_href(estate, section, ident) if section else None)


@dataclass(frozen=True)
class FindingRow:
    is_breach: bool
    subject: Subject
    policy: str
    problem: str
    rule: str
    evidence: str
    action: str
    day: str


def _row(estate: str, finding: Finding) -> FindingRow:
    return FindingRow(
        is_breach=finding.severity is Severity.BREACH,
        subject=_subject(estate, finding.subject),
        policy=POLICY_WORDS.get(finding.policy, finding.policy),
        problem=finding.problem.replace("-", " "),
        rule=finding.rule,
        evidence=finding.evidence,
        action=finding.action,
        day=finding.day.isoformat() if finding.day else "",
    )


@dataclass(frozen=True)
class TierFindings:
    tier: Tier
    breaches: int
    warnings: int
    rows: tuple[FindingRow, ...]


@dataclass(frozen=True)
class SupplierSummary:
    id: str
    name: str
    href: str
    breaches: int
    warnings: int
    next_day: str
    """The nearest day any of its evidence runs out (or ran out), or ``""``."""


@dataclass(frozen=True)
class CalendarEntry:
    day: str
    subject: Subject
    what: str
    has_expired: bool
    when: str
    """``expired 2026-09-11``, ``in 12 days``."""
    is_soon: bool
    """Within the days a notification is sent before."""


@dataclass(frozen=True)
class CalendarMonth:
    label: str
    entries: tuple[CalendarEntry, ...]


@dataclass(frozen=True)
class AssurancePage:
    estate: str
    version: int
    estate_href: str
    as_of: str
    policy: str
    policy_stored: bool
    assurance: str
    assurance_stored: bool
    is_breached: bool
    breaches: int
    warnings: int
    checked: int
    tiers: tuple[TierFindings, ...]
    suppliers: tuple[SupplierSummary, ...]
    calendar: tuple[CalendarMonth, ...]
    expired: int
    horizon: str
    problem: str
    """Why the estate could not be assessed (a stored assurance file that no longer holds), or ``""``."""


def _calendar_entry(estate: str, item: CalendarItem, as_of: date) -> CalendarEntry:
    days = (item.day - as_of).days
    if item.has_expired:
        when = f"ran out after {item.day.isoformat()}"
    elif days == 0:
        when = "last day today"
    else:
        when = f"last day in {count(days, 'day')}"
    return CalendarEntry(
        day=item.day.isoformat(),
        subject=_subject(estate, item.subject),
        what=f"{POLICY_WORDS.get(item.finding.policy, item.finding.policy)}: {item.finding.evidence}",
        has_expired=item.has_expired,
        when=when,
        is_soon=not item.has_expired and days <= NOTICE_DAYS,
    )


def _months(estate: str, calendar: tuple[CalendarItem, ...], as_of: date) -> tuple[CalendarMonth, ...]:
    months: dict[tuple[int, int], list[CalendarEntry]] = {}
    for item in calendar:
        months.setdefault((item.day.year, item.day.month), []).append(_calendar_entry(estate, item, as_of))
    return tuple(
        CalendarMonth(date(year, month, 1).strftime("%B %Y"), tuple(entries))
        for (year, month), entries in sorted(months.items())
    )


def assurance_page(engine: Engine, loaded: LoadedEstate, as_of: date) -> AssurancePage:
    estate = loaded.estate
    name = estate.name
    try:
        view: AssuranceView | None = assurance_service.VIEWS.get(engine, loaded, as_of)
        problem = ""
    except ConflictError as exc:
        view, problem = None, str(exc)
    findings = view.report.findings if view else ()
    tiers = []
    for number in TIERS:
        rows = [f for f in findings if f.tier == number]
        if rows:
            breaches = sum(f.severity is Severity.BREACH for f in rows)
            tiers.append(TierFindings(tier(number), breaches, len(rows) - breaches, tuple(_row(name, f) for f in rows)))
    suppliers = []
    calendar = view.calendar if view else ()
    for supplier in estate.suppliers:
        ref = f"supplier:{supplier.id}"
        mine = [f for f in findings if f.subject == ref]
        days = [item.day for item in calendar if item.subject == ref]
        breaches = sum(f.severity is Severity.BREACH for f in mine)
        suppliers.append(
            SupplierSummary(
                id=supplier.id,
                name=supplier.label,
                href=page_href(name, "suppliers", supplier.id),
                breaches=breaches,
                warnings=len(mine) - breaches,
                next_day=min(days).isoformat() if days else "",
            )
        )
    suppliers.sort(key=lambda s: (-s.breaches, -s.warnings, s.next_day or "9999", s.id))
    inputs = view.inputs if view else None
    report = view.report if view else None
    return AssurancePage(
        estate=name,
        version=loaded.version.id,
        estate_href=f"/?estate={quote(name, safe='')}",
        as_of=as_of.isoformat(),
        policy=report.policy if report else "",
        policy_stored=bool(inputs and inputs.policy_file),
        assurance=inputs.assurance.assurance if inputs else "",
        assurance_stored=bool(inputs and inputs.assurance_file),
        is_breached=bool(report and report.is_breached),
        breaches=len(report.breaches) if report else 0,
        warnings=len(report.warnings) if report else 0,
        checked=report.checked if report else 0,
        tiers=tuple(tiers),
        suppliers=tuple(suppliers),
        calendar=_months(name, calendar, as_of),
        expired=sum(item.has_expired for item in calendar),
        horizon=f"{assurance_service.CALENDAR_DAYS} days",
        problem=problem,
    )


# ------------------------------------------------------------------------------------------ a supplier


@dataclass(frozen=True)
class AssessmentRow:
    kind: str
    result: str
    is_met: bool
    date: str
    expires: str
    status: str
    """``holds``, ``expired``, ``runs out in N days``, ``not yet valid``, ``superseded``."""
    is_bad: bool
    evidence: str
    evidence_href: str | None
    """The evidence as a link when it is a web address; a file path is shown as text."""


@dataclass(frozen=True)
class ContactRow:
    name: str
    role: str
    phone: str
    email: str


@dataclass(frozen=True)
class SupplierAssurance:
    assurance_href: str
    stored: bool
    assessments: tuple[AssessmentRow, ...]
    exit_plan: str
    escalation: tuple[ContactRow, ...]
    findings: tuple[FindingRow, ...]
    problem: str


def _status(assessment: Assessment, latest: bool, as_of: date) -> tuple[str, bool]:
    if assessment.date > as_of:
        return "not yet valid", False
    if not latest:
        return "superseded by a later one", False
    if assessment.expires is not None and as_of > assessment.expires:
        return "expired", True
    if assessment.expires is not None and (assessment.expires - as_of).days <= NOTICE_DAYS:
        return f"runs out in {count((assessment.expires - as_of).days, 'day')}", True
    return "holds", False


def supplier_assurance(engine: Engine, loaded: LoadedEstate, supplier_id: str, as_of: date) -> SupplierAssurance:
    """A supplier's assessments (each with its status as of ``as_of``), escalation contacts, exit plan and the
    findings the policy makes of it."""
    name = loaded.estate.name
    href = assurance_href(name)
    try:
        view = assurance_service.VIEWS.get(engine, loaded, as_of)
    except ConflictError as exc:
        return SupplierAssurance(href, True, (), "", (), (), str(exc))
    evidence = view.inputs.assurance.supplier_by_id.get(supplier_id)
    ref = f"supplier:{supplier_id}"
    findings = tuple(_row(name, f) for f in view.report.findings if f.subject == ref)
    if evidence is None:
        return SupplierAssurance(href, view.inputs.assurance_file is not None, (), "", (), findings, "")
    latest: dict[str, date] = {}
    for a in evidence.assessments:
        if a.date <= as_of:
            latest[a.kind] = max(latest.get(a.kind, a.date), a.date)
    rows = []
    for a in sorted(evidence.assessments, key=lambda a: (a.kind.value, a.date), reverse=False):
        status, is_bad = _status(a, latest.get(a.kind) == a.date, as_of)
        rows.append(
            AssessmentRow(
                kind=a.kind.value,
                result=a.result.value.replace("-", " "),
                is_met=a.result.value == "met",
                date=a.date.isoformat(),
                expires=a.expires.isoformat() if a.expires else "",
                status=status,
                is_bad=is_bad or a.result.value != "met",
                evidence=a.evidence,
                evidence_href=a.evidence if a.evidence.startswith(("https://", "http://")) else None,
            )
        )
    contacts = tuple(ContactRow(c.name, c.role or "", c.phone or "", c.email or "") for c in evidence.escalation)
    return SupplierAssurance(href, True, tuple(rows), evidence.exit_plan or "", contacts, findings, "")


__all__ = [
    "AssurancePage",
    "SupplierAssurance",
    "assurance_href",
    "assurance_page",
    "supplier_assurance",
]
