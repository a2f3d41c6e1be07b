"""What measured restore times cost an incident: declaring it, and reading its clocks and its document.

On three estate shapes (bench/shapes.py), the worst site fails (as recover_1m picks it) and an incident is declared
twice: with every item an estimate (as before measured times), and with half the down items measured (a restore
test each, as a stored assurance file gives them). For each, the CPU and wall time of ``declare_incident``,
``rto_clocks`` (what the list of incidents and every page refresh computes) and ``incident_document`` (the API's
document: the clocks and each item's declared "restored by"). Printed as a table and one JSON document.

    .venv/bin/python bench/incident_measured.py [--assets N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from typing import Any

import common
from recover_1m import worst_site
from shapes import shape_document

SHAPES = ("generator", "groups", "acute")
AT = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def run(shape: str, assets: int, seed: int) -> list[dict[str, Any]]:
    from ringfence.core.estate import parse_estate_text
    from ringfence.core.graph import compile_estate
    from ringfence.core.incident import rto_clocks
    from ringfence.core.incident_declaration import declare_incident
    from ringfence.core.recovery import MeasuredRestore
    from ringfence.service.incidents import incident_document

    graph = compile_estate(parse_estate_text(json.dumps(shape_document(shape, assets, seed)), f"{shape}.json"))
    site, _ = worst_site(graph)
    failures = graph.resolve_failures([f"site:{site}"])
    down = [graph.ids[n] for n in graph.down_after(failures).mask.nonzero()[0].tolist()]
    half = {item: MeasuredRestore(600 + 60 * (n % 90), date(2026, 1 + n % 12, 1)) for n, item in enumerate(down[::2])}
    rows = []
    for label, measured in (("estimates", None), ("half measured", half)):
        incident, t_declare, c_declare = common.cpu_timed(
            declare_incident, graph, failures, incident_id="inc-1", at=AT, actor="bench", measured=measured
        )
        clocks, t_clocks, c_clocks = common.cpu_timed(rto_clocks, incident, AT)
        _, t_doc, c_doc = common.cpu_timed(incident_document, incident, AT)
        rows.append(
            {
                "shape": shape,
                "assets": assets,
                "times": label,
                "items_down": len(incident.items),
                "measured_items": len(measured or {}),
                "clocks": len(clocks),
                "declare_s": [round(t_declare, 3), round(c_declare, 3)],
                "rto_clocks_s": [round(t_clocks, 3), round(c_clocks, 3)],
                "document_s": [round(t_doc, 3), round(c_doc, 3)],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = [row for shape in SHAPES for row in run(shape, args.assets, args.seed)]
    print("| shape | times | items down | measured | declare (wall / CPU) | rto_clocks | document |")
    print("| --- | --- | ---: | ---: | --- | --- | --- |")
    for r in rows:
        cells = [f"{r[k][0]:.3f} / {r[k][1]:.3f} s" for k in ("declare_s", "rto_clocks_s", "document_s")]
        head = f"| {r['shape']} | {r['times']} | {r['items_down']:,} | {r['measured_items']:,} | "
        print(head + " | ".join(cells) + " |")
    json.dump({"benchmark": "incident_measured", "machine": common.machine(), "rows": rows}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
