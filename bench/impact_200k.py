"""`ringfence impact --json` on a 200,000-asset estate, as a whole process, against reading the same JSON.

Target ([core] issue): the whole `ringfence impact ESTATE.json --fail REF --json` process takes at most twice
as long as `python -c "import json; json.load(open(F))"` on the same file. Both are timed as processes, wall
clock, best of 3, output discarded. Two failures are timed: a busy host (a member of the largest cluster:
its loss alone takes nothing down, so the output is small) and the supplier that provides the most assets
(its loss takes down most of the estate, so the output is the largest there is). The YAML file is timed
for information. A worker breaks the time down in-process: read, parse, validate, compile, query, JSON.

    .venv/bin/python bench/impact_200k.py [--assets N] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import common

NAME = "impact_200k"
NOMINAL_ASSETS = 200_000
TARGET_RATIO = 2.0
STARTUP_IMPORTS = (
    "from ringfence.cli import main; main._register(); import ringfence.files, ringfence.graph, ringfence.impact"
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
    """Every phase of the command in this one process, timed separately."""
    from ringfence.estate import load_document_text, parse_estate_document
    from ringfence.files import read_text
    from ringfence.graph import compile_estate
    from ringfence.impact import compute_blast_radius

    started = time.perf_counter()
    text, t_read = common.timed(read_text, path)
    data, t_parse = common.timed(load_document_text, text, str(path))
    estate, t_validate = common.timed(parse_estate_document, data, str(path))
    graph, t_compile = common.timed(compile_estate, estate)
    failures = pick_failures(estate)
    queries: dict[str, dict[str, Any]] = {}
    for label, ref in failures.items():
        radius, t_query = common.timed(compute_blast_radius, graph, [ref])
        document = {
            "failed": list(radius.failed),
            "services_down": [{"id": s.id, "tier": s.tier} for s in radius.services_down],
            "assets_down": list(radius.assets_down),
            "by_tier": {str(t): n for t, n in sorted(radius.by_tier.items())},
        }
        _, t_json = common.timed(json.dumps, document, separators=(",", ":"))
        queries[label] = {
            "ref": ref,
            "query": t_query,
            "json": t_json,
            "assets_down": len(radius.assets_down),
            "services_down": len(radius.services_down),
        }
    return {
        "read": t_read,
        "parse": t_parse,
        "validate": t_validate,
        "compile": t_compile,
        "in_process_total": time.perf_counter() - started,
        "queries": queries,
        "assets": len(estate.assets),
        "services": len(estate.services),
        "file_mb": path.stat().st_size / 1e6,
        "peak_rss_mb": common.peak_rss_bytes() / 1e6,
    }


def run(args: argparse.Namespace) -> common.Report:
    repeat = 1 if args.quick else 3
    report = common.Report(
        NAME,
        f"ringfence impact --json, {args.assets:,} assets (best of {repeat}, wall clock, whole processes)",
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
        best = {phase: min(r[phase] for r in runs) for phase in ("read", "parse", "validate", "compile")}
        failures = {label: q["ref"] for label, q in runs[0]["queries"].items()}

        common.log("timing whole processes…")
        ringfence = common.ringfence_command()
        baseline, baseline_all = common.time_process(
            [sys.executable, "-c", f"import json; json.load(open({str(json_file)!r}))"], repeat
        )
        # What every command pays before it reads a byte: the interpreter and the modules `impact` imports.
        startup, _ = common.time_process([sys.executable, "-c", STARTUP_IMPORTS], repeat)
        report.add("python: json.load of the JSON file", baseline, "s", note=f"{runs[0]['file_mb']:,.0f} MB")
        report.add("start-up: interpreter and imports", startup, "s", note="Typer, Rich, pydantic, numpy, ringfence")
        process_times: dict[str, Any] = {}
        for label, ref in failures.items():
            query = runs[0]["queries"][label]
            seconds, all_times = common.time_process(
                [*ringfence, "impact", str(json_file), "--fail", ref, "--json"], repeat
            )
            process_times[label] = {"ref": ref, "best": seconds, "all": all_times}
            what = f"down: {query['assets_down']:,} assets, {query['services_down']:,} services"
            report.add(f"ringfence impact JSON --fail {ref}", seconds, "s", note=what)
            report.add(f"  ratio to json.load ({label})", seconds / baseline, "×", target=TARGET_RATIO)
        yaml_repeat = 1 if args.quick else min(repeat, 2)
        yaml_seconds, yaml_all = common.time_process(
            [*ringfence, "impact", str(yaml_file), "--fail", failures["host"], "--json"], yaml_repeat
        )
        yaml_baseline, _ = common.time_process(
            [
                sys.executable,
                "-c",
                f"import yaml; yaml.load(open({str(yaml_file)!r}), Loader=yaml.CSafeLoader)",
            ],
            yaml_repeat,
        )
        yaml_mb = yaml_file.stat().st_size / 1e6
        report.add("python: yaml.load (C loader) of the YAML file", yaml_baseline, "s", note=f"{yaml_mb:,.0f} MB")
        report.add(
            f"ringfence impact YAML --fail {failures['host']}",
            yaml_seconds,
            "s",
            note=f"information only; {yaml_seconds / baseline:.1f}× json.load of the JSON",
        )

        # The in-process breakdown, best of the workers per phase.
        for phase in ("read", "parse", "validate", "compile"):
            report.add(f"in-process: {phase}", best[phase], "s")
        for label, ref in failures.items():
            q = min((r["queries"][label] for r in runs), key=lambda q: q["query"])
            report.add(f"in-process: query {ref}", q["query"], "s")
            report.add(f"in-process: JSON of {label} answer", q["json"], "s")
        report.add("peak memory (in-process worker)", max(r["peak_rss_mb"] for r in runs), "MB")
        report.details = {
            "files": {"json_mb": runs[0]["file_mb"], "yaml_mb": yaml_mb},
            "json_load": {"best": baseline, "all": baseline_all},
            "startup": startup,
            "impact_json": process_times,
            "impact_yaml": {"ref": failures["host"], "best": yaml_seconds, "all": yaml_all},
            "yaml_load": yaml_baseline,
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
