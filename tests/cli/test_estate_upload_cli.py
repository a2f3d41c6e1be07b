"""``ringfence estate upload`` and ``estate list``: the real command on a real (SQLite) database in a per-test home."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from ringfence.service.estates import estate_versions, list_estates
from ringfence.store.db import make_engine

from .conftest import CliRunner

WARD = """\
apiVersion: ringfence/v1
estate: ward
services:
  - {id: ehr, name: Electronic health record, tier: 1, requires: [db-1]}
  - {id: lab, tier: 4, requires: [{any: 2, where: "attrs.os=solaris"}]}
assets:
  - {id: db-1, kind: vm, attrs: {os: linux}}
"""
"""Holds, with warnings: among them, the lab needs two Solaris machines and there are none (line 5)."""

BROKEN = WARD.replace("kind: vm", "kind: mainframe")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ringfence home for the command (its default database lives there)."""
    monkeypatch.setenv("RINGFENCE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RINGFENCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("RINGFENCE_ACTOR", "estate-team")
    return tmp_path / "home"


@pytest.fixture
def engine(home: Path) -> Iterator[Engine]:
    found = make_engine(f"sqlite:///{home / 'ringfence.db'}")
    yield found
    found.dispose()


def test_a_file_that_does_not_hold_exits_2_with_the_checks_lines_and_stores_nothing(
    cli: CliRunner, tmp_path: Path, home: Path
) -> None:
    (tmp_path / "ward.yaml").write_text(BROKEN, encoding="utf-8")
    checked = cli("check", "ward.yaml", cwd=tmp_path)
    uploaded = cli("estate", "upload", "ward.yaml", cwd=tmp_path)
    assert uploaded.returncode == 2
    assert checked.returncode == 2
    problems = [line for line in uploaded.stderr.splitlines() if line.startswith("error: ")]
    assert problems == [line for line in checked.stderr.splitlines() if line.startswith("error: ")]
    assert problems[0].startswith("error: ward.yaml:7: assets[0].kind: asset 'db-1': 'mainframe' is not allowed")
    assert "Traceback" not in uploaded.stderr
    assert not (home / "ringfence.db").exists()  # checked before any database is opened


def test_an_upload_is_stored_once_as_a_version_with_its_warnings(
    cli: CliRunner, tmp_path: Path, home: Path, engine: Engine
) -> None:
    (tmp_path / "ward.yaml").write_text(WARD, encoding="utf-8")
    first = cli("estate", "upload", "ward.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    [version] = estate_versions(engine, "ward")
    assert version.created_by == "estate-team"
    assert first.stdout.strip() == f"Stored estate 'ward' as version {version.id} (1 asset, 2 services)."
    assert "warning: ward.yaml:5: services[1].requires" in first.stderr
    assert str(home / "ringfence.db") in first.stderr  # a command that writes names its database

    again = cli("estate", "upload", "ward.yaml", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["estate"] == "ward"
    assert document["version"] == version.id
    assert document["created"] is False
    assert any(w.startswith("ward.yaml:5: services[1].requires") for w in document["warnings"])
    assert len(estate_versions(engine, "ward")) == 1

    (tmp_path / "ward.yaml").write_text(WARD.replace("tier: 4", "tier: 3"), encoding="utf-8")
    changed = cli("estate", "upload", "ward.yaml", "--actor", "olga", cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    versions = estate_versions(engine, "ward")
    assert [v.created_by for v in versions] == ["estate-team", "olga"]

    listed = cli("estate", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["estates"]
    assert (row["name"], row["versions"], row["current"]) == ("ward", 2, versions[-1].id)
    assert [e.name for e in list_estates(engine)] == ["ward"]


def test_a_missing_file_is_one_sentence_and_exit_2(cli: CliRunner, tmp_path: Path, home: Path) -> None:
    run = cli("estate", "upload", "nowhere.yaml", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == "error: nowhere.yaml: no such file"
