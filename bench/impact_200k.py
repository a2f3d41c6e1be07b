"""`ringfence impact --json` on 200,000-asset estates of every shape, as a whole process, against reading the file.

Targets ([core] and [fit] issues), on each shape of ``shapes.py`` (the generator's trust, many distinct any-groups,
warnings and missing RTOs on every service, an acute trust): the whole `ringfence impact ESTATE.json --fail REF
--json` process takes at most twice as long as `python -c "import json; json.load(open(F))"` on the same file,
and its peak memory is at most 1 GB. Both are timed as processes, wall clock, the median of 5 runs (``--repeat``),
interleaved so that the machine's load falls on both alike, output discarded; the CPU time (user + system) of
each, less moved by other work on the machine, is given beside it, and the best run in the JSON.

Two failures per shape: a busy host (a member of the largest cluster: its loss alone takes little down, so the
output is small) and the supplier that provides the most assets (its loss takes down most of the estate: the
largest output there is). The peak memory of each process is its own high-water mark (``ru_maxrss`` of that child,
read with ``wait4``); estate files are written by a child process first, so that no child inherits a large parent's
mark.

A worker per shape breaks the time down in-process (read, parse and validate in one pass as the command does
it, compile, query, JSON), and times what `check` adds on that shape: finding the line of every warning. The
generator shape's YAML file is timed once, for information (``--no-yaml`` skips it).

    .venv/bin/python bench/impact_200k.py [--assets N] [--quick] [--repeat N] [--workdir DIR] [--shapes NAME ...]
        [--no-yaml]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common
import shapes

NAME = "impact_200k"
NOMINAL_ASSETS = 200_000
TARGET_RATIO = 2.0
TARGET_PEAK_MB = 1000.0
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


# ------------------------------------------------------------------------------------------ workers


def worker(path: Path, repeat: int) -> dict[str, Any]:
    """Every phase of the command in this one process, timed separately (wall clock and CPU); each query
    ``repeat`` times, its best kept."""
    from ringfence.core.documents import impact_document
    from ringfence.core.estate import locate_problems, parse_estate_text
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
        timings = [common.cpu_timed(compute_blast_radius, graph, [ref]) for _ in range(repeat)]
        radius = timings[0][0]
        wall, cpu = min(t[1] for t in timings), min(t[2] for t in timings)
        # As the command does it: the document serialised by pydantic straight to JSON text.
        _, json_wall, json_cpu = common.cpu_timed(lambda r: impact_document(r).model_dump_json(), radius)
        queries[label] = {
            "ref": ref,
            "query": {"wall": wall, "cpu": cpu},
            "json": {"wall": json_wall, "cpu": json_cpu},
            "assets_down": len(radius.assets_down),
            "services_down": len(radius.services_down),
            "already_down": len(radius.already_down),
        }
    # What `check` adds: the line of every warning it shows (impact shows none, so pays nothing for them).
    warnings = [*estate.warnings, *graph.warnings]
    located, wall, cpu = common.cpu_timed(locate_problems, warnings, text)
    assert all(w.line is not None for w in located), "every warning of a generated estate has a line"
    return {
        "file": str(path),
        "phases": phases,
        "queries": queries,
        "warnings": len(warnings),
        "locate_warnings": {"wall": wall, "cpu": cpu},
        "assets": len(estate.assets),
        "services": len(estate.services),
        "file_mb": path.stat().st_size / 1e6,
        "peak_rss_mb": common.peak_rss_bytes() / 1e6,
    }


def write_files(workdir: Path, assets: int, seed: int, with_yaml: bool, shape_names: Sequence[str]) -> None:
    """Write every shape's JSON file (and the generator's YAML, unless skipped) in this, a child process."""
    for shape in shape_names:
        formats = ("json", "yaml") if shape == "generator" and with_yaml else ("json",)
        shapes.shape_files(shape, assets, seed, workdir, formats)


# ------------------------------------------------------------------------------- whole processes


@dataclass(frozen=True)
class ProcessRuns(common.ProcessTimes):
    """Wall-clock seconds, CPU seconds and peak resident memory (MB) of each run of one command."""

    peak_mb: list[float]

    @property
    def peak(self) -> float:
        return max(self.peak_mb)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def run_once(argv: Sequence[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one run of ``argv``, from that child's own rusage."""
    start = time.perf_counter()
    child = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(
            f"benchmark command failed with status {child.returncode}: {' '.join(argv)}\n"
            + stderr.decode(errors="replace")[-2000:]
        )
    # ru_maxrss is in kilobytes on Linux.
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1e3


def time_processes(commands: Mapping[str, Sequence[str]], repeat: int) -> dict[str, ProcessRuns]:
    """Every command ``repeat`` times, interleaved (A, B, C, A, B, C…), as ``common.time_processes``."""
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            runs[name].append(run_once(argv))
    return {name: ProcessRuns(*(list(column) for column in zip(*done, strict=True))) for name, done in runs.items()}


def cpu_note(times: ProcessRuns) -> str:
    return f"{common.cpu_text(times.median_cpu)} (median); best wall {times.best:.3f} s"


# ----------------------------------------------------------------------------------------- report


def run(args: argparse.Namespace) -> common.Report:
    repeat = 1 if args.quick else args.repeat
    report = common.Report.of_run(
        NAME,
        f"ringfence impact --json, {args.assets:,} assets, {len(args.shapes)} estate shapes "
        f"(whole processes, wall clock, median of {repeat})",
        args,
        NOMINAL_ASSETS,
    )
    script = Path(__file__).resolve()
    ringfence = common.ringfence_command()
    with tempfile.TemporaryDirectory(prefix="ringfence-bench-") as tmp:
        # shapes.run_workers writes a missing file in this process; write them in a child first instead, so this
        # process stays small and no measured child inherits a large high-water mark from it.
        args.workdir = args.workdir or Path(tmp)
        args.workdir.mkdir(parents=True, exist_ok=True)
        common.log("estate files (written once, by a child process)…")
        yaml = "json-only" if args.no_yaml else "yaml"
        common.run_worker(script, ["files", str(args.workdir), str(args.assets), str(args.seed), yaml, *args.shapes])

        common.log("start-up of the interpreter and the modules `impact` imports…")
        startup = time_processes({"start-up": [sys.executable, "-c", STARTUP_IMPORTS]}, repeat)["start-up"]
        report.add(
            "start-up: interpreter and imports (every shape pays it)", startup.median, "s", note=cpu_note(startup)
        )
        processes: dict[str, dict[str, Any]] = {}

        def add_rows(shape: str, result: dict[str, Any]) -> None:
            path = result["file"]
            commands: dict[str, list[str]] = {
                "json.load": [sys.executable, "-c", f"import json; json.load(open({path!r}))"]
            }
            for label, query in result["queries"].items():
                commands[label] = [*ringfence, "impact", path, "--fail", query["ref"], "--json"]
            common.log(f"timing whole processes ({shape})…")
            times = time_processes(commands, repeat)
            processes[shape] = {name: asdict(t) for name, t in times.items()}
            add_shape_rows(report, shape, result, times)

        results = shapes.run_workers(script, args, repeat, "read, parse, compile, query, locate warnings…", add_rows)

        yaml_times: dict[str, Any] = {}
        if "generator" in args.shapes and not args.no_yaml:
            yaml_times = time_yaml(report, args, ringfence, results["generator"], processes["generator"])
    report.details = {"shapes": results, "processes": processes, "yaml_processes": yaml_times}
    return report


def add_shape_rows(report: common.Report, shape: str, result: dict[str, Any], times: dict[str, ProcessRuns]) -> None:
    baseline = times["json.load"]
    report.add(
        f"{shape}: python json.load of the file",
        baseline.median,
        "s",
        note=f"{shapes.DESCRIPTIONS[shape]}; {result['file_mb']:,.0f} MB; {cpu_note(baseline)}",
    )
    for label, query in result["queries"].items():
        what = (
            f"down: {query['assets_down']:,} assets, {query['services_down']:,} services "
            f"({query['already_down']:,} already down before it); {cpu_note(times[label])}"
        )
        report.add(f"{shape}: impact --fail {query['ref']}", times[label].median, "s", note=what)
        report.add(
            f"{shape}:   ratio to json.load ({label})",
            times[label].median / baseline.median,
            "×",
            target=TARGET_RATIO,
            note=f"CPU-time ratio {times[label].median_cpu / baseline.median_cpu:.2f}×; of the best runs "
            f"{times[label].best / baseline.best:.2f}×",
        )
    peak_label, peak = max(((label, times[label].peak) for label in result["queries"]), key=lambda p: p[1])
    report.add(
        f"{shape}: peak memory of the impact process",
        peak,
        "MB",
        target=TARGET_PEAK_MB,
        note=f"the larger of the two failures ({peak_label}); json.load: {baseline.peak:,.0f} MB",
    )
    phases = result["phases"]
    breakdown = ", ".join(f"{name} {p['wall']:.2f}" for name, p in phases.items())
    queries = ", ".join(
        f"query {label} {q['query']['wall']:.3f} + JSON {q['json']['wall']:.3f}"
        for label, q in result["queries"].items()
    )
    report.add(
        f"{shape}: in-process",
        sum(p["wall"] for p in phases.values()),
        "s",
        note=f"{breakdown}; {queries} (s); worker peak {result['peak_rss_mb']:,.0f} MB",
    )
    located = result["locate_warnings"]
    report.add(
        f"{shape}: lines of every warning (what `check` adds)",
        located["wall"],
        "s",
        note=f"{result['warnings']:,} warnings; impact locates none; {common.cpu_text(located['cpu'])}",
    )


def time_yaml(
    report: common.Report, args: argparse.Namespace, ringfence: list[str], result: dict[str, Any], json_times: Any
) -> dict[str, Any]:
    """The generator's YAML file, once: information only (YAML has no target)."""
    yaml_file = shapes.shape_files("generator", args.assets, args.seed, args.workdir, ("yaml",))["yaml"]
    common.log("timing the YAML file (once: information only)…")
    times = time_processes(
        {
            "yaml.load": [
                sys.executable,
                "-c",
                f"import yaml; yaml.load(open({str(yaml_file)!r}), Loader=yaml.CSafeLoader)",
            ],
            "impact": [*ringfence, "impact", str(yaml_file), "--fail", result["queries"]["host"]["ref"], "--json"],
        },
        1,
    )
    json_load = min(json_times["json.load"]["wall"])
    report.add(
        "generator: python yaml.load (C loader) of the YAML file",
        times["yaml.load"].best,
        "s",
        note=f"{yaml_file.stat().st_size / 1e6:,.0f} MB; {cpu_note(times['yaml.load'])}",
    )
    report.add(
        f"generator: impact YAML --fail {result['queries']['host']['ref']}",
        times["impact"].best,
        "s",
        note=f"information; {times['impact'].best / json_load:.1f}× json.load of the JSON; peak "
        f"{times['impact'].peak:,.0f} MB; {cpu_note(times['impact'])}",
    )
    return {name: asdict(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_arguments(parser, NOMINAL_ASSETS)
    shapes.shape_argument(parser)
    parser.add_argument("--no-yaml", action="store_true", help="skip the YAML file (information only, and slow)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each process, interleaved (default 5)")
    args = parser.parse_args()
    if args.worker:
        if args.worker[0] == "files":
            workdir, assets, seed, formats, *names = args.worker[1:]
            write_files(Path(workdir), int(assets), int(seed), formats == "yaml", names)
            common.emit({"written": names})
            return
        common.emit(worker(Path(args.worker[0]), int(args.worker[1])))
        return
    common.finish(run(args))


if __name__ == "__main__":
    main()
