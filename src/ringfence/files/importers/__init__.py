"""Importers: start an estate file from what a team already keeps (an Ansible inventory, a spreadsheet).

Each importer reads one kind of file and returns an estate *document*: the plain dicts and lists of
estate format v1, ready to dump as YAML and to enrich by hand with services, tiers and continuity plans.
Importers list assets (and the suppliers those assets name), never services: which clinical services
depend on which assets is knowledge no inventory holds.

They are adapters (they read files); the rules of the format stay in :mod:`ringfence.core.estate`.
:mod:`ringfence.files.importers.document` holds what every importer shares (cell syntax, the document's shape,
the field check); one module per format reads its files. This package only re-exports them.
"""

from __future__ import annotations

from ringfence.files.importers.ansible import import_ansible_inventory
from ringfence.files.importers.csv import import_csv
from ringfence.files.importers.document import (
    FieldProblem,
    capped,
    check_asset_fields,
    estate_document,
    parse_requires_text,
    parse_software_text,
)

__all__ = [
    "FieldProblem",
    "capped",
    "check_asset_fields",
    "estate_document",
    "import_ansible_inventory",
    "import_csv",
    "parse_requires_text",
    "parse_software_text",
]
