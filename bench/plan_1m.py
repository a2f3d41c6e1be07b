"""Plan an update of the endpoint agent over a 1,000,000-asset estate, on every estate shape.

Target ([rollouts] issue): `plan_rings` over a compiled 1,000,000-asset estate in ≤ 10 s, canary waves and
``Plan.groups`` included. It is measured on each shape of ``shapes.py``: the generator's trust, many distinct
any-groups, warnings everywhere, and an acute trust whose tier-1 replicas sit alone in their strata (so the
canary phase needs several waves). The update targets the product the generator installs on every
workstation (found from the estate: the product on the most endpoints), with the default strata and rings of
the update format, like the sample's falcon-7.16 update. Loading and compiling are timed too but are not part
of the target (the scale benchmark holds them).

A last, profiled run of each shape says where the planning time goes (impact tiers, groups, canary waves,
filling the rings, ``Plan.groups``); the profiler slows everything alike, so only the shares are shown.

    .venv/bin/python bench/plan_1m.py [--assets N] [--quick] [--workdir DIR] [--shapes NAME ...]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from collections import Counter
from pathlib import Path
from typing import Any

import common
import shapes

NAME = "plan_1m"
NOMINAL_ASSETS = 1_000_000
TARGET_PLAN = 10.0
# Planner phases reported from the profiled run: (label, function name in ringfence.core.planner or impact).
PHASES = (
    ("impact tiers", "impact_tiers"),
    ("groups of targets", "_groups"),
    ("canary waves", "_canary_waves"),
    ("rings after the canary", "_fill"),
    ("Plan.groups", "_plan_groups"),
)


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


def phase_shares(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative time of each planner phase as a share of ``plan_rings``, from a profiled run."""
    stats = pstats.Stats(profile)
    cumulative: dict[str, float] = {}
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if "ringfence" in filename and (function == "plan_rings" or function in dict(PHASES).values()):
            cumulative[function] = cumulative.get(function, 0.0) + row[3]
    total = cumulative.get("plan_rings", 0.0) or 1.0
    return {label: cumulative.get(function, 0.0) / total for label, function in PHASES}


def load_estate(path: Path) -> Any:
    """The estate as ``read_estate`` reads a JSON file (one pydantic pass), less the line of each warning.

    Locating warnings composes a YAML node tree of the whole text: on the ``warnings`` shape that is most of
    the load at 20,000 assets and gigabytes at a million. Planning needs the estate, not the lines."""
    from ringfence.core.estate import EstateDocument, build_estate
    from ringfence.files.disk import read_text

    return build_estate(EstateDocument.model_validate_json(read_text(path)), str(path))


def worker(path: Path, repeat: int) -> dict[str, Any]:
    from ringfence.core.graph import compile_estate
    from ringfence.core.planner import plan_rings
    from ringfence.core.update import parse_update_text

    estate, t_load, _ = common.cpu_timed(load_estate, path)
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
    profile = cProfile.Profile()
    profile.runcall(plan_rings, graph, update)
    return {
        "assets": len(estate.assets),
        "estate_warnings": len(estate.warnings) + len(graph.warnings),
        "load": t_load,
        "compile": t_compile,
        "update": update.release,
        "selector": update.target_selector,
        "plan_seconds": times,
        "plan_cpu_seconds": cpu,
        "targets": plan.targets,
        "strata": len(plan.strata),
        "rings": [r.size for r in plan.rings],
        "canary_rings": plan.canary_rings,
        "canary": sum(r.size for r in plan.rings[: plan.canary_rings]),
        "added_rings": sum(1 for r in plan.rings if r.why),
        "warnings": len(plan.warnings),
        "notes": len(plan.notes),
        "groups": len(plan.groups),
        "group_members": sum(len(g.members) for g in plan.groups),
        "phase_shares": phase_shares(profile),
        "peak_mb": common.peak_rss_bytes() / 1e6,
    }


def run(args: argparse.Namespace) -> common.Report:
    report, results, _ = shapes.run_over_shapes(
        NAME,
        f"Plan an endpoint-agent update over {args.assets:,} assets, on {len(args.shapes)} estate shapes",
        args,
        NOMINAL_ASSETS,
        Path(__file__).resolve(),
        "load, compile, plan…",
        add_shape_rows,
    )
    report.details = {"shapes": results}
    return report


def add_shape_rows(report: common.Report, shape: str, result: dict[str, Any], repeat: int) -> None:
    label = f"{shape} ({shapes.DESCRIPTIONS[shape]})"
    report.add(
        f"{shape}: plan_rings, best of {repeat}",
        min(result["plan_seconds"]),
        "s",
        target=TARGET_PLAN,
        note=f"{label}; {result['update']} → {result['selector']}; {common.cpu_text(min(result['plan_cpu_seconds']))}",
    )
    sizes = result["rings"]
    shown = ", ".join(f"{n:,}" for n in sizes[:8]) + (f", … ({len(sizes)} rings)" if len(sizes) > 8 else "")
    report.add(
        f"{shape}: rings",
        len(sizes),
        note=(
            f"{result['targets']:,} targets, {result['strata']:,} strata; canary phase {result['canary_rings']} "
            f"wave(s), {result['canary']:,} assets; {result['added_rings']} ring(s) added; sizes {shown}"
        ),
    )
    report.add(
        f"{shape}: warnings, groups",
        result["warnings"],
        note=(
            f"{result['warnings']:,} no-slack warnings, {result['notes']} note(s); Plan.groups: "
            f"{result['groups']:,} groups, {result['group_members']:,} member ids; "
            f"estate warnings {result['estate_warnings']:,}"
        ),
    )
    shares = ", ".join(f"{label} {share:.0%}" for label, share in result["phase_shares"].items())
    report.add(f"{shape}: where the time goes", "", note=f"profiled run: {shares}")
    common.add_load_and_compile(report, shape, result)


def main() -> None:
    shapes.estate_bench_main(__doc__, NOMINAL_ASSETS, worker, run)


if __name__ == "__main__":
    main()
