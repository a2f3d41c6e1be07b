"""The CrowdStrike 2024 pattern drilled on three estates: does the safety promise hold where nobody tuned it?

The fault is the one of 19 July 2024: a content update of the endpoint sensor that crashes every Windows machine
two minutes after it loads, with no remote rollback (``rollback: none``). It is drilled with ``ringfence.core.drills``
(the real controller, in simulated time) for each strategy — ``ringfence``, ``all-at-once`` and ``batches`` — on:

1. ``city-general``: the bundled sample estate (``src/ringfence/examples/city-general``), whose canaries were
   designed by hand;
2. ``acute``: the ``acute`` shape of ``shapes.py`` at ``--assets`` assets (default 3,000) — an acute trust whose
   tier-1 replicas (EPR, LIMS, PACS) sit alone in their strata, so every one of them must be its own canary;
3. ``generator``: ``ringfence.core.generate`` at ``--assets`` assets, as it is.

The update is the sample's ``crowdstrike-2024`` scenario with the failure two minutes after load: every asset
running ``crowdstrike/falcon``, the default strata (kind, os, model, site), the default rings
``[1, 5%, 25%, 100%]``, a 30-minute bake. The targets the issue sets, for ``ringfence`` on every estate:

- **no tier-1 or tier-2 service down** at any moment (a service counts as down when the crashed machines
  alone take it down; services down with nothing failed are not the drill's doing);
- **exposed ≤ strata + 5% of targets** (exposed: assets the update was installed on before the rollout
  stopped; strata: strata among the targets, each of which needs a canary).

These are safety outcomes, not timings: the same on every machine, so a miss is a finding, not noise. The
drills' wall time is reported for information.

    .venv/bin/python bench/safety_drill.py [--assets N] [--seed S] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
import shapes

NAME = "safety_drill"
NOMINAL_ASSETS = 3_000
WINDOWS = "attrs.os=windows-10|windows-11|windows-2019|windows-2022"
SAMPLE = Path(__file__).resolve().parents[1] / "src" / "ringfence" / "examples" / "city-general" / "estate.yaml"


def scenario_text(seed: int) -> str:
    return f"""
apiVersion: ringfence/v1
scenario: crowdstrike-2024-2m
description: A sensor content update crashes every Windows machine two minutes after it loads; no remote rollback.
update:
  id: falcon-channel-291
  product: crowdstrike/falcon
  version: "7.15-cf291"
  targets: "software=crowdstrike/falcon"
  strata: [kind, attrs.os, attrs.model, site]
  bake: 30m
  rollback: none
fault:
  affects: "{WINDOWS}"
  probability: 1.0
  after: 2m
  rollback_loses_data: false
seed: {seed}
"""


def estates(assets: int, seed: int) -> dict[str, Callable[[], Any]]:
    """Each estate as a function that builds its compiled graph (so one failing does not stop the others)."""
    from ringfence.core.estate import parse_estate_document, parse_estate_text
    from ringfence.core.generate import generate_estate
    from ringfence.core.graph import compile_estate

    return {
        "city-general": lambda: compile_estate(parse_estate_text(SAMPLE.read_text(), str(SAMPLE))),
        "acute": lambda: compile_estate(parse_estate_document(shapes.shape_document("acute", assets, seed))),
        "generator": lambda: compile_estate(parse_estate_document(generate_estate(assets, seed=seed))),
    }


def drill(graph: Any, seed: int) -> dict[str, Any]:
    """Every strategy's figures on one estate, and the ringfence plan's strata."""
    from ringfence.core.drills import run_drill
    from ringfence.core.impact import TIERS
    from ringfence.core.planner import plan_rings
    from ringfence.core.update import parse_scenario_text

    scenario = parse_scenario_text(scenario_text(seed), "crowdstrike-2024-2m.yaml")
    plan = plan_rings(graph, scenario.update)
    report, seconds = common.timed(run_drill, graph, scenario)
    strategies: dict[str, Any] = {}
    for r in report.results:
        by_tier = dict.fromkeys(TIERS, 0)
        for s in r.services_down:
            by_tier[s.tier] += 1
        strategies[r.strategy] = {
            "exposed": len(r.exposed),
            "failed": len(r.failed),
            "services_down_by_tier": by_tier,
            "services_down": [s.id for s in r.services_down if s.tier <= 2],
            "halted_at_ring": r.halted_at_ring,
            "detected_after": r.detected_after,
            "outcome": r.outcome,
            "rings": r.rings,
            "halt_reason": r.halt_reason,
        }
    return {
        "assets": len(graph.estate.assets),
        "targets": report.targets,
        "affected": report.affected,
        "strata": len(plan.strata),
        "canary_waves": plan.canary_rings,
        "warnings": len(plan.warnings),
        "drill_seconds": seconds,
        "strategies": strategies,
    }


def tiers_text(by_tier: dict[int, int]) -> str:
    return " ".join(f"t{t}:{n}" for t, n in by_tier.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_arguments(parser, NOMINAL_ASSETS)
    args = parser.parse_args()
    report = common.Report.of_run(
        NAME, f"CrowdStrike 2024 pattern (crash 2 min after load, no rollback), seed {args.seed}", args, NOMINAL_ASSETS
    )
    for name, build in estates(args.assets, args.seed).items():
        common.log(f"drilling {name}…")
        graph = build()
        found = drill(graph, args.seed)
        report.details[name] = found
        ring = found["strategies"]["ringfence"]
        allowed = found["strata"] + math.ceil(0.05 * found["targets"])
        report.add(
            f"{name}: assets / targets / strata / canary waves",
            f"{found['assets']:,} / {found['targets']:,} / {found['strata']} / {found['canary_waves']}",
        )
        report.add(
            f"{name} ringfence: tier-1/2 services down",
            ring["services_down_by_tier"][1] + ring["services_down_by_tier"][2],
            target=0,
            note=", ".join(ring["services_down"]) or "none",
        )
        report.add(
            f"{name} ringfence: exposed",
            ring["exposed"],
            target=allowed,
            note=f"≤ {found['strata']} strata + 5% of {found['targets']:,} targets; failed {ring['failed']}; "
            f"{ring['outcome']} at ring {ring['halted_at_ring']}",
        )
        for strategy in ("ringfence", "all-at-once", "batches"):
            s = found["strategies"][strategy]
            report.add(
                f"{name} {strategy}: exposed / failed / services down",
                f"{s['exposed']:,} / {s['failed']:,} / {tiers_text(s['services_down_by_tier'])}",
                note=f"{s['outcome']}" + (f" at ring {s['halted_at_ring']}" if s["halted_at_ring"] is not None else ""),
            )
        report.add(f"{name}: drill of the three strategies (information)", found["drill_seconds"], "s")
    common.finish(report)


if __name__ == "__main__":
    main()
