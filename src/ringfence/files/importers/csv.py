"""Import a CSV file (a spreadsheet export) as estate assets, one asset a row.

The first row is the header. Columns (docs/importers.md has examples):

=============  =========================================================================
``id``         required; lowercase letters, digits, ``.``, ``_``, ``-``
``kind``       required; host, vm, endpoint, appliance, saas, network or storage
``site``       optional
``supplier``   optional: who operates or hosts the asset
``name``       optional: a human name
``software``   ``VENDOR/NAME@VERSION`` items separated by ``;``
``requires``   items separated by ``;``: ``ID``, ``any:K:ID|ID|ID`` or ``where:K:SELECTOR``
``attrs.NAME`` one attribute (``attrs.os``, ``attrs.cluster``)
=============  =========================================================================

An empty cell means the field is absent. Every problem names the file, the line (the physical line
where the row starts, counting the header as line 1) and the column; all of them are reported at once.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from ringfence.core.errors import InputError, Problem
from ringfence.files.importers.document import (
    capped,
    check_asset_fields,
    estate_document,
    parse_requires_text,
    parse_software_text,
)

__all__ = ["COLUMNS", "import_csv"]

COLUMNS = ("id", "kind", "site", "supplier", "name", "software", "requires")
"""The fixed columns, in the order the docs list them; ``attrs.NAME`` columns come on top."""
REQUIRED_COLUMNS = ("id", "kind")
_ATTR_COLUMN = re.compile(r"^attrs\.([A-Za-z0-9_.-]+)$")


@dataclass(frozen=True)
class _Row:
    line: int
    cells: dict[str, str]
    """Column name → stripped, non-empty value."""


def import_csv(path: Path, *, estate_name: str | None = None) -> dict[str, object]:
    """Read the CSV file at ``path`` and return an estate document with one asset a row.

    ``estate_name`` defaults to the file's stem. Raises :class:`~ringfence.core.errors.InputError` listing
    every problem (up to 50), each with ``path=("row", LINE, COLUMN)``, ``source`` and ``line``.
    """
    source = str(path)
    text = _read_text(path)
    rows, problems = _read_rows(text, source)

    assets: list[dict[str, object]] = []
    asset_lines: list[int] = []
    line_of_id: dict[str, int] = {}
    for row in rows:
        asset, messages = _asset_from_row(row)
        problems.extend(_problem(message, row.line, column, source) for column, message in messages)
        asset_id = row.cells.get("id")
        if asset_id is not None:
            if asset_id in line_of_id:
                problems.append(
                    _problem(
                        f"id '{asset_id}' is already used on line {line_of_id[asset_id]}",
                        row.line,
                        "id",
                        source,
                    )
                )
                continue
            line_of_id[asset_id] = row.line
        assets.append(asset)
        asset_lines.append(row.line)

    # The estate model checks each value (kinds, id and product patterns); one message per cell, so a
    # missing id reported above is not reported again by the model.
    reported = {(p.path[1], p.path[2]) for p in problems if len(p.path) == 3}
    for found in check_asset_fields(assets):
        if not 0 <= found.index < len(asset_lines):
            continue
        line, column = asset_lines[found.index], _column_of(found.field)
        if (line, column) not in reported:
            reported.add((line, column))
            problems.append(_problem(found.message, line, column, source))

    if not problems and not assets:
        problems.append(
            Problem("the file has a header but no rows, so there is nothing to import", source=source, line=1)
        )
    if problems:
        problems.sort(key=lambda p: (p.line or 0, _column_order(p.path[2] if len(p.path) == 3 else "")))
        raise InputError(capped(problems, source))
    return estate_document(estate_name if estate_name is not None else path.stem, assets)


def _read_text(path: Path) -> str:
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError([Problem(f"CSV file '{source}' does not exist", source=source)]) from None
    except OSError as exc:
        raise InputError([Problem(f"CSV file '{source}' cannot be read: {exc.strerror}", source=source)]) from None
    try:
        # utf-8-sig drops the byte-order mark spreadsheet programs put at the start.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            [
                Problem(
                    f"byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8 CSV",
                    source=source,
                    line=line,
                )
            ]
        ) from None


def _read_rows(text: str, source: str) -> tuple[list[_Row], list[Problem]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[Problem] = []
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InputError([Problem(f"the header row cannot be read as CSV: {exc}", source=source, line=1)]) from None
    if header is None or not any(cell.strip() for cell in header):
        raise InputError(
            [
                Problem(
                    f"the first line must be a header naming the columns ({', '.join(COLUMNS)}, attrs.NAME)",
                    source=source,
                    line=1,
                )
            ]
        )

    columns: list[str | None] = []
    seen: set[str] = set()
    for position, raw in enumerate(header, start=1):
        name = raw.strip()
        if not name:
            columns.append(None)  # an unnamed column is harmless while its cells stay empty
            continue
        if name in seen:
            problems.append(_problem(f"column '{name}' appears twice in the header", 1, name, source))
        elif name not in COLUMNS and not _ATTR_COLUMN.match(name):
            hint = ""
            if ";" in name or "\t" in name:
                hint = " (ringfence reads comma-separated files; export with ',' between columns)"
            elif name.startswith("attrs."):
                hint = " (an attribute name may hold only letters, digits, '_', '.' and '-')"
            problems.append(
                _problem(
                    f"unknown column '{name}' (column {position}); "
                    f"columns are {', '.join(COLUMNS)} and attrs.NAME{hint}",
                    1,
                    name,
                    source,
                )
            )
        seen.add(name)
        columns.append(name)
    for required in REQUIRED_COLUMNS:
        if required not in seen:
            problems.append(_problem(f"the header has no '{required}' column, which is required", 1, required, source))
    if problems:
        raise InputError(problems)

    rows: list[_Row] = []
    start = reader.line_num + 1
    while True:
        try:
            record = next(reader, None)
        except csv.Error as exc:
            problems.append(Problem(f"this row cannot be read as CSV: {exc}", source=source, line=start))
            break
        if record is None:
            break
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in record):
            continue  # blank lines and rows of empty cells, as spreadsheets leave at the end
        cells: dict[str, str] = {}
        for position, raw in enumerate(record, start=1):
            value = raw.strip()
            if not value:
                continue
            if position > len(columns):
                problems.append(
                    _problem(
                        f"the row has a value '{value}' in column {position}, "
                        f"but the header names only {len(columns)} columns",
                        line,
                        f"column {position}",
                        source,
                    )
                )
                continue
            column = columns[position - 1]
            if column is None:
                problems.append(
                    _problem(
                        f"the row has a value '{value}' in column {position}, which has no name in the header",
                        line,
                        f"column {position}",
                        source,
                    )
                )
                continue
            cells[column] = value
        rows.append(_Row(line=line, cells=cells))
    return rows, problems


def _asset_from_row(row: _Row) -> tuple[dict[str, object], list[tuple[str, str]]]:
    """The asset a row describes, and (column, sentence) for each cell that cannot be read."""
    cells = row.cells
    messages: list[tuple[str, str]] = []
    for required in REQUIRED_COLUMNS:
        if required not in cells:
            messages.append((required, f"{required} is required, but the cell is empty"))
    asset: dict[str, object] = {}
    for column in ("id", "kind", "name", "site", "supplier"):
        if column in cells:
            asset[column] = cells[column]
    attrs = {match.group(1): value for column, value in cells.items() if (match := _ATTR_COLUMN.match(column))}
    if attrs:
        asset["attrs"] = attrs
    if "software" in cells:
        software, errors = parse_software_text(cells["software"])
        messages.extend(("software", e) for e in errors)
        if software:
            asset["software"] = software
    if "requires" in cells:
        requires, errors = parse_requires_text(cells["requires"])
        messages.extend(("requires", e) for e in errors)
        if requires:
            asset["requires"] = requires
    return asset, messages


def _column_of(field: tuple[str | int, ...]) -> str:
    """The column an asset field came from."""
    if not field:
        return "id"
    head = str(field[0])
    if head == "attrs" and len(field) > 1:
        return f"attrs.{field[1]}"
    return head


def _column_order(column: str | int) -> int:
    name = str(column)
    if name in COLUMNS:
        return COLUMNS.index(name)
    return len(COLUMNS)


def _problem(message: str, line: int, column: str, source: str) -> Problem:
    return Problem(message, path=("row", line, column), source=source, line=line)
