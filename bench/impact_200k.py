"""`ringfence impact --json` on a 200,000-asset estate, as a whole process, against reading the same JSON.

Target ([core] issue): the whole `ringfence impact ESTATE.json --fail REF --json` process takes at most twice
as long as `python -c "import json; json.load(open(F))"` on the same file. Both are timed as processes, wall
clock, best of 3, output discarded. Two failures are timed: a busy host (a member of the largest cluster:
its loss alone takes nothing down, so the output is small) and the supplier that provides the most assets
(its loss takes down most of the estate, so the output is the largest there is). The YAML file is timed
for information. A worker breaks the time down in-process: read, parse and validate (one pass for JSON, as
the command does it), compile, query, JSON.

    .venv/bin/python bench/impact_200k.py [--assets N] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import common

NAME = "impact_200k"
NOMINAL_ASSETS = 200_000
TARGET_RATIO = 2.0
STARTUP_IMPORTS = (
    "from ringfence.cli import main; main._register(); "
    "import ringfence.files.disk, ringfence.core.graph, ringfence.core.impact"
)


def pick_failures(estate: Any) -> dict[str, str]:
    """A busy host (in the cluster with the most VMs) and the supplier that provides the most assets."""
    vms_per_cluster = Counter(
        a.attrs.get("cluster") for a in estate.assets if a.kind == "vm" and a.attrs.get("cluster") is not None
    )
    hosts = [a for a in estate.assets if a.kind == "host"]
    busiest = vms_per_cluster.most_common(1)[0][0] if vms_per_cluster else None
    host = next((a for a in hosts if a.attrs.get("cluster") == busiest), hosts[0] if hosts else estate.assets[0])
    provided: Counter[str] = Counter()
    for asset in estate.assets:
        for supplier in {asset.supplier, *(item.supplier_id for item in asset.software)} - {None}:
            provided[supplier] += 1
    supplier = provided.most_common(1)[0][0]
    return {"host": f"asset:{host.id}", "supplier": f"supplier:{supplier}"}


def worker(path: Path) -> dict[str, Any]:
    """Every phase of the command in this one process, timed separately (wall clock and CPU)."""
    from ringfence.core.estate import parse_estate_text
    from ringfence.core.graph import compile_estate
    from ringfence.core.impact import compute_blast_radius
    from ringfence.files.disk import read_text

    phases: dict[str, dict[str, float]] = {}
    text, wall, cpu = common.cpu_timed(read_text, path)
    phases["read"] = {"wall": wall, "cpu": cpu}
    # As `ringfence impact` does it: JSON text is parsed and validated by pydantic in one pass.
    estate, wall, cpu = common.cpu_timed(parse_estate_text, text, str(path))
    phases["parse + validate"] = {"wall": wall, "cpu": cpu}
    graph, wall, cpu = common.cpu_timed(compile_estate, estate)
    phases["compile"] = {"wall": wall, "cpu": cpu}
    queries: dict[str, dict[str, Any]] = {}
    for label, ref in pick_failures(estate).items():
        radius, wall, cpu = common.cpu_timed(compute_blast_radius, graph, [ref])
        document = {
            "failed": list(radius.failed),
            "services_down": [{"id": s.id, "tier": s.tier} for s in radius.services_down],
            "assets_down": list(radius.assets_down),
            "by_tier": {str(t): n for t, n in sorted(radius.by_tier.items())},
        }
        _, json_wall, json_cpu = common.cpu_timed(json.dumps, document, separators=(",", ":"))
        queries[label] = {
            "ref": ref,
            "query": {"wall": wall, "cpu": cpu},
            "json": {"wall": json_wall, "cpu": json_cpu},
            "assets_down": len(radius.assets_down),
            "services_down": len(radius.services_down),
        }
    return {
        "phases": phases,
        "queries": queries,
        "assets": len(estate.assets),
        "services": len(estate.services),
        "file_mb": path.stat().st_size / 1e6,
        "peak_rss_mb": common.peak_rss_bytes() / 1e6,
    }


def cpu_note(times: common.ProcessTimes) -> str:
    return common.cpu_text(times.best_cpu)


def run(args: argparse.Namespace) -> common.Report:
    repeat = 1 if args.quick else 3
    report = common.Report(
        NAME,
        f"ringfence impact --json, {args.assets:,} assets (whole processes, wall clock, best of {repeat})",
        args.assets,
        NOMINAL_ASSETS,
        args.seed,
        args.quick,
    )
    script = Path(__file__).resolve()
    with common.work_directory(args.workdir) as workdir:
        files = common.estate_files(args.assets, args.seed, workdir, ("json", "yaml"), log=common.log)
        json_file, yaml_file = files["json"], files["yaml"]

        common.log("breaking the time down in-process…")
        runs = [common.run_worker(script, [str(json_file)]) for _ in range(repeat)]
        failures = {label: q["ref"] for label, q in runs[0]["queries"].items()}

        common.log("timing whole processes…")
        ringfence = common.ringfence_command()
        commands: dict[str, list[str]] = {
            "json.load": [sys.executable, "-c", f"import json; json.load(open({str(json_file)!r}))"],
            # What every command pays before it reads a byte: the interpreter and the modules `impact` imports.
            "start-up": [sys.executable, "-c", STARTUP_IMPORTS],
        }
        for label, ref in failures.items():
            commands[label] = [*ringfence, "impact", str(json_file), "--fail", ref, "--json"]
        times = common.time_processes(commands, repeat)
        baseline = times["json.load"]
        report.add(
            "python: json.load of the JSON file",
            baseline.best,
            "s",
            note=f"{runs[0]['file_mb']:,.0f} MB; {cpu_note(baseline)}",
        )
        report.add("start-up: interpreter and imports", times["start-up"].best, "s", note=cpu_note(times["start-up"]))
        for label, ref in failures.items():
            query = runs[0]["queries"][label]
            what = (
                f"down: {query['assets_down']:,} assets, {query['services_down']:,} services; {cpu_note(times[label])}"
            )
            report.add(f"ringfence impact JSON --fail {ref}", times[label].best, "s", note=what)
            report.add(
                f"  ratio to json.load ({label})",
                times[label].best / baseline.best,
                "×",
                target=TARGET_RATIO,
                note=f"CPU-time ratio {times[label].best_cpu / baseline.best_cpu:.2f}×",
            )

        common.log("timing the YAML file (once: information only)…")
        yaml_times = common.time_processes(
            {
                "yaml.load": [
                    sys.executable,
                    "-c",
                    f"import yaml; yaml.load(open({str(yaml_file)!r}), Loader=yaml.CSafeLoader)",
                ],
                "impact": [*ringfence, "impact", str(yaml_file), "--fail", failures["host"], "--json"],
            },
            1,
        )
        yaml_mb = yaml_file.stat().st_size / 1e6
        report.add(
            "python: yaml.load (C loader) of the YAML file",
            yaml_times["yaml.load"].best,
            "s",
            note=f"{yaml_mb:,.0f} MB; {cpu_note(yaml_times['yaml.load'])}",
        )
        report.add(
            f"ringfence impact YAML --fail {failures['host']}",
            yaml_times["impact"].best,
            "s",
            note=f"information; {yaml_times['impact'].best / baseline.best:.1f}× json.load of the JSON; "
            + cpu_note(yaml_times["impact"]),
        )

        # The in-process breakdown: per phase, the best of the workers.
        def best(get: Any) -> tuple[float, float]:
            return min(get(r)["wall"] for r in runs), min(get(r)["cpu"] for r in runs)

        for phase in ("read", "parse + validate", "compile"):
            wall, cpu = best(lambda r, phase=phase: r["phases"][phase])
            report.add(f"in-process: {phase}", wall, "s", note=common.cpu_text(cpu))
        for label, ref in failures.items():
            wall, cpu = best(lambda r, label=label: r["queries"][label]["query"])
            report.add(f"in-process: query {ref}", wall, "s", note=common.cpu_text(cpu))
            wall, cpu = best(lambda r, label=label: r["queries"][label]["json"])
            report.add(f"in-process: JSON of the {label} answer", wall, "s", note=common.cpu_text(cpu))
        report.add("peak memory (in-process worker)", max(r["peak_rss_mb"] for r in runs), "MB")
        report.details = {
            "files_mb": {"json": runs[0]["file_mb"], "yaml": yaml_mb},
            "processes": {name: asdict(t) for name, t in times.items()},
            "yaml_processes": {name: asdict(t) for name, t in yaml_times.items()},
            "failures": failures,
            "breakdown_runs": runs,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_arguments(parser, NOMINAL_ASSETS)
    args = parser.parse_args()
    if args.worker is not None:
        common.emit(worker(Path(args.worker[0])))
        return
    common.finish(run(args))


if __name__ == "__main__":
    main()
