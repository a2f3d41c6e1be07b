"""``ringfence diff OLD NEW``: what a change to the estate does to risk, gated for CI.

Exit 1 when the change adds a tier-1 single point of failure (a pull request that does so fails its check);
0 otherwise; 2 on bad input (either file), as every command.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ringfence.cli.main import app
from ringfence.cli.output import TIER_STYLE, JsonOpt, emit_json, err, hold_until_exit, out
from ringfence.core.estate_diff import (
    AssetImpactChange,
    EstateDiff,
    Exposure,
    ServiceChange,
    SinglePointChange,
    SupplierMove,
    diff_document,
    diff_estates,
)
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.impact import ServiceDown
from ringfence.core.words import count, names
from ringfence.files.disk import read_estate

OldArg = Annotated[Path, typer.Argument(help="The estate before the change (YAML or JSON).", show_default=False)]
NewArg = Annotated[Path, typer.Argument(help="The estate after the change (YAML or JSON).", show_default=False)]

_HEADLINES = 5
"""Tier-1 single points named above the tables; the table lists every one."""

_EXPOSURE_WORDS = {
    Exposure.REDUNDANT: "redundant",
    Exposure.SINGLE_POINT: "single point",
    Exposure.DOWN: "down already",
    Exposure.ABSENT: "absent",
}


def _load(path: Path, quiet: bool) -> EstateGraph:
    if quiet or not err.is_terminal:
        graph = compile_estate(read_estate(path))
    else:
        with err.status(f"Loading {path}…"):
            graph = compile_estate(read_estate(path))
    hold_until_exit(graph)
    return graph


@app.command(rich_help_panel="Know your estate")
def diff(
    old_file: OldArg,
    new_file: NewArg,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show people per table (JSON has all).")] = 20,
) -> None:
    """What a change does to risk: single points of failure, redundancy, tiers, supplier concentration."""
    old = _load(old_file, as_json)
    new = _load(new_file, as_json)
    found = diff_estates(old, new)
    if as_json:
        emit_json(diff_document(found).model_dump(mode="json"))
    else:
        _print(found, limit)
    if found.adds_tier_1_single_point:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------------------- for people


def _print(found: EstateDiff, limit: int) -> None:
    old, new = found.old, found.new
    which = f"estate '{new.name}'" if old.name == new.name else f"estate '{old.name}' → '{new.name}'"
    out.print(Text.assemble(("Risk diff", "bold"), f" of {which}"))
    out.print(f"assets {old.assets:,} → {new.assets:,}; services {old.services:,} → {new.services:,}")
    if found.is_empty:
        out.print("No change to risk: the same single points of failure, tiers and supplier reach.")
        return
    added = found.tier_1_single_points_added
    if added:
        # One line per single point, a few at most: raising one service to tier 1 makes every supplier and
        # product behind it one, and the table below lists them all.
        out.print(Text("Adds a tier-1 single point of failure:", style="bold red"))
        for change in added[:_HEADLINES]:
            out.print(f"  {change.ref} alone now takes down {names(s.id for s in change.tier_1_gained)}")
        if len(added) > _HEADLINES:
            out.print(f"  … and {count(len(added) - _HEADLINES, 'more single point')}, in the table below")
    _print_single_points(found.single_points, limit)
    _print_services(found.services, limit)
    _print_assets(found.assets, limit)
    _print_suppliers(found.suppliers, limit)


def _table(title: str) -> Table:
    """A table under its title, the title printed as a line of its own: Rich would wrap a title (and a caption)
    to its table's width, and a narrow table made a paragraph of one sentence."""
    out.print(Text(title, style="bold"))
    return Table()


def _more(shown: int, total: int) -> None:
    if total > shown:
        out.print(f"… and {total - shown:,} more (--limit, or --json for all).")


def _tier(tier: int) -> Text:
    return Text(f"T{tier}", style=TIER_STYLE.get(tier, ""))


def _tier_move(before: int | None, after: int | None) -> Text:
    """``T3 → T1``; ``new T2``; ``gone T3``; ``T2`` when it did not move."""
    if before is None:
        return Text("new ") + _tier(after) if after is not None else Text("")
    if after is None:
        return Text("gone ") + _tier(before)
    if before == after:
        return _tier(after)
    return _tier(before) + Text(" → ") + _tier(after)


def _service_marks(gained: Sequence[ServiceDown], lost: Sequence[ServiceDown], limit: int = 6) -> Text:
    """``+epr T1, −lims T3, ed T3→T1``: what is gained (red for tier 1), what is lost, and a service that is
    in both at another tier as one move, capped at ``limit``."""
    was = {s.id: s.tier for s in lost}
    moved = {s.id: (was[s.id], s.tier) for s in gained if s.id in was}
    marks = [
        (f"{s.id} T{moved[s.id][0]}→T{s.tier}" if s.id in moved else f"+{s.id} T{s.tier}", _gain_style(s.tier))
        for s in gained
    ]
    marks += [(f"−{s.id} T{s.tier}", "green") for s in lost if s.id not in moved]
    line = Text()
    for n, (mark, style) in enumerate(marks[:limit]):
        line.append(", " if n else "")
        line.append(mark, style=style)
    if len(marks) > limit:
        line.append(f" +{len(marks) - limit} more", style="dim")
    return line


def _gain_style(tier: int) -> str:
    return "bold red" if tier == 1 else ""


def _print_single_points(changes: Sequence[SinglePointChange], limit: int) -> None:
    if not changes:
        return
    added = sum(1 for c in changes if c.is_added)
    removed = sum(1 for c in changes if c.is_removed)
    title = f"Single points of failure: {added} added, {removed} removed, {len(changes) - added - removed} changed"
    table = _table(title)
    table.add_column("change")
    table.add_column("fails alone", overflow="fold")
    table.add_column("worst", no_wrap=True)
    table.add_column("services taken down (+ now, − no longer)", overflow="fold")
    # Those that add risk first, the most critical first.
    ranked = sorted(
        changes,
        key=lambda c: (not c.gained, min((s.tier for s in c.gained or c.lost), default=5), c.ref),
    )
    for c in ranked[:limit]:
        kind = "added" if c.is_added else "removed" if c.is_removed else "changed"
        table.add_row(
            kind, c.ref, _tier_move(c.worst_tier_before, c.worst_tier_after), _service_marks(c.gained, c.lost)
        )
    out.print(table)
    _more(min(limit, len(changes)), len(changes))


def _exposure_move(change: ServiceChange) -> Text:
    before, after = change.exposure_before, change.exposure_after
    style = "bold red" if change.loses_redundancy else "green" if change.gains_redundancy else ""
    if before is after:
        return Text(_EXPOSURE_WORDS[after])
    return Text(f"{_EXPOSURE_WORDS[before]} → {_EXPOSURE_WORDS[after]}", style=style)


def _print_services(changes: Sequence[ServiceChange], limit: int) -> None:
    if not changes:
        return
    counted = [
        (sum(1 for c in changes if c.loses_redundancy), "lose redundancy"),
        (sum(1 for c in changes if c.gains_redundancy), "gain redundancy"),
        (sum(1 for c in changes if c.is_added), "added"),
        (sum(1 for c in changes if c.is_removed), "removed"),
        (sum(1 for c in changes if c.tier_changed), "change tier"),
    ]
    parts = [f"{n} {what}" for n, what in counted if n] or [f"{len(changes)} whose single points change"]
    table = _table(f"Services ({len(changes)}): " + ", ".join(parts))
    table.add_column("service", overflow="fold")
    table.add_column("tier", no_wrap=True)
    table.add_column("to one asset's loss", overflow="fold")
    table.add_column("single points (assets)", overflow="fold")
    ranked = sorted(
        changes,
        key=lambda c: (not c.loses_redundancy, not c.single_points_gained, c.tier_after or 5, c.id),
    )
    for c in ranked[:limit]:
        points = [f"+{p}" for p in c.single_points_gained] + [f"−{p}" for p in c.single_points_lost]
        shown = ", ".join(points[:4]) + (f" +{len(points) - 4} more" if len(points) > 4 else "")
        table.add_row(c.id, _tier_move(c.tier_before, c.tier_after), _exposure_move(c), shown)
    out.print(table)
    _more(min(limit, len(changes)), len(changes))


def _print_assets(changes: Sequence[AssetImpactChange], limit: int) -> None:
    if not changes:
        return
    worse = sum(1 for c in changes if c.is_worse)
    title = f"Asset impact tiers: {len(changes):,} changed, {worse:,} more critical"
    table = _table(title)
    table.add_column("asset", overflow="fold")
    table.add_column("impact tier", no_wrap=True)
    ranked = sorted(changes, key=lambda c: (not c.is_worse, c.tier_after or 5, c.id))
    for c in ranked[:limit]:
        table.add_row(c.id, _tier_move(c.tier_before, c.tier_after))
    out.print(table)
    _more(min(limit, len(changes)), len(changes))
    out.print("Impact tier: the most critical tier down when the asset alone fails (T5: none).", style="dim")


def _count_move(before: int, after: int) -> Text:
    if before == after:
        return Text(str(after), style="dim")
    return Text(f"{before}→{after}", style="bold red" if after > before else "green")


def _print_suppliers(moves: Sequence[SupplierMove], limit: int) -> None:
    if not moves:
        return
    table = _table(f"Supplier concentration: {count(len(moves), 'supplier')} whose loss takes down other services")
    table.add_column("supplier", overflow="fold")
    for tier in (1, 2, 3, 4):
        table.add_column(f"T{tier}", justify="right")
    table.add_column("services (+ now, − no longer)", overflow="fold")
    ranked = sorted(moves, key=lambda m: (not m.gained, min((s.tier for s in m.gained), default=5), m.id))
    for m in ranked[:limit]:
        before, after = m.down_by_tier_before, m.down_by_tier_after
        table.add_row(
            m.id, *(_count_move(before[t], after[t]) for t in (1, 2, 3, 4)), _service_marks(m.gained, m.lost, 4)
        )
    out.print(table)
    _more(min(limit, len(moves)), len(moves))
    out.print("T1–T4: services of each tier the supplier's loss takes down, before→after.", style="dim")
