"""The DSPT evidence pack: every CAF principle and contributing outcome it claims, by its CAF v3.2 name, each
citing its sources and every finding of ``assess`` that bears on it; HTML that parses, escapes what the files
say, and a real PDF with the same text."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pypdf
import pytest

from ringfence.core.assurance import AssessmentReport, Assurance, assess, parse_assurance_text, parse_policy_text
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.files.evidence_pack import (
    CITED_BY,
    OUTCOMES,
    PRINCIPLES,
    evidence_pack,
    render_evidence_html,
    render_evidence_pdf,
)

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "src" / "ringfence" / "examples" / "city-general"
POLICY = Path(__file__).resolve().parents[1] / "src" / "ringfence" / "examples" / "policy-acute.yaml"
AS_OF = date(2026, 6, 15)
MADE = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
# The CAF v3.2 names, written out again here (NCSC, "CAF v3.2"), not read from the module under test.
CAF = {
    "A3": "Asset management",
    "A3.a": "Asset management",
    "A4": "Supply chain",
    "A4.a": "Supply chain",
    "B5": "Resilient networks and systems",
    "B5.a": "Resilience preparation",
    "B5.b": "Design for resilience",
    "B5.c": "Backups",
    "D1": "Response and recovery planning",
    "D1.a": "Response plan",
    "D1.b": "Response and recovery capability",
    "D1.c": "Testing and exercising",
    "D2": "Lessons learned",
    "D2.b": "Using incidents to drive improvements",
}


def flat(text: str) -> str:
    return " ".join(text.split())


class Pack(HTMLParser):
    """Text by ``data-caf`` section (nested: an outcome's text is also its principle's), the findings cited in
    each outcome, and every tag opened; fails on a closing tag that does not match."""

    VOID = frozenset({"meta", "br", "img", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []
        self.text: dict[str, list[str]] = {}
        self.cited: dict[str, list[str]] = {}
        self.tags: Counter[str] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        if tag in self.VOID:
            return
        found = dict(attrs)
        caf = found.get("data-caf")
        self.stack.append((tag, caf))
        if caf is not None:
            self.text[caf] = []
        if found.get("data-finding") is not None:
            outcome = [c for _, c in self.stack if c is not None][-1]
            self.cited.setdefault(outcome, []).append(found["data-finding"] or "")

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        opened, _ = self.stack.pop()
        assert opened == tag, f"<{opened}> closed by </{tag}>"

    def handle_data(self, data: str) -> None:
        for _, caf in self.stack:
            if caf is not None:
                self.text[caf].append(data)

    def sections(self) -> dict[str, str]:
        assert self.stack == [], f"unclosed: {self.stack}"
        return {caf: flat(" ".join(parts)) for caf, parts in self.text.items()}


def parse(html: str) -> Pack:
    parser = Pack()
    parser.feed(html)
    parser.close()
    return parser


def assessed(estate_text: str, assurance_text: str) -> tuple[EstateGraph, Assurance, AssessmentReport]:
    estate = parse_estate_text(estate_text, "estate.yaml")
    graph = compile_estate(estate)
    assurance = parse_assurance_text(assurance_text, estate, "assurance.yaml")
    policy = parse_policy_text(POLICY.read_text(encoding="utf-8"), str(POLICY))
    return graph, assurance, assess(estate, graph, assurance, policy, AS_OF)


@pytest.fixture(scope="module")
def sample() -> tuple[EstateGraph, Assurance, AssessmentReport]:
    return assessed(
        (SAMPLE_DIR / "estate.yaml").read_text(encoding="utf-8"),
        (SAMPLE_DIR / "assurance.yaml").read_text(encoding="utf-8"),
    )


def test_the_names_are_the_caf_names() -> None:
    assert {**PRINCIPLES, **OUTCOMES} == CAF


def test_every_caf_outcome_and_every_finding_is_in_the_html(
    sample: tuple[EstateGraph, Assurance, AssessmentReport],
) -> None:
    graph, assurance, report = sample
    assert report.findings, "the sample has findings to cite"
    parsed = parse(render_evidence_html(evidence_pack(graph, assurance, report), generated_at=MADE))
    sections = parsed.sections()
    for ref, name in CAF.items():
        assert ref in sections, ref
        assert f"{ref} {name}" in sections[ref]
    # Each outcome cites where its evidence comes from: the estate, the assessment, the assurance file.
    for ref in OUTCOMES:
        assert "Drawn from:" in sections[ref]
    assert "estate 'city-general'" in sections["A3.a"]
    assert f"assess against policy '{report.policy}' as of {AS_OF}" in sections["A4.a"]
    assert f"assurance file '{assurance.assurance}': restore tests" in sections["B5.c"]
    # Every finding under each outcome its policy bears on, with its evidence and what to do; nothing else.
    expected: dict[str, Counter[str]] = {}
    for finding in report.findings:
        for ref in CITED_BY[finding.policy]:
            expected.setdefault(ref, Counter())[f"{finding.policy} {finding.subject}"] += 1
            assert flat(finding.evidence) in sections[ref], (ref, finding)
            assert flat(finding.action) in sections[ref], (ref, finding)
    assert {ref: Counter(cited) for ref, cited in parsed.cited.items()} == expected
    # The evidence itself: every exercise and every restore test the assurance file has up to the day.
    for exercise in assurance.exercises:
        if exercise.date <= AS_OF:
            assert flat(exercise.scenario) in sections["D1.c"]
    for test in assurance.restore_tests:
        if test.date <= AS_OF:
            assert test.subject in sections["B5.c"]
    for supplier in graph.estate.suppliers:
        assert f"({supplier.id})" in sections["A4.a"]
    assert parsed.tags["script"] == 0


HOSTILE_ESTATE = """\
apiVersion: ringfence/v1
estate: hostile
suppliers:
  - {id: evil, name: "<img src=x onerror=alert(1)>"}
services:
  - id: lab
    name: "<script>alert('lab')</script>"
    tier: 1
    rto: 1h
    continuity: "</td></tr></table><b>bold</b>"
    requires: [app]
assets:
  - {id: app, kind: vm, supplier: evil}
"""
HOSTILE_ASSURANCE = """\
apiVersion: ringfence/v1
assurance: "<i>file</i>"
exercises:
  - {service: lab, date: 2026-01-05, kind: tabletop, scenario: "<script>x()</script>", outcome: "&amp; done",
     actions: [{action: "<u>fix</u>", owner: "a&b", due: 2026-02-01}]}
restore-tests:
  - {subject: app, date: 2026-01-06, time-to-restore: 2h, evidence: "javascript:alert(1)"}
"""


def test_what_the_files_say_is_text_never_markup() -> None:
    graph, assurance, report = assessed(HOSTILE_ESTATE, HOSTILE_ASSURANCE)
    html = render_evidence_html(evidence_pack(graph, assurance, report), generated_at=MADE)
    parsed = parse(html)
    assert (parsed.tags["script"], parsed.tags["img"], parsed.tags["u"], parsed.tags["i"], parsed.tags["b"]) == (
        0,
        0,
        0,
        0,
        0,
    )
    sections = parsed.sections()
    assert "<script>alert('lab')</script>" in sections["D1.a"]
    assert "</td></tr></table><b>bold</b>" in sections["D1.a"]
    assert "<img src=x onerror=alert(1)>" in sections["A4.a"]
    assert "<script>x()</script>" in sections["D1.c"]
    assert "&amp; done" in sections["D1.c"]
    assert "<u>fix</u>" in sections["D2.b"]
    # The action is overdue on the day: a finding, cited under D2.b.
    assert parsed.cited["D2.b"] == ["exercise-actions service:lab"]
    # And the PDF prints the same text as written, not as markup.
    pdf_text = flat(
        " ".join(
            p.extract_text()
            for p in pypdf.PdfReader(
                io.BytesIO(render_evidence_pdf(evidence_pack(graph, assurance, report), generated_at=MADE))
            ).pages
        )
    )
    assert "<script>x()</script>" in pdf_text


def test_the_pdf_is_a_pdf_with_every_principle_outcome_and_finding(
    sample: tuple[EstateGraph, Assurance, AssessmentReport],
) -> None:
    graph, assurance, report = sample
    pack = evidence_pack(graph, assurance, report)
    pdf = render_evidence_pdf(pack, generated_at=MADE)
    assert pdf.startswith(b"%PDF-")
    assert pdf == render_evidence_pdf(pack, generated_at=MADE), "the same pack at the same moment, the same bytes"
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    outline = [entry.title for entry in reader.outline if isinstance(entry, pypdf.generic.Destination)]
    assert outline == [f"{ref} {name}" for ref, name in PRINCIPLES.items()]
    assert len(outline) == len(reader.outline), "one flat level: a bookmark per principle"
    text = flat(" ".join(page.extract_text() for page in reader.pages))
    for ref, name in CAF.items():
        assert f"{ref} {name}" in text, ref
    for finding in report.findings:
        assert f"{finding.policy}: {finding.problem} · {finding.subject}" in text, finding
    assert reader.metadata is not None
    assert reader.metadata.creation_date == MADE


def test_the_assess_command_writes_the_pack_as_html_or_pdf(tmp_path: Path) -> None:
    from cli.conftest import run_cli  # the suite's one way of running the console script

    estate = SAMPLE_DIR / "estate.yaml"
    for name in ("pack.html", "pack.pdf"):
        out = tmp_path / "evidence" / name
        result = run_cli("assess", estate, "--as-of", "2026-06-15", "--evidence-pack", out)
        assert result.returncode == 1, result.stderr  # the sample breaches its policy; the pack is still written
        assert f"Written: {out}" in flat(result.stdout)
    assert (tmp_path / "evidence" / "pack.pdf").read_bytes().startswith(b"%PDF-")
    assert "D1.c Testing and exercising" in (tmp_path / "evidence" / "pack.html").read_text(encoding="utf-8")
    refused = run_cli("assess", estate, "--evidence-pack", tmp_path / "pack.docx")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0
    assert "name an .html or a .pdf file" in refused.stderr
    assert not (tmp_path / "pack.docx").exists()
