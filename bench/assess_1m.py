"""`ringfence assess` on a 1,000,000-asset estate with 1,000 suppliers: the policy evaluation, as the command runs it.

Target ([assurance] issue): `assess` on a 1,000,000-asset generated estate with 1,000 suppliers in ≤ 30 s. Each
shape of ``shapes.py`` (default: the generator's trust and the acute trust) is given 1,000 suppliers of its own
— the assets, in runs of neighbours (a supplier runs a cluster, a site's PCs, a practice), each get one as their
``supplier`` — and an assurance file in proportion: every supplier with three assessments (a few expired, a few
expiring, a few not met) and most with an exit plan, an exercise for every service of tiers 1 to 3, a restore test
of every tier-1 and tier-2 service (some too old, some slower than the RTO) and of one asset in fifty. Both are
derived once per shape, in a process of their own, and kept in the work directory.

Timed in a worker: loading and compiling the estate (not in the target: the scale benchmark holds them), parsing
the assurance file against the estate and the bundled policy (reported), then `assess` itself — the target:
single points of failure, supplier concentration, every supplier's and service's evidence, and RTOs composed
along restore paths where a service has no measured restore of its own.

    .venv/bin/python bench/assess_1m.py [--assets N] [--quick] [--seed S] [--shapes NAME ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import common
from shapes import shape_argument, shape_files

NAME = "assess_1m"
NOMINAL_ASSETS = 1_000_000
SUPPLIERS = 1_000
TARGET_ASSESS = 30.0
AS_OF = date(2026, 12, 1)
DEFAULT_SHAPES = ("generator", "acute")


# ------------------------------------------------------------------------------------------ inputs


def derive(shape_path: Path) -> dict[str, Any]:
    """Write the estate of ``shape_path`` with 1,000 suppliers, and its assurance file, beside it (once)."""
    estate_path = shape_path.with_name(shape_path.stem + f"-{SUPPLIERS}-suppliers.json")
    assurance_path = shape_path.with_name(shape_path.stem + f"-{SUPPLIERS}-suppliers-assurance.json")
    if estate_path.exists() and assurance_path.exists():
        return {"estate": str(estate_path), "assurance": str(assurance_path)}
    with shape_path.open(encoding="utf-8") as handle:
        document = json.load(handle)
    rng = random.Random(f"assess-{shape_path.name}")
    ids = [f"supplier-{i:04d}" for i in range(SUPPLIERS)]
    assets = document["assets"]
    run = max(1, len(assets) // (SUPPLIERS * 4))  # four runs per supplier, scattered over the estate
    for start in range(0, len(assets), run):
        supplier = rng.choice(ids)
        for asset in assets[start : start + run]:
            asset["supplier"] = supplier
    document["suppliers"] = [*document.get("suppliers", []), *({"id": s, "name": s.title()} for s in ids)]
    estate_path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
    assurance = assurance_document(document, rng)
    assurance_path.write_text(json.dumps(assurance, separators=(",", ":")), encoding="utf-8")
    return {"estate": str(estate_path), "assurance": str(assurance_path)}


def assurance_document(document: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    def day(days_before: int) -> str:
        return (AS_OF - timedelta(days=days_before)).isoformat()

    named = {a["supplier"] for a in document["assets"] if a.get("supplier")} | {
        s.get("supplier") or s["product"].split("/", 1)[0] for a in document["assets"] for s in a.get("software", ())
    }
    suppliers = []
    for supplier in sorted(named | {s["id"] for s in document["suppliers"]}):
        assessments = []
        for kind in ("dspt", "cyber-essentials-plus", "penetration-test"):
            age = rng.choice((30, 120, 200, 300, 340, 350, 400))  # some expiring, some expired
            result = "met" if rng.random() < 0.95 else "partially-met"
            assessments.append(
                {"kind": kind, "result": result, "date": day(age), "expires": day(age - 365), "evidence": f"e/{kind}"}
            )
        entry: dict[str, Any] = {"id": supplier, "assessments": assessments}
        if rng.random() < 0.9:
            entry["exit-plan"] = "move to the framework's second supplier"
        suppliers.append(entry)
    exercises, tests = [], []
    for service in document["services"]:
        if service["tier"] <= 3:
            exercises.append(
                {
                    "service": service["id"],
                    "date": day(rng.choice((20, 200, 340, 400))),
                    "kind": "tabletop",
                    "scenario": "loss",
                    "outcome": "recovered",
                    "actions": [{"action": "fix", "owner": "lead", "due": day(rng.choice((-60, 10)))}],
                }
            )
        if service["tier"] <= 2 and rng.random() < 0.8:
            tests.append({"subject": service["id"], "date": day(rng.choice((40, 300, 400))), "time-to-restore": "45m"})
    for asset in document["assets"][::50]:
        tests.append({"subject": asset["id"], "date": day(rng.choice((40, 300))), "time-to-restore": "20m"})
    return {
        "apiVersion": "ringfence/v1",
        "assurance": "bench",
        "suppliers": suppliers,
        "exercises": exercises,
        "restore-tests": tests,
    }


# ------------------------------------------------------------------------------------------ worker


def worker(estate_path: Path, assurance_path: Path, repeat: int) -> dict[str, Any]:
    from ringfence.core.assurance import assess, parse_assurance_text, parse_policy_text
    from ringfence.core.graph import compile_estate
    from ringfence.files.disk import examples_dir, read_estate, read_text

    estate, t_load, _ = common.cpu_timed(read_estate, estate_path)
    graph, t_compile, _ = common.cpu_timed(compile_estate, estate)
    text = assurance_path.read_text(encoding="utf-8")
    assurance, t_parse, _ = common.cpu_timed(parse_assurance_text, text, estate, str(assurance_path))
    policy = parse_policy_text(read_text(examples_dir() / "policy-acute.yaml"))
    walls, cpus = [], []
    report = None
    for _ in range(repeat):
        report, wall, cpu = common.cpu_timed(assess, estate, graph, assurance, policy, AS_OF)
        walls.append(wall)
        cpus.append(cpu)
    assert report is not None
    by_policy: dict[str, int] = {}
    for finding in report.findings:
        by_policy[finding.policy] = by_policy.get(finding.policy, 0) + 1
    return {
        "assets": len(estate.assets),
        "services": len(estate.services),
        "suppliers": len(estate.suppliers),
        "load": t_load,
        "compile": t_compile,
        "parse_assurance": t_parse,
        "assurance_items": len(assurance.suppliers) + len(assurance.exercises) + len(assurance.restore_tests),
        "assess": {"wall": walls, "cpu": cpus},
        "findings": len(report.findings),
        "breaches": len(report.breaches),
        "checked": report.checked,
        "by_policy": by_policy,
        "peak_mb": common.peak_rss_bytes() / 1e6,
    }


def assured_estates(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each of ``args.shapes`` with the suppliers and the assurance file :func:`derive` makes of it (in a process of
    its own, files kept in the work directory): what every assurance benchmark measures on."""
    script = Path(__file__).resolve()
    with common.work_directory(args.workdir) as workdir:
        for shape in args.shapes:
            path = shape_files(shape, args.assets, args.seed, workdir)["json"]
            common.log(f"({shape}) deriving {SUPPLIERS:,} suppliers and an assurance file…")
            yield shape, common.run_worker(script, ["derive", str(path)])


def assurance_bench_main(
    doc: str | None,
    nominal_assets: int,
    default_shapes: Sequence[str],
    work: Callable[[list[str]], dict[str, Any]],
    run: Callable[[argparse.Namespace], common.Report],
) -> None:
    """The command line of an assurance benchmark: the common options and ``--shapes`` (``default_shapes`` unless
    given), then a worker's part (``--worker derive ESTATE``, or ``--worker WHAT ARGS…`` for ``work``) or the run."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_arguments(parser, nominal_assets)
    shape_argument(parser)
    parser.set_defaults(shapes=list(default_shapes))
    args = parser.parse_args()
    if args.worker:
        what, *rest = args.worker
        common.emit(derive(Path(rest[0])) if what == "derive" else work(rest))
        return
    common.finish(run(args))


def run(args: argparse.Namespace) -> common.Report:
    repeat = 1 if args.quick else 2
    report = common.Report.of_run(
        NAME,
        f"assess with {SUPPLIERS:,} suppliers, {args.assets:,} assets",
        args,
        NOMINAL_ASSETS,
    )
    script = Path(__file__).resolve()
    for shape, files in assured_estates(args):
        common.log(f"worker ({shape}): load, compile, parse the assurance file, assess…")
        result = common.run_worker(script, ["assess", files["estate"], files["assurance"], str(repeat)])
        report.details[shape] = result
        report.add(f"{shape}: load + compile (not in the target)", result["load"] + result["compile"], "s")
        report.add(
            f"{shape}: parse the assurance file (information)",
            result["parse_assurance"],
            "s",
            note=f"{result['assurance_items']:,} suppliers, exercises and restore tests, checked against the estate",
        )
        shown = ", ".join(f"{k} {v:,}" for k, v in sorted(result["by_policy"].items()))
        report.add(
            f"{shape}: assess, best of {repeat}",
            min(result["assess"]["wall"]),
            "s",
            target=TARGET_ASSESS,
            note=f"{result['suppliers']:,} suppliers, {result['services']:,} services; "
            f"{result['checked']:,} checks, {result['findings']:,} findings ({shown}); "
            + common.cpu_text(min(result["assess"]["cpu"])),
        )
        report.add(f"{shape}: peak memory (worker)", result["peak_mb"], "MB")
    return report


def main() -> None:
    assurance_bench_main(
        __doc__, NOMINAL_ASSETS, DEFAULT_SHAPES, lambda rest: worker(Path(rest[0]), Path(rest[1]), int(rest[2])), run
    )


if __name__ == "__main__":
    main()
