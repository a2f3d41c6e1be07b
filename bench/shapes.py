"""Estate shapes for the benchmarks: the generator's trust, and three that stress what it does not.

Every shape starts from ``ringfence.core.generate.generate_estate(assets, seed)`` (the estate behind
``ringfence generate``) and reshapes that document, so each is a plausible trust of exactly ``assets``
assets, deterministic by seed, and valid:

- ``generator`` — the generator's estate as it is (what every benchmark used so far).
- ``groups`` — many distinct ``any`` groups: one service per 100 assets needing K of its own of-list of 2-6
  servers and workstations (no two lists alike), and broad where-groups over whole sites, whole kinds and
  every agent, some owned by assets their own selector matches (so the owner is left out of each).
- ``warnings`` — every service without ``rto``, ``rpo`` or ``continuity`` (``check`` warns about each; recovery
  has no RTO to hold), and every redundant app pool written ``any: n of n``: no slack, so every plan of the
  agent lists a ``no-slack`` warning for each pool.
- ``acute`` — an acute trust whose tier-1 systems keep their replicas on physical servers bought as separate
  lots, one per site: every replica is alone in its stratum (kind, os, model, site) and is the least critical
  asset there, so covering every stratum in one canary would take each system down. Pairs (1 of 2), trios with
  two spare (1 of 3) and quads (2 of 4), all running the endpoint agent: the planner needs canary waves.

The shapes share the generator's sub-objects (treat the documents as read-only) except where they change
them. Files are written once per (shape, size, seed) into the work directory and reused, like
``common.estate_files``, which writes the ``generator`` shape.

    from shapes import SHAPES, shape_files
    path = shape_files("acute", 1_000_000, seed=0, workdir=Path("/tmp/estates"))["json"]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import common

Document = dict[str, Any]

SHAPES = ("generator", "groups", "warnings", "acute")
DESCRIPTIONS = {
    "generator": "the generator's trust",
    "groups": "many distinct of-lists, broad where-groups",
    "warnings": "no RTO anywhere, every app pool no-slack",
    "acute": "tier-1 replicas alone in their strata",
}
_AGENT = {"product": "crowdstrike/falcon", "version": "7.15"}


def shape_document(shape: str, assets: int, seed: int = 0) -> Document:
    """The estate document of ``shape`` with exactly ``assets`` assets, the same for the same arguments."""
    from ringfence.core.generate import generate_estate

    if shape not in SHAPES:
        raise ValueError(f"there is no estate shape '{shape}'; use one of {', '.join(SHAPES)}")
    document = generate_estate(assets, seed=seed)
    reshape: Callable[[Document, random.Random], Document] = {
        "generator": lambda d, _: d,
        "groups": _many_groups,
        "warnings": _warnings_everywhere,
        "acute": _acute_trust,
    }[shape]
    # A seed of its own per shape, so that reshaping never shifts what the generator drew.
    return reshape(document, random.Random(f"{shape}-{seed}"))


def shape_files(
    shape: str,
    assets: int,
    seed: int,
    workdir: Path,
    formats: Sequence[str] = ("json",),
    *,
    log: Callable[[str], None] = common.log,
) -> dict[str, Path]:
    """Files of ``shape`` in ``workdir`` (``estate-SHAPE-N-sS.json``), written once and reused."""
    if shape == "generator":
        return common.estate_files(assets, seed, workdir, formats, log=log)
    paths = {fmt: workdir / f"estate-{shape}-{assets}-s{seed}.{fmt}" for fmt in formats}
    missing = [fmt for fmt, path in paths.items() if not path.exists()]
    if not missing:
        return paths
    from ringfence.files.disk import write_document

    log(f"generating the '{shape}' shape of {assets:,} assets (seed {seed})…")
    document, seconds = common.timed(shape_document, shape, assets, seed)
    log(f"  generated in {seconds:.1f} s")
    for fmt in missing:
        start = time.perf_counter()
        # As common.estate_files: YAML is written in full, without the anchors shared sub-objects would make.
        write_document(json.loads(json.dumps(document)) if fmt == "yaml" else document, paths[fmt])
        size = paths[fmt].stat().st_size
        log(f"  wrote {paths[fmt].name} ({size / 1e6:,.0f} MB) in {time.perf_counter() - start:.1f} s")
    return paths


def estate_bench_main(
    doc: str | None,
    nominal_assets: int,
    worker: Callable[[Path, int], dict[str, Any]],
    run: Callable[[Any], common.Report],
    *,
    shaped: bool = True,
) -> None:
    """The command line of a benchmark over generated estates: the common options (and ``--shapes`` when
    ``shaped``), then either one worker's part (``--worker FILE N``: a child process, so that its memory and its
    collector are its own) or the whole run, its table shown and saved."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_arguments(parser, nominal_assets)
    if shaped:
        shape_argument(parser)
    args = parser.parse_args()
    if args.worker:
        common.emit(worker(Path(args.worker[0]), int(args.worker[1])))
        return
    common.finish(run(args))


def shape_argument(parser: Any) -> None:
    """``--shapes NAME ...`` for a benchmark that runs on several shapes (default: every one)."""
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES), help="estate shapes to run on")


# ------------------------------------------------------------------------------------------ shapes


def run_over_shapes(
    name: str,
    title: str,
    args: Any,
    nominal_assets: int,
    script: Path,
    doing: str,
    add_shape_rows: Callable[[common.Report, str, dict[str, Any], int], None],
) -> tuple[common.Report, dict[str, Any], int]:
    """A benchmark's report over ``args.shapes``: its worker run on each shape (best of 3, of 1 with
    ``--quick``), the rows ``add_shape_rows`` makes of each result. The report, the results by shape, the repeat."""
    repeat = 1 if args.quick else 3
    report = common.Report.of_run(name, title, args, nominal_assets)
    results = run_workers(
        script, args, repeat, doing, lambda shape, result: add_shape_rows(report, shape, result, repeat)
    )
    return report, results, repeat


def run_workers(
    script: Path, args: Any, repeat: int, doing: str, add_rows: Callable[[str, dict[str, Any]], None]
) -> dict[str, Any]:
    """Run ``script``'s worker (its own process) on each of ``args.shapes``, files written once into the work
    directory; ``add_rows`` turns each shape's result into report rows. The results, by shape."""
    results: dict[str, Any] = {}
    with common.work_directory(args.workdir) as workdir:
        for shape in args.shapes:
            path = shape_files(shape, args.assets, args.seed, workdir)["json"]
            common.log(f"worker ({shape}): {doing}")
            results[shape] = common.run_worker(script, [str(path), str(repeat)])
            add_rows(shape, results[shape])
    return results


def _assets_of(document: Document) -> list[Document]:
    assets: list[Document] = document["assets"]
    return assets


def _services_of(document: Document) -> list[Document]:
    services: list[Document] = document["services"]
    return services


def _make_room(document: Document, added: int) -> None:
    """Drop ``added`` workstations from the end (the last GP practices') so the estate keeps its size."""
    assets = _assets_of(document)
    while added and assets and assets[-1]["kind"] == "endpoint":
        assets.pop()
        added -= 1
    if added:  # pragma: no cover - every generated estate ends with thousands of workstations
        raise ValueError("no workstation left to make room for the shape's assets")


def _many_groups(document: Document, rng: random.Random) -> Document:
    assets = _assets_of(document)
    services = _services_of(document)
    servers = [a["id"] for a in assets if a["kind"] == "vm"]
    endpoints = [a["id"] for a in assets if a["kind"] == "endpoint"]
    sites = sorted({a["site"] for a in assets if a["kind"] == "endpoint" and "site" in a})
    # One service per 100 assets with its own of-list of 2 to 6 members, servers and workstations mixed.
    for i in range(1, len(assets) // 100 + 1):
        size = rng.randint(2, 6)
        pool = servers if rng.random() < 0.5 else endpoints
        members = rng.sample(pool, size)
        services.append(
            {
                "id": f"team-app-{i:06d}",
                "tier": rng.choice((2, 3, 4)),
                "rto": "1d",
                "continuity": "Work on paper; back-entry within the week.",
                "requires": [{"any": rng.randint(1, size - 1), "of": members}],
            }
        )
    # Broad where-groups: every workstation of a site (per site), every workstation, every VM of an OS,
    # every asset running the agent. K leaves a quarter to spare, so the groups constrain every large ring.
    counts = {"kind=endpoint": len(endpoints), "kind=vm": len(servers)}
    broad = [("kind=endpoint", counts["kind=endpoint"]), ("software=crowdstrike/falcon", len(endpoints) + len(servers))]
    per_site: dict[str, int] = {}
    for a in assets:
        if a["kind"] == "endpoint" and "site" in a:
            per_site[a["site"]] = per_site.get(a["site"], 0) + 1
    broad += [(f"kind=endpoint,site={site}", per_site[site]) for site in sites[:200]]
    for os in ("windows-2019", "windows-2022", "rhel-8"):
        broad.append((f"kind=vm,attrs.os={os}", sum(1 for a in assets if a["kind"] == "vm" and a["attrs"]["os"] == os)))
    for n, (selector, matched) in enumerate(broad, start=1):
        if matched >= 10:
            services.append(
                {
                    "id": f"estate-wide-{n:04d}",
                    "tier": 3,
                    "rto": "4h",
                    "continuity": "Staff work from the nearest site until enough are back.",
                    "requires": [{"any": matched * 3 // 4, "where": selector}],
                }
            )
    # Domain controllers that need one other DC up: a where-group owned by assets its selector matches.
    dcs = [a for a in assets if a["id"].startswith("dc-")]
    for dc in dcs:
        dc["attrs"] = {**dc["attrs"], "role": "dc"}
        dc["requires"] = [*dc["requires"], {"any": 1, "where": "kind=vm,attrs.role=dc"}]
    return document


def _warnings_everywhere(document: Document, rng: random.Random) -> Document:
    del rng  # nothing random: every service loses the same fields
    for service in _services_of(document):
        for field in ("rto", "rpo", "continuity"):
            service.pop(field, None)
        requires = service.get("requires", [])
        # The generator's pools are of-lists of app servers (and SQL pairs): need every one of them.
        service["requires"] = [
            {"any": len(r["of"]), "of": r["of"]}
            if isinstance(r, dict) and "of" in r and r["of"][0].startswith(service["id"])
            else r
            for r in requires
        ]
    return document


_LOTS = (
    # (system, os, model, replicas, K): pairs, a trio with two spare, a quad that needs half.
    ("epr-db", "oracle-linux-8", "Exadata X9M", 2, 1),
    ("lims-db", "rhel-8", "ProLiant DL560 Gen11", 3, 1),
    ("pacs-store", "windows-2022", "PowerEdge R760xd2", 4, 2),
)


def _acute_trust(document: Document, rng: random.Random) -> Document:
    assets = _assets_of(document)
    services = _services_of(document)
    hospitals = sorted({a["site"] for a in assets if a["kind"] == "network" and a["id"].startswith("core-")})
    added: list[Document] = []
    for i, site in enumerate(hospitals):
        for system, os, model, replicas, k in _LOTS:
            members = []
            for r in range(replicas):
                # Replicas at consecutive hospitals (a stretched cluster), each bought as its own lot.
                at = hospitals[(i + r) % len(hospitals)]
                server = f"{system}-{site}-{r + 1}"
                added.append(
                    {
                        "id": server,
                        "kind": "host",
                        "site": at,
                        "supplier": "dell" if "PowerEdge" in model else "hpe",
                        "attrs": {"os": os, "model": f"{model} lot {site}-{r + 1}"},
                        "software": [_AGENT],
                        "requires": [f"core-{at}-1"],
                    }
                )
                members.append(server)
            services.append(
                {
                    "id": f"{system.split('-')[0]}-{site}",
                    "name": f"{system.split('-')[0].upper()} at {site}",
                    "tier": 1,
                    "rto": rng.choice(("1h", "2h")),
                    "rpo": "15m",
                    "continuity": "Downtime procedures; read-only copy at the partner site.",
                    "requires": [{"any": k, "of": members}],
                }
            )
    _make_room(document, len(added))
    # Before the workstations, with the other infrastructure, as a real inventory lists them.
    first_endpoint = next(i for i, a in enumerate(assets) if a["kind"] == "endpoint")
    assets[first_endpoint:first_endpoint] = added
    return document
