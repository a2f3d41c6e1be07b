"""docs/guide-your-own-estate.md runs: its files are written and its commands run, in the guide's order.

The guide promises a newcomer that every command in it works. Here the guide itself is the script: each
```` ```yaml file=NAME ```` or ```` ```csv file=NAME ```` block is saved as NAME, the ```` ```yaml
splice=NAME ```` block replaces ``services: []`` in NAME (what the guide asks the reader to do by hand),
and each ``ringfence`` line of a ```` ```sh ```` block runs as written and must succeed. ``cp`` lines copy
from the repository, as a reader in a checkout would.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "guide-your-own-estate.md"
RINGFENCE = shutil.which("ringfence", path=os.path.dirname(sys.executable))
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def guide_blocks() -> list[tuple[str, str, str]]:
    """Every fenced block of the guide: (language, the rest of its info string, its text)."""
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))]


def test_the_guide_walks_from_an_inventory_to_a_dry_rollout() -> None:
    commands = [line for lang, _, text in guide_blocks() if lang == "sh" for line in text.splitlines()]
    verbs = {" ".join(shlex.split(c, comments=True)[1:3]) for c in commands if c.startswith("ringfence ")}
    for step in ("import ansible", "import csv", "check estate.yaml", "plan estate.yaml", "drill estate.yaml"):
        assert step in verbs, step
    assert any("rollout create" in c and "--dry-run" in c for c in commands)


@pytest.mark.slow
def test_every_guide_command_runs_in_order(tmp_path: Path) -> None:
    assert RINGFENCE is not None
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    env["RINGFENCE_HOME"] = str(tmp_path / "home")
    ran = 0
    for lang, info, text in guide_blocks():
        target = dict(part.split("=", 1) for part in info.split() if "=" in part)
        if "file" in target:
            (tmp_path / target["file"]).write_text(text, encoding="utf-8")
        elif "splice" in target:
            estate = tmp_path / target["splice"]
            before = estate.read_text(encoding="utf-8")
            assert before.count("services: []\n") == 1, "the imported estate has no empty services list to fill"
            estate.write_text(before.replace("services: []\n", text), encoding="utf-8")
        elif lang == "sh":
            for line in text.splitlines():
                words = shlex.split(line, comments=True)
                if not words or words[0] == "pip":
                    continue  # this test runs in the installed development environment
                if words[0] == "cp":
                    shutil.copy(REPO / words[1], tmp_path / words[2])
                    continue
                assert words[0] == "ringfence", f"the guide runs {line!r}, which this test does not know"
                done = subprocess.run(
                    [RINGFENCE, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
                )
                assert done.returncode == 0, f"{line} exited {done.returncode}: {done.stderr[-1500:]}"
                ran += 1
    assert ran >= 10
    # What the guide says the commands produce.
    for written in ("estate.yaml", "from-csv.yaml", "drill.html", "recovery.md"):
        assert (tmp_path / written).is_file(), written
    _the_guide_says_what_its_estate_shows(tmp_path)
    # "on this estate it adds a ring so that two of the three EPR app servers stay up"
    plan = subprocess.run(
        [RINGFENCE, "plan", "estate.yaml", "falcon-7.16.yaml", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "redundancy of epr" in plan.stdout


def _the_guide_says_what_its_estate_shows(folder: Path) -> None:
    """The guide's sentences about its own estate, checked with the library on the files it made."""
    from ringfence.core.drills import run_drill_text
    from ringfence.core.graph import compile_estate
    from ringfence.core.impact import compute_blast_radius
    from ringfence.files.disk import read_estate

    graph = compile_estate(read_estate(folder / "estate.yaml"))
    # "losing four of the six prod-b hosts takes the EPR down ... while Active Directory survives on dc1"
    radius = compute_blast_radius(graph, ["esx-b01", "esx-b02", "esx-b03", "esx-b04"])
    assert [s.id for s in radius.services_down] == ["epr"]
    assert "dc1" not in radius.assets_down
    # "The rings lose two canaries that nothing rests on, and no service; all at once loses every Windows
    # server and both tier-1 services."
    scenario = folder / "falcon-bad-content.yaml"
    drill = run_drill_text(graph, scenario.read_text(encoding="utf-8"), str(scenario))
    results = {r.strategy: r for r in drill.results}
    assert (len(results["ringfence"].failed), results["ringfence"].services_down) == (2, ())
    assert len(results["all-at-once"].failed) == drill.targets
    assert sorted(s.id for s in results["all-at-once"].services_down) == ["active-directory", "epr"]
