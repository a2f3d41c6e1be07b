"""The one way ringfence prints a PDF (reportlab, pure Python: no system library needed): the downtime pack and
the evidence pack share its fonts, palette, paragraphs, tables and page furniture.

* Bitstream Vera ships inside reportlab: dashes, quotes and accented names print as written, and nothing
  depends on the fonts of the machine that prints.
* Text is always escaped before reportlab's paragraph markup sees it (:func:`para`): it came from files.
* The document is built ``invariant`` and its creation date is the ``generated_at`` the caller gives: the same
  content at the same moment gives the same bytes, so packs can be compared and checksummed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape

INK = "#1b1f24"
MUTED = "#4a5561"
RULE = "#c9d0d6"
WASH = "#f3f5f7"
ALARM = "#8c1c13"
TIER_COLOUR = {1: "#8c1c13", 2: "#b4530e", 3: "#7d6a00", 4: "#4f6272"}
MARGIN_MM = 18


def register_fonts() -> None:
    from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
    from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]

    for face, file in (("Vera", "Vera.ttf"), ("Vera-Bold", "VeraBd.ttf")):
        if face not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(face, file))


def style(name: str, size: float, *, bold: bool = False, colour: str = INK, space: float = 3, **kw: Any) -> Any:
    """A paragraph style in Vera: ``size`` points, leading 1.3 times that unless given."""
    from reportlab.lib import colors  # type: ignore[import-untyped]
    from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped]

    kw.setdefault("leading", size * 1.3)
    return ParagraphStyle(
        name,
        fontName="Vera-Bold" if bold else "Vera",
        fontSize=size,
        textColor=colors.HexColor(colour),
        spaceAfter=space,
        **kw,
    )


def para(text: str, paragraph_style: Any) -> Any:
    """``text`` as a paragraph: escaped, never read as reportlab markup."""
    from reportlab.platypus import Paragraph  # type: ignore[import-untyped]

    return Paragraph(xml_escape(text), paragraph_style)


def grid(rows: list[list[Any]], widths: list[float]) -> Any:
    """A table with a rule around every cell and its first row washed as a header, repeated on each page."""
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor(RULE)),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor(WASH)),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table


def bookmark(key: str, title: str, on_draw: Callable[[Any], None] | None = None) -> Any:
    """A flowable of no size that marks where it lands: an outline entry ``title`` for its page, and
    ``on_draw(canvas)`` called there (to note on which page something started)."""
    from reportlab.platypus import Flowable

    class Bookmark(Flowable):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.width = self.height = 0

        def draw(self) -> None:
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(title, key, level=0)
            if on_draw is not None:
                on_draw(self.canv)

    return Bookmark()


def text_width() -> float:
    """The width of the text on an A4 page between the margins, in points."""
    from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
    from reportlab.lib.units import mm  # type: ignore[import-untyped]

    return float(A4[0] - 2 * MARGIN_MM * mm)


def build_pdf(
    story: Sequence[Any],
    *,
    title: str,
    footer: str,
    generated_at: datetime,
    on_page_end: Callable[[Any, Any], None] | None = None,
) -> bytes:
    """Lay ``story`` out on A4 with ``footer`` and the page number at the foot of every page.

    ``on_page_end(canvas, doc)`` draws on a page once it is laid out (what only then is known)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate

    created = generated_at.astimezone(UTC).strftime("D:%Y%m%d%H%M%S+00'00'")

    def on_page(canvas: Any, doc: Any) -> None:
        # reportlab's own date is the invariant 2000-01-01 (or the build machine's clock without it): the PDF
        # says when it was made, the moment the caller gives.
        canvas.setDateFormatter(lambda *_: created)
        canvas.saveState()
        canvas.setFont("Vera", 7.5)
        canvas.setFillColor(colors.HexColor(MUTED))
        canvas.drawString(MARGIN_MM * mm, 10 * mm, footer)
        canvas.drawRightString(A4[0] - MARGIN_MM * mm, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = BaseDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN_MM * mm,
        rightMargin=MARGIN_MM * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=title,
        author="ringfence",
        creator="ringfence",
        invariant=True,
    )
    frame = Frame(doc.leftMargin, doc.bottomMargin, doc.width, doc.height, id="sheet")
    page = PageTemplate(id="sheet", frames=[frame], onPage=on_page, onPageEnd=on_page_end or (lambda *_: None))
    doc.addPageTemplates([page])
    doc.build(list(story))
    return buffer.getvalue()


__all__ = ["TIER_COLOUR", "bookmark", "build_pdf", "grid", "para", "register_fonts", "style", "text_width"]
