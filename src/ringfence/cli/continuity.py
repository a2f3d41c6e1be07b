"""``ringfence continuity pack``: printable downtime sheets, one per service, as HTML and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli.analysis import EstateArg, load
from ringfence.cli.assurance import MeasuredOpt, measured_times
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, out
from ringfence.core.clock import utc_now
from ringfence.core.words import count

continuity_app = typer.Typer(
    name="continuity",
    help="Business continuity: what staff need on paper when the IT is down.",
    no_args_is_help=True,
)
app.add_typer(continuity_app, name="continuity", rich_help_panel="Recover")


@continuity_app.command("pack")
def pack(
    estate_file: EstateArg,
    output: Annotated[Path, typer.Option("--out", help="Directory to write the pack into.", show_default=False)],
    service: Annotated[
        list[str] | None,
        typer.Option("--service", help="Only this service (repeatable); default: every service.", show_default=False),
    ] = None,
    assurance_file: MeasuredOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write downtime sheets: the plan, contacts, RTO/RPO, dependencies, suppliers and restore order per service."""
    from ringfence.cli.paths import check_output_folder, writing
    from ringfence.files.continuity import continuity_sheets, write_pack

    check_output_folder(output, "--out")
    estate, graph = load(estate_file, as_json)
    sheets = continuity_sheets(graph, service, measured_times(assurance_file, estate))
    with writing(output, "--out"):
        files = write_pack(sheets, output, estate_name=estate.name, generated_at=utc_now())
    if as_json:
        emit_json(
            {
                "estate": estate.name,
                "services": sorted(s.service for s in sheets),
                "html": str(files.html),
                "pdf": str(files.pdf),
                "sheets": sorted(str(p) for p in files.sheets),
                "gaps": {s.service: list(s.gaps) for s in sorted(sheets, key=lambda s: s.service) if s.gaps},
                "restored_after": {
                    s.service: {"seconds": s.restored_after, "basis": s.restored_basis}
                    for s in sorted(sheets, key=lambda s: s.service)
                },
            }
        )
        return
    out.print(
        f"Downtime pack for {estate.name}: {count(len(sheets), 'service sheet')} "
        f"in {files.html} and {files.pdf} (one HTML per service beside them)."
    )
    for sheet in sheets:
        for gap in sheet.gaps:
            out.print(f"[yellow]{sheet.service}:[/] {gap}")
