"""Estate files from elsewhere: ``generate``, ``import ansible``, ``import csv``, ``import vsphere``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli.main import app
from ringfence.cli.output import err, out, warn
from ringfence.cli.paths import check_output_file, writing
from ringfence.core.words import count

import_app = typer.Typer(help="Write an estate file from what a team already has.", no_args_is_help=True)
app.add_typer(import_app, name="import", rich_help_panel="Know your estate")

OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write here (.yaml or .json by suffix); default: stdout.", show_default=False),
]


def _write(document: object, out_path: Path | None, *, source: Path | None = None, csv_rows: bool = False) -> None:
    from dataclasses import replace

    from ringfence.core.errors import EstateError
    from ringfence.core.estate import parse_estate_document
    from ringfence.files.disk import dump_document, write_document

    # Validate before writing: an importer must never produce a file `check` would refuse. Problems name the
    # input (for a CSV, the row's line: assets[i] is line i + 2, after the header).
    try:
        estate = parse_estate_document(document, source=str(source or out_path or "<generated>"))
    except EstateError as exc:
        if not csv_rows:
            raise
        raise EstateError(
            [
                replace(p, line=p.path[1] + 2) if len(p.path) > 1 and isinstance(p.path[1], int) else p
                for p in exc.problems
            ]
        ) from None
    if out_path is None:
        out.file.write(dump_document(document))
        return
    with writing(out_path, "--out"):
        write_document(document, out_path)
    err.print(f"Wrote {out_path}: {count(len(estate.assets), 'asset')}, {count(len(estate.services), 'service')}.")


@app.command(rich_help_panel="Know your estate")
def generate(
    assets: Annotated[int, typer.Option("--assets", "-n", min=1, help="How many assets.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same estate.")] = 0,
    out_path: OutOpt = None,
) -> None:
    """Write a synthetic estate shaped like the sample, at any size (for benchmarks and tests)."""
    from ringfence.core.generate import generate_estate

    check_output_file(out_path, "--out", example="estate.yaml")
    _write(generate_estate(assets, seed=seed), out_path)


@import_app.command("ansible")
def import_ansible(
    inventory: Annotated[Path, typer.Argument(help="Ansible inventory (INI or YAML).", show_default=False)],
    name: Annotated[str | None, typer.Option(help="Estate name; default: the inventory's name.")] = None,
    out_path: OutOpt = None,
) -> None:
    """Assets from an Ansible inventory: groups and host vars become attrs."""
    from ringfence.files.importers.ansible import import_ansible_inventory

    check_output_file(out_path, "--out", example="estate.yaml")
    _write(import_ansible_inventory(inventory, estate_name=name), out_path, source=inventory)


@import_app.command("csv")
def import_csv(
    csv_file: Annotated[Path, typer.Argument(help="CSV with one asset a row (see docs/importers.md).")],
    name: Annotated[str | None, typer.Option(help="Estate name; default: the file's name.")] = None,
    out_path: OutOpt = None,
) -> None:
    """Assets from a CSV file, one a row."""
    from ringfence.files.importers.csv import import_csv as read_csv

    check_output_file(out_path, "--out", example="estate.yaml")
    _write(read_csv(csv_file, estate_name=name), out_path, source=csv_file, csv_rows=True)


@import_app.command("vsphere")
def import_vsphere(
    server: Annotated[str, typer.Option(help="vCenter's address: https://vcenter.example.org.", show_default=False)],
    user: Annotated[str, typer.Option(help="A read-only vCenter account (docs/vsphere.md).", show_default=False)],
    password: Annotated[
        str | None,
        typer.Option(
            envvar="RINGFENCE_VSPHERE_PASSWORD",
            help="Its password; better in $RINGFENCE_VSPHERE_PASSWORD (a command line is visible to others).",
            show_default=False,
            show_envvar=False,
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Accept vCenter's certificate unchecked (a lab's self-signed one).")
    ] = False,
    site: Annotated[
        list[str] | None,
        typer.Option(help="DATACENTER=SITE: the site of a datacenter's assets (repeat); default: its name."),
    ] = None,
    merge: Annotated[
        Path | None,
        typer.Option(help="Refresh this estate file's vCenter assets, keeping what people wrote.", show_default=False),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Estate name; default: the vCenter's host name.")] = None,
    out_path: OutOpt = None,
) -> None:
    """Assets from vCenter: hosts, VMs and datastores, with what vSphere HA guarantees (docs/vsphere.md)."""
    from ringfence.core.errors import InputError
    from ringfence.core.estate import load_document_text
    from ringfence.files.disk import read_text
    from ringfence.files.importers.vsphere import VCenterLogin
    from ringfence.files.importers.vsphere import import_vsphere as read_vsphere
    from ringfence.files.importers.vsphere_estate import merge_estate

    check_output_file(out_path, "--out", example="estate.yaml")
    sites: dict[str, str] = {}
    for pair in site or []:
        datacenter, equals, place = pair.partition("=")
        if not equals or not datacenter.strip() or not place.strip():
            raise InputError(f"--site '{pair}' is not DATACENTER=SITE (for example --site DC-City=city)")
        sites[datacenter.strip()] = place.strip()
    if password is None:
        raise InputError("--password is required: give it in $RINGFENCE_VSPHERE_PASSWORD (or --password)")
    existing = load_document_text(read_text(merge), str(merge)) if merge is not None else None
    if existing is not None and not isinstance(existing, dict):
        raise InputError(f"{merge}: is not an estate file (a mapping with apiVersion, estate, assets)")
    login = VCenterLogin(server=server, user=user, password=password, insecure=insecure)
    estate_name = name or (str(existing["estate"]) if existing else None)
    document = read_vsphere(login, estate_name=estate_name, sites=sites, warn=warn)
    if existing is None:
        _write(document, out_path)
        return
    merged, report = merge_estate(existing, document)
    for sentence in report.sentences():
        err.print(f"{sentence}.", highlight=False, markup=False)
    # A merge rewrites the file it refreshes unless told to write elsewhere.
    _write(merged, out_path or merge, source=merge)
