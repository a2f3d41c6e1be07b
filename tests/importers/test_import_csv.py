"""`ringfence import csv`: one asset a row, every problem located by file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence.core.errors import InputError
from ringfence.core.estate import parse_estate_document
from ringfence.files.importers import import_csv, parse_requires_text, parse_software_text

DATA = Path(__file__).parent / "data"

CITY_ASSETS = [
    {
        "id": "esx-a1",
        "kind": "host",
        "name": "ESX host A1",
        "site": "city",
        "supplier": "vmware",
        "attrs": {"os": "esxi", "cluster": "prod-a"},
        "software": [{"product": "vmware/esxi", "version": "7.0.2"}],
    },
    {
        "id": "esx-a2",
        "kind": "host",
        "site": "city",
        "supplier": "vmware",
        "attrs": {"os": "esxi", "cluster": "prod-a"},
        "software": [{"product": "vmware/esxi", "version": "7.0.2"}],
    },
    {
        "id": "epr-db-1",
        "kind": "vm",
        "name": "EPR database",
        "site": "city",
        "attrs": {"os": "windows-2019"},
        "software": [
            {"product": "microsoft/sql-server", "version": "2019"},
            {"product": "crowdstrike/falcon", "version": "7.15"},
        ],
        "requires": [{"any": 2, "of": ["esx-a1", "esx-a2"]}],
    },
    {
        "id": "epr-app-1",
        "kind": "vm",
        "name": "EPR app, node 1",
        "site": "city",  # written " city " in the file: cells are trimmed
        "attrs": {"os": "windows-2019"},
        "software": [{"product": "crowdstrike/falcon", "version": "7.15"}],
        "requires": ["epr-db-1", {"any": 1, "where": "kind=host,attrs.cluster=prod-a"}],
    },
    {"id": "office365", "kind": "saas", "name": "Microsoft 365", "supplier": "microsoft"},
]


def located(error: InputError) -> list[tuple[int | None, str | int | None]]:
    return [(p.line, p.path[2] if len(p.path) == 3 else None) for p in error.problems]


def test_each_row_becomes_one_asset_with_every_column_mapped() -> None:
    document = import_csv(DATA / "city.csv")

    assert document == {
        "apiVersion": "ringfence/v1",
        "estate": "city",
        "suppliers": [{"id": "crowdstrike"}, {"id": "microsoft"}, {"id": "vmware"}],
        "services": [],
        "assets": CITY_ASSETS,
    }


def test_imported_document_is_a_valid_estate() -> None:
    estate = parse_estate_document(import_csv(DATA / "city.csv"), source="city.csv")

    assert [a.id for a in estate.assets] == ["esx-a1", "esx-a2", "epr-db-1", "epr-app-1", "office365"]
    assert estate.declared_suppliers == 3
    assert estate.warnings == ()


def test_estate_name_can_be_given() -> None:
    assert import_csv(DATA / "city.csv", estate_name="city-general")["estate"] == "city-general"


def test_byte_order_mark_and_crlf_line_ends_are_tolerated() -> None:
    raw = (DATA / "bom_crlf.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw

    document = import_csv(DATA / "bom_crlf.csv")

    assert document["assets"] == [
        {"id": "mri-1", "kind": "appliance", "attrs": {"room": "B12"}},
        {"id": "ct-1", "kind": "appliance", "attrs": {"room": "B14"}},
    ]


def test_every_bad_cell_is_reported_with_its_line_and_column() -> None:
    with pytest.raises(InputError) as caught:
        import_csv(DATA / "bad.csv")

    source = str(DATA / "bad.csv")
    assert all(p.source == source for p in caught.value.problems)
    assert all(p.path[:2] == ("row", p.line) for p in caught.value.problems)
    assert located(caught.value) == [
        (2, "kind"),
        (3, "id"),
        (4, "id"),
        (5, "kind"),
        (5, "software"),
        (5, "requires"),
        # web4 spans lines 6-7 (a quoted line break), so web5 starts on line 8.
        (8, "column 7"),
        (9, "site"),
        (10, "software"),
    ]
    messages = [p.message for p in caught.value.problems]
    assert "'server'" in messages[0]
    assert "'Web2'" in messages[1]
    assert messages[2] == "id 'web1' is already used on line 2"
    assert messages[3] == "kind is required, but the cell is empty"
    assert "software 'nginx' is not written VENDOR/NAME@VERSION" in messages[4]
    assert "K must be 1 or more" in messages[5]
    assert "'extra' in column 7, but the header names only 6 columns" in messages[6]
    assert "'ci|ty'" in messages[7]
    assert "'7 0'" in messages[8]
    assert str(caught.value).splitlines()[0].startswith(f"{source}:2: row[2].kind: ")


def test_unknown_duplicate_and_missing_header_columns_are_errors_naming_the_column() -> None:
    with pytest.raises(InputError) as caught:
        import_csv(DATA / "bad_header.csv")

    assert located(caught.value) == [(1, "Kind"), (1, "attrs.bad name"), (1, "owner"), (1, "site"), (1, "kind")]
    messages = [p.message for p in caught.value.problems]
    assert messages[0].startswith("unknown column 'Kind' (column 2)")
    assert messages[3] == "column 'site' appears twice in the header"
    assert messages[4] == "the header has no 'kind' column, which is required"


def test_a_semicolon_separated_file_gets_a_hint() -> None:
    with pytest.raises(InputError) as caught:
        import_csv(DATA / "semicolons.csv")

    assert "ringfence reads comma-separated files" in caught.value.problems[0].message


def test_bytes_that_are_not_utf8_are_located() -> None:
    with pytest.raises(InputError) as caught:
        import_csv(DATA / "latin1.csv")

    (problem,) = caught.value.problems
    assert problem.line == 3
    assert "0xf6 is not UTF-8" in problem.message


def test_a_header_without_rows_is_an_error() -> None:
    with pytest.raises(InputError, match="no rows"):
        import_csv(DATA / "header_only.csv")


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")

    with pytest.raises(InputError) as caught:
        import_csv(empty)

    assert caught.value.problems[0].line == 1
    assert "header" in caught.value.problems[0].message


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        import_csv(tmp_path / "nope.csv")


def test_a_value_under_an_unnamed_column_is_an_error_but_empty_ones_are_not(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("id,kind,,\npc-1,endpoint,,\npc-2,endpoint,,stray\n")

    with pytest.raises(InputError) as caught:
        import_csv(sheet)

    assert located(caught.value) == [(3, "column 4")]


def test_problems_are_capped_with_a_count_of_the_rest(tmp_path: Path) -> None:
    sheet = tmp_path / "many.csv"
    sheet.write_text("id,kind\n" + "".join(f"pc-{n},desktop\n" for n in range(60)))

    with pytest.raises(InputError) as caught:
        import_csv(sheet)

    assert len(caught.value.problems) == 51
    assert caught.value.problems[-1].message == "10 more problems are not shown"


def test_software_cells() -> None:
    assert parse_software_text("vmware/esxi@7.0.2; crowdstrike/falcon@7.15;") == (
        [
            {"product": "vmware/esxi", "version": "7.0.2"},
            {"product": "crowdstrike/falcon", "version": "7.15"},
        ],
        [],
    )
    items, errors = parse_software_text("esxi@7; vmware/esxi; vmware/esxi@")
    assert items == []
    assert len(errors) == 3


def test_requires_cells() -> None:
    assert parse_requires_text("ad; any:a|b ; any:2:a|b|c; where:kind=host; where:3:kind=vm,site=city") == (
        [
            "ad",
            {"any": 1, "of": ["a", "b"]},
            {"any": 2, "of": ["a", "b", "c"]},
            {"any": 1, "where": "kind=host"},
            {"any": 3, "where": "kind=vm,site=city"},
        ],
        [],
    )
    entries, errors = parse_requires_text("some:thing; any:2:; any:a||b; where:0:kind=host")
    assert entries == []
    assert errors == [
        "requirement 'some:thing' is not an id, any:K:ID|ID or where:K:SELECTOR (ids cannot contain ':')",
        "requirement 'any:2:' names no ids",
        "requirement 'any:a||b' has an empty id in its list",
        "requirement 'where:0:kind=host' needs at least 1 member up; K must be 1 or more",
    ]
