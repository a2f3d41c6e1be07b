"""``ringfence estate``: keep estate files in the database, as the dashboard's upload and ``POST /v1/estates`` do.

``estate upload FILE`` checks the file whole (``ringfence check``'s check: parsed, every reference resolved,
the graph compiled) and only then stores it as a version of the estate it declares, current at once unless it
weakens the estate of record (then proposed, for a second person: ``estate proposals``, ``estate approve``,
``estate reject``); a file with any problem stores nothing and exits 2 with every problem's file, line and
field. ``estate list`` shows what is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ringfence.cli.database import database, resolve_actor
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out, warn

estate_app = typer.Typer(
    help="Estates kept in the database: upload a new version, list them, approve a proposed one.", no_args_is_help=True
)
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
    """Check an estate file and store it as a version of its estate: current, or proposed for a second person when
    it weakens the estate of record (nothing is stored if it fails)."""
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
                "status": version.status,
                "changes": stored.diff.sentences() if stored.diff else [],
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
    if stored.is_proposed:
        # It weakens the estate of record: stored, not current, until a second person approves it.
        out.print(f"Proposed version {version.id} of estate '{version.name}' ({counts}), awaiting a second person:")
        for sentence in stored.diff.sentences() if stored.diff else []:
            out.print(f"  - {sentence}")
        out.print(f"Someone else approves it with: ringfence estate approve {version.name} {version.id}")
    elif stored.created:
        out.print(f"Stored estate '{version.name}' as version {version.id} ({counts}).")
    else:
        out.print(f"Estate '{version.name}' already holds this exact file as version {version.id}; nothing new stored.")


@estate_app.command("list")
def list_command(as_json: JsonOpt = False) -> None:
    """The stored estates, each with its current version of record."""
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


# ------------------------------------------------------------------------------------- the estate of record
# `ringfence estate proposals / approve / reject`: a version that weakens the estate of record waits for a second
# person (docs/rollouts.md, "The estate of record").

EstateNameArg = Annotated[str, typer.Argument(help="Estate name.", show_default=False)]
VersionArg = Annotated[int, typer.Argument(help="Version id (ringfence estate proposals NAME lists them).")]
DeciderOpt = Annotated[
    str | None,
    typer.Option("--actor", help="Who decides, for the audit log; default: $RINGFENCE_ACTOR or your login name."),
]


@estate_app.command("proposals")
def proposals(name: EstateNameArg, as_json: JsonOpt = False) -> None:
    """Versions of an estate awaiting a second person, each with what it weakens (tiers, services,
    requirements, assets moved)."""
    from ringfence.service.estates import estate_proposals, estate_versions

    with database(writes=False) as engine:
        estate_versions(engine, name)  # exit 2 naming the estate when it was never uploaded
        found = estate_proposals(engine, name)
    if as_json:
        emit_json(
            {
                "estate": name,
                "proposals": [
                    {
                        "version": p.version.id,
                        "proposed_by": p.version.created_by,
                        "proposed_at": p.version.created_at.isoformat(),
                        "against": p.diff.against,
                        "changes": p.diff.sentences(),
                    }
                    for p in found
                ],
            }
        )
        return
    if not found:
        out.print(f"Estate '{name}' has no version awaiting approval.")
        return
    for p in found:
        against = f"against version {p.diff.against}" if p.diff.against is not None else "(no current version)"
        out.print(f"Version {p.version.id}, proposed by {p.version.created_by} {against}:")
        for sentence in p.diff.sentences() or ["it no longer weakens the current version"]:
            out.print(f"  - {sentence}")
        out.print(f"  Approve (not by {p.version.created_by}): ringfence estate approve {name} {p.version.id}")


@estate_app.command("approve")
def approve(name: EstateNameArg, version: VersionArg, actor: DeciderOpt = None) -> None:
    """Make a proposed version current: a second person, not the one who proposed it."""
    from ringfence.core.clock import utc_now
    from ringfence.service.estates import approve_estate_version
    from ringfence.service.people import Actor

    with database(writes=True) as engine:
        decided = approve_estate_version(engine, name, version, actor=Actor(resolve_actor(actor)), at=utc_now())
    out.print(f"Version {version} of estate '{name}' approved by {decided.version.decided_by}; it is now current.")
    for sentence in decided.diff.sentences():
        out.print(f"  - {sentence}")


@estate_app.command("reject")
def reject(name: EstateNameArg, version: VersionArg, actor: DeciderOpt = None) -> None:
    """Refuse a proposed version: it never becomes current."""
    from ringfence.core.clock import utc_now
    from ringfence.service.estates import reject_estate_version
    from ringfence.service.people import Actor

    with database(writes=True) as engine:
        reject_estate_version(engine, name, version, actor=Actor(resolve_actor(actor)), at=utc_now())
    out.print(f"Version {version} of estate '{name}' rejected; the current version is unchanged.")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


# The estate's assurance file and policy are `estate` commands too, kept in a module of their own.
from ringfence.cli.estate_assurance import store_assurance, store_policy  # noqa: E402

estate_app.command("assurance")(store_assurance)
estate_app.command("policy")(store_policy)
