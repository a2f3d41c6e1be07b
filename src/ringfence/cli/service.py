"""Running ringfence as a service: ``serve``, ``db upgrade``, ``token …``, ``audit verify``, ``audit anchor``.

Every admin action taken here lands in the audit log as the API's do, through the same service functions:
token issued and revoked, and the database upgraded. The actor is ``cli:`` and who is acting (``--actor``,
else ``$RINGFENCE_ACTOR``, else the login name), so an entry made at the console is never taken for one made
with an API token of the same name.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ringfence.cli.database import ActorOpt, DatabaseOpt, cli_actor
from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out
from ringfence.core.words import count

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

db_app = typer.Typer(help="The database: migrations.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens and their roles.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db", rich_help_panel="Run the service")
app.add_typer(token_app, name="token", rich_help_panel="Run the service")
app.add_typer(audit_app, name="audit", rich_help_panel="Run the service")


def upgrade_audited(engine: Engine, actor: str) -> None:
    """Migrate the database, auditing a migration of one already in use (see :mod:`ringfence.service.schema`)."""
    from ringfence.service.schema import upgrade_audited as upgrade_and_audit

    upgrade_and_audit(engine, actor)


@app.command(rich_help_panel="Run the service")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8321,
    database: DatabaseOpt = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (PostgreSQL only for more than one).")] = 1,
    sample: Annotated[bool, typer.Option(help="Load the bundled sample estate if none is loaded.")] = False,
    controller: Annotated[bool, typer.Option(help="Run the rollout controller loop in this server.")] = True,
    oidc_config: Annotated[
        Path | None,
        typer.Option(
            "--oidc-config",
            envvar="RINGFENCE_OIDC_CONFIG",
            help="Sign-in configuration: people sign in at an OpenID Connect provider (docs/sign-in.md).",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log",
            envvar="RINGFENCE_ACCESS_LOG",
            help="Log every request answered to standard output (off by default); refused tokens (401, 429) "
            "are never logged, so a flood of them costs no log line each.",
        ),
    ] = False,
    notifications: Annotated[
        Path | None,
        typer.Option(
            "--notifications",
            envvar="RINGFENCE_NOTIFICATIONS",
            help="Notifications file: who is told of approvals, halts, incidents and RTOs, and where "
            "(docs/notifications.md).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the API, agent gate and dashboard (FastAPI on uvicorn); migrations run first."""
    import os
    import secrets

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from ringfence.cli.home import database_label
    from ringfence.service.tokens import Role, list_tokens
    from ringfence.store.db import database_url, make_engine, normalise_url

    url = database or database_url()
    if workers > 1 and normalise_url(url).get_backend_name() == "sqlite":
        from ringfence.core.errors import InputError, Problem

        raise InputError([Problem("several workers need PostgreSQL; SQLite has one writer", path=("--workers",))])
    if oidc_config is not None:
        from ringfence.files.extras import require_extra
        from ringfence.files.oidc_config import OIDC_CONFIG_ENV, load_oidc_config

        require_extra("oidc", "Sign-in at an OpenID Connect provider (--oidc-config)")
        load_oidc_config(oidc_config)  # a file that does not hold stops here: file, line and field (exit 2)
        os.environ[OIDC_CONFIG_ENV] = str(oidc_config.resolve())  # what each worker reads
        from ringfence.service.oidc import SIGN_IN_KEY_ENV, SIGN_IN_KEY_SHORTEST

        given = os.environ.get(SIGN_IN_KEY_ENV, "")
        if given and len(given) < SIGN_IN_KEY_SHORTEST:
            from ringfence.core.errors import InputError, Problem

            raise InputError(
                [
                    Problem(
                        f"the sign-in key is {len(given)} characters; give at least {SIGN_IN_KEY_SHORTEST} "
                        "random ones (or unset it: the server then makes one)",
                        path=(SIGN_IN_KEY_ENV,),
                    )
                ]
            )
        if not given:
            # One key for every worker: a sign-in begun in one is finished in whichever the browser comes back to.
            os.environ[SIGN_IN_KEY_ENV] = secrets.token_urlsafe(32)
    if notifications is not None:
        from ringfence.files.notifications_config import NOTIFICATIONS_ENV, load_notifications_config

        load_notifications_config(notifications)  # file, line and field (exit 2); names the extra when missing
        os.environ[NOTIFICATIONS_ENV] = str(notifications.resolve())  # what each worker reads
    engine = make_engine(url)
    upgrade_audited(engine, cli_actor(None))
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
    log_config: dict[str, Any] = LOGGING_CONFIG
    if access_log:
        log_config = access_log_config()
    uvicorn.run(
        "ringfence.api.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Without --access-log: warnings and up only, and no line per request (a flood of refused tokens
        # would otherwise cost a formatted line each). With it: refusals are still left out (RefusalsNotLogged).
        log_level=None if access_log else "warning",
        log_config=log_config,
        access_log=access_log,
        # Agents ask every 5 to 60 s over a kept-alive connection; uvicorn's 5 s default would close it
        # just before most requests, so each would open a new connection (a TCP handshake and more server
        # CPU per request than the answer itself) and sometimes race the close.
        timeout_keep_alive=75,
    )


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOpt = None, actor: ActorOpt = None) -> None:
    """Apply the database migrations (the server also does this when it starts); written to the audit log."""
    from ringfence.cli.home import database_label
    from ringfence.store.db import current_revision, make_engine

    engine = make_engine(database)
    upgrade_audited(engine, cli_actor(actor))
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
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token. The secret is shown once; only its hash is kept. Written to the audit log."""
    from ringfence.cli.home import announce_database
    from ringfence.files.disk import read_text
    from ringfence.service.tokens import EstateText, estate_holding, issue_token_audited, stored_estates
    from ringfence.store.db import make_engine

    engine = make_engine(database)
    upgrade_audited(engine, cli_actor(actor))
    if role == "agent" and asset is not None and not force:
        estates = [EstateText(read_text(estate), str(estate))] if estate is not None else stored_estates(engine)
        estate_holding(asset, estates)
    issued = issue_token_audited(engine, actor=cli_actor(actor), name=name, role=role, asset_id=asset)
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
    from ringfence.store.db import make_engine

    engine = make_engine(database)
    upgrade_audited(engine, cli_actor(None))
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
def token_revoke(token_id: int, database: DatabaseOpt = None, actor: ActorOpt = None) -> None:
    """Revoke a token: it stops working at once. Written to the audit log."""
    from ringfence.cli.home import announce_database
    from ringfence.service.tokens import revoke_token_audited
    from ringfence.store.db import make_engine

    engine = make_engine(database)
    upgrade_audited(engine, cli_actor(actor))
    revoke_token_audited(engine, token_id, actor=cli_actor(actor))
    announce_database(engine.url.render_as_string(hide_password=False))
    out.print(f"Token {token_id} revoked.")


@audit_app.command("verify")
def audit_verify(
    database: DatabaseOpt = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            "--anchor",
            metavar="SEQ:HASH",
            help="An anchor kept from `ringfence audit anchor`: fail too if the log no longer reaches that entry "
            "or holds a different one there (entries cut off its end).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the audit log's hash chain; exit 1 if any entry was changed, removed or inserted, or (with
    --anchor) if the log was cut back below the anchor."""
    from ringfence.core.documents import audit_verification
    from ringfence.store.audit import parse_anchor, verify_audit
    from ringfence.store.db import make_engine, session_scope

    kept = None if anchor is None else parse_anchor(anchor, field="--anchor")
    engine = make_engine(database)
    upgrade_audited(engine, cli_actor(None))
    with session_scope(engine, readonly=True) as session:
        report = verify_audit(session, anchor=kept)
    if as_json:
        emit_json(audit_verification(report).model_dump(mode="json"))
    elif report.ok:
        against = "" if kept is None else f", and it still holds entry {kept.seq} as anchored"
        out.print(
            f"Audit log intact: {count(report.count, 'entry', 'entries')}, chain verified{against}; "
            f"last hash {report.last_hash}."
        )
    else:
        err.print(f"[bold red]Audit log tampered:[/] {report.reason}")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor(database: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Print the log's last entry as SEQ:HASH, to keep somewhere else (a ticket, another system).

    Later, `ringfence audit verify --anchor SEQ:HASH` fails if entries were cut off the log's end below it,
    which the chain alone cannot show.
    """
    from ringfence.store import audit
    from ringfence.store.db import make_engine, session_scope

    engine = make_engine(database)
    upgrade_audited(engine, cli_actor(None))
    with session_scope(engine, readonly=True) as session:
        kept = audit.audit_anchor(session)
    if as_json:
        emit_json({"seq": kept.seq, "hash": kept.hash, "anchor": str(kept)})
        return
    out.print(str(kept), soft_wrap=True)


# `db backup` and `db restore` live in a module of their own; registered whenever `db` is.
def _add_backup_commands() -> None:
    from ringfence.cli.backup import db_app as backup_app

    for command in backup_app.registered_commands:
        db_app.registered_commands.append(command)


_add_backup_commands()


def access_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with its access log on (to standard output) and refusals filtered out
    (by ``ringfence.api.server.RefusalsNotLogged``, named, not imported: the CLI does not import the API);
    the server's own messages stay at warnings and up, as without the access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"refusals": {"()": "ringfence.api.server.RefusalsNotLogged"}}
    config["handlers"]["access"]["filters"] = ["refusals"]
    config["loggers"]["uvicorn"]["level"] = "WARNING"
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = "INFO"
    return config
