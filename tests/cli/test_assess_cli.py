"""``ringfence assess`` through the real process: the bundled sample's findings, exit statuses, the table at 80
columns, and bad assurance and policy files refused with ``file:line: field:`` and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ringfence.files.disk import examples_dir, sample_estate_path

from .conftest import CliRunner
from .test_bad_input import assert_bad_input, edit

SAMPLE = sample_estate_path()
AS_OF = "2026-12-01"

ESTATE = """\
apiVersion: ringfence/v1
estate: small
suppliers:
  - {id: acme, name: Acme}
services:
  - id: epr
    tier: 1
    rto: 4h
    continuity: paper
    requires:
      - {any: 1, of: [app-1, app-2]}
assets:
  - {id: app-1, kind: vm, supplier: acme}
  - {id: app-2, kind: vm, supplier: acme}
"""

ASSURANCE = """\
apiVersion: ringfence/v1
assurance: small-2026
suppliers:
  - id: acme
    assessments:
      - {kind: dspt, result: met, date: 2026-06-01, expires: 2027-06-01, evidence: https://example.org/dspt}
    escalation:
      - {name: Account manager, phone: "01632 960999"}
    exit-plan: Move to the second supplier on the framework.
exercises:
  - service: epr
    date: 2026-07-01
    kind: tabletop
    scenario: EPR down for a day.
    outcome: Paper worked.
    actions:
      - {action: Print more packs, owner: Ward manager, due: 2027-08-31}
restore-tests:
  - {subject: epr, date: 2026-07-02, time-to-restore: 2h}
"""

POLICY = """\
apiVersion: ringfence/v1
policy: small
tiers:
  1:
    max-single-points-of-failure: 0
    supplier-assessments: {dspt: 12 months}
    exit-plan: true
    continuity-exercise: 12 months
    restore-test: 12 months
    max-supplier-share: 100%
    rto-achievable: true
"""


def assess_json(cli: CliRunner, *args: str | Path) -> tuple[int, dict[str, Any]]:
    result = cli("assess", *args, "--json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def kinds(document: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    return {(f["severity"], f["policy"], f["problem"], f["subject"]) for f in document["findings"]}


# ------------------------------------------------------------------------------------------ the sample

EVIDENCE_POLICIES = {"supplier-assessments", "exit-plan", "continuity-exercise", "exercise-actions", "restore-test"}


def test_the_sample_finds_its_expired_evidence_missing_exit_plan_and_old_restore_test(cli: CliRunner) -> None:
    """The sample's assurance file (found beside the estate) holds three planted faults and one near miss; the
    evidence findings are exactly those, and the rest are what the estate's structure breaks."""
    code, document = assess_json(cli, SAMPLE, "--as-of", AS_OF)
    assert code == 1
    assert document["assurance"] == "city-general-2026"
    assert document["policy"] == "acute-trust"
    evidence = {k for k in kinds(document) if k[1] in EVIDENCE_POLICIES}
    assert evidence == {
        ("breach", "supplier-assessments", "expired", "supplier:advanced"),
        ("breach", "supplier-assessments", "expired", "supplier:medisoft"),
        ("breach", "exit-plan", "missing", "supplier:k2"),
        ("breach", "restore-test", "too-old", "service:lims"),
        ("warning", "supplier-assessments", "expiring", "supplier:sectra"),
    }
    dates = {f["subject"]: f["date"] for f in document["findings"] if f["policy"] in EVIDENCE_POLICIES}
    assert dates["supplier:advanced"] == "2026-09-11"
    assert dates["supplier:sectra"] == "2026-12-18"
    # Every tier-1 and tier-2 restore measured fits its RTO: nothing about RTOs.
    assert not [f for f in document["findings"] if f["policy"] == "rto-achievable"]
    structural = {(k[1], k[3]) for k in kinds(document) if k[1] not in EVIDENCE_POLICIES}
    assert structural == {
        ("single-points-of-failure", "asset:pstore-city"),
        ("single-points-of-failure", "site:city"),
        ("single-points-of-failure", "asset:adastra"),
        ("single-points-of-failure", "asset:aws-eu-west-2"),
        ("single-points-of-failure", "asset:emis-web"),
        ("single-points-of-failure", "site:north"),
        ("max-supplier-share", "supplier:cisco"),
        ("max-supplier-share", "supplier:crowdstrike"),
        ("max-supplier-share", "supplier:dell"),
        ("max-supplier-share", "supplier:microsoft"),
        ("max-supplier-share", "supplier:vmware"),
    }


def test_the_table_fits_80_columns_and_names_every_finding(cli: CliRunner) -> None:
    result = cli("assess", SAMPLE, "--as-of", AS_OF)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for subject in ("supplier:advanced", "supplier:k2", "service:lims", "supplier:sectra"):
        assert subject in result.stdout
    assert "[2026-12-18]" in result.stdout


def test_without_an_assurance_file_everything_is_missing_and_said(cli: CliRunner, tmp_path: Path) -> None:
    estate = tmp_path / "estate.yaml"
    estate.write_text(ESTATE, encoding="utf-8")
    result = cli("assess", estate, "--as-of", AS_OF, "--json")
    assert result.returncode == 1
    assert "no assurance.yaml" in result.stderr
    problems = {(f["policy"], f["problem"]) for f in json.loads(result.stdout)["findings"]}
    assert ("exit-plan", "missing") in problems
    assert ("restore-test", "missing") in problems


# ------------------------------------------------------------------------------------- exit statuses


@pytest.fixture
def small(tmp_path: Path) -> dict[str, Path]:
    files = {"estate": ESTATE, "assurance": ASSURANCE, "policy": POLICY}
    paths = {name: tmp_path / f"{name}.yaml" for name in files}
    for name, text in files.items():
        paths[name].write_text(text, encoding="utf-8")
    return paths


def test_exit_0_when_every_policy_holds(cli: CliRunner, small: dict[str, Path]) -> None:
    code, document = assess_json(
        cli, small["estate"], "--assurance", small["assurance"], "--policy", small["policy"], "--as-of", AS_OF
    )
    assert (code, document["findings"], document["breached"]) == (0, [], False)


def test_a_warning_alone_exits_0_and_gives_its_date(cli: CliRunner, small: dict[str, Path]) -> None:
    # On 2027-05-15 the DSPT (expires 2027-06-01, 12 months from 2026-06-01) runs out within 30 days.
    code, document = assess_json(
        cli, small["estate"], "--assurance", small["assurance"], "--policy", small["policy"], "--as-of", "2027-05-15"
    )
    assert code == 0
    warnings = [(f["policy"], f["problem"], f["date"]) for f in document["findings"]]
    assert ("supplier-assessments", "expiring", "2027-06-01") in warnings
    assert all(f["severity"] == "warning" for f in document["findings"])


def test_a_restore_slower_than_the_rto_is_a_breach(cli: CliRunner, small: dict[str, Path]) -> None:
    small["assurance"].write_text(ASSURANCE.replace("time-to-restore: 2h", "time-to-restore: 5h"), encoding="utf-8")
    code, document = assess_json(
        cli, small["estate"], "--assurance", small["assurance"], "--policy", small["policy"], "--as-of", AS_OF
    )
    assert code == 1
    assert kinds(document) == {("breach", "rto-achievable", "exceeded", "service:epr")}


# ---------------------------------------------------------------------------------------- bad input

# (case, text, planted line, field, phrases the message must hold)
ASSURANCE_CASES = [
    (
        "unknown-supplier",
        edit(ASSURANCE, 4, "  - id: globex"),
        4,
        "suppliers[0].id",
        ("'globex'", "not in estate 'small'"),
    ),
    (
        "bad-date",
        edit(ASSURANCE, 6, "      - {kind: dspt, result: met, date: 2026-13-01, evidence: x}"),
        6,
        "suppliers[0].assessments[0].date",
        ("2026-13-01",),
    ),
    (
        "year-typo",
        edit(ASSURANCE, 6, "      - {kind: dspt, result: met, date: 20260-01-01, evidence: x}"),
        6,
        "suppliers[0].assessments[0].date",
        ("YYYY-MM-DD",),
    ),
    (
        "expires-before-date",
        edit(ASSURANCE, 6, "      - {kind: dspt, result: met, date: 2026-06-01, expires: 2025-06-01, evidence: x}"),
        6,
        "suppliers[0].assessments[0].expires",
        ("expires 2025-06-01, not between its date (2026-06-01)",),
    ),
    (
        "unknown-kind",
        edit(ASSURANCE, 6, "      - {kind: iso-9001, result: met, date: 2026-06-01, evidence: x}"),
        6,
        "suppliers[0].assessments[0].kind",
        ("iso-9001", "dspt"),
    ),
    ("unknown-field", edit(ASSURANCE, 9, insert="    colour: red"), 9, "suppliers[0].colour", ("colour",)),
    (
        "contact-unreachable",
        edit(ASSURANCE, 8, "      - {name: Account manager}"),
        8,
        "suppliers[0].escalation[0]",
        ("phone or an email",),
    ),
    (
        "exercise-of-an-asset",
        edit(ASSURANCE, 11, "  - service: app-1"),
        11,
        "exercises[0].service",
        ("'app-1' is an asset",),
    ),
    (
        "action-due-before-exercise",
        edit(ASSURANCE, 17, "      - {action: Print more packs, owner: Ward manager, due: 2026-01-31}"),
        17,
        "exercises[0].actions[0].due",
        ("due 2026-01-31",),
    ),
    (
        "restore-of-nothing",
        edit(ASSURANCE, 19, "  - {subject: epr-9, date: 2026-05-02, time-to-restore: 2h}"),
        19,
        "restore-tests[0].subject",
        ("'epr-9'",),
    ),
    (
        "bad-time-to-restore",
        edit(ASSURANCE, 19, "  - {subject: epr, date: 2026-05-02, time-to-restore: 2 hours}"),
        19,
        "restore-tests[0].time-to-restore",
        ("2 hours",),
    ),
    (
        "zero-time-to-restore",
        edit(ASSURANCE, 19, "  - {subject: epr, date: 2026-05-02, time-to-restore: 0s}"),
        19,
        "restore-tests[0].time-to-restore",
        ("at least 1s",),
    ),
    ("wrong-api-version", edit(ASSURANCE, 1, "apiVersion: ringfence/v2"), 1, "apiVersion", ("ringfence/v1",)),
]


@pytest.mark.parametrize(
    ("case", "text", "line", "field", "phrases"), ASSURANCE_CASES, ids=[c[0] for c in ASSURANCE_CASES]
)
def test_a_bad_assurance_file_names_file_line_and_field(
    cli: CliRunner,
    small: dict[str, Path],
    case: str,
    text: str,
    line: int,
    field: str,
    phrases: tuple[str, ...],
) -> None:
    small["assurance"].write_text(text, encoding="utf-8")
    result = cli("assess", small["estate"], "--assurance", small["assurance"], "--policy", small["policy"], "--json")
    assert_bad_input(result, small["assurance"], line, field, phrases=phrases)


POLICY_CASES = [
    ("bad-age", edit(POLICY, 6, "    supplier-assessments: {dspt: 12 moons}"), 6, "tiers.1.supplier-assessments.dspt"),
    ("age-too-long", edit(POLICY, 8, "    continuity-exercise: 11 years"), 8, "tiers.1.continuity-exercise"),
    ("share-over-100", edit(POLICY, 10, "    max-supplier-share: 150%"), 10, "tiers.1.max-supplier-share"),
    ("tier-5", edit(POLICY, 4, "  5:"), 4, "tiers.5"),
    ("unknown-rule", edit(POLICY, 11, insert="    max-outages: 3"), 11, "tiers.1.max-outages"),
]


@pytest.mark.parametrize(("case", "text", "line", "field"), POLICY_CASES, ids=[c[0] for c in POLICY_CASES])
def test_a_bad_policy_file_names_file_line_and_field(
    cli: CliRunner, small: dict[str, Path], case: str, text: str, line: int, field: str
) -> None:
    small["policy"].write_text(text, encoding="utf-8")
    result = cli("assess", small["estate"], "--assurance", small["assurance"], "--policy", small["policy"])
    assert_bad_input(result, small["policy"], line, field)


def test_a_bad_as_of_names_the_option(cli: CliRunner, small: dict[str, Path]) -> None:
    result = cli("assess", small["estate"], "--assurance", small["assurance"], "--as-of", "1 December")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "--as-of" in result.stderr


def test_the_bundled_policy_is_valid_and_the_default(cli: CliRunner, small: dict[str, Path]) -> None:
    assert (examples_dir() / "policy-acute.yaml").is_file()
    code, document = assess_json(cli, small["estate"], "--assurance", small["assurance"], "--as-of", AS_OF)
    assert document["policy"] == "acute-trust"
    assert code == 1  # the acute policy asks for more than the small assurance file holds


def test_a_json_assurance_file_is_read_and_located_like_yaml(cli: CliRunner, small: dict[str, Path]) -> None:
    document = {
        "apiVersion": "ringfence/v1",
        "assurance": "json",
        "restore-tests": [{"subject": "epr", "date": "2026-07-02", "time-to-restore": "2h"}],
    }
    path = small["assurance"].with_suffix(".json")
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    code, found = assess_json(cli, small["estate"], "--assurance", path, "--policy", small["policy"], "--as-of", AS_OF)
    assert (code, found["assurance"]) == (1, "json")  # no supplier evidence, no exercise: breached
    document["restore-tests"][0]["subject"] = "nowhere"
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    result = cli("assess", small["estate"], "--assurance", path, "--policy", small["policy"])
    assert_bad_input(result, path, 6, "restore-tests[0].subject", phrases=("'nowhere'",))
