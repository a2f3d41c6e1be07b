"""``ringfence estate assurance`` and ``estate policy``: keep an estate's assurance file and policy in the database,
as ``PUT /v1/estates/NAME/assurance`` and ``/policy`` do, so the server and its dashboard assess the estate with them.
The commands are added to ``ringfence estate`` by ``cli.upload``.

The assurance file is checked against the estate's current version (every supplier, service and asset it names
must be there), the policy alone; a file with any problem stores nothing and exits 2 with every problem's file,
line and field. Storing the text already stored changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli.database import database, resolve_actor
from ringfence.cli.output import JsonOpt, emit_json, out

EstateName = Annotated[str, typer.Argument(help="The estate's name (as `ringfence estate list` shows it).")]
StoredBy = Annotated[
    str | None,
    typer.Option("--actor", help="Who stores it, for the audit log; default: $RINGFENCE_ACTOR or your login name."),
]


def store_assurance(
    estate: EstateName,
    assurance_file: Annotated[Path, typer.Argument(help="Assurance file (YAML or JSON).", show_default=False)],
    actor: StoredBy = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an assurance file against the estate's current version and keep it as the estate's evidence."""
    from ringfence.core.clock import utc_now
    from ringfence.files.disk import read_text
    from ringfence.service.assurance import store_assurance as store
    from ringfence.service.estates import CompiledEstates

    text = read_text(assurance_file)
    with database(writes=True) as engine:
        loaded = CompiledEstates(size=1).get(engine, estate)
        stored = store(engine, loaded, text, actor=resolve_actor(actor), at=utc_now(), source=str(assurance_file))
    _said(stored, as_json)


def store_policy(
    estate: EstateName,
    policy_file: Annotated[Path, typer.Argument(help="Policy file (YAML or JSON).", show_default=False)],
    actor: StoredBy = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a policy file and keep it as the policy the estate is assessed with (default: the bundled one)."""
    from ringfence.core.assurance import parse_policy_text
    from ringfence.core.clock import utc_now
    from ringfence.files.disk import read_text
    from ringfence.service.assurance import store_policy as store

    text = read_text(policy_file)
    parse_policy_text(text, str(policy_file))  # before the database is opened: a bad file creates nothing
    with database(writes=True) as engine:
        stored = store(engine, estate, text, actor=resolve_actor(actor), at=utc_now(), source=str(policy_file))
    _said(stored, as_json)


def _said(stored: object, as_json: bool) -> None:
    from ringfence.service.assurance import StoredFile

    assert isinstance(stored, StoredFile)
    document = stored.document
    if as_json:
        emit_json(
            {
                "estate": document.estate,
                "kind": document.kind.value,
                "id": document.id,
                "name": document.name,
                "sha256": document.sha256,
                "changed": stored.changed,
            }
        )
    elif stored.changed:
        out.print(f"Stored {document.kind.value} '{document.name}' for estate '{document.estate}' (#{document.id}).")
    else:
        out.print(f"Estate '{document.estate}' already has this exact {document.kind.value} file; nothing stored.")
