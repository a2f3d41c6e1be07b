"""The continuity PDF as paper: a sheet that spills onto another page says whose it is there, the PDF says
when it was made, and the sample estate's suppliers have someone to call. Read back with pypdf."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import pypdf

from ringfence.core.estate import parse_estate_document
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.files.continuity import continuity_sheets, render_pack_pdf

from .conftest import SAMPLE

PRINTED = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
CHAIN = 90
"""A chain of assets long enough that its restore table cannot fit on one A4 page."""


def chain_estate() -> EstateGraph:
    """``chain-0 ← chain-1 ← … ← chain-89``, under a service with a long restore order, and a short one."""
    assets: list[dict[str, object]] = [
        {"id": f"chain-{n}", "kind": "vm", **({"requires": [f"chain-{n + 1}"]} if n + 1 < CHAIN else {})}
        for n in range(CHAIN)
    ]
    assets.append({"id": "kiosk", "kind": "endpoint"})
    document = {
        "apiVersion": "ringfence/v1",
        "estate": "chain",
        "services": [
            {"id": "pathology", "name": "Pathology results", "tier": 1, "rto": "4h", "requires": ["chain-0"]},
            {"id": "wayfinding", "name": "Wayfinding kiosk", "tier": 4, "requires": ["kiosk"]},
        ],
        "assets": assets,
    }
    return compile_estate(parse_estate_document(document, source="chain.yaml"))


def pages_of(pdf: bytes) -> tuple[pypdf.PdfReader, list[str]]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return reader, [" ".join(page.extract_text().split()) for page in reader.pages]


def topmost_line(page: pypdf.PageObject) -> str:
    """The text drawn highest on the page (the heading a reader sees first)."""
    found: list[tuple[float, str]] = []

    def visit(text: str, _cm: object, tm: list[float], _font: object, _size: object) -> None:
        if text.strip():
            found.append((tm[5], text.strip()))

    page.extract_text(visitor_text=visit)
    return max(found)[1]


def test_a_sheet_spilling_onto_more_pages_repeats_its_heading_there() -> None:
    reader, pages = pages_of(
        render_pack_pdf(continuity_sheets(chain_estate()), estate_name="chain", generated_at=PRINTED)
    )
    outline = {entry.title: reader.get_destination_page_number(entry) for entry in reader.outline}
    assert outline == {"T1 Pathology results": 0, "T4 Wayfinding kiosk": len(pages) - 1}
    pathology = pages[: len(pages) - 1]
    assert len(pathology) >= 2, "the restore table of 91 steps spills over"
    # Its first page starts the sheet; every page it spills onto is headed with its name, and the table's
    # column headings come again.
    assert "(continued)" not in pathology[0]
    for number, page in enumerate(pathology[1:], start=1):
        assert "Pathology results (continued)" in page
        assert topmost_line(reader.pages[number]) == "Pathology results (continued)"
        assert "step takes restore" in page
    # The next sheet starts on a page of its own, not headed as a continuation of anything.
    assert "(continued)" not in pages[-1]
    assert "Wayfinding kiosk" in pages[-1]


def test_the_pdf_creation_date_is_when_the_pack_was_made() -> None:
    sheets = continuity_sheets(chain_estate(), ["wayfinding"])
    pdf = render_pack_pdf(sheets, estate_name="chain", generated_at=PRINTED)
    reader, _ = pages_of(pdf)
    assert reader.metadata is not None
    assert reader.metadata.creation_date == PRINTED
    assert reader.metadata.modification_date == PRINTED
    # Given in another zone, the same moment is written in UTC.
    paris = PRINTED.astimezone(timezone(timedelta(hours=1)))
    in_paris = pages_of(render_pack_pdf(sheets, estate_name="chain", generated_at=paris))[0]
    assert in_paris.metadata is not None
    assert in_paris.metadata.creation_date == PRINTED
    assert b"/CreationDate (D:20260314150926+00'00')" in pdf
    # Reproducible: the same sheets at the same moment give the same bytes; another moment, another date.
    assert render_pack_pdf(sheets, estate_name="chain", generated_at=PRINTED) == pdf
    later = pages_of(render_pack_pdf(sheets, estate_name="chain", generated_at=PRINTED + timedelta(days=1)))[0]
    assert later.metadata is not None
    assert later.metadata.creation_date == PRINTED + timedelta(days=1)


def test_every_supplier_of_the_sample_has_a_contact_printed_on_the_sheets(sample_graph: EstateGraph) -> None:
    suppliers = sample_graph.estate.suppliers
    assert suppliers
    missing = [s.id for s in suppliers if not s.contact]
    assert missing == []
    # Fictional on their face: Ofcom's drama range, which rings nowhere.
    assert all("01632 960" in (s.contact or "") for s in suppliers)
    sheets = continuity_sheets(sample_graph)
    _, pages = pages_of(render_pack_pdf(sheets, estate_name="city-general", generated_at=PRINTED))
    text = " ".join(pages)
    for sheet in sheets:
        for line in sheet.suppliers:
            assert line.contact is not None
            assert " ".join(line.contact.split()) in text, line.id
    assert (SAMPLE / "estate.yaml").exists()
