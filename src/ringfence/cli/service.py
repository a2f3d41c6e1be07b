"""Running ringfence as a service: ``serve``, ``db upgrade``, ``token …``, ``audit verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out
from ringfence.core.words import count

db_app = typer.Typer(help="The database: migrations.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens and their roles.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db", rich_help_panel="Run the service")
app.add_typer(token_app, name="token", rich_help_panel="Run the service")
app.add_typer(audit_app, name="audit", rich_help_panel="Run the service")

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="RINGFENCE_DATABASE_URL",
        help="Database URL; default: SQLite in the per-user home ($RINGFENCE_HOME, else ~/.local/share/ringfence).",
        show_default=False,
    ),
]


@app.command(rich_help_panel="Run the service")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8321,
    database: DatabaseOpt = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (PostgreSQL only for more than one).")] = 1,
    sample: Annotated[bool, typer.Option(help="Load the bundled sample estate if none is loaded.")] = False,
    controller: Annotated[bool, typer.Option(help="Run the rollout controller loop in this server.")] = True,
) -> None:
    """Start the API, agent gate and dashboard (FastAPI on uvicorn); migrations run first."""
    import os

    import uvicorn

    from ringfence.cli.home import database_label
    from ringfence.service.tokens import Role, list_tokens
    from ringfence.store.db import database_url, make_engine, normalise_url, upgrade

    url = database or database_url()
    if workers > 1 and normalise_url(url).get_backend_name() == "sqlite":
        from ringfence.core.errors import InputError, Problem

        raise InputError([Problem("several workers need PostgreSQL; SQLite has one writer", path=("--workers",))])
    engine = make_engine(url)
    upgrade(engine)
    admins = sum(1 for t in list_tokens(engine) if t.role is Role.ADMIN)
    engine.dispose()
    # Workers are separate processes: they read their settings from the environment.
    os.environ["RINGFENCE_DATABASE_URL"] = url
    os.environ["RINGFENCE_SERVE_SAMPLE"] = "1" if sample else "0"
    os.environ["RINGFENCE_SERVE_CONTROLLER"] = "1" if controller else "0"
    shown_host = f"[{host}]" if ":" in host else host
    err.print(f"ringfence serving on http://{shown_host}:{port}/ (API under /v1, OpenAPI at /openapi.json)")
    err.print(f"database: {database_label(url)}", markup=False)
    if admins == 0:
        # The dashboard and API need a token, and the first one can only be made here, on this database.
        named = "" if database is None else f" --database '{normalise_url(url).render_as_string(hide_password=True)}'"
        err.print(
            "No admin token yet. Make the first one (in another terminal) with:\n"
            f"  ringfence token create YOUR-NAME --role admin{named}",
            markup=False,
        )
    uvicorn.run(
        "ringfence.api.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        # Agents ask every 5 to 60 s over a kept-alive connection; uvicorn's 5 s default would close it
        # just before most requests, so each would open a new connection (a TCP handshake and more server
        # CPU per request than the answer itself) and sometimes race the close.
        timeout_keep_alive=75,
    )


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOpt = None) -> None:
    """Apply the database migrations (the server also does this when it starts)."""
    from ringfence.cli.home import database_label
    from ringfence.store.db import current_revision, make_engine, upgrade

    engine = make_engine(database)
    upgrade(engine)
    out.print(
        f"Database {database_label(str(engine.url.render_as_string(hide_password=False)))} at revision "
        f"{current_revision(engine)}."
    )


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Whose token: a person, a team, or a service.")],
    role: Annotated[str, typer.Option(help="viewer, operator, approver, admin, or agent.")] = "viewer",
    asset: Annotated[
        str | None,
        typer.Option(
            help="For an agent token: the one asset it speaks for (checked against the estate).", show_default=False
        ),
    ] = None,
    estate: Annotated[
        Path | None,
        typer.Option(
            "--estate",
            help="Estate file the --asset must be in; default: the estates stored in the database.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Issue an agent token for an asset no estate has.")] = False,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token. The secret is shown once; only its hash is kept."""
    from ringfence.cli.home import announce_database
    from ringfence.files.disk import read_text
    from ringfence.service.tokens import EstateText, estate_holding, issue_token, stored_estates
    from ringfence.store.db import make_engine, upgrade

    engine = make_engine(database)
    upgrade(engine)
    if role == "agent" and asset is not None and not force:
        estates = [EstateText(read_text(estate), str(estate))] if estate is not None else stored_estates(engine)
        estate_holding(asset, estates)
    issued = issue_token(engine, name=name, role=role, asset_id=asset)
    announce_database(engine.url.render_as_string(hide_password=False))
    if as_json:
        emit_json(
            {
                "id": issued.id,
                "name": issued.name,
                "role": issued.role.value,
                "asset": issued.asset_id,
                "token": issued.secret,
            }
        )
        return
    bound = f", for asset {issued.asset_id}" if issued.asset_id else ""
    out.print(f"Token {issued.id} for {issued.name} ({issued.role}{bound}). Keep it safe; it is not shown again:")
    out.print(issued.secret, soft_wrap=True)


@token_app.command("list")
def token_list(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """List tokens that are not revoked (never their secrets)."""
    from rich import box
    from rich.table import Table

    from ringfence.service.tokens import list_tokens
    from ringfence.store.db import make_engine, upgrade

    engine = make_engine(database)
    upgrade(engine)
    tokens = sorted(list_tokens(engine), key=lambda t: t.token_id)
    if as_json:
        # The shape of GET /v1/tokens, so a script reads either.
        emit_json(
            {"tokens": [{"id": t.token_id, "name": t.name, "role": t.role.value, "asset": t.asset_id} for t in tokens]}
        )
        return
    if not tokens:
        out.print("No tokens. Make one with: ringfence token create NAME --role admin")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("asset", overflow="fold")
    for t in tokens:
        table.add_row(str(t.token_id), t.role.value, t.name, t.asset_id or "")
    out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int, database: DatabaseOpt = None) -> None:
    """Revoke a token: it stops working at once."""
    from ringfence.cli.home import announce_database
    from ringfence.service.tokens import revoke_token
    from ringfence.store.db import make_engine

    engine = make_engine(database)
    revoke_token(engine, token_id)
    announce_database(engine.url.render_as_string(hide_password=False))
    out.print(f"Token {token_id} revoked.")


@audit_app.command("verify")
def audit_verify(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Check the audit log's hash chain; exit 1 if any entry was changed, removed or inserted."""
    from ringfence.store.audit import verify_audit
    from ringfence.store.db import make_engine, session_scope, upgrade

    engine = make_engine(database)
    upgrade(engine)
    with session_scope(engine, readonly=True) as session:
        report = verify_audit(session)
    if as_json:
        from ringfence.core.documents import CLI_AUDIT_VERIFICATION_OMITS, audit_verification

        emit_json(audit_verification(report).model_dump(mode="json", exclude=set(CLI_AUDIT_VERIFICATION_OMITS)))
    elif report.ok:
        out.print(f"Audit log intact: {count(report.count, 'entry', 'entries')}, chain verified.")
    else:
        err.print(f"[bold red]Audit log tampered:[/] {report.reason}")
    if not report.ok:
        raise typer.Exit(1)
