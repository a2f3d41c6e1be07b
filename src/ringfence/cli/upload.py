"""``ringfence estate``: keep estate files in the database, as the dashboard's upload and ``POST /v1/estates`` do.

``estate upload FILE`` checks the file whole (``ringfence check``'s check: parsed, every reference resolved,
the graph compiled) and only then stores it as the newest version of the estate it declares; a file with any
problem stores nothing and exits 2 with every problem's file, line and field. ``estate list`` shows what is
stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ringfence.cli.database import database, resolve_actor
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out, warn

estate_app = typer.Typer(help="Estates kept in the database: upload a new version, list them.", no_args_is_help=True)
app.add_typer(estate_app, name="estate", rich_help_panel="Know your estate")

ActorOpt = Annotated[
    str | None,
    typer.Option("--actor", help="Who uploads, for the audit log; default: $RINGFENCE_ACTOR or your login name."),
]


@estate_app.command("upload")
def upload(
    estate_file: Annotated[Path, typer.Argument(help="Estate file (YAML or JSON).", show_default=False)],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an estate file and store it as the newest version of its estate (nothing is stored if it fails)."""
    from ringfence.core.clock import utc_now
    from ringfence.files.disk import read_text
    from ringfence.service.estates import check_estate_text, store_checked_estate

    text = read_text(estate_file)
    # Checked before the database is opened: a file with a problem neither creates nor migrates a database.
    checked = check_estate_text(text, source=str(estate_file))
    with database(writes=True) as engine:
        stored = store_checked_estate(engine, text, checked, actor=resolve_actor(actor), at=utc_now())
    version, estate = stored.version, stored.checked.estate
    warnings = stored.checked.warnings
    if as_json:
        emit_json(
            {
                "estate": version.name,
                "version": version.id,
                "created": stored.created,
                "sha256": version.sha256,
                "assets": version.asset_count,
                "services": version.service_count,
                "warnings": [str(w) for w in warnings],
            }
        )
        return
    for w in warnings:
        warn(str(w))
    counts = f"{_count(len(estate.assets), 'asset')}, {_count(len(estate.services), 'service')}"
    if stored.created:
        out.print(f"Stored estate '{version.name}' as version {version.id} ({counts}).")
    else:
        out.print(f"Estate '{version.name}' already holds this exact file as version {version.id}; nothing new stored.")


@estate_app.command("list")
def list_command(as_json: JsonOpt = False) -> None:
    """The stored estates, each with its current (newest) version."""
    from ringfence.service.estates import list_estates

    with database(writes=False) as engine:
        found = list_estates(engine)
    if as_json:
        emit_json(
            {
                "estates": [
                    {
                        "name": e.name,
                        "versions": e.versions,
                        "current": e.latest.id,
                        "uploaded_at": e.latest.created_at.isoformat(),
                        "uploaded_by": e.latest.created_by,
                        "assets": e.latest.asset_count,
                        "services": e.latest.service_count,
                    }
                    for e in found
                ]
            }
        )
        return
    if not found:
        err.print("No estate is stored yet: ringfence estate upload FILE stores one.")
        return
    table = Table(title_justify="left")
    table.add_column("estate")
    table.add_column("current", justify="right")
    table.add_column("versions", justify="right")
    table.add_column("assets", justify="right")
    table.add_column("services", justify="right")
    table.add_column("uploaded by")
    for e in found:
        table.add_row(
            e.name,
            str(e.latest.id),
            str(e.versions),
            f"{e.latest.asset_count:,}",
            f"{e.latest.service_count:,}",
            e.latest.created_by,
        )
    out.print(table)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
