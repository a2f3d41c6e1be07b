"""Bad input through the real ``ringfence`` process: exit status 2, nothing on stdout, and a message on
stderr naming the file, the line and the field where there is one (cli-contract.md).

Every case plants one error on a known line of a small file and asserts that exact line. Commands that
write (``generate --out``, ``import csv --out``) must leave nothing behind when they fail.

Messages are looked up with all whitespace squeezed out (see ``squeezed``); one test,
``test_each_problem_is_one_line_on_stderr``, asserts the layout itself.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import CliRunner

ESTATE = """\
apiVersion: ringfence/v1
estate: bad
services:
  - id: epr
    tier: 1
    rto: 4h
    requires:
      - app
      - {any: 1, of: [db1, db2]}
assets:
  - id: app
    kind: vm
    software: [{product: acme/agent, version: "1.0"}]
  - id: db1
    kind: vm
  - id: db2
    kind: vm
"""

UPDATE = """\
apiVersion: ringfence/v1
update:
  id: agent-3
  product: acme/agent
  version: "3.0"
  strata: [kind]
  rings: [1, "100%"]
  bake: 2h
"""


def squeezed(text: str) -> str:
    """``text`` without any whitespace. Rich lays stderr out in 80 columns: it breaks lines at a space (kept,
    or dropped when the line is exactly full) or inside a word longer than a line, such as a long path. With
    every space and newline gone from both sides, a phrase is found wherever the layout broke it."""
    return re.sub(r"\s+", "", text)


def says(stderr: str, phrase: str) -> bool:
    return squeezed(phrase) in squeezed(stderr)


def edit(text: str, line: int, new: str | None = None, *, insert: str | None = None) -> str:
    """Replace line ``line`` (1-based) of ``text`` with ``new``, or insert ``insert`` as a new line ``line``."""
    lines = text.splitlines()
    if insert is not None:
        lines.insert(line - 1, insert)
    elif new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    return "\n".join(lines) + "\n"


def assert_bad_input(
    result: subprocess.CompletedProcess[str],
    source: Path | str,
    line: int | None = None,
    field: str | None = None,
    *,
    phrases: tuple[str, ...] = (),
) -> None:
    """Exit 2, empty stdout, and ``SOURCE:LINE: FIELD:`` (as much of it as there is) on stderr."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    where = f"{source}:{line}:" if line is not None else f"{source}"
    if field is not None:
        where += f" {field}:"
    assert says(result.stderr, where), f"expected {where!r} in stderr:\n{result.stderr}"
    for phrase in phrases:
        assert says(result.stderr, phrase), f"expected {phrase!r} in stderr:\n{result.stderr}"


@pytest.fixture
def estate_file(tmp_path: Path) -> Path:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- estates

# (case, text, planted line, field, phrases the message must hold, what must be on the planted line)
ESTATE_CASES = [
    ("duplicate-id", edit(ESTATE, 16, "  - id: db1"), 16, "assets[2].id", ("'db1'", "assets[1]"), "id: db1"),
    ("unknown-kind", edit(ESTATE, 15, "    kind: toaster"), 15, "assets[1].kind", ("toaster",), "toaster"),
    ("unknown-field", edit(ESTATE, 13, insert="    colour: red"), 13, "assets[0].colour", ("colour",), "colour"),
    (
        "bad-selector",
        edit(ESTATE, 9, '      - {any: 1, where: "kind=vm,bogus=1"}'),
        9,
        "services[0].requires[1]",
        ("bogus",),
        "bogus",
    ),
    ("bad-duration", edit(ESTATE, 6, "    rto: 4 hours"), 6, "services[0].rto", ("4 hours",), "4 hours"),
    (
        "k-larger-than-list",
        edit(ESTATE, 9, "      - {any: 3, of: [db1, db2]}"),
        9,
        "services[0].requires[1]",
        ("3 of 2",),
        "any: 3",
    ),
    ("unknown-reference", edit(ESTATE, 8, "      - nope"), 8, "services[0].requires[0]", ("'nope'",), "nope"),
    ("self-requirement", edit(ESTATE, 8, "      - epr"), 8, "services[0].requires[0]", ("itself",), "- epr"),
    (
        "self-in-group",
        edit(ESTATE, 9, "      - {any: 1, of: [db1, epr]}"),
        9,
        "services[0].requires[1].of[1]",
        ("itself",),
        "epr",
    ),
    ("bad-tier", edit(ESTATE, 5, "    tier: 7"), 5, "services[0].tier", ("epr",), "tier: 7"),
    ("bad-id", edit(ESTATE, 11, "  - id: App One"), 11, "assets[0].id", (), "App One"),
    (
        "unknown-software-field",
        edit(ESTATE, 13, '    software: [{product: acme/agent, version: "1.0", colour: red}]'),
        13,
        "assets[0].software[0].colour",
        ("unknown field 'colour'",),
        "colour",
    ),
    (
        # Pydantic says "an instance of Software": a Python class the user never wrote.
        "software-item-as-text",
        edit(ESTATE, 13, "    software: [acme/agent@1.0]"),
        13,
        "assets[0].software[0]",
        ("must be a mapping of fields", "the text 'acme/agent@1.0'"),
        "acme/agent@1.0",
    ),
    ("api-version", edit(ESTATE, 1, "apiVersion: ringfence/v9"), 1, "apiVersion", ("ringfence/v1",), "v9"),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "phrases", "planted"), [c[1:] for c in ESTATE_CASES], ids=[c[0] for c in ESTATE_CASES]
)
def test_bad_estate(
    cli: CliRunner, tmp_path: Path, text: str, line: int, field: str, phrases: tuple[str, ...], planted: str
) -> None:
    assert planted in text.splitlines()[line - 1], "the case's line number is where its error is"
    path = tmp_path / "estate.yaml"
    path.write_text(text, encoding="utf-8")
    assert_bad_input(cli("check", path, "--json"), path, line, field, phrases=phrases)


SYNTAX_CASES = [
    ("yaml-mapping", "estate.yaml", edit(ESTATE, 12, "    kind: vm: host"), 12, "not valid YAML"),
    ("yaml-duplicate-key", "estate.yaml", edit(ESTATE, 13, insert="    kind: host"), 13, "'kind' appears twice"),
    (
        "json-syntax",
        "estate.json",
        '{"apiVersion": "ringfence/v1",\n "estate": "bad",\n "assets": [,]}\n',
        3,
        "not valid JSON",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "line", "phrase"), [c[1:] for c in SYNTAX_CASES], ids=[c[0] for c in SYNTAX_CASES]
)
def test_unreadable_estate_text(cli: CliRunner, tmp_path: Path, name: str, text: str, line: int, phrase: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert_bad_input(cli("check", path, "--json"), path, line, phrases=(phrase,))


def test_json_estate_problems_have_lines_too(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "estate.json"
    path.write_text(
        '{"apiVersion": "ringfence/v1",\n "estate": "bad",\n "assets": [\n'
        '  {"id": "app", "kind": "vm"},\n  {"id": "db1", "kind": "vm", "colour": "red"}\n ]}\n',
        encoding="utf-8",
    )
    assert_bad_input(cli("check", path, "--json"), path, 5, "assets[1].colour")


def test_missing_estate_file(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert_bad_input(cli("check", path, "--json"), path, phrases=("no such file",))


def test_estate_that_is_not_a_mapping(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    assert_bad_input(cli("check", path, "--json"), path, phrases=("mapping",))


@pytest.mark.parametrize("command", ["impact", "spof", "concentration", "plan"])
def test_every_command_refuses_a_bad_estate(cli: CliRunner, tmp_path: Path, command: str) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(edit(ESTATE, 8, "      - nope"), encoding="utf-8")
    update = tmp_path / "update.yaml"
    update.write_text(UPDATE, encoding="utf-8")
    extras: dict[str, list[str | Path]] = {"impact": ["--fail", "app"], "plan": [update]}
    extra = extras.get(command, [])
    assert_bad_input(cli(command, path, *extra, "--json"), path, 8, "services[0].requires[0]")


def test_each_problem_is_one_line_on_stderr(cli: CliRunner, tmp_path: Path) -> None:
    """A script (or an editor jumping to file:line) reads stderr line by line: a problem must not be broken
    over several lines, nor a long path cut in two, whatever the width of an absent terminal."""
    folder = tmp_path / ("a-folder-with-a-long-name-as-ci-workspaces-have" * 2)
    folder.mkdir()
    path = folder / "estate.yaml"
    path.write_text(edit(ESTATE, 16, "  - id: db1"), encoding="utf-8")
    result = cli("check", path, "--json")
    assert result.returncode == 2
    expected = (
        f"error: {path}:16: assets[2].id: id 'db1' is already used by assets[1]; "
        "assets and services share one namespace"
    )
    assert expected in result.stderr.splitlines(), result.stderr


# ---------------------------------------------------------------------------------------- updates

UPDATE_CASES = [
    ("unknown-field", edit(UPDATE, 9, insert="  colour: red"), 9, "update.colour", ("colour",)),
    ("bad-ring", edit(UPDATE, 7, '  rings: [1, "abc"]'), 7, "update.rings[1]", ("abc",)),
    ("zero-share", edit(UPDATE, 7, '  rings: ["0%"]'), 7, "update.rings[0]", ("0%",)),
    ("ring-goes-back", edit(UPDATE, 7, '  rings: ["50%", "10%", "100%"]'), 7, "update.rings[1]", ("'10%'", "'50%'")),
    ("bake-too-long", edit(UPDATE, 8, "  bake: 999999999d"), 8, "update.bake", ("999999999d", "365d")),
    ("bad-strata-key", edit(UPDATE, 6, "  strata: [kind, colour]"), 6, "update.strata", ("colour",)),
    ("bad-targets", edit(UPDATE, 9, insert='  targets: "software"'), 9, "update.targets", ("software",)),
    ("bad-bake", edit(UPDATE, 8, "  bake: 2 hours"), 8, "update.bake", ("2 hours",)),
    ("bad-rollback", edit(UPDATE, 9, insert="  rollback: pray"), 9, "update.rollback", ()),
    # A required field that is absent is located at the mapping that should hold it.
    ("missing-version", edit(UPDATE, 5), 2, "update.version", ("version",)),
    ("yaml", edit(UPDATE, 6, "  strata: [kind"), None, None, ("not valid YAML",)),
    # Valid on its own, but matches nothing in this estate: still the update file's `targets` line.
    (
        "targets-nothing",
        edit(UPDATE, 9, insert='  targets: "software=acme/agent@9.9"'),
        9,
        "update.targets",
        ("software=acme/agent@9.9",),
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "phrases"), [c[1:] for c in UPDATE_CASES], ids=[c[0] for c in UPDATE_CASES]
)
def test_bad_update(
    cli: CliRunner,
    estate_file: Path,
    tmp_path: Path,
    text: str,
    line: int | None,
    field: str | None,
    phrases: tuple[str, ...],
) -> None:
    path = tmp_path / "update.yaml"
    path.write_text(text, encoding="utf-8")
    assert_bad_input(cli("plan", estate_file, path, "--json"), path, line, field, phrases=phrases)


def test_missing_update_file(cli: CliRunner, estate_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert_bad_input(cli("plan", estate_file, path, "--json"), path, phrases=("no such file",))


# --------------------------------------------------------------------------------- --fail and flags

BAD_REFS = [
    "asset:nope",
    "service:app",  # an asset, named as a service
    "asset:epr",  # a service, named as an asset
    "nope",
    "supplier:nobody",
    "software:nobody/thing",
    "site:nowhere",
    "where:colour=red",
    "rack:r1",
]


@pytest.mark.parametrize("ref", BAD_REFS)
def test_bad_fail_ref(cli: CliRunner, estate_file: Path, ref: str) -> None:
    result = cli("impact", estate_file, "--fail", "app", "--fail", ref, "--json")
    assert_bad_input(result, "--fail", phrases=(f"'{ref}'",))


def test_impact_without_fail(cli: CliRunner, estate_file: Path) -> None:
    assert_bad_input(cli("impact", estate_file, "--json"), "--fail")


@pytest.mark.parametrize(
    "args",
    [
        ("spof", "{estate}", "--tier", "9"),
        ("spof", "{estate}", "--tier", "0"),
        ("spof", "{estate}", "--tier", "one"),
        ("check", "{estate}", "--frobnicate"),
        ("plan", "{estate}"),
    ],
    ids=["tier-9", "tier-0", "tier-word", "unknown-flag", "missing-argument"],
)
def test_bad_flags(cli: CliRunner, estate_file: Path, args: tuple[str, ...]) -> None:
    result = cli(*(str(estate_file) if a == "{estate}" else a for a in args))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    flag = next((a for a in args if a.startswith("--")), None)
    if flag is not None:
        assert flag in result.stderr, result.stderr


# ----------------------------------------------------------------------------- commands that write


@pytest.mark.parametrize(
    ("size", "phrase"),
    [("0", "--assets"), ("5", "5 assets")],  # refused by the flag's bounds; too small for the generator's shape
    ids=["zero", "too-small"],
)
def test_generate_writes_nothing_on_bad_input(cli: CliRunner, tmp_path: Path, size: str, phrase: str) -> None:
    out = tmp_path / "generated.yaml"
    result = cli("generate", "--assets", size, "--out", out)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert says(result.stderr, phrase), result.stderr
    assert list(tmp_path.iterdir()) == []


CSV_HEADER = "id,kind,site,requires\n"


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-file"])
def test_import_csv_writes_nothing_on_a_bad_row(cli: CliRunner, tmp_path: Path, existing: bool) -> None:
    csv_file = tmp_path / "assets.csv"
    csv_file.write_text(CSV_HEADER + "app,vm,city,\nweb,toaster,city,\n", encoding="utf-8")
    out = tmp_path / "estate.yaml"
    if existing:
        out.write_text("kept as it was\n", encoding="utf-8")
    result = cli("import", "csv", csv_file, "--out", out)
    assert_bad_input(result, csv_file, 3, "row[3].kind", phrases=("toaster",))
    if existing:
        assert out.read_text(encoding="utf-8") == "kept as it was\n"
    else:
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["assets.csv"] + (["estate.yaml"] if existing else []))


def test_import_csv_names_the_csv_when_the_estate_would_not_hold(cli: CliRunner, tmp_path: Path) -> None:
    """Rows that read fine but make an estate `check` would refuse (a requirement on an id no row defines):
    nothing is written, and the message points at the CSV row, not at the output file that was never made."""
    csv_file = tmp_path / "assets.csv"
    csv_file.write_text(CSV_HEADER + "app,vm,city,db\nweb,vm,city,\n", encoding="utf-8")
    out = tmp_path / "estate.yaml"
    result = cli("import", "csv", csv_file, "--out", out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assets.csv"]
    assert_bad_input(result, csv_file, 2, phrases=("'db'",))


def test_import_csv_of_a_missing_file(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "estate.yaml"
    result = cli("import", "csv", tmp_path / "nowhere.csv", "--out", out)
    assert_bad_input(result, tmp_path / "nowhere.csv")
    assert not out.exists()
