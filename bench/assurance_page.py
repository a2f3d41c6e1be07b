"""The server's assessment with its evidence calendar (the dashboard's Assurance page, ``GET …/assessment``, the
notifier's evidence check) against ``assess`` alone: what one evaluation with the warning window stretched to a
year costs over the plain one, on three estate shapes.

Each shape of ``shapes.py`` gets the suppliers and the assurance file of ``assess_1m.py`` (derived the same way).
Timed in a worker, each best of ``repeat``: ``core.assurance.assess`` with the bundled policy (what ``ringfence
assess`` runs), ``service.assurance.assess_with_calendar`` (the same evaluation, the findings as of the day and
the calendar a year ahead, from one pass), and the notifier's choice of what to tell (``evidence_notices``).

    .venv/bin/python bench/assurance_page.py [--assets N] [--quick] [--seed S] [--shapes NAME ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
from assess_1m import AS_OF, assurance_bench_main, assured_estates

NAME = "assurance_page"
NOMINAL_ASSETS = 200_000
DEFAULT_SHAPES = ("generator", "groups", "acute")


@dataclass(frozen=True)
class _Version:
    id: int = 1
    name: str = "bench"
    sha256: str = "bench"


def worker(estate_path: Path, assurance_path: Path, repeat: int) -> dict[str, Any]:
    from ringfence.core.assurance import assess, parse_assurance_text, parse_policy_text
    from ringfence.core.graph import compile_estate
    from ringfence.files.disk import read_estate
    from ringfence.service.assurance import (
        AssessmentInputs,
        assess_with_calendar,
        default_policy_text,
        evidence_notices,
    )
    from ringfence.service.estates import CheckedEstate, LoadedEstate
    from ringfence.store.records import EstateFormat

    estate = read_estate(estate_path)
    graph = compile_estate(estate)
    assurance = parse_assurance_text(assurance_path.read_text(encoding="utf-8"), estate, str(assurance_path))
    policy = parse_policy_text(default_policy_text())
    loaded = LoadedEstate(_Version(), CheckedEstate(estate, graph, (), EstateFormat.JSON))  # type: ignore[arg-type]
    inputs = AssessmentInputs(assurance, policy, None, None)
    plain, page, notices = [], [], []
    view = None
    report = None
    for _ in range(repeat):
        report, wall, _cpu = common.cpu_timed(assess, estate, graph, assurance, policy, AS_OF)
        plain.append(wall)
        view, wall, _cpu = common.cpu_timed(assess_with_calendar, loaded, inputs, AS_OF)
        page.append(wall)
        told, wall, _cpu = common.cpu_timed(evidence_notices, "bench", view, AS_OF)
        notices.append(wall)
    assert view is not None
    assert report is not None
    assert view.report == report, "the derived report must be what assess says"
    return {
        "assets": len(estate.assets),
        "suppliers": len(estate.suppliers),
        "assess": min(plain),
        "assess_with_calendar": min(page),
        "evidence_notices": min(notices),
        "findings": len(report.findings),
        "calendar": len(view.calendar),
        "told": len(told),
        "peak_mb": common.peak_rss_bytes() / 1e6,
    }


def run(args: argparse.Namespace) -> common.Report:
    repeat = 1 if args.quick else 3
    report = common.Report.of_run(
        NAME,
        f"assessment with its evidence calendar, {args.assets:,} assets",
        args,
        NOMINAL_ASSETS,
    )
    script = Path(__file__).resolve()
    for shape, files in assured_estates(args):
        common.log(f"worker ({shape}): assess, assess with the calendar, notices…")
        result = common.run_worker(script, ["time", files["estate"], files["assurance"], str(repeat)])
        report.details[shape] = result
        report.add(
            f"{shape}: assess (best of {repeat})",
            result["assess"],
            "s",
            note=f"{result['findings']:,} findings, {result['suppliers']:,} suppliers",
        )
        report.add(
            f"{shape}: assess with the calendar (best of {repeat})",
            result["assess_with_calendar"],
            "s",
            note=f"{result['calendar']:,} calendar items; "
            f"{result['assess_with_calendar'] / result['assess']:.2f}× assess",
        )
        report.add(
            f"{shape}: what to tell (best of {repeat})",
            result["evidence_notices"],
            "s",
            note=f"{result['told']:,} notices",
        )
        report.add(f"{shape}: peak memory (worker)", result["peak_mb"], "MB")
    return report


def main() -> None:
    assurance_bench_main(
        __doc__, NOMINAL_ASSETS, DEFAULT_SHAPES, lambda rest: worker(Path(rest[0]), Path(rest[1]), int(rest[2])), run
    )


if __name__ == "__main__":
    main()
