"""Downtime packs: one printable continuity sheet per service, for when the IT is down and paper is all there is.

A sheet says what staff need without a computer: the continuity plan to enact, whom to call, the RTO and RPO,
the clinical tier, what the service depends on (its direct requirements, and everything beneath them
summarised: services, assets by kind, sites), the suppliers behind it with their contacts, and the order in
which its own dependencies come back if they all went down (:func:`ringfence.core.recovery.plan_recovery`),
with how long each step takes: the measured time to restore where an assurance file has one, else an hour a
step, marked "estimate".

Two renderings of the same sheets, so the pack can be kept both ways:

* HTML (``templates/continuity_pack.html.j2``): self-contained (inline CSS, no script, no font, no URL),
  print CSS for A4, one sheet per printed page;
* PDF (:mod:`ringfence.files.pdf`), one sheet or more per page, each sheet starting
  on a new page, with a bookmark per service; a page a sheet spills onto is headed "NAME (continued)", so
  a loose page still says which service it is about. Its creation date is the ``generated_at`` given by
  the caller (the adapters pass :func:`ringfence.core.clock.utc_now`), and nothing else varies: the same
  sheets at the same moment give the same bytes.

:func:`continuity_sheets` is computation only; the rendering functions return text or bytes, and
:func:`write_pack` writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import numpy as np
from jinja2 import Environment

from ringfence.core.durations import humanize_duration
from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import TIER_NAMES, AnyGroup
from ringfence.core.graph import EstateGraph, Failure
from ringfence.core.recovery import MeasuredRestore, plan_recovery, step_ends, time_basis, timed_step
from ringfence.files.disk import write_bytes_atomic, write_text_atomic
from ringfence.files.pdf import (
    ALARM,
    INK,
    MUTED,
    TIER_COLOUR,
    WASH,
    bookmark,
    build_pdf,
    grid,
    para,
    register_fonts,
    style,
    text_width,
)
from ringfence.files.templating import printed_time, template_environment

TEMPLATE = "continuity_pack.html.j2"
PACK_HTML = "continuity-pack.html"
PACK_PDF = "continuity-pack.pdf"
SHOWN_PER_STEP = 12
ESTIMATED_STEP = 3600
"""Seconds a restore step is guessed to take where no restore test measured it."""
"""Items named in one restore step on paper; the rest are counted by kind."""


@dataclass(frozen=True)
class ServiceRef:
    id: str
    name: str
    tier: int


@dataclass(frozen=True)
class SupplierLine:
    id: str
    name: str
    contact: str | None
    assets: int
    """How many of the service's assets it operates, hosts or writes software for."""


@dataclass(frozen=True)
class StepLine:
    step: int
    items: tuple[str, ...]
    """The first :data:`SHOWN_PER_STEP` ids of the step."""
    more: int = 0
    more_kinds: str = ""
    """What the items not named are, by kind: ``68 endpoint, 2 vm``."""
    seconds: int = ESTIMATED_STEP
    """How long the step takes for this service's items: the slowest of them."""
    basis: str = "estimate"
    """``measured YYYY-MM-DD`` when every item of the step has a measured time, else ``estimate``."""


@dataclass(frozen=True)
class ContinuitySheet:
    """Everything one service's downtime sheet says."""

    service: str
    name: str
    tier: int
    rto: int | None
    rpo: int | None
    plan: str | None
    contacts: tuple[str, ...]
    requires: tuple[str, ...]
    """Its direct requirements, as the estate states them."""
    services: tuple[ServiceRef, ...]
    """Other services it needs, directly or beneath its assets."""
    assets: int
    kinds: tuple[tuple[str, int], ...]
    """Assets it needs, directly or not, counted by kind (most first)."""
    sites: tuple[str, ...]
    suppliers: tuple[SupplierLine, ...]
    restore: tuple[StepLine, ...]
    """The order its dependencies come back in if they all went down, then the service itself."""
    notes: tuple[str, ...] = ()
    restored_after: int = 0
    """Seconds until the service is back if everything it depends on went down: the steps one after the other."""
    restored_basis: str = "estimate"
    """``measured YYYY-MM-DD`` when every step is measured (the oldest test), else ``estimate``."""

    @property
    def tier_name(self) -> str:
        return TIER_NAMES.get(self.tier, "")

    @property
    def rto_text(self) -> str:
        return humanize_duration(self.rto) if self.rto is not None else "not set"

    @property
    def restored_text(self) -> str:
        return f"Back after about {humanize_duration(self.restored_after)} ({self.restored_basis})."

    @property
    def rpo_text(self) -> str:
        return humanize_duration(self.rpo) if self.rpo is not None else "not set"

    @property
    def gaps(self) -> tuple[str, ...]:
        """What the estate does not say and a sheet should (each gap is printed, not hidden)."""
        gaps = []
        if not self.plan:
            gaps.append("No continuity plan is recorded for this service: agree one and add it to the estate.")
        if not self.contacts:
            gaps.append("No contacts are recorded for this service.")
        if self.rto is None:
            gaps.append("No RTO is recorded for this service.")
        return tuple(gaps)


# ------------------------------------------------------------------------------------------ the sheets


def continuity_sheets(
    graph: EstateGraph,
    services: Sequence[str] | None = None,
    measured: Mapping[str, MeasuredRestore] | None = None,
) -> tuple[ContinuitySheet, ...]:
    """One sheet per service (or per service named), most critical first (tier, then id).

    ``measured``: measured times to restore by id (:func:`ringfence.core.assurance.measured_restores`); every
    other item's step is an estimate of :data:`ESTIMATED_STEP`."""
    estate = graph.estate
    if services:
        unknown = [
            Problem(f"'{s}' is not a service of estate '{estate.name}'", path=("--service",))
            for s in services
            if s not in estate.service_by_id
        ]
        if unknown:
            raise InputError(unknown)
        chosen = [estate.service_by_id[s] for s in dict.fromkeys(services)]
    else:
        chosen = list(estate.services)
    groups_of = _groups_by_owner(graph)
    sheets = [_sheet(graph, graph.index[s.id], groups_of, measured or {}) for s in chosen]
    return tuple(sorted(sheets, key=lambda s: (s.tier, s.service)))


def _groups_by_owner(graph: EstateGraph) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each node's any-groups: (ptr, group indices)."""
    order = np.argsort(graph.group_owner, kind="stable")
    ptr = np.zeros(graph.n + 1, dtype=np.int64)
    np.cumsum(np.bincount(graph.group_owner, minlength=graph.n), out=ptr[1:])
    return ptr, order


def _dependencies(graph: EstateGraph, node: int, groups_of: tuple[np.ndarray, np.ndarray]) -> list[int]:
    """Everything ``node`` needs, directly or not: hard requirements and every member of its groups."""
    ptr, order = groups_of
    seen = {node}
    stack = [node]
    while stack:
        current = stack.pop()
        needed = list(graph.hard_requirements_of(current))
        for g in order[ptr[current] : ptr[current + 1]].tolist():
            needed.extend(graph.members_of(g).tolist())
        for other in needed:
            if other not in seen:
                seen.add(other)
                stack.append(other)
    seen.discard(node)
    return sorted(seen)


def _sheet(
    graph: EstateGraph,
    node: int,
    groups_of: tuple[np.ndarray, np.ndarray],
    measured: Mapping[str, MeasuredRestore],
) -> ContinuitySheet:
    estate = graph.estate
    service = estate.services[node]
    needed = _dependencies(graph, node, groups_of)
    assets = [estate.assets[i - graph.n_services] for i in needed if not graph.is_service(i)]
    services = sorted(
        (ServiceRef(s.id, s.label, s.tier) for s in (estate.services[i] for i in needed if graph.is_service(i))),
        key=lambda s: (s.tier, s.id),
    )
    kinds: dict[str, int] = {}
    for asset in assets:
        kinds[asset.kind.value] = kinds.get(asset.kind.value, 0) + 1
    supplied: dict[str, set[str]] = {}
    for asset in assets:
        for supplier in {asset.supplier, *(s.supplier_id for s in asset.software)} - {None}:
            assert supplier is not None
            supplied.setdefault(supplier, set()).add(asset.id)
    suppliers = tuple(
        SupplierLine(s, estate.supplier_by_id[s].label, estate.supplier_by_id[s].contact, len(ids))
        for s, ids in sorted(supplied.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    )
    requires = tuple(_describe(graph, r) for r in service.requires)
    restore, (restored_after, measured_on) = _restore_order(graph, node, needed, measured)
    return ContinuitySheet(
        service=service.id,
        name=service.label,
        tier=service.tier,
        rto=service.rto,
        rpo=service.rpo,
        plan=" ".join(service.continuity.split()) if service.continuity else None,
        contacts=service.contacts,
        requires=requires,
        services=tuple(services),
        assets=len(assets),
        kinds=tuple(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
        sites=tuple(sorted({a.site for a in assets if a.site is not None})),
        suppliers=suppliers,
        restore=restore,
        restored_after=restored_after,
        restored_basis=time_basis(measured_on),
    )


def _describe(graph: EstateGraph, requirement: str | AnyGroup) -> str:
    if isinstance(requirement, AnyGroup):
        return requirement.describe()
    node = graph.estate.node(requirement)
    name = getattr(node, "name", None)
    return f"{requirement} ({name})" if name and name != requirement else requirement


def _restore_order(
    graph: EstateGraph, node: int, needed: list[int], measured: Mapping[str, MeasuredRestore]
) -> tuple[tuple[StepLine, ...], tuple[int, date | None]]:
    """The restore order if everything the service needs went down: its dependencies, then itself; and when it
    is back (seconds, and the oldest test behind that when every step is measured).

    A step takes as long as the slowest of the service's own items in it: other services that come back in the
    same step do so alongside, and hold nothing of this one back."""
    if not needed:
        own = timed_step(1, [graph.ids[node]], measured, ESTIMATED_STEP)
        line = StepLine(1, own.restore, seconds=own.seconds, basis=own.basis)
        return (line,), step_ends([own])[-1]
    failure = Failure(f"dependencies of {graph.ids[node]}", np.asarray(needed, dtype=np.int64))
    plan = plan_recovery(graph, [failure], step_seconds=ESTIMATED_STEP)
    keep = {graph.ids[i] for i in needed} | {graph.ids[node]}
    kind_of = {
        a.id: a.kind.value for a in (graph.estate.assets[i - graph.n_services] for i in needed if i >= graph.n_services)
    }
    lines: list[StepLine] = []
    timed = []
    for step in plan.steps:
        # Other services that share these dependencies come back too; this sheet lists only its own.
        items = [i for i in step.restore if i in keep]
        if not items:
            continue
        own = timed_step(len(lines) + 1, items, measured, ESTIMATED_STEP)
        timed.append(own)
        shown, rest = items[:SHOWN_PER_STEP], items[SHOWN_PER_STEP:]
        counts: dict[str, int] = {}
        for item in rest:
            kind = kind_of.get(item, "service")
            counts[kind] = counts.get(kind, 0) + 1
        more_kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(StepLine(own.step, tuple(shown), len(rest), more_kinds, own.seconds, own.basis))
    return tuple(lines), step_ends(timed)[-1]


# ------------------------------------------------------------------------------------------ HTML


def render_pack_html(sheets: Sequence[ContinuitySheet], *, estate_name: str, generated_at: datetime) -> str:
    """The sheets as one self-contained HTML document, one sheet per printed A4 page."""
    # every value comes from the estate file: text, never markup (the environment autoescapes)
    template = _environment().get_template(TEMPLATE)
    return template.render(
        sheets=list(sheets),
        estate_name=estate_name,
        generated=printed_time(generated_at),
        contents=len(sheets) > 1,
    )


@cache
def _environment() -> Environment:
    # One for all the sheets of a pack (each is also rendered alone): its templates are compiled once.
    return template_environment()


# ------------------------------------------------------------------------------------------ PDF


def render_pack_pdf(sheets: Sequence[ContinuitySheet], *, estate_name: str, generated_at: datetime) -> bytes:
    """The sheets as a PDF on A4, each sheet starting on a new page, with a bookmark per service."""
    from reportlab.lib import colors  # type: ignore[import-untyped]
    from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
    from reportlab.lib.units import mm  # type: ignore[import-untyped]
    from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped]
    from reportlab.platypus import KeepTogether, PageBreak, Paragraph  # type: ignore[import-untyped]

    register_fonts()
    h1 = style("h1", 18, bold=True, space=2)
    h2 = style("h2", 11.5, bold=True, space=3, spaceBefore=8)
    body = style("body", 9.5)
    small = style("small", 8, colour=MUTED)
    plan_style = style(
        "plan", 12, leading=16, backColor=colors.HexColor(WASH), borderPadding=(6, 6, 6, 6), spaceBefore=4, space=10
    )
    cell = style("cell", 8.5, space=0)
    cell_bold = style("cellb", 8.5, bold=True, space=0)
    gap_style = style("gap", 9, bold=True, colour=ALARM)

    # Which sheet is being laid out, and on which page it started: a page where none started continues one.
    progress: dict[str, Any] = {"sheet": None, "started_on": None}

    def sheet_start(sheet: ContinuitySheet) -> Any:
        """Where a sheet starts: an outline entry for its page, and the name later pages repeat."""

        def started(canvas: Any) -> None:
            progress["sheet"], progress["started_on"] = sheet.name, canvas.getPageNumber()

        return bookmark(f"sheet-{sheet.service}", f"T{sheet.tier} {sheet.name}", started)

    width = text_width()
    story: list[Any] = []
    for n, sheet in enumerate(sheets):
        if n:
            story.append(PageBreak())
        story.append(sheet_start(sheet))
        story.append(
            Paragraph(
                f'<font color="{TIER_COLOUR.get(sheet.tier, "#333333")}"><b>TIER {sheet.tier}</b> · '
                f"{xml_escape(sheet.tier_name)}</font>  ·  downtime continuity sheet",
                style("kicker", 9, colour=MUTED, space=2),
            )
        )
        story.append(para(sheet.name, h1))
        story.append(para(f"service id: {sheet.service}", small))
        facts = [
            [para("RTO (back within)", cell_bold), para(sheet.rto_text, cell)],
            [para("RPO (data loss up to)", cell_bold), para(sheet.rpo_text, cell)],
            [para("Clinical tier", cell_bold), para(f"{sheet.tier} — {sheet.tier_name}", cell)],
        ]
        story.append(grid(facts, [45 * mm, width - 45 * mm]))
        story.append(para("When it is down, enact this plan", h2))
        story.append(para(sheet.plan or "No continuity plan is recorded.", plan_style))
        story.append(para("Whom to call", h2))
        for contact in sheet.contacts or ("No contacts are recorded.",):
            story.append(para(f"•  {contact}" if sheet.contacts else contact, body))
        for gap in sheet.gaps:
            story.append(para(gap, gap_style))
        story.append(para("What it depends on", h2))
        story.append(para("Directly: " + ("; ".join(sheet.requires) or "nothing recorded"), body))
        if sheet.services:
            story.append(
                para("Services it needs: " + "; ".join(f"{s.name} ({s.id}, T{s.tier})" for s in sheet.services), body)
            )
        kinds = ", ".join(f"{count} {kind}" for kind, count in sheet.kinds)
        story.append(para(f"In all: {sheet.assets} assets ({kinds or 'none'})", body))
        story.append(para("Sites: " + (", ".join(sheet.sites) or "none recorded"), body))
        if sheet.suppliers:
            rows = [[para(h, cell_bold) for h in ("supplier", "contact", "assets")]]
            rows += [
                [para(f"{s.name} ({s.id})", cell), para(s.contact or "—", cell), para(str(s.assets), cell)]
                for s in sheet.suppliers
            ]
            story.append(
                KeepTogether([para("Suppliers behind it", h2), grid(rows, [70 * mm, width - 90 * mm, 20 * mm])])
            )
        rows = [[para(h, cell_bold) for h in ("step", "takes", "restore")]]
        for line in sheet.restore:
            text = ", ".join(line.items) + (f" … and {line.more} more ({line.more_kinds})" if line.more else "")
            takes = f"{humanize_duration(line.seconds)} ({line.basis})"
            rows.append([para(str(line.step), cell), para(takes, cell), para(text, cell)])
        story.append(para("If everything it depends on went down: restore in this order", h2))
        story.append(para(sheet.restored_text, body))
        story.append(grid(rows, [14 * mm, 40 * mm, width - 54 * mm]))

    def on_page_end(canvas: Canvas, doc: Any) -> None:
        # Drawn once the page is laid out: only then is it known that no sheet started on it.
        if progress["sheet"] is None or progress["started_on"] == canvas.getPageNumber():
            return
        canvas.saveState()
        canvas.setFont("Vera-Bold", 10)
        canvas.setFillColor(colors.HexColor(INK))
        canvas.drawString(18 * mm, A4[1] - 11 * mm, f"{progress['sheet']} (continued)")
        canvas.restoreState()

    return build_pdf(
        story or [para("No services.", body)],
        title=f"Downtime continuity pack — {estate_name}",
        footer=f"ringfence downtime pack · {estate_name} · printed from the estate as of {printed_time(generated_at)}",
        generated_at=generated_at,
        on_page_end=on_page_end,
    )


# ------------------------------------------------------------------------------------------ files


@dataclass(frozen=True)
class PackFiles:
    html: Path
    pdf: Path
    sheets: tuple[Path, ...]
    """One HTML file per service, named by its id."""


def write_pack(
    sheets: Sequence[ContinuitySheet], out_dir: Path, *, estate_name: str, generated_at: datetime
) -> PackFiles:
    """Write the pack: all sheets as one HTML and one PDF, and one HTML per service.

    Everything is rendered before anything is written, so a failure leaves the last pack as it was.
    """
    whole = render_pack_html(sheets, estate_name=estate_name, generated_at=generated_at)
    printed = render_pack_pdf(sheets, estate_name=estate_name, generated_at=generated_at)
    singles = {
        out_dir / f"{sheet.service}.html": render_pack_html([sheet], estate_name=estate_name, generated_at=generated_at)
        for sheet in sheets
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    html, pdf = out_dir / PACK_HTML, out_dir / PACK_PDF
    write_text_atomic(html, whole)
    write_bytes_atomic(pdf, printed)
    for path, text in singles.items():
        write_text_atomic(path, text)
    return PackFiles(html, pdf, tuple(singles))


__all__ = [
    "PACK_HTML",
    "PACK_PDF",
    "ContinuitySheet",
    "PackFiles",
    "ServiceRef",
    "StepLine",
    "SupplierLine",
    "continuity_sheets",
    "render_pack_html",
    "render_pack_pdf",
    "write_pack",
]
