"""A million assets of every estate shape: load and compile, one blast-radius query, a full SPOF scan, peak memory.

Targets ([core] issue, on every shape of ``shapes.py`` as the [fit] issue asks), for 1,000,000 assets:
- load and compile ≤ 60 s (from JSON; from YAML is reported, for information);
- one blast-radius query ≤ 50 ms after compiling: the median of many queries — random single assets and
  a few supplier and site failures — each through `compute_blast_radius`, as `impact` runs it (resolve the
  reference, propagate, list the ids down, sorted);
- a full scan for single points of failure (`find_single_points_of_failure`) ≤ 60 s;
- peak resident memory ≤ 4 GB.

Load, compile, queries and scan run in ONE worker process per shape, in that order, as a long-running user of
the library would; its peak memory covers all of them. The generator's YAML file is loaded and compiled in a
second worker, for information.

    .venv/bin/python bench/scale_1m.py [--assets N] [--quick] [--queries N] [--skip-yaml] [--workdir DIR]
        [--shapes NAME ...]
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path
from typing import Any

import common
import shapes

NAME = "scale_1m"
NOMINAL_ASSETS = 1_000_000
TARGET_LOAD_COMPILE = 60.0
TARGET_QUERY_MS = 50.0
TARGET_SPOF = 60.0
TARGET_PEAK_MB = 4000.0


def group_failures(estate: Any) -> list[str]:
    """The three suppliers that provide the most assets, the busiest site and the quietest one."""
    provided: Counter[str] = Counter()
    per_site: Counter[str] = Counter()
    for asset in estate.assets:
        for supplier in {asset.supplier, *(item.supplier_id for item in asset.software)} - {None}:
            provided[supplier] += 1
        if asset.site is not None:
            per_site[asset.site] += 1
    refs = [f"supplier:{s}" for s, _ in provided.most_common(3)]
    sites = per_site.most_common()
    if sites:
        refs.append(f"site:{sites[0][0]}")
        if len(sites) > 1:
            refs.append(f"site:{sites[-1][0]}")
    return refs


def worker_json(path: Path, queries: int) -> dict[str, Any]:
    from ringfence.core.graph import compile_estate
    from ringfence.core.impact import compute_blast_radius, find_single_points_of_failure
    from ringfence.files.disk import read_estate

    estate, t_load, c_load = common.cpu_timed(read_estate, path)
    rss_after_load = common.current_rss_bytes() / 1e6
    peak_after_load = common.peak_rss_bytes() / 1e6
    graph, t_compile, c_compile = common.cpu_timed(compile_estate, estate)
    rss_after_compile = common.current_rss_bytes() / 1e6
    after_compile_mb = common.peak_rss_bytes() / 1e6

    rng = random.Random(path.name)  # the same assets for the same file
    singles = [f"asset:{a.id}" for a in rng.sample(estate.assets, min(queries, len(estate.assets)))]
    groups = group_failures(estate)
    # The first query pays for lazily built indexes (supplier and software maps); time it apart.
    _, t_first = common.timed(compute_blast_radius, graph, [groups[0]])
    timings: dict[str, list[float]] = {"single": [], "group": []}
    cpu_ms: list[float] = []
    sizes: dict[str, list[int]] = {"single": [], "group": []}
    group_detail = []
    for kind, refs in (("single", singles), ("group", groups)):
        for ref in refs:
            radius, seconds, cpu = common.cpu_timed(compute_blast_radius, graph, [ref])
            timings[kind].append(seconds * 1000)
            cpu_ms.append(cpu * 1000)
            sizes[kind].append(len(radius.assets_down))
            if kind == "group":
                group_detail.append(
                    {
                        "ref": ref,
                        "ms": seconds * 1000,
                        "assets_down": len(radius.assets_down),
                        "services_down": len(radius.services_down),
                    }
                )
    after_queries_mb = common.peak_rss_bytes() / 1e6

    found, t_spof, c_spof = common.cpu_timed(find_single_points_of_failure, graph)
    spof = {"seconds": t_spof, "cpu": c_spof, "found": len(found)}
    return {
        "assets": len(estate.assets),
        "services": len(estate.services),
        "nodes": graph.n,
        "groups": int(graph.group_owner.size),
        "member_sets": int(graph.set_members_ptr.size - 1),
        "member_entries": int(graph.set_members.size),
        "load": t_load,
        "compile": t_compile,
        "cpu": {"load": c_load, "compile": c_compile, "query_ms_median": common.median(cpu_ms)},
        "first_query_ms": t_first * 1000,
        "query_ms": timings,
        "assets_down": sizes,
        "group_queries": group_detail,
        "spof": spof,
        "peak_mb_after_load": peak_after_load,
        "rss_mb_after_load": rss_after_load,
        "peak_mb_after_compile": after_compile_mb,
        "rss_mb_after_compile": rss_after_compile,
        "peak_mb_after_queries": after_queries_mb,
        "peak_mb": common.peak_rss_bytes() / 1e6,
    }


def worker_yaml(path: Path) -> dict[str, Any]:
    from ringfence.core.graph import compile_estate
    from ringfence.files.disk import read_estate

    estate, t_load, c_load = common.cpu_timed(read_estate, path)
    _, t_compile, c_compile = common.cpu_timed(compile_estate, estate)
    return {"load": t_load, "compile": t_compile, "cpu": c_load + c_compile, "peak_mb": common.peak_rss_bytes() / 1e6}


def run(args: argparse.Namespace) -> common.Report:
    queries = args.queries or (40 if args.quick else 400)
    report = common.Report.of_run(
        NAME,
        f"Scale: {args.assets:,} assets, {len(args.shapes)} estate shapes, one process per shape and input format",
        args,
        NOMINAL_ASSETS,
    )
    script = Path(__file__).resolve()
    # The worker's second argument, which run_workers calls its repeat, is the number of single-asset queries.
    results = shapes.run_workers(
        script,
        args,
        queries,
        "load, compile, queries, SPOF scan…",
        lambda shape, result: add_shape_rows(report, shape, result),
    )
    yaml_result = None
    if not args.skip_yaml and "generator" in args.shapes:
        with common.work_directory(args.workdir) as workdir:
            files = common.estate_files(args.assets, args.seed, workdir, ("yaml",), log=common.log)
            common.log("YAML worker (generator): load and compile…")
            yaml_result = common.run_worker(script, ["yaml", str(files["yaml"])])
            yaml_mb = files["yaml"].stat().st_size / 1e6
        report.add(
            "generator: load + compile from YAML",
            yaml_result["load"] + yaml_result["compile"],
            "s",
            note=f"information; {yaml_mb:,.0f} MB; load {yaml_result['load']:.1f} s; "
            f"{common.cpu_text(yaml_result['cpu'])}; peak {yaml_result['peak_mb']:,.0f} MB",
        )
    report.details = {"shapes": results, "yaml_worker": yaml_result}
    return report


def add_shape_rows(report: common.Report, shape: str, result: dict[str, Any]) -> None:
    load_compile = result["load"] + result["compile"]
    cpu = result["cpu"]
    report.add(
        f"{shape}: load + compile from JSON",
        load_compile,
        "s",
        target=TARGET_LOAD_COMPILE,
        note=(
            f"{shapes.DESCRIPTIONS[shape]}; load {result['load']:.1f} s, compile {result['compile']:.1f} s; "
            f"{result['nodes']:,} nodes, {result['groups']:,} any-groups over {result['member_sets']:,} distinct "
            f"member sets; {common.cpu_text(cpu['load'] + cpu['compile'])}"
        ),
    )
    single, group = result["query_ms"]["single"], result["query_ms"]["group"]
    every = single + group
    worst = max(result["group_queries"], key=lambda q: q["ms"])
    report.add(
        f"{shape}: blast-radius query, median",
        common.median(every),
        "ms",
        target=TARGET_QUERY_MS,
        note=f"{len(single)} random single assets (p95 {common.percentile(single, 0.95):.2f} ms) and {len(group)} "
        f"supplier/site failures (slowest {worst['ref']}: {worst['ms']:.0f} ms, {worst['assets_down']:,} assets "
        f"down); first supplier query {result['first_query_ms']:.0f} ms; CPU {cpu['query_ms_median']:.2f} ms",
    )
    spof = result["spof"]
    report.add(
        f"{shape}: full SPOF scan",
        spof["seconds"],
        "s",
        target=TARGET_SPOF,
        note=f"{spof['found']:,} found; {common.cpu_text(spof['cpu'])}",
    )
    report.add(
        f"{shape}: peak memory (JSON worker, whole run)",
        result["peak_mb"],
        "MB",
        target=TARGET_PEAK_MB,
        note=f"peak during load {result['peak_mb_after_load']:,.0f} MB, held after load "
        f"{result['rss_mb_after_load']:,.0f} MB, after compile {result['rss_mb_after_compile']:,.0f} MB",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_arguments(parser, NOMINAL_ASSETS)
    parser.add_argument("--queries", type=int, default=0, help="random single-asset queries (default 400, 40 quick)")
    parser.add_argument("--skip-yaml", action="store_true", help="do not write or load the generator's YAML file")
    shapes.shape_argument(parser)
    args = parser.parse_args()
    if args.worker:
        if args.worker[0] == "yaml":
            common.emit(worker_yaml(Path(args.worker[1])))
        else:  # shapes.run_workers passes the file and the number of queries
            path, queries = args.worker
            common.emit(worker_json(Path(path), int(queries)))
        return
    common.finish(run(args))


if __name__ == "__main__":
    main()
