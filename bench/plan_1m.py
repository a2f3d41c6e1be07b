"""Plan an update of the endpoint agent over a 1,000,000-asset estate.

Target ([rollouts] issue): `plan_rings` over a compiled 1,000,000-asset estate in ≤ 10 s. The update targets
the product the generator installs on every workstation (found from the estate: the product on the most
endpoints), with the default strata and rings of the update format, like the sample's falcon-7.16 update.
Loading and compiling are timed too but are not part of the target (the scale benchmark holds them).

    .venv/bin/python bench/plan_1m.py [--assets N] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import common

NAME = "plan_1m"
NOMINAL_ASSETS = 1_000_000
TARGET_PLAN = 10.0


def agent_product(estate: Any) -> tuple[str, str]:
    """The product (and its most common version) installed on the most endpoints."""
    counts: Counter[tuple[str, str]] = Counter(
        (item.product, item.version) for a in estate.assets if a.kind == "endpoint" for item in a.software
    )
    if not counts:
        counts = Counter((item.product, item.version) for a in estate.assets for item in a.software)
    return counts.most_common(1)[0][0]


def next_version(version: str) -> str:
    """7.15 → 7.16: a plausible next release (the planner does not compare versions)."""
    head, _, last = version.rpartition(".")
    return f"{head}.{int(last) + 1}" if last.isdigit() and head else f"{version}.1"


def worker(path: Path, repeat: int) -> dict[str, Any]:
    from ringfence.files import read_estate
    from ringfence.graph import compile_estate
    from ringfence.planner import plan_rings
    from ringfence.update import parse_update_text

    estate, t_load, _ = common.cpu_timed(read_estate, path)
    graph, t_compile, _ = common.cpu_timed(compile_estate, estate)
    product, version = agent_product(estate)
    update = parse_update_text(
        "apiVersion: ringfence/v1\n"
        "update:\n"
        f"  id: agent-{next_version(version)}\n"
        f"  product: {product}\n"
        f'  version: "{next_version(version)}"\n'
        "  rings: [1, '5%', '25%', '100%']\n"
        "  bake: 4h\n"
        "  rollback: reinstall\n",
        "<bench update>",
    )
    times, cpu = [], []
    plan = None
    for _ in range(repeat):
        plan, seconds, cpu_seconds = common.cpu_timed(plan_rings, graph, update)
        times.append(seconds)
        cpu.append(cpu_seconds)
    assert plan is not None
    return {
        "assets": len(estate.assets),
        "load": t_load,
        "compile": t_compile,
        "update": update.release,
        "selector": update.target_selector,
        "plan_seconds": times,
        "plan_cpu_seconds": cpu,
        "targets": plan.targets,
        "strata": len(plan.strata),
        "rings": [r.size for r in plan.rings],
        "canary": plan.rings[0].size,
        "warnings": len(plan.warnings),
        "peak_mb": common.peak_rss_bytes() / 1e6,
    }


def run(args: argparse.Namespace) -> common.Report:
    repeat = 1 if args.quick else 3
    report = common.Report(
        NAME,
        f"Plan an endpoint-agent update over {args.assets:,} assets",
        args.assets,
        NOMINAL_ASSETS,
        args.seed,
        args.quick,
    )
    result = common.run_estate_worker(Path(__file__), args, report, "plan", str(repeat))
    report.add(
        f"plan_rings, best of {repeat}",
        min(result["plan_seconds"]),
        "s",
        target=TARGET_PLAN,
        note=f"{result['update']} → {result['selector']}; {common.cpu_text(min(result['plan_cpu_seconds']))}",
    )
    report.add("targets", result["targets"], note=f"{result['strata']:,} strata")
    report.add(
        "rings",
        len(result["rings"]),
        note="sizes " + ", ".join(f"{n:,}" for n in result["rings"]) + f"; {result['warnings']} warnings",
    )
    report.add("peak memory (worker)", result["peak_mb"], "MB")
    report.details = result
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_arguments(parser, NOMINAL_ASSETS)
    args = parser.parse_args()
    if args.worker:
        common.emit(worker(Path(args.worker[0]), int(args.worker[1])))
        return
    common.finish(run(args))


if __name__ == "__main__":
    main()
