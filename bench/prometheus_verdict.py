"""A Prometheus-judged ring verdict: how long after a bake ends the gate has its verdict, with 10,000 series.

Set-up (not timed): Debian's ``prometheus`` binary on a free port of 127.0.0.1 (as the tests start it,
``tests/drivers/prometheus_fixtures.py``), scraping one page of ours every 2 s that holds, for each shape, one
``bench_<shape>_healthy{asset="…"}`` gauge per asset (1, or 0 for the updated assets the shape breaks), until
every series is in. Then, per shape, the moment the bake ends is timed ``--repeat`` times: the ``prometheus``
health source reads every target (one instant query, or ``{asset}`` batches of 500), the readings become one
sample per stratum (its updated members against its not-yet-updated ones) and ``judge_ring`` gives the verdict
— the work the controller does when a bake ends. One verdict per shape is taken first, untimed: the gate's
exact tests import scipy once per process (about a second), which a server has done long before a bake ends.

Shapes (``--assets``, default 10,000 series each):

- ``few-strata``: 4 strata of 2,500 assets, 10% of each updated, one updated asset failing in one stratum (1 of
  250 is not significantly above the 1% baseline: inconclusive);
- ``many-strata``: 1,000 strata of 10 assets, one updated in each, 5 strata with a failure;
- ``missing``: 4 strata, every tenth asset without any series, updated ones included (no telemetry: the
  ring is inconclusive, never passed);
- ``batched``: as ``few-strata``, the check written per asset (``{asset}`` in a ``=~`` matcher, 500 ids a query).

Target (issue 14): the verdict ≤ 2 s after the bake ends. Results: ``bench/results/prometheus_verdict.json``.

    .venv/bin/python bench/prometheus_verdict.py [--assets 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import common

sys.path.insert(0, str(common.BENCH_DIR.parent / "tests" / "drivers"))

TARGET_SECONDS = 2.0
SCRAPE = "2s"


@dataclass(frozen=True)
class Shape:
    name: str
    what: str
    strata: int
    updated_share: float  # of each stratum; at least one
    failing_strata: int  # strata with one updated asset reading 0
    missing_share: float = 0.0  # assets with no series at all
    per_asset: bool = False

    def assets(self, total: int) -> list[tuple[str, int]]:
        """``(asset id, stratum)`` for ``total`` assets spread over the strata."""
        per = max(1, total // self.strata)
        return [(f"{self.name}-{s:04d}-{i:05d}", s) for s in range(self.strata) for i in range(per)]


SHAPES = (
    Shape("few-strata", "4 strata × 2,500, 10% updated, 1 of 250 failing in one", 4, 0.10, 1),
    Shape("many-strata", "1,000 strata × 10, 1 updated each, 5 failing", 1000, 0.10, 5),
    Shape("missing", "4 strata, 10% of assets with no series", 4, 0.10, 0, missing_share=0.10),
    Shape("batched", "as few-strata, check per asset ({asset}, 500 a query)", 4, 0.10, 1, per_asset=True),
)


def metric(shape: Shape) -> str:
    return "bench_" + shape.name.replace("-", "_") + "_healthy"


def page(shapes: tuple[Shape, ...], total: int) -> str:
    lines: list[str] = []
    for shape in shapes:
        name = metric(shape)
        lines.append(f"# TYPE {name} gauge")
        _updated, failing, missing = roles(shape, total)
        for asset, _stratum in shape.assets(total):
            if asset in missing:
                continue
            lines.append(f'{name}{{asset="{asset}"}} {0 if asset in failing else 1}')
    return "\n".join(lines) + "\n"


def roles(shape: Shape, total: int) -> tuple[set[str], set[str], set[str]]:
    """The updated assets, the failing ones among them, and those without series."""
    by_stratum: dict[int, list[str]] = {}
    for asset, stratum in shape.assets(total):
        by_stratum.setdefault(stratum, []).append(asset)
    updated: set[str] = set()
    failing: set[str] = set()
    missing: set[str] = set()
    for stratum, members in by_stratum.items():
        count = max(1, int(len(members) * shape.updated_share))
        updated.update(members[:count])
        if stratum < shape.failing_strata:
            failing.add(members[0])
        if shape.missing_share:
            every = round(1 / shape.missing_share)  # updated and not-yet-updated assets alike go silent
            missing.update(m for i, m in enumerate(members) if i % every == every // 2)
    return updated, failing, missing


def checks_file(folder: Path, shape: Shape) -> Path:
    query = f'{metric(shape)}{{asset=~"{{asset}}"}}' if shape.per_asset else metric(shape)
    path = folder / f"{shape.name}.yaml"
    path.write_text(f"checks:\n  - name: healthy\n    query: '{query}'\n    label: asset\n    fail_when: '< 1'\n")
    return path


def verdict_once(source: object, shape: Shape, total: int) -> tuple[float, str, int]:
    """Time one bake's end: read every target, build the samples, judge the ring."""
    from ringfence.core.gates import AssetHealth, AssetStatus, GatePolicy, StratumSample, judge_ring

    read: Callable[[list[str]], dict[str, AssetHealth]] = source.observe  # type: ignore[attr-defined]
    assets = shape.assets(total)
    updated = roles(shape, total)[0]
    started = time.perf_counter()
    readings = read([a for a, _ in assets])
    samples: dict[int, tuple[list[AssetHealth], list[AssetHealth]]] = {}
    for asset, stratum in assets:
        health = readings.get(asset) or AssetHealth(asset, AssetStatus.unknown)
        group = samples.setdefault(stratum, ([], []))
        group[0 if asset in updated else 1].append(health)
    verdict = judge_ring(
        0,
        [StratumSample((f"s{s}",), tuple(u), tuple(c)) for s, (u, c) in sorted(samples.items())],
        GatePolicy(),
    )
    return time.perf_counter() - started, verdict.outcome.value, len(readings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=10_000, help="series (assets) per shape (default 10,000)")
    parser.add_argument("--repeat", type=int, default=5, help="verdicts timed per shape (default 5)")
    args = parser.parse_args()

    from prometheus_fixtures import Exporter, running_prometheus, serving  # tests/drivers, on the path above

    from ringfence.drivers.prometheus import PrometheusHealth

    report = common.Report(
        name="prometheus_verdict",
        title=f"Prometheus-judged ring verdict after the bake, {args.assets:,} series per shape",
        assets=args.assets,
        nominal_assets=10_000,
        seed=0,
        quick=args.repeat < 3,
    )
    binary = "/usr/bin/prometheus"
    text = page(SHAPES, args.assets)
    exporter = Exporter(extra=lambda: text)
    with tempfile.TemporaryDirectory(prefix="ringfence-bench-prometheus-") as tmp:
        folder = Path(tmp)
        with serving(exporter) as port:
            config = (
                "global: {scrape_interval: " + SCRAPE + ", scrape_timeout: " + SCRAPE + "}\n"
                "scrape_configs:\n  - job_name: bench\n    honor_labels: true\n"
                f'    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]\n'
            )
            with running_prometheus(binary, config, folder) as prometheus:
                expected = sum(len(s.assets(args.assets)) - len(roles(s, args.assets)[2]) for s in SHAPES)
                common.log(f"waiting for Prometheus to hold {expected:,} series")
                deadline = time.monotonic() + 120
                while True:
                    found = prometheus.query('count({__name__=~"bench_.*_healthy"})')
                    held = int(float(found[0]["value"][1])) if found else 0  # type: ignore[index]
                    if held >= expected:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"Prometheus holds {held:,} of {expected:,} series after 120 s")
                    time.sleep(0.5)
                for shape in SHAPES:
                    source = PrometheusHealth(url=prometheus.url, checks=str(checks_file(folder, shape)))
                    verdict_once(source, shape, args.assets)  # warm: scipy imported, connections made
                    times: list[float] = []
                    outcome, read = "", 0
                    for _ in range(args.repeat):
                        seconds, outcome, read = verdict_once(source, shape, args.assets)
                        times.append(seconds)
                    report.add(
                        f"{shape.name}: verdict after the bake (median)",
                        round(common.median(times), 3),
                        "s",
                        TARGET_SECONDS,
                        f"{shape.what}; {read:,} assets read; ring {outcome}; worst {max(times):.3f} s",
                    )
                    report.details[shape.name] = {
                        "seconds": times,
                        "outcome": outcome,
                        "assets_read": read,
                        "assets": len(shape.assets(args.assets)),
                        "strata": shape.strata,
                    }
    common.finish(report)


if __name__ == "__main__":
    main()
