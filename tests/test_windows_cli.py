"""``ringfence plan`` with change windows: the calendar in text and JSON, and absurd windows refused with exit 2 at
the file, line and field. Runs the real command as a user's script would."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

RINGFENCE = shutil.which("ringfence", path=os.path.dirname(sys.executable))

ESTATE = """\
apiVersion: ringfence/v1
estate: acute
services:
  - {id: epr, tier: 1, requires: [{any: 1, of: [epr-db-1, epr-db-2]}]}
  - {id: pathology, tier: 2, requires: [lims-1]}
assets:
  - {id: epr-db-1, kind: vm, site: city, attrs: {os: rhel-8}, software: [{product: acme/agent, version: "1"}]}
  - {id: epr-db-2, kind: vm, site: north, attrs: {os: rhel-8}, software: [{product: acme/agent, version: "1"}]}
  - {id: lims-1, kind: vm, site: city, attrs: {os: rhel-9}, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-1, kind: endpoint, site: gp-hillview, software: [{product: acme/agent, version: "1"}]}
  - {id: ws-2, kind: endpoint, site: gp-hillview, software: [{product: acme/agent, version: "1"}]}
"""
UPDATE = """\
apiVersion: ringfence/v1
update:
  id: agent-2
  product: acme/agent
  version: "2"
  rings: [1, "100%"]
  bake: 1h
  rollback: reinstall
  timing: {apply: 15m}
  windows:
    - name: servers on Sunday night
      selector: kind=vm
      allow: ["Sun 01:00-05:00"]
    - name: GP practices
      site: gp-hillview
      allow: ["weekdays 19:00-07:00"]
    - service: pathology
      never: ["daily 00:00-02:00"]
  freezes:
    - {name: Christmas, from: 2026-12-19, to: 2027-01-03}
"""


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert RINGFENCE is not None
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    return subprocess.run(
        [RINGFENCE, *map(str, args)], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def files(tmp_path: Path, update: str = UPDATE) -> tuple[Path, Path]:
    (tmp_path / "estate.yaml").write_text(ESTATE)
    (tmp_path / "u.yaml").write_text(update)
    return tmp_path / "estate.yaml", tmp_path / "u.yaml"


def test_plan_shows_when_each_ring_can_start_and_the_earliest_completion(tmp_path: Path) -> None:
    estate, update = files(tmp_path)
    done = run("plan", estate, update, "--start", "2026-12-07T09:00", "--json")
    assert done.returncode == 0, done.stderr
    calendar = json.loads(done.stdout)["calendar"]
    assert calendar["zone"] == "Europe/London"
    rings = calendar["rings"]
    # Each ring starts at or after the ring before it is done, never before its windows open.
    for before, ring in itertools.pairwise(rings):
        if ring["starts_at"] is not None:
            assert ring["ready_at"] == before["done_at"]
            assert ring["starts_at"] >= ring["ready_at"]
    assert calendar["earliest_completion"] == rings[-1]["done_at"]
    text = run("plan", estate, update, "--start", "2026-12-07T09:00")
    assert text.returncode == 0, text.stderr
    assert "Calendar from Mon 7 Dec 2026 09:00 GMT (Europe/London)" in text.stdout


def test_plan_calendar_times_for_a_sunday_night_window(tmp_path: Path) -> None:
    only_servers = (
        UPDATE.split("    - name: GP practices")[0]
        + "  targets: kind=vm\n  freezes:\n    - {name: Christmas, from: 2026-12-19, to: 2027-01-03}\n"
    )
    estate, update = files(tmp_path, only_servers)
    done = run("plan", estate, update, "--start", "2026-12-07T09:00", "--json")
    assert done.returncode == 0, done.stderr
    rings = json.loads(done.stdout)["calendar"]["rings"]
    # Sunday 13 December, 01:00 GMT: the first opening. 15 min install and 1h bake: done at 02:15.
    assert rings[0]["starts_at"] == "2026-12-13T01:00:00+00:00"
    assert rings[0]["done_at"] == "2026-12-13T02:15:00+00:00"
    assert rings[1]["starts_at"] == "2026-12-13T02:15:00+00:00"
    # From inside the Christmas freeze, the first Sunday night after it.
    done = run("plan", estate, update, "--start", "2026-12-20T09:00", "--json")
    assert json.loads(done.stdout)["calendar"]["rings"][0]["starts_at"] == "2027-01-10T01:00:00+00:00"


def test_absurd_windows_and_start_times_exit_2_at_file_line_and_field(tmp_path: Path) -> None:
    estate, update = files(tmp_path, UPDATE.replace("Sun 01:00-05:00", "Sun 01:00-25:00"))
    done = run("plan", estate, update)
    assert done.returncode == 2
    assert f"{update}:13: update.windows[0].allow[0]: '25:00' is not a time of day" in done.stderr
    assert "Traceback" not in done.stderr

    estate, update = files(tmp_path, UPDATE.replace("service: pathology", "service: patholgy"))
    done = run("plan", estate, update)
    assert done.returncode == 2
    assert f"{update}:17: update.windows[2].service: estate 'acute' has no service 'patholgy'" in done.stderr

    estate, update = files(tmp_path, UPDATE.replace("to: 2027-01-03", "to: 2026-01-03"))
    done = run("plan", estate, update)
    assert done.returncode == 2
    assert f"{update}:20: update.freezes[0].to: the freeze ends (2026-01-03) before it starts" in done.stderr

    estate, update = files(tmp_path)
    done = run("plan", estate, update, "--start", "next tuesday")
    assert done.returncode == 2
    assert "--start: 'next tuesday' is not a time" in done.stderr


def test_rollout_create_names_the_line_of_a_window_rule_only_the_estate_refuses(tmp_path: Path) -> None:
    estate, update = files(tmp_path, UPDATE.replace("service: pathology", "service: patholgy"))
    env_home = tmp_path / "home"
    assert RINGFENCE is not None
    done = subprocess.run(
        [RINGFENCE, "rollout", "create", str(estate), str(update), "--dry-run"],
        capture_output=True,
        text=True,
        env={**os.environ, "RINGFENCE_HOME": str(env_home)},
        timeout=300,
        check=False,
    )
    assert done.returncode == 2
    assert f"{update}:17: update.windows[2].service: estate 'acute' has no service 'patholgy'" in done.stderr
