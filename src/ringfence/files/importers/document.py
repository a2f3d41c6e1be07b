"""What every importer shares: the estate document it builds and the checks on its fields.

The cell syntax for software and requirements (a CSV cell and a string-valued Ansible variable read the
same way), the document's shape, and the field-by-field check against the estate model, so that a bad
value is reported where the user wrote it. The format importers (:mod:`ringfence.files.importers.ansible`,
:mod:`ringfence.files.importers.csv`) import this module, never their package, so that the package can import
them at its top without a cycle.

What is deliberately *not* checked here: that every id named in ``requires`` exists. An imported
estate has no services yet, and requirements may name services the team adds afterwards;
``ringfence check`` verifies references once the file is complete.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from ringfence.core.errors import Problem
from ringfence.core.estate import API_VERSION, ID_PATTERN, MAX_PROBLEMS, UNKNOWN_FIELD_ERRORS, validate_document

__all__ = [
    "FieldProblem",
    "capped",
    "check_asset_fields",
    "estate_document",
    "parse_requires_text",
    "parse_software_text",
]

_ID = re.compile(ID_PATTERN)
# `any:K:id1|id2` and `where:K:SELECTOR`; K is optional (1).
_GROUP_COUNT = re.compile(r"^(\d+):")


@dataclass(frozen=True)
class FieldProblem:
    """A value in asset number ``index`` (in the order given) that the estate format refuses.

    ``field`` is the path inside the asset (``("software", 1, "version")``), so each importer can name
    the place the user wrote it: a CSV cell, an Ansible variable.
    """

    index: int
    field: tuple[str | int, ...]
    message: str


def parse_software_text(text: str) -> tuple[list[dict[str, object]], list[str]]:
    """``"vmware/esxi@7.0.2; crowdstrike/falcon@7.15"`` → software items, and a sentence per bad item.

    Items are separated by ``;``; each is ``VENDOR/NAME@VERSION``. Empty items (a trailing ``;``) are
    ignored. The product and version patterns themselves are checked with the estate model.
    """
    items: list[dict[str, object]] = []
    errors: list[str] = []
    for raw in text.split(";"):
        item = raw.strip()
        if not item:
            continue
        product, at, version = item.rpartition("@")
        if not at or not product.strip() or not version.strip() or "/" not in product:
            errors.append(f"software '{item}' is not written VENDOR/NAME@VERSION (for example vmware/esxi@7.0.2)")
            continue
        items.append({"product": product.strip(), "version": version.strip()})
    return items, errors


def parse_requires_text(text: str) -> tuple[list[object], list[str]]:
    """Read requirements written in one string, items separated by ``;``.

    - ``ID``: a hard requirement;
    - ``any:K:ID|ID|ID``: at least K of the listed must be up (``any:ID|ID`` means K = 1);
    - ``where:K:SELECTOR``: at least K of the assets the selector matches (``where:SELECTOR``, K = 1).

    Returns the estate-format entries and a sentence per item that cannot be read. Ids never contain
    ``:``, so ``any:``/``where:`` cannot be mistaken for an id; a selector cannot contain ``;``.
    """
    entries: list[object] = []
    errors: list[str] = []
    for raw in text.split(";"):
        item = raw.strip()
        if not item:
            continue
        head, colon, rest = item.partition(":")
        head = head.strip()
        if not colon:
            entries.append(item)
            continue
        if head not in ("any", "where"):
            errors.append(
                f"requirement '{item}' is not an id, any:K:ID|ID or where:K:SELECTOR (ids cannot contain ':')"
            )
            continue
        rest = rest.strip()
        count = 1
        counted = _GROUP_COUNT.match(rest)
        if counted:
            count = int(counted.group(1))
            rest = rest[counted.end() :].strip()
        if count < 1:
            errors.append(f"requirement '{item}' needs at least 1 member up; K must be 1 or more")
            continue
        if not rest:
            errors.append(f"requirement '{item}' names no {'ids' if head == 'any' else 'selector'}")
            continue
        if head == "any":
            members = [m.strip() for m in rest.split("|")]
            if any(not m for m in members):
                errors.append(f"requirement '{item}' has an empty id in its list")
                continue
            entries.append({"any": count, "of": members})
        else:
            entries.append({"any": count, "where": rest})
    return entries, errors


def estate_document(name: str, assets: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """The estate document for ``assets``, listing every supplier they name (assets' and software's).

    Listing the suppliers, even by id alone, gives the team the place to add names and contacts, and
    spares ``check`` its "named but not listed" warning. Ids the format would refuse are left out here:
    the asset field that names them is already reported.
    """
    supplier_ids: set[str] = set()
    for asset in assets:
        supplier = asset.get("supplier")
        if isinstance(supplier, str):
            supplier_ids.add(supplier)
        software = asset.get("software")
        if isinstance(software, list):
            for item in software:
                if not isinstance(item, Mapping):
                    continue
                item_supplier = item.get("supplier")
                product = item.get("product")
                if isinstance(item_supplier, str):
                    supplier_ids.add(item_supplier)
                elif isinstance(product, str) and "/" in product:
                    supplier_ids.add(product.split("/", 1)[0])
    return {
        "apiVersion": API_VERSION,
        "estate": name,
        "suppliers": [{"id": s} for s in sorted(supplier_ids) if _ID.match(s)],
        "services": [],
        "assets": [dict(asset) for asset in assets],
    }


def check_asset_fields(assets: Sequence[Mapping[str, object]]) -> list[FieldProblem]:
    """Check each asset's fields against the estate model (kinds, id and product patterns, shapes).

    References between assets are not checked (see the module docstring).
    """
    document = {"apiVersion": API_VERSION, "estate": "import", "assets": list(assets)}
    try:
        validate_document(document)
    except ValidationError as exc:
        return [_field_problem(error) for error in exc.errors(include_url=False)]
    return []


def capped(problems: Sequence[Problem], source: str) -> list[Problem]:
    """At most ``MAX_PROBLEMS`` problems, and a last line saying how many more there were."""
    if len(problems) <= MAX_PROBLEMS:
        return list(problems)
    hidden = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], Problem(f"{hidden} more problems are not shown", source=source)]


def _field_problem(error: Mapping[str, object]) -> FieldProblem:
    raw_loc = error.get("loc", ())
    loc = raw_loc if isinstance(raw_loc, tuple) else ()
    # pydantic names the branch of a tagged union in the path; users never wrote those names.
    path = tuple(part for part in loc if part not in ("ref", "any-group"))
    kind = str(error.get("type", ""))
    if kind in UNKNOWN_FIELD_ERRORS:
        message = f"unknown field '{path[-1]}'"
    elif kind == "missing":
        message = f"required field '{path[-1]}' is missing"
    else:
        text = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        message = text[:1].lower() + text[1:]
        value = error.get("input")
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            message = f"'{value}': {message}"
    if len(path) >= 2 and path[0] == "assets" and isinstance(path[1], int):
        return FieldProblem(index=path[1], field=tuple(path[2:]), message=message)
    return FieldProblem(index=-1, field=tuple(path), message=message)
