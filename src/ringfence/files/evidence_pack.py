"""The evidence pack for the Data Security and Protection Toolkit, organised by the NCSC Cyber Assessment Framework.

The DSPT follows the CAF (v3.2 here): objectives (A, B, D), principles (A4 Supply chain, …) and contributing
outcomes (A4.a, …). The pack takes each contributing outcome the estate and its assurance file can speak to and
sets out, for each, what ringfence shows, where it comes from, and every finding of ``assess`` that bears on it:

* A3.a Asset management: the estate (services by tier, assets, suppliers, sites, recorded dependencies);
* A4.a Supply chain: the register of suppliers (:mod:`ringfence.files.register`) and the supplier findings;
* B5.a Resilience preparation: each service's continuity plan, latest exercise and restore test;
* B5.b Design for resilience: single points of failure of tier-1 and tier-2 services, supplier concentration;
* B5.c Backups: the latest restore test of each asset or service, with its measured time;
* D1.a Response plan: the continuity plan and contacts of each service;
* D1.b Response and recovery capability: each service's RTO against its measured restore;
* D1.c Testing and exercising: the exercises;
* D2.b Using incidents to drive improvements: the actions exercises raised, open, done or overdue.

Every finding is cited at least once: a finding of a policy no outcome names goes under "Other findings", so a
new policy is never dropped from the pack. Principles the estate says nothing about (A1 Governance, B2 Identity
and access control, C Detecting cyber security events, …) are not claimed.

Two renderings of one :class:`EvidencePack`: HTML (``templates/evidence_pack.html.j2``, autoescaped,
self-contained) and PDF (:mod:`ringfence.files.pdf`, the downtime pack's machinery).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from jinja2 import Environment

from ringfence.core.assurance import AssessmentReport, Assurance, Finding, Severity, latest_restore_tests
from ringfence.core.durations import humanize_duration
from ringfence.core.estate import TIER_NAMES
from ringfence.core.graph import EstateGraph
from ringfence.core.impact import find_single_points_of_failure
from ringfence.core.words import count
from ringfence.files.register import arrangements
from ringfence.files.templating import printed_time, template_environment

TEMPLATE = "evidence_pack.html.j2"
CAF_VERSION = "3.2"
SPOF_TIERS = 2
"""Single points of failure are listed for services of this tier and more critical."""

OBJECTIVES = {
    "A": "Managing security risk",
    "B": "Protecting against cyber attack",
    "D": "Minimising the impact of cyber security incidents",
}
PRINCIPLES = {
    "A3": "Asset management",
    "A4": "Supply chain",
    "B5": "Resilient networks and systems",
    "D1": "Response and recovery planning",
    "D2": "Lessons learned",
}
OUTCOMES = {
    "A3.a": "Asset management",
    "A4.a": "Supply chain",
    "B5.a": "Resilience preparation",
    "B5.b": "Design for resilience",
    "B5.c": "Backups",
    "D1.a": "Response plan",
    "D1.b": "Response and recovery capability",
    "D1.c": "Testing and exercising",
    "D2.b": "Using incidents to drive improvements",
}
"""The CAF v3.2 names, as the NCSC writes them."""
CITED_BY = {
    "supplier-assessments": ("A4.a",),
    "exit-plan": ("A4.a",),
    "max-supplier-share": ("A4.a", "B5.b"),
    "single-points-of-failure": ("B5.b",),
    "continuity-exercise": ("B5.a", "D1.c"),
    "restore-test": ("B5.c",),
    "rto-achievable": ("D1.b",),
    "exercise-actions": ("D2.b",),
}
"""Which contributing outcomes each policy of ``assess`` bears on."""


@dataclass(frozen=True)
class Outcome:
    """One contributing outcome: what ringfence shows for it, from where, and the findings that bear on it."""

    ref: str
    name: str
    statement: str
    sources: tuple[str, ...]
    """What the evidence is drawn from: the estate, the assessment, the assurance file's parts."""
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    findings: tuple[Finding, ...]

    @property
    def is_checked(self) -> bool:
        """Whether any policy of ``assess`` bears on it (else the table alone is the evidence)."""
        return any(self.ref in refs for refs in CITED_BY.values())

    @property
    def counted(self) -> str:
        return count(len(self.findings), "finding")

    @property
    def verdict(self) -> str:
        if self.findings:
            return f"Findings ({len(self.findings)})"
        return "No finding: the policy holds here." if self.is_checked else "No policy of assess checks this outcome."


@dataclass(frozen=True)
class Principle:
    ref: str
    name: str
    objective: str
    objective_name: str
    outcomes: tuple[Outcome, ...]


@dataclass(frozen=True)
class EvidencePack:
    estate: str
    assurance: str
    policy: str
    as_of: date
    breaches: int
    warnings: int
    checked: int
    principles: tuple[Principle, ...]
    other_findings: tuple[Finding, ...]
    """Findings of a policy no outcome names (none today): listed, never dropped."""


def _yes(value: object) -> str:
    return "yes" if value else "no"


def evidence_pack(graph: EstateGraph, assurance: Assurance, report: AssessmentReport) -> EvidencePack:
    """The pack for ``report`` (``assess`` of ``graph``'s estate with ``assurance``, as of ``report.as_of``)."""
    estate, as_of = graph.estate, report.as_of
    by_outcome: dict[str, list[Finding]] = {ref: [] for ref in OUTCOMES}
    other: list[Finding] = []
    for finding in report.findings:
        refs = CITED_BY.get(finding.policy)
        if refs is None:
            other.append(finding)
        for ref in refs or ():
            by_outcome[ref].append(finding)

    the_estate = f"estate '{estate.name}'"
    the_assessment = f"assess against policy '{report.policy}' as of {as_of}"
    the_file = f"assurance file '{assurance.assurance}'"
    exercises = sorted((e for e in assurance.exercises if e.date <= as_of), key=lambda e: (e.date, e.service))
    latest_exercise = {e.service: e for e in exercises}
    restored = latest_restore_tests(assurance, as_of)
    services = sorted(estate.services, key=lambda s: (s.tier, s.id))
    outcomes: dict[str, Outcome] = {}

    def add(ref: str, statement: str, sources: Sequence[str], headers: Sequence[str], rows: Sequence[Any]) -> None:
        outcomes[ref] = Outcome(
            ref,
            OUTCOMES[ref],
            statement,
            tuple(sources),
            tuple(headers),
            tuple(tuple(str(c) for c in row) for row in rows),
            tuple(by_outcome[ref]),
        )

    kinds: dict[str, int] = {}
    for asset in estate.assets:
        kinds[asset.kind.value] = kinds.get(asset.kind.value, 0) + 1
    required, _ = graph.requirement_edges
    sites = {a.site for a in estate.assets if a.site is not None}
    add(
        "A3.a",
        f"The {the_estate} inventories {len(estate.services):,} services by clinical tier, {len(estate.assets):,} "
        f"assets ({', '.join(f'{n:,} {k}' for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))}), "
        f"{len(estate.suppliers):,} suppliers and {len(sites):,} sites, with {required.size:,} recorded hard "
        f"dependencies and {graph.group_owner.size:,} redundancy groups, from which every analysis here is computed.",
        [the_estate],
        ["tier", "services", "with a continuity plan", "with an RTO"],
        [
            (
                f"{t} {TIER_NAMES.get(t, '')}".strip(),
                len(of_tier),
                sum(1 for s in of_tier if s.continuity),
                sum(1 for s in of_tier if s.rto is not None),
            )
            for t in sorted({s.tier for s in services})
            for of_tier in [[s for s in services if s.tier == t]]
        ],
    )
    register = arrangements(graph, assurance, as_of)
    add(
        "A4.a",
        f"Every supplier the estate names, with the services it supports, its assessments as of {as_of}, whether "
        "an exit plan is recorded, and the share of tier-1 services its loss alone takes down (the register of "
        "ICT third-party arrangements).",
        [the_estate, f"{the_file}: suppliers", the_assessment],
        ["supplier", "highest tier supported", "assessments", "exit plan", "tier-1 share lost"],
        [
            (
                f"{r.name} ({r.supplier})",
                "—" if r.tier is None else r.tier,
                "; ".join(f"{k} {res}" + (f" to {e}" if e else "") for k, res, e in r.assessments) or "none recorded",
                _yes(r.has_exit_plan),
                f"{r.share_by_tier[1]:.0%}" if 1 in r.share_by_tier else "—",
            )
            for r in register
        ],
    )
    add(
        "B5.a",
        "Each service's continuity plan, its latest continuity exercise and its latest restore test.",
        [the_estate, f"{the_file}: exercises and restore tests", the_assessment],
        ["service", "tier", "continuity plan", "latest exercise", "latest restore test"],
        [
            (
                f"{s.label} ({s.id})",
                s.tier,
                _yes(s.continuity),
                f"{latest_exercise[s.id].date} {latest_exercise[s.id].kind}" if s.id in latest_exercise else "none",
                f"{restored[s.id].date}" if s.id in restored else "none",
            )
            for s in services
        ],
    )
    spofs = find_single_points_of_failure(graph, max_tier=SPOF_TIERS)
    add(
        "B5.b",
        f"What alone takes down a tier-1 or tier-2 service: {len(spofs):,} single points of failure, computed from "
        "the estate's dependencies (assets, sites, suppliers and software products).",
        [the_estate, the_assessment],
        ["single point of failure", "tier-1 and tier-2 services it takes down"],
        [(spof.ref, ", ".join(f"{s.id} (T{s.tier})" for s in spof.services if s.tier <= SPOF_TIERS)) for spof in spofs],
    )
    add(
        "B5.c",
        f"The latest restore test of each asset or service as of {as_of}, with the measured time to restore.",
        [f"{the_file}: restore tests", the_assessment],
        ["restored", "date", "measured time to restore", "evidence"],
        [
            (subject, test.date, humanize_duration(test.time_to_restore), test.evidence or "—")
            for subject, test in sorted(restored.items())
        ],
    )
    add(
        "D1.a",
        "The continuity plan to enact when each service is down, and whom to call.",
        [the_estate],
        ["service", "tier", "RTO", "plan", "contacts"],
        [
            (
                f"{s.label} ({s.id})",
                s.tier,
                humanize_duration(s.rto) if s.rto is not None else "not set",
                " ".join(s.continuity.split()) if s.continuity else "no plan recorded",
                "; ".join(s.contacts) or "none recorded",
            )
            for s in services
        ],
    )
    add(
        "D1.b",
        "Each service's RTO against the time its latest end-to-end restore test measured; where none did, the "
        "restore path composed from measured restore times (findings below).",
        [the_estate, f"{the_file}: restore tests", the_assessment],
        ["service", "tier", "RTO", "measured restore"],
        [
            (
                f"{s.label} ({s.id})",
                s.tier,
                humanize_duration(s.rto) if s.rto is not None else "not set",
                f"{humanize_duration(restored[s.id].time_to_restore)} on {restored[s.id].date}"
                if s.id in restored
                else "not measured",
            )
            for s in services
        ],
    )
    add(
        "D1.c",
        f"{len(exercises):,} continuity exercises recorded up to {as_of}: tabletops, live failovers and restore tests.",
        [f"{the_file}: exercises", the_assessment],
        ["date", "service", "kind", "scenario", "outcome"],
        [(e.date, e.service, e.kind, e.scenario, e.outcome) for e in exercises],
    )
    actions = [(e, a) for e in exercises for a in e.actions]
    add(
        "D2.b",
        f"{len(actions):,} actions raised by exercises, with their owners, due dates and whether they are done.",
        [f"{the_file}: exercises", the_assessment],
        ["exercise", "action", "owner", "due", "state"],
        [
            (
                f"{e.service} {e.kind} {e.date}",
                a.action,
                a.owner,
                a.due,
                "done" if a.done else ("overdue" if a.due < as_of else "open"),
            )
            for e, a in actions
        ],
    )
    principles = tuple(
        Principle(
            ref,
            name,
            ref[0],
            OBJECTIVES[ref[0]],
            tuple(outcomes[o] for o in OUTCOMES if o.startswith(ref + ".")),
        )
        for ref, name in PRINCIPLES.items()
    )
    return EvidencePack(
        estate=estate.name,
        assurance=assurance.assurance,
        policy=report.policy,
        as_of=as_of,
        breaches=len(report.breaches),
        warnings=len(report.warnings),
        checked=report.checked,
        principles=principles,
        other_findings=tuple(other),
    )


# ------------------------------------------------------------------------------------------ HTML


def render_evidence_html(pack: EvidencePack, *, generated_at: datetime) -> str:
    """The pack as one self-contained HTML document (inline CSS, no script, no URL)."""
    # every value came from the estate and the assurance file: text, never markup (the environment autoescapes)
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(pack=pack, caf=CAF_VERSION, generated=printed_time(generated_at), breach=Severity.BREACH)
    )


@cache
def _environment() -> Environment:
    return template_environment()


# ------------------------------------------------------------------------------------------ PDF


def render_evidence_pdf(pack: EvidencePack, *, generated_at: datetime) -> bytes:
    """The pack as a PDF on A4: a bookmark per principle, each contributing outcome with its table and findings."""
    from reportlab.lib.units import mm  # type: ignore[import-untyped]

    from ringfence.files.pdf import ALARM, MUTED, bookmark, build_pdf, grid, para, register_fonts, style, text_width

    register_fonts()
    h1 = style("h1", 18, bold=True, space=4)
    h2 = style("h2", 13, bold=True, space=3, spaceBefore=10)
    h3 = style("h3", 10.5, bold=True, space=3, spaceBefore=6)
    body = style("body", 9)
    small = style("small", 8, colour=MUTED)
    cell = style("cell", 7.5, space=0)
    cell_bold = style("cellb", 7.5, bold=True, space=0)
    breach = style("breach", 8.5, bold=True, colour=ALARM, space=1)
    warning = style("warning", 8.5, bold=True, space=1)

    def findings(found: Sequence[Finding]) -> list[Any]:
        flow: list[Any] = []
        for f in found:
            day = f" [{f.day}]" if f.day else ""
            flow.append(para(f"{f.severity.upper()} · {f.policy}: {f.problem} · {f.subject}", _mark(f)))
            flow.append(para(f"{f.rule}. {f.evidence}{day}. What to do: {f.action}.", cell))
        return flow

    def _mark(f: Finding) -> Any:
        return breach if f.severity is Severity.BREACH else warning

    width = text_width()
    story: list[Any] = [
        para(f"DSPT evidence pack: {pack.estate}", h1),
        para(
            f"Organised by the NCSC Cyber Assessment Framework v{CAF_VERSION}. Estate '{pack.estate}', assurance "
            f"file '{pack.assurance}', policy '{pack.policy}', as of {pack.as_of}: {pack.breaches} breaches and "
            f"{pack.warnings} warnings in {pack.checked} checks.",
            body,
        ),
    ]
    for principle in pack.principles:
        story.append(bookmark(f"caf-{principle.ref}", f"{principle.ref} {principle.name}"))
        story.append(
            para(f"{principle.ref} {principle.name} (objective {principle.objective}: {principle.objective_name})", h2)
        )
        for outcome in principle.outcomes:
            story.append(para(f"{outcome.ref} {outcome.name}", h3))
            story.append(para(outcome.statement, body))
            story.append(para("Drawn from: " + "; ".join(outcome.sources), small))
            if outcome.rows:
                columns = len(outcome.headers)
                rows = [[para(h, cell_bold) for h in outcome.headers]]
                rows += [[para(c, cell) for c in row] for row in outcome.rows]
                story.append(grid(rows, [width / columns] * columns))
            else:
                story.append(para("Nothing recorded.", small))
            story.append(para(outcome.verdict, style("fh", 8.5, bold=True, spaceBefore=4)))
            story.extend(findings(outcome.findings))
    if pack.other_findings:
        story.append(para("Other findings", h2))
        story.extend(findings(pack.other_findings))
    story.append(para("", style("end", 1, spaceBefore=4 * mm)))
    return build_pdf(
        story,
        title=f"DSPT evidence pack — {pack.estate}",
        footer=f"ringfence evidence pack · {pack.estate} · as of {pack.as_of} · made {printed_time(generated_at)}",
        generated_at=generated_at,
    )


__all__ = [
    "CAF_VERSION",
    "CITED_BY",
    "OUTCOMES",
    "PRINCIPLES",
    "EvidencePack",
    "Outcome",
    "Principle",
    "evidence_pack",
    "render_evidence_html",
    "render_evidence_pdf",
]
