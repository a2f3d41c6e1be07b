"""`ringfence impact` does not blame a failure for what was down before it; `check` still locates every warning.

Run as a user runs them: the installed command in its own process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import CliRunner

# vm-2 needs 2 hosts of cluster d and only h4 is one, so vm-2 and the service `old` that needs it are down before
# anything fails; ehr needs vm-1, which needs 2 of the three hosts of cluster c.
ESTATE = """\
apiVersion: ringfence/v1
estate: where-groups
services:
  - {id: ehr, tier: 1, rto: 1h, continuity: paper, requires: [vm-1]}
  - {id: old, tier: 4, rto: 1d, continuity: paper, requires: [vm-2]}
assets:
  - {id: h1, kind: host, attrs: {cluster: c}}
  - {id: h2, kind: host, attrs: {cluster: c}}
  - {id: h3, kind: host, attrs: {cluster: c}}
  - {id: h4, kind: host, attrs: {cluster: d}}
  - {id: vm-1, kind: vm, requires: [{any: 2, where: "kind=host,attrs.cluster=c"}]}
  - {id: vm-2, kind: vm, requires: [{any: 2, where: "kind=host,attrs.cluster=d"}]}
"""


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    path = tmp_path / "estate.yaml"
    path.write_text(ESTATE)
    return path


def test_text_marks_what_was_already_down(cli: CliRunner, estate: Path) -> None:
    done = cli("impact", estate, "--fail", "h1", "--fail", "h2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "If h1, h2 fail:"
    assert any(line.endswith("1 down: ehr") for line in lines), done.stdout
    assert any(line.endswith("1 down: old (already down)") for line in lines), done.stdout
    assert "4 assets down, 1 of them already down before the failure." in lines
    assert "h1, h2, vm-1, vm-2 (already down)" in lines
    assert any(line.startswith("(already down): down before anything failed") for line in lines)


def test_text_says_when_the_failure_takes_down_no_service_that_was_up(cli: CliRunner, estate: Path) -> None:
    done = cli("impact", estate, "--fail", "h4")
    assert done.returncode == 0, done.stderr
    assert "No service that was up goes down." in done.stdout.splitlines()
    assert "old (already down)" in done.stdout


def test_text_without_anything_already_down_has_no_mark(cli: CliRunner, estate: Path) -> None:
    estate.write_text(ESTATE.replace("attrs.cluster=d", "attrs.cluster=c"))
    done = cli("impact", estate, "--fail", "h1")
    assert done.returncode == 0, done.stderr
    assert "already down" not in done.stdout
    assert done.stdout.splitlines()[0] == "If h1 fails:"


def test_json_names_what_was_already_down(cli: CliRunner, estate: Path) -> None:
    done = cli("impact", estate, "--fail", "h1", "--fail", "h2", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["already_down"] == ["old", "vm-2"]
    assert [s["id"] for s in document["services_down"]] == ["ehr", "old"]
    assert document["by_tier"] == {"1": 1, "2": 0, "3": 0, "4": 1}


def test_check_locates_every_warning_of_an_indented_json_estate(cli: CliRunner, tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(ESTATE)
    for service in data["services"]:
        del service["rto"]
    path = tmp_path / "estate.json"
    path.write_text(json.dumps(data, indent=2))
    done = cli("check", path, "--json")
    assert done.returncode == 0, done.stderr
    warnings = json.loads(done.stdout)["warnings"]
    text = path.read_text().splitlines()
    # Each service's warning is on the line of its opening brace; the where-group's on vm-2's "requires".
    ehr, old = (n + 1 for n, line in enumerate(text) if line == "    {" and n < text.index('  "assets": ['))
    requires = max(n + 1 for n, line in enumerate(text) if '"requires"' in line)
    assert warnings == [
        f"{path}:{ehr}: services[0]: service 'ehr' (tier 1) has no rto; recovery cannot plan for it",
        f"{path}:{old}: services[1]: service 'old' (tier 4) has no rto; recovery cannot plan for it",
        f"{path}:{requires}: assets[5].requires: asset 'vm-2' needs any 2 where kind=host,attrs.cluster=d, "
        "but only 1 match: it is down until more do",
    ]
