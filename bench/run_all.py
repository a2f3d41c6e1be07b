"""Run every benchmark, one at a time, then print one summary table of all their targets.

Each benchmark prints its own table and writes bench/results/<name>.json; this script reads those files
back, so the summary shows exactly what was recorded. The generated estates are shared between the
benchmarks through one work directory (the million-asset estate is generated once).

    .venv/bin/python bench/run_all.py [--quick] [--assets N] [--only NAME ...] [--skip-yaml] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import common

BENCHMARKS = ("impact_200k", "scale_1m", "plan_1m", "recover_1m", "safety_drill")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and queries")
    parser.add_argument("--assets", type=int, default=None, help="one size for every benchmark (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--skip-yaml", action="store_true", help="scale_1m: do not write or load YAML")
    parser.add_argument("--workdir", type=Path, default=None, help="keep generated estates here")
    args = parser.parse_args()

    durations: dict[str, float] = {}
    with common.work_directory(args.workdir) as workdir:
        for name in args.only:
            argv = [
                sys.executable,
                str(common.BENCH_DIR / f"{name}.py"),
                "--seed",
                str(args.seed),
                "--workdir",
                str(workdir),
            ]
            if args.quick:
                argv.append("--quick")
            if args.assets is not None:
                argv += ["--assets", str(args.assets)]
            if args.skip_yaml and name == "scale_1m":
                argv.append("--skip-yaml")
            common.log(f"== {name}")
            start = time.perf_counter()
            done = subprocess.run(argv, check=False)
            durations[name] = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"{name} failed with status {done.returncode}")
    summarise(args.only, durations)


def summarise(names: list[str], durations: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ringfence benchmarks: summary of the targets", title_justify="left")
    table.add_column("benchmark")
    table.add_column("assets", justify="right")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("")
    table.add_column("note", overflow="fold")
    missed = 0
    for name in names:
        document = json.loads((common.RESULTS_DIR / f"{name}.json").read_text())
        for raw in document["rows"]:
            row = common.Row(raw["metric"], raw["value"], raw["unit"], raw["target"], raw["note"])
            if row.target is None:
                continue
            missed += row.met is False
            table.add_row(
                name,
                f"{document['assets']:,}",
                row.metric.strip(),
                common.format_value(row.value, row.unit),
                "≤ " + common.format_value(row.target, row.unit),
                common.status_text(row),
                row.note,
            )
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    console.print(table)
    took = ", ".join(f"{n} {s:.0f} s" for n, s in durations.items())
    console.print(f"{missed} target(s) missed. Wall time: {took}. Details: bench/results/*.json")


if __name__ == "__main__":
    main()
