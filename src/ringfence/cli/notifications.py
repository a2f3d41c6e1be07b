"""``ringfence notifications test``: send a test message to each channel of a notifications file, and say how each went.

Run it after writing the file and after any change to a channel, before relying on it: a channel that
answers here is one the server can reach (from this machine, with these environment variables).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli.main import app
from ringfence.cli.output import JsonOpt, emit_json, err, out

notifications_app = typer.Typer(
    help="Notifications: who is told, and where (docs/notifications.md).", no_args_is_help=True
)
app.add_typer(notifications_app, name="notifications", rich_help_panel="Run the service")


@notifications_app.command("test")
def notifications_test(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            envvar="RINGFENCE_NOTIFICATIONS",
            help="The notifications file (the one `ringfence serve --notifications` is given).",
            show_default=False,
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Send a test message to each channel; exit 1 if any channel did not accept it."""
    from ringfence.files.notifications_config import load_notifications_config
    from ringfence.service.notifications import send_test_messages

    loaded = load_notifications_config(config)  # file, line and field (exit 2); names the extra when missing
    results = send_test_messages(loaded)
    failed = [r for r in results if r.error is not None]
    if as_json:
        emit_json({"channels": [{"channel": r.channel, "ok": r.error is None, "error": r.error} for r in results]})
    else:
        for r in results:
            if r.error is None:
                out.print(f"[green]sent[/]    {r.channel}", highlight=False)
            else:
                out.print(f"[red]failed[/]  {r.channel}: ", r.error, sep="", highlight=False, markup=True)
        if failed:
            err.print(f"{len(failed)} of {len(results)} channels did not accept the test message.")
        else:
            out.print(f"Every channel ({len(results)}) accepted the test message.")
    if failed:
        raise typer.Exit(1)
