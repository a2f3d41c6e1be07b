"""Downtime packs: every fact staff need on paper, in HTML that parses and a PDF with a page per service."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pypdf
import pytest

from ringfence.core.durations import humanize_duration
from ringfence.core.errors import InputError
from ringfence.core.graph import EstateGraph
from ringfence.files.continuity import continuity_sheets, render_pack_html, render_pack_pdf, write_pack

from .conftest import SAMPLE, run_cli

PRINTED = datetime(2024, 11, 30, 9, 0, tzinfo=UTC)


def flat(text: str) -> str:
    return " ".join(text.split())


class Sections(HTMLParser):
    """The text of each ``<section data-service>``; fails on a closing tag that does not match."""

    VOID = frozenset({"meta", "br", "img", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.current: str | None = None
        self.depth = 0
        self.text: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        self.stack.append(tag)
        service = dict(attrs).get("data-service")
        if tag == "section" and service:
            self.current, self.depth = service, len(self.stack)
            self.text[service] = []

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        opened = self.stack.pop()
        assert opened == tag, f"<{opened}> closed by </{tag}>"
        if self.current is not None and len(self.stack) < self.depth:
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None:
            self.text[self.current].append(data)

    def sheets(self) -> dict[str, str]:
        assert self.stack == [], f"unclosed: {self.stack}"
        return {service: flat(" ".join(parts)) for service, parts in self.text.items()}


def parse_sheets(html: str) -> dict[str, str]:
    parser = Sections()
    parser.feed(html)
    parser.close()
    return parser.sheets()


def test_a_sheet_says_what_the_estate_says_about_the_service(ward: EstateGraph) -> None:
    epr, pharmacy, rota = continuity_sheets(ward)
    assert (epr.service, pharmacy.service, rota.service) == ("epr", "pharmacy", "rota")  # most critical first
    assert epr.plan == (
        "Paper notes from the ward downtime box; the 4-hourly printout of current patients is in the sister's office."
    )
    assert epr.contacts == ("Service desk 01632 960000", "EPR analyst on call via switchboard")
    assert (epr.rto_text, epr.rpo_text, epr.tier_name) == ("4h", "15 min", "life-critical")
    assert epr.requires == ("any 1 of [epr-app-1, epr-app-2]",)
    assert (epr.assets, epr.kinds, epr.sites) == (3, (("vm", 3),), ("city", "north"))
    assert [(s.id, s.name, s.contact, s.assets) for s in epr.suppliers] == [
        ("acme", "Acme Health", "Acme support 01632 960999", 2)
    ]
    assert [(line.step, line.items) for line in epr.restore] == [
        (1, ("sql-epr-1",)),
        (2, ("epr-app-1", "epr-app-2")),
        (3, ("epr",)),
    ]
    assert [s.id for s in pharmacy.services] == ["epr"]
    assert pharmacy.restore[-1].items == ("pharmacy",)
    # The rota's two servers need each other: they come back together, then the rota.
    assert [(line.step, line.items) for line in rota.restore] == [(1, ("rota-app", "rota-db")), (2, ("rota",))]
    assert rota.gaps == (
        "No continuity plan is recorded for this service: agree one and add it to the estate.",
        "No contacts are recorded for this service.",
        "No RTO is recorded for this service.",
    )


def test_only_the_services_asked_for_and_unknown_ones_are_refused(ward: EstateGraph) -> None:
    assert [s.service for s in continuity_sheets(ward, ["rota", "pharmacy"])] == ["pharmacy", "rota"]
    with pytest.raises(InputError, match="'lab' is not a service of estate 'ward'"):
        continuity_sheets(ward, ["epr", "lab"])


def test_long_restore_steps_are_counted_by_kind(sample_graph: EstateGraph) -> None:
    (ed,) = continuity_sheets(sample_graph, ["ed"])
    first = ed.restore[0]
    assert len(first.items) == 12
    assert first.more > 0
    assert first.more_kinds == f"{first.more} endpoint"
    assert ed.restore[-1].items == ("ed",)


def test_every_fact_is_in_the_html_and_the_pdf(sample_graph: EstateGraph, tmp_path: Path) -> None:
    sheets = continuity_sheets(sample_graph)
    files = write_pack(sheets, tmp_path / "pack", estate_name="city-general", generated_at=PRINTED)
    assert len(files.sheets) == len(sample_graph.estate.services)

    html_sheets = parse_sheets(files.html.read_text(encoding="utf-8"))
    assert list(html_sheets) == [s.service for s in sheets]
    reader = pypdf.PdfReader(files.pdf)
    pages = [flat(page.extract_text()) for page in reader.pages]
    assert len(pages) >= len(sheets)
    # Each sheet starts on a page of its own: its bookmark points at a different page each time.
    outline = {entry.title: reader.get_destination_page_number(entry) for entry in reader.outline}
    assert len(set(outline.values())) == len(sheets)
    starts = sorted(outline.values())
    for sheet in sheets:
        start = outline[f"T{sheet.tier} {sheet.name}"]
        end = next((s for s in starts if s > start), len(pages))
        pdf_text = " ".join(pages[start:end])
        for text in (html_sheets[sheet.service], pdf_text):
            assert flat(sheet.name) in text
            assert flat(sheet.plan or "No continuity plan is recorded.") in text, sheet.service
            for contact in sheet.contacts:
                assert flat(contact) in text, (sheet.service, contact)
            assert (humanize_duration(sheet.rto) if sheet.rto is not None else "not set") in text
            for supplier in sheet.suppliers:
                assert supplier.name in text
            for site in sheet.sites:
                assert site in text
    one = parse_sheets((tmp_path / "pack" / "nhs111.html").read_text(encoding="utf-8"))
    assert list(one) == ["nhs111"]
    assert "Paper triage forms and a manual call log" in one["nhs111"]


def test_the_pdf_is_a_pdf_and_the_same_sheets_give_the_same_bytes(ward: EstateGraph) -> None:
    sheets = continuity_sheets(ward)
    first = render_pack_pdf(sheets, estate_name="ward", generated_at=PRINTED)
    assert first.startswith(b"%PDF-")
    assert first == render_pack_pdf(sheets, estate_name="ward", generated_at=PRINTED)
    reader = pypdf.PdfReader(io.BytesIO(first))
    assert len(reader.pages) == 3
    assert reader.metadata is not None
    assert reader.metadata.title == "Downtime continuity pack — ward"
    gaps = flat(reader.pages[2].extract_text())
    assert "No continuity plan is recorded for this service" in gaps


def test_the_html_is_self_contained(ward: EstateGraph) -> None:
    html = render_pack_html(continuity_sheets(ward), estate_name="ward", generated_at=PRINTED)
    for outside in ("http://", "https://", "<script", "<link", "@import", "src="):
        assert outside not in html
    assert "@page { size: A4" in html
    # Text from the estate is escaped, never taken as markup.
    assert "sister&#39;s office" in html


def test_the_pack_command(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'unused.db'}"
    done = run_cli(
        "continuity", "pack", SAMPLE / "estate.yaml", "--out", tmp_path / "pack",
        "--service", "nhs111", "--service", "community-records", "--json", database_url=database,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["services"] == ["community-records", "nhs111"]
    assert Path(doc["pdf"]).read_bytes().startswith(b"%PDF-")
    assert sorted(p.name for p in (tmp_path / "pack").iterdir()) == [
        "community-records.html",
        "continuity-pack.html",
        "continuity-pack.pdf",
        "nhs111.html",
    ]
    refused = run_cli(
        "continuity", "pack", SAMPLE / "estate.yaml", "--out", tmp_path / "other", "--service", "lab",
        database_url=database,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "'lab' is not a service of estate 'city-general'" in refused.stderr
    assert not (tmp_path / "other").exists()
