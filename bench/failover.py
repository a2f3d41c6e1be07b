"""Failover of a rollout after kill -9 of the worker driving it: how long until another worker has it.

Set-up (not timed), per estate shape (``shapes.py``; ``--shapes``, default generator, groups and acute at
``--assets`` assets): a fresh PostgreSQL database (created and dropped as in ``directive.py``), the estate
stored with a rollout of the endpoint agent on the simulated driver (``apply: 30s``, so every kill lands with
installs in flight), ``--kills`` + 1 ``ringfence worker`` processes at the default interval (``--interval``,
2 s), all beating. The rollout is started.

Timed, ``--kills`` times per shape: wait a random moment (0.5–3 s) once a worker holds the rollout's claim and
installs are in flight, SIGKILL that worker, and measure until

- **claimed**: another worker's session holds the rollout's claim (its advisory lock, read from ``pg_locks``
  every 10 ms): the takeover itself;
- **stepping**: the new worker's heartbeat lists the rollout (written right after its first turn with it):
  what ``GET /v1/rollouts/{id}`` and the page show as ``driven_by``.

The killed worker's PostgreSQL session ends when its socket closes, which a kill -9 does at once on the same
machine or across a live network; a machine that vanishes leaves no socket to close, and the server ends its
session after the TCP keepalives the claim connection sets (``ringfence.store.locks.KEEPALIVE_DEAD_AFTER``, 25
s) — not measured here (it is a setting), stated in docs/operations.md. After the last kill the rollout is run
to its end on the surviving worker when ``--finish`` is given, and every asset's installs are counted.

Target (issue 14): failover ≤ 30 s after kill -9. Results: ``bench/results/failover.json``.

    .venv/bin/python bench/failover.py [--assets 2000] [--kills 5] [--shapes generator,groups,acute]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from directive import DEFAULT_POSTGRES, bench_database
from shapes import DESCRIPTIONS, SHAPES, shape_document

TARGET_SECONDS = 30.0
UPDATE = """
apiVersion: ringfence/v1
update:
  id: falcon-7-16
  product: crowdstrike/falcon
  version: "7.16"
  rings: [1, "5%", "25%", "100%"]
  bake: 0s
  rollback: reinstall
  timing: {apply: 30s, rollback: 1s, restore_point: 0s}
"""


def rows(engine: Any, query: str, **params: Any) -> list[Any]:
    import sqlalchemy as sa

    with engine.connect() as connection:
        return list(connection.execute(sa.text(query), params))


def claim_holder(engine: Any, key: int) -> int | None:
    """The PostgreSQL backend pid holding the rollout's claim, or None."""
    from ringfence.store.locks import LOCK_NAMESPACE_ROLLOUT_CLAIM

    found = rows(
        engine,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :ns AND objid = :key "
        "AND objsubid = 2",
        ns=LOCK_NAMESPACE_ROLLOUT_CLAIM,
        key=key & 0xFFFFFFFF,
    )
    return int(found[0][0]) if found else None


def driving(engine: Any, rollout_id: str) -> set[int]:
    """The OS pids of the workers whose last heartbeat lists ``rollout_id``."""
    found = set()
    for pid, listed in rows(engine, "SELECT pid, driving FROM workers"):
        listed = json.loads(listed) if isinstance(listed, str) else listed
        if rollout_id in listed:
            found.add(int(pid))
    return found


def wait(condition: Any, what: str, timeout: float = 300.0, every: float = 0.01) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"gave up waiting {timeout:.0f} s for {what}")
        time.sleep(every)
    return time.monotonic() - started


def one_shape(shape: str, args: argparse.Namespace, rng: random.Random, workdir: Path) -> dict[str, Any]:
    from ringfence.core.clock import utc_now
    from ringfence.service import rollouts
    from ringfence.store.db import make_engine, upgrade
    from ringfence.store.locks import claim_key

    document = shape_document(shape, args.assets, seed=args.seed)
    with bench_database(args.postgres) as url:
        engine = make_engine(url)
        upgrade(engine)
        created, plan_seconds = common.timed(
            rollouts.create_rollout,
            engine,
            estate_text=json.dumps(document),
            estate_source=f"{shape}.json",
            update_text=UPDATE,
            update_source="update.yaml",
            actor="bench",
            at=utc_now(),
        )
        assert created.rollout is not None
        rid = created.rollout.id
        key = claim_key("public", rid)
        env = {**os.environ, "RINGFENCE_DATABASE_URL": url, "RINGFENCE_ACTOR": "bench"}
        command = [*common.ringfence_command(), "worker", "--driver", "simulated", "--interval", str(args.interval)]
        logs = [(workdir / f"{shape}-worker-{n}.log").open("wb") for n in range(args.kills + 1)]
        workers = {
            p.pid: p for p in (subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs)
        }
        kills: list[dict[str, float]] = []
        try:
            wait(lambda: len(rows(engine, "SELECT id FROM workers")) == len(workers), "every worker to beat", every=0.1)
            rollouts.start(engine, rid, actor="bench", at=utc_now())
            for n in range(args.kills):
                wait(lambda: len(driving(engine, rid) & set(workers)) == 1, "a worker to drive the rollout")
                wait(
                    lambda: rows(engine, "SELECT count(*) FROM rollout_assets WHERE state = 'applying'")[0][0] > 0,
                    "installs in flight",
                )
                time.sleep(rng.uniform(0.5, 3.0))
                victim = next(iter(driving(engine, rid) & set(workers)))
                holder = claim_holder(engine, key)
                killed_at = time.monotonic()
                workers.pop(victim).send_signal(signal.SIGKILL)
                claimed = wait(
                    lambda held=holder: claim_holder(engine, key) not in (None, held), "another worker's claim"
                )
                wait(lambda: bool(driving(engine, rid) & set(workers)), "the new driver's heartbeat")
                kills.append({"claimed": claimed, "stepping": time.monotonic() - killed_at})
                common.log(
                    f"{shape}: kill {n + 1}: claimed after {claimed:.2f} s, driving after {kills[-1]['stepping']:.2f} s"
                )
            installs: dict[str, int] = {}
            if args.finish:
                wait(
                    lambda: rows(engine, "SELECT phase FROM rollouts WHERE id = :id", id=rid)[0][0] == "completed",
                    "the rollout to complete",
                    timeout=3600,
                    every=1.0,
                )
                world = rows(engine, "SELECT document FROM driver_state WHERE rollout_id = :id", id=rid)[0][0]
                world = json.loads(world) if isinstance(world, str) else world
                installs = {a: s["installs"] for a, s in world["assets"].items()}
        finally:
            for process in workers.values():
                process.send_signal(signal.SIGTERM)
            for process in workers.values():
                process.wait(60)
            for log in logs:
                log.close()
            engine.dispose()
    targets = sum(len(ring) for ring in created.strategy.rings)
    return {
        "shape": shape,
        "targets": targets,
        "rings": len(created.strategy.rings),
        "plan_seconds": plan_seconds,
        "kills": kills,
        "installed_twice": sorted(a for a, n in installs.items() if n > 1) if installs else None,
        "assets_installed": len(installs) if installs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.common_arguments(parser, default_assets=2000)
    parser.add_argument("--kills", type=int, default=5, help="kills per shape (default 5)")
    parser.add_argument("--interval", type=float, default=2.0, help="the workers' --interval (default 2 s)")
    parser.add_argument("--shapes", default="generator,groups,acute", help=f"of {', '.join(SHAPES)}")
    parser.add_argument("--postgres", default=os.environ.get("RINGFENCE_BENCH_POSTGRES", DEFAULT_POSTGRES))
    parser.add_argument("--finish", action="store_true", help="run each rollout to its end and count installs")
    args = parser.parse_args()
    if args.quick:
        args.kills = min(args.kills, 2)
    report = common.Report.of_run(
        "failover",
        f"Failover after kill -9 of the driving worker ({args.kills} kills per shape, "
        f"workers every {args.interval:g} s)",
        args,
        args.assets,
    )
    rng = random.Random(args.seed)
    everything: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rf-failover-") as directory:
        for shape in [s.strip() for s in args.shapes.split(",") if s.strip()]:
            common.log(f"{shape}: {DESCRIPTIONS[shape]}, {args.assets:,} assets")
            found = one_shape(shape, args, rng, Path(directory))
            report.details[shape] = found
            claimed = [k["claimed"] for k in found["kills"]]
            stepping = [k["stepping"] for k in found["kills"]]
            everything.extend(stepping)
            note = (
                f"{found['targets']:,} targets in {found['rings']} rings; claimed median {common.median(claimed):.2f} s"
            )
            if found["installed_twice"] is not None:
                note += f"; {found['assets_installed']:,} installed, {len(found['installed_twice'])} twice"
            report.add(f"{shape}: driving again, median", common.median(stepping), "s", TARGET_SECONDS, note)
            report.add(f"{shape}: driving again, max", max(stepping), "s", TARGET_SECONDS)
    report.add("all shapes: max", max(everything), "s", TARGET_SECONDS, f"{len(everything)} kills")
    common.finish(report)


if __name__ == "__main__":
    main()
