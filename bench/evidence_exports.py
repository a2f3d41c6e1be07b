"""`assess --register` and `--evidence-pack`: the two exports of an assessment, on the estates of ``assess_1m``.

Each shape gets the 1,000 suppliers and the assurance file of ``assess_1m`` (derived once, kept in the work
directory). Timed in a worker, after loading, compiling and assessing (``assess_1m`` times those): the register
(what each supplier supports, its loss, its assessments; rendered as CSV), the evidence pack built from the
assessment, and its two renderings, HTML and PDF. No target: reported for information, with sizes.

    .venv/bin/python bench/evidence_exports.py [--assets N] [--quick] [--seed S] [--shapes NAME ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common
from assess_1m import AS_OF, SUPPLIERS, assurance_bench_main, assured_estates

NAME = "evidence_exports"
NOMINAL_ASSETS = 100_000
DEFAULT_SHAPES = ("generator", "groups", "acute")


def worker(estate_path: Path, assurance_path: Path) -> dict[str, Any]:
    from ringfence.core.assurance import assess, parse_assurance_text, parse_policy_text
    from ringfence.core.graph import compile_estate
    from ringfence.files.disk import examples_dir, read_estate, read_text
    from ringfence.files.evidence_pack import evidence_pack, render_evidence_html, render_evidence_pdf
    from ringfence.files.register import arrangements, render_register_csv

    estate = read_estate(estate_path)
    graph = compile_estate(estate)
    assurance = parse_assurance_text(assurance_path.read_text(encoding="utf-8"), estate, str(assurance_path))
    policy = parse_policy_text(read_text(examples_dir() / "policy-acute.yaml"))
    report = assess(estate, graph, assurance, policy, AS_OF)
    made = datetime(2026, 12, 1, tzinfo=UTC)
    rows, t_rows, c_rows = common.cpu_timed(arrangements, graph, assurance, AS_OF)
    csv_text, t_csv, _ = common.cpu_timed(render_register_csv, rows)
    pack, t_pack, c_pack = common.cpu_timed(evidence_pack, graph, assurance, report)
    html, t_html, _ = common.cpu_timed(render_evidence_html, pack, generated_at=made)
    pdf, t_pdf, c_pdf = common.cpu_timed(render_evidence_pdf, pack, generated_at=made)
    return {
        "assets": len(estate.assets),
        "suppliers": len(estate.suppliers),
        "findings": len(report.findings),
        "pack_rows": sum(len(o.rows) for p in pack.principles for o in p.outcomes),
        "register": {"wall": t_rows, "cpu": c_rows},
        "csv": t_csv,
        "csv_bytes": len(csv_text.encode("utf-8")),
        "pack": {"wall": t_pack, "cpu": c_pack},
        "html": t_html,
        "html_bytes": len(html.encode("utf-8")),
        "pdf": {"wall": t_pdf, "cpu": c_pdf},
        "pdf_bytes": len(pdf),
        "peak_mb": common.peak_rss_bytes() / 1e6,
    }


def run(args: argparse.Namespace) -> common.Report:
    report = common.Report.of_run(
        NAME,
        f"register and evidence pack, {SUPPLIERS:,} suppliers, {args.assets:,} assets",
        args,
        NOMINAL_ASSETS,
    )
    script = Path(__file__).resolve()
    for shape, files in assured_estates(args):
        common.log(f"worker ({shape}): assess, then the register and the evidence pack…")
        result = common.run_worker(script, ["exports", files["estate"], files["assurance"]])
        report.details[shape] = result
        report.add(
            f"{shape}: register rows",
            result["register"]["wall"],
            "s",
            note=f"{result['suppliers']:,} suppliers; CSV {result['csv'] * 1000:.0f} ms, "
            f"{result['csv_bytes'] / 1e6:.1f} MB; " + common.cpu_text(result["register"]["cpu"]),
        )
        report.add(
            f"{shape}: evidence pack built",
            result["pack"]["wall"],
            "s",
            note=f"{result['findings']:,} findings, {result['pack_rows']:,} table rows; "
            + common.cpu_text(result["pack"]["cpu"]),
        )
        report.add(
            f"{shape}: evidence pack as HTML",
            result["html"],
            "s",
            note=f"{result['html_bytes'] / 1e6:.1f} MB",
        )
        report.add(
            f"{shape}: evidence pack as PDF",
            result["pdf"]["wall"],
            "s",
            note=f"{result['pdf_bytes'] / 1e6:.1f} MB; " + common.cpu_text(result["pdf"]["cpu"]),
        )
        report.add(f"{shape}: peak memory (worker)", result["peak_mb"], "MB")
    return report


def main() -> None:
    assurance_bench_main(
        __doc__, NOMINAL_ASSETS, DEFAULT_SHAPES, lambda rest: worker(Path(rest[0]), Path(rest[1])), run
    )


if __name__ == "__main__":
    main()
