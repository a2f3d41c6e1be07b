"""``ringfence incident ...`` through the installed console script, as an operator's shell would run it."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ringfence.core.update import parse_incident_text
from ringfence.files.disk import read_with

from .conftest import SAMPLE, run_cli


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ringfence.db'}"


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(v for k, v in attrs if k == "id" and v)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.slow
def test_an_incident_from_declaration_to_review(database: str, ward_file: Path, tmp_path: Path) -> None:
    declared = run_cli(
        "incident", "declare", "--estate", ward_file, "--fail", "asset:sql-epr-1", "--title", "EPR database lost",
        "--json", database_url=database,
    )  # fmt: skip
    assert declared.returncode == 0, declared.stderr
    doc = json.loads(declared.stdout)
    incident_id = doc["id"]
    assert (incident_id, doc["title"], doc["status"], doc["declared_by"]) == (
        "inc-000001",
        "EPR database lost",
        "open",
        "alice",
    )
    assert [s["restore"] for s in doc["steps"]] == [["sql-epr-1"], ["epr-app-1", "epr-app-2"], ["epr"], ["pharmacy"]]
    assert [c["service"] for c in doc["continuity"]] == ["epr", "pharmacy"]

    refused = run_cli("incident", "restore", incident_id, "epr-app-1", database_url=database)
    assert refused.returncode == 1
    assert "cannot mark epr-app-1 restored: it needs sql-epr-1, which is still down" in refused.stderr
    assert refused.stdout == ""

    restored = run_cli("incident", "restore", incident_id, "sql-epr-1", "epr-app-2", database_url=database)
    assert restored.returncode == 0, restored.stderr
    assert "Restored: sql-epr-1, epr-app-2; 3 items still down." in restored.stdout
    assert "Ready to restore now: epr-app-1, epr" in restored.stdout

    noted = run_cli(
        "incident", "note", incident_id, "Acme rebuilt the app server", "--actor", "bob", database_url=database
    )
    assert noted.returncode == 0, noted.stderr

    shown = run_cli("incident", "show", incident_id, database_url=database, columns=400)
    assert shown.returncode == 0, shown.stderr
    for fact in ("Enact these continuity plans", "Paper notes from the ward downtime box", "Pharmacy ext 4100",
                 "Restore in this order", "✓ sql-epr-1", "RTO 4h", "Acme rebuilt the app server"):  # fmt: skip
        assert fact in shown.stdout, fact

    refused_close = run_cli("incident", "close", incident_id, database_url=database)
    assert refused_close.returncode == 1
    assert "cannot close incident inc-000001: 3 items are still down (epr-app-1, epr, pharmacy)" in refused_close.stderr

    closed = run_cli("incident", "close", incident_id, "--reason", "handed over to the supplier", database_url=database)
    assert closed.returncode == 0, closed.stderr

    listed = run_cli("incident", "list", "--json", database_url=database)
    (summary,) = json.loads(listed.stdout)["incidents"]
    assert (summary["id"], summary["status"], summary["items_restored"], summary["items_down"]) == (
        incident_id,
        "closed",
        2,
        5,
    )

    html_path, md_path = tmp_path / "review.html", tmp_path / "review.md"
    for path in (html_path, md_path):
        written = run_cli("incident", "review", incident_id, "--out", path, database_url=database)
        assert written.returncode == 0, written.stderr
    parser = _Text()
    parser.feed(html_path.read_text(encoding="utf-8"))
    page = " ".join(" ".join(parser.text).split())
    assert {"summary", "impact", "restore-times", "timeline", "cause"} <= parser.ids
    assert "Post-incident review: EPR database lost" in page
    assert "no rollout: declared by hand" in page
    assert "closed with 3 items still down: handed over to the supplier" in page
    markdown = md_path.read_text(encoding="utf-8")
    assert "| T1 life-critical | 1 | 0 | 0 | Patient record (`epr`) |" in markdown
    assert "Acme rebuilt the app server" in markdown


def test_bad_input_exits_2_with_a_sentence(database: str, ward_file: Path) -> None:
    no_fail = run_cli("incident", "declare", "--estate", ward_file, database_url=database)
    assert no_fail.returncode == 2
    assert "Missing option '--fail'" in no_fail.stderr
    unknown = run_cli("incident", "declare", "--estate", ward_file, "--fail", "supplier:nobody", database_url=database)
    assert unknown.returncode == 2
    assert "failure 'supplier:nobody' names no supplier of estate 'ward'" in unknown.stderr
    missing = run_cli("incident", "show", "inc-000404", database_url=database)
    assert missing.returncode == 2
    assert "incident inc-000404 does not exist" in missing.stderr
    wrong_suffix = run_cli("incident", "review", "inc-000001", "--out", "review.pdf", database_url=database)
    assert wrong_suffix.returncode == 2
    assert "is neither .html nor .md" in wrong_suffix.stderr


def test_the_advanced_2022_demo_shows_impact_plans_and_restore_order(capsys: pytest.CaptureFixture[str]) -> None:
    from ringfence.cli.incidents import demo_incident

    incident_file = SAMPLE / "incidents" / "advanced-2022.yaml"
    scenario = read_with(incident_file, parse_incident_text)
    assert scenario.fail == ("supplier:advanced",)
    demo_incident(SAMPLE / "estate.yaml", incident_file)
    screen = capsys.readouterr().out
    lines = screen.splitlines()
    assert len(lines) <= 50, "the demo's incident fits on one screen"
    flat = " ".join(screen.replace("│", " ").split())
    for fact in (
        "Incident replay: advanced-2022",
        "Failed: supplier:advanced",
        "Down: 2 services (T2 ×1, T3 ×1), 2 assets",
        "Enact these continuity plans, most critical first",
        "Urgent care duty manager 01632 960020",
        "Restore in this order",
    ):
        assert fact in flat, fact
    # NHS 111 (tier 2) comes before the community records (tier 3); Adastra is restored before the services.
    assert flat.index("NHS 111") < flat.index("Community and")
    assert flat.index("adastra, carenotes") < flat.index("community-records, nhs111")
