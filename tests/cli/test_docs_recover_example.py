"""docs/cli.md's ``recover --parallel`` example is the command's real output on the bundled sample.

The example went stale once (the restore order changed, the page did not). Here the steps the page shows,
and the RTO it says is at risk, are read from the page and compared with what the command computes now.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ringfence.core.durations import humanize_duration
from ringfence.files.disk import sample_estate_path

from .conftest import CliRunner

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
COMMAND = "ringfence recover estate.yaml --fail pstore-city --parallel 4 --step-time 30m --export recovery.md"


def _documented_steps() -> dict[int, list[str]]:
    text = CLI_DOC.read_text(encoding="utf-8")
    start = text.index(f"$ {COMMAND}")
    example = text[start : text.index("```", start)]
    rows = re.findall(r"^│\s+(\d+) │\s+\d+ │ ([^│]+?)\s*│$", example, re.MULTILINE)
    assert rows, "the example's restore table was not found"
    return {int(step): [i.strip() for i in items.split(",")] for step, items in rows}


def test_the_parallel_recover_example_matches_the_command(cli: CliRunner, tmp_path: Path) -> None:
    done = cli(
        "recover", sample_estate_path(), "--fail", "pstore-city", "--parallel", "4", "--step-time", "30m", "--json"
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    computed = {s["step"]: s["restore"] for s in document["steps"]}
    assert _documented_steps() == computed
    text = CLI_DOC.read_text(encoding="utf-8")
    for risk in document["rto_at_risk"]:
        rto, restored = humanize_duration(risk["rto"]), humanize_duration(risk["restored_by"])
        line = f"`{risk['service']}` (tier {risk['tier']}): RTO {rto}, restored after about {restored}"
        assert line in text, line
    words = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
    assert f"the same failure takes {words[len(computed) - 1]} steps" in text
