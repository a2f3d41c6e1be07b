"""Running ringfence as a service: ``serve``, ``db upgrade``, ``token …``, ``audit verify``."""

from __future__ import annotations

from typing import Annotated

import typer

from ringfence.cli.main import app
from ringfence.cli.output import emit_json, err, out

db_app = typer.Typer(help="The database: migrations.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens and their roles.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db", rich_help_panel="Run the service")
app.add_typer(token_app, name="token", rich_help_panel="Run the service")
app.add_typer(audit_app, name="audit", rich_help_panel="Run the service")

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", envvar="RINGFENCE_DATABASE_URL", help="Database URL; default: SQLite under RINGFENCE_HOME."
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

    from ringfence.store.db import database_url, make_engine, normalise_url, upgrade

    url = database or database_url()
    if workers > 1 and normalise_url(url).get_backend_name() == "sqlite":
        from ringfence.core.errors import InputError, Problem

        raise InputError([Problem("several workers need PostgreSQL; SQLite has one writer", path=("--workers",))])
    upgrade(make_engine(url))
    # Workers are separate processes: they read their settings from the environment.
    os.environ["RINGFENCE_DATABASE_URL"] = url
    os.environ["RINGFENCE_SERVE_SAMPLE"] = "1" if sample else "0"
    os.environ["RINGFENCE_SERVE_CONTROLLER"] = "1" if controller else "0"
    err.print(f"ringfence serving on http://{host}:{port}/ (API under /v1, OpenAPI at /openapi.json)")
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
    from ringfence.store.db import current_revision, make_engine, upgrade

    engine = make_engine(database)
    upgrade(engine)
    out.print(f"Database at revision {current_revision(engine)}.")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Whose token: a person, a team, or a service.")],
    role: Annotated[str, typer.Option(help="viewer, operator, approver, admin, or agent.")] = "viewer",
    asset: Annotated[str | None, typer.Option(help="For an agent token: the one asset it speaks for.")] = None,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API token. The secret is shown once; only its hash is kept."""
    from ringfence.service.tokens import issue_token
    from ringfence.store.db import make_engine, upgrade

    engine = make_engine(database)
    upgrade(engine)
    issued = issue_token(engine, name=name, role=role, asset_id=asset)
    if as_json:
        emit_json({"id": issued.id, "name": issued.name, "role": issued.role.value, "token": issued.secret})
        return
    out.print(f"Token {issued.id} for {issued.name} ({issued.role}). Keep it safe; it is not shown again:")
    out.print(issued.secret, soft_wrap=True)


@token_app.command("list")
def token_list(database: DatabaseOpt = None) -> None:
    """List tokens that are not revoked (never their secrets)."""
    from ringfence.service.tokens import list_tokens
    from ringfence.store.db import make_engine

    for caller in list_tokens(make_engine(database)):
        asset = f" for {caller.asset_id}" if caller.asset_id else ""
        out.print(f"{caller.token_id}\t{caller.role}\t{caller.name}{asset}")


@token_app.command("revoke")
def token_revoke(token_id: int, database: DatabaseOpt = None) -> None:
    """Revoke a token: it stops working at once."""
    from ringfence.service.tokens import revoke_token
    from ringfence.store.db import make_engine

    revoke_token(make_engine(database), token_id)
    out.print(f"Token {token_id} revoked.")


@audit_app.command("verify")
def audit_verify(database: DatabaseOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
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
        out.print(f"Audit log intact: {report.count} entries, chain verified.")
    else:
        err.print(f"[bold red]Audit log tampered:[/] {report.reason}")
    if not report.ok:
        raise typer.Exit(1)
