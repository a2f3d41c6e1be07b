"""A window-constrained plan over a 1,000,000-asset estate, on several estate shapes.

Target ([operations] issue 14): a plan of 1,000,000 assets under change windows in ≤ 10 s — the rings
(``plan_strategy``, which plans them and finds the window rules of each ring) and the calendar (when each ring can
start and the earliest completion, ``ring_calendar``). The update is plan_1m's (the endpoint agent, the format's
default strata and rings) with the windows of docs/windows.md: tier 1 on Sunday night, endpoints in the
evenings, the first tier-2 service never by day, one site's servers only at weekends, and a Christmas freeze.
The calendar starts on Monday 7 December 2026 at 09:00, so it crosses the freeze.

The windows' own share (``rules_by_ring`` and the calendar) is reported apart from ``plan_rings``.

    .venv/bin/python bench/windows_1m.py [--assets N] [--quick] [--workdir DIR] [--shapes NAME ...]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common
import plan_1m
import shapes

NAME = "windows_1m"
NOMINAL_ASSETS = 1_000_000
TARGET = 10.0
START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def windows_text(estate: Any) -> str:
    """The windows of docs/windows.md, fitted to the estate: its first tier-2 service and its first site."""
    service = next((s.id for s in estate.services if s.tier == 2), estate.services[0].id)
    site = next((a.site for a in estate.assets if a.site), "city")
    return (
        "  windows:\n"
        "    - {name: tier 1 Sunday night, tier: 1, allow: ['Sun 01:00-05:00']}\n"
        "    - {name: endpoints in the evenings, selector: kind=endpoint, allow: ['daily 19:00-07:00']}\n"
        f"    - {{name: {service} never by day, service: {service}, never: ['daily 08:00-18:00']}}\n"
        f"    - {{name: {site} servers at weekends, selector: 'site={site},kind=vm',"
        " allow: ['weekends 00:00-24:00']}\n"
        "  freezes:\n"
        "    - {name: Christmas, from: 2026-12-19, to: 2027-01-03}\n"
    )


def constrained_plan(graph: Any, update: Any) -> tuple[Any, Any, float]:
    """The plan with each ring's window rules, and its calendar; and the seconds the windows took."""
    from ringfence.core.rollout.strategy import plan_strategy
    from ringfence.core.windows import ring_calendar

    planned, _, _ = common.cpu_timed(plan_strategy, "ringfence", graph, update)
    slots, calendar_seconds, _ = common.cpu_timed(
        ring_calendar,
        update.windows,
        update.freezes,
        planned.ring_windows,
        [planned.bake] * len(planned.rings),
        install=update.timing.apply,
        restore_point=0,
        start=START,
    )
    return planned, slots, calendar_seconds


def worker(path: Path, repeat: int) -> dict[str, Any]:
    from ringfence.core.graph import compile_estate
    from ringfence.core.planner import plan_rings
    from ringfence.core.update import parse_update_text
    from ringfence.core.windows import rules_by_ring

    estate, t_load, _ = common.cpu_timed(plan_1m.load_estate, path)
    graph, t_compile, _ = common.cpu_timed(compile_estate, estate)
    product, version = plan_1m.agent_product(estate)
    nxt = plan_1m.next_version(version)
    update = parse_update_text(
        "apiVersion: ringfence/v1\n"
        "update:\n"
        f"  id: agent-{nxt}\n"
        f"  product: {product}\n"
        f'  version: "{nxt}"\n'
        "  rings: [1, '5%', '25%', '100%']\n"
        "  bake: 4h\n"
        "  rollback: reinstall\n" + windows_text(estate),
        "<bench update>",
    )
    totals, cpu, calendars = [], [], []
    planned = slots = None
    for _ in range(repeat):
        (planned, slots, calendar_seconds), seconds, cpu_seconds = common.cpu_timed(constrained_plan, graph, update)
        totals.append(seconds)
        cpu.append(cpu_seconds)
        calendars.append(calendar_seconds)
    assert planned is not None
    assert slots is not None
    # The windows' share: the rules of each ring, over the plan's rings, alone.
    plan = plan_rings(graph, update)
    rings, tiers = [r.assets for r in plan.rings], [r.tiers for r in plan.rings]
    _, rules_seconds, _ = common.cpu_timed(rules_by_ring, graph, update.windows, rings, tiers)
    done = slots[-1].done_at
    return {
        "assets": len(estate.assets),
        "estate_warnings": len(estate.warnings) + len(graph.warnings),
        "load": t_load,
        "compile": t_compile,
        "update": update.release,
        "seconds": totals,
        "cpu_seconds": cpu,
        "rules_seconds": rules_seconds,
        "calendar_seconds": min(calendars),
        "targets": planned.targets,
        "rings": [len(r) for r in planned.rings],
        "rules_per_ring": [len(r) for r in planned.ring_windows],
        "starts": [s.starts_at.isoformat() if s.starts_at else None for s in slots],
        "earliest_completion": done.isoformat() if done else None,
        "warnings": len(planned.plan.warnings) if planned.plan else 0,
        "peak_mb": common.peak_rss_bytes() / 1e6,
    }


def run(args: argparse.Namespace) -> common.Report:
    report, results, _ = shapes.run_over_shapes(
        NAME,
        f"A window-constrained plan over {args.assets:,} assets, on {len(args.shapes)} estate shapes",
        args,
        NOMINAL_ASSETS,
        Path(__file__).resolve(),
        "load, compile, plan with windows…",
        add_shape_rows,
    )
    report.details = {"shapes": results, "start": START.isoformat()}
    return report


def add_shape_rows(report: common.Report, shape: str, result: dict[str, Any], repeat: int) -> None:
    label = f"{shape} ({shapes.DESCRIPTIONS[shape]})"
    report.add(
        f"{shape}: plan with windows + calendar, best of {repeat}",
        min(result["seconds"]),
        "s",
        target=TARGET,
        note=f"{label}; {result['targets']:,} targets; {common.cpu_text(min(result['cpu_seconds']))}",
    )
    report.add(
        f"{shape}: the windows' share",
        result["rules_seconds"] + result["calendar_seconds"],
        "s",
        note=(
            f"rules of each ring {result['rules_seconds']:.2f} s, calendar {result['calendar_seconds'] * 1000:.0f} ms; "
            f"rules per ring {result['rules_per_ring']}"
        ),
    )
    starts = ", ".join((s or "none")[:16] for s in result["starts"][:6])
    report.add(
        f"{shape}: calendar",
        len(result["rings"]),
        note=(
            f"{len(result['rings'])} rings, {result['warnings']:,} plan warnings; starts {starts}; earliest "
            f"completion {result['earliest_completion']}"
        ),
    )
    common.add_load_and_compile(report, shape, result)


def main() -> None:
    shapes.estate_bench_main(__doc__, NOMINAL_ASSETS, worker, run)


if __name__ == "__main__":
    main()
