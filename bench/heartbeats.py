"""Heartbeat ingest: ``POST /v1/heartbeats`` in batches, as a proxy in front of a vendor's agents sends them.

Set-up (not timed): a fresh PostgreSQL database (created and dropped as in ``directive.py``), an operator
token for the proxy, ``ringfence serve --workers 2 --no-controller`` on 127.0.0.1, and ``--bodies``
different request bodies of ``--batch`` heartbeats each (``--assets`` asset ids, 1% of them reporting a
failed service check), written once. The load: ``wrk`` posting those bodies in turn over
``--connections`` keep-alive connections for ``--seconds`` (an httpx client without wrk).

Reported: heartbeats stored per second — requests answered 200 times the batch size, and checked against
``count(*)`` of heartbeat observations in the database afterwards, so a heartbeat counts only if it was
stored — the p50 and p99 time to answer one batch, and the server's CPU per heartbeat. Target (issue 4):
≥ 20,000 heartbeats/s in batches. Results: ``bench/results/heartbeats.json``.

    .venv/bin/python bench/heartbeats.py [--batch 1000] [--seconds 20] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from directive import DEFAULT_POSTGRES, Server, bench_database, served

TARGET = 20_000.0

LUA = r"""
local bodies, n, counter = {}, 0, 0
local token = ""
local threads = {}

function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end

function init(args)
  token = args[1]
  for i = 2, #args do
    local file = io.open(args[i], "rb")
    n = n + 1
    bodies[n] = file:read("*a")
    file:close()
  end
  counter = offset or 0
  ok, refused = 0, 0
end

function request()
  counter = counter % n + 1
  return wrk.format("POST", "/v1/heartbeats",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, bodies[counter])
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else refused = refused + 1 end
end

function done(summary, latency, requests)
  local o, r = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); r = r + t:get("refused") end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"ok":%d,"refused":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), o, r,
    e.connect + e.read + e.write + e.timeout))
end
"""


def write_bodies(work: Path, count: int, batch: int, assets: int, seed: int) -> list[Path]:
    """``count`` JSON bodies of ``batch`` heartbeats each, over ``assets`` asset ids."""
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        items: list[dict[str, Any]] = []
        for k in range(batch):
            asset = f"ws-{(index * batch + k) % assets:06d}"
            if rng.random() < 0.01:
                items.append({"asset": asset, "status": "failed", "signal": "service_check_failed", "detail": "exit 1"})
            else:
                items.append({"asset": asset, "status": "ok"})
        path = work / f"batch-{index}.json"
        path.write_text(json.dumps(items))
        paths.append(path)
    return paths


def stored_heartbeats(engine: Any) -> int:
    import sqlalchemy as sa

    from ringfence.store.db import session_scope
    from ringfence.store.tables import ObservationRow

    with session_scope(engine, readonly=True) as session:
        return int(session.scalar(sa.select(sa.func.count()).where(ObservationRow.kind == "heartbeat")) or 0)


def run_wrk(server: Server, token: str, bodies: list[Path], script: Path, args: argparse.Namespace) -> dict[str, Any]:
    argv = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.seconds}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        server.url,
        "--",
        token,
        *map(str, bodies),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    found["tool"] = "wrk"
    return found


def run_httpx(server: Server, token: str, bodies: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    contents = [p.read_bytes() for p in bodies]
    latencies: list[float] = []
    refused = 0

    async def worker(client: httpx.AsyncClient, offset: int, stop_at: float) -> None:
        nonlocal refused
        i = offset
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            response = await client.post(
                "/v1/heartbeats",
                content=contents[i % len(contents)],
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            i += 1
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                refused += 1

    async def main() -> float:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            start = time.perf_counter()
            await asyncio.gather(*(worker(client, k, start + args.seconds) for k in range(args.connections)))
            return time.perf_counter() - start

    elapsed = asyncio.run(main())
    return {
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "p50_us": common.percentile(latencies, 0.5) * 1e6,
        "p99_us": common.percentile(latencies, 0.99) * 1e6,
        "ok": len(latencies) - refused,
        "refused": refused,
        "errors": 0,
        "tool": "httpx",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1000, help="heartbeats per request (default 1,000)")
    parser.add_argument("--assets", type=int, default=10_000, help="distinct assets reporting (default 10,000)")
    parser.add_argument("--bodies", type=int, default=10, help="different request bodies (default 10)")
    parser.add_argument("--seconds", type=int, default=20, help="length of the measured run (default 20)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", default=os.environ.get("RINGFENCE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    args = parser.parse_args()

    from ringfence.service.tokens import issue_token
    from ringfence.store.db import make_engine, upgrade

    report = common.Report(
        name="heartbeats",
        title=f"Heartbeat ingest, batches of {args.batch:,}, {args.workers} workers, PostgreSQL",
        assets=args.assets,
        nominal_assets=args.assets,
        seed=args.seed,
        quick=False,
    )
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ringfence-bench-heartbeats-") as tmp, bench_database(args.postgres) as db:
        work = Path(tmp)
        engine = make_engine(db)
        upgrade(engine)
        token = issue_token(engine, name="vendor-proxy", role="operator").secret
        bodies = write_bodies(work, args.bodies, args.batch, args.assets, args.seed)
        script = work / "heartbeats.lua"
        script.write_text(LUA)
        with served(db, args.workers, work / "server.log") as server:
            common.log("warming up…")
            warm = argparse.Namespace(**{**vars(args), "seconds": 3})
            if shutil.which("wrk"):
                run_wrk(server, token, bodies, script, warm)
            else:
                run_httpx(server, token, bodies, warm)
            before = stored_heartbeats(engine)
            cpu_before = server.cpu_seconds()
            load_before = os.getloadavg()[0]
            common.log(f"posting batches of {args.batch:,} for {args.seconds} s…")
            if shutil.which("wrk"):
                found = run_wrk(server, token, bodies, script, args)
            else:
                found = run_httpx(server, token, bodies, args)
            cpu = server.cpu_seconds() - cpu_before
            load_after = os.getloadavg()[0]
        stored = stored_heartbeats(engine) - before
        engine.dispose()

    seconds = found["duration_us"] / 1e6
    answered = int(found["ok"]) * args.batch
    # Batches still in flight when the load stopped are stored but not answered in time: count only the
    # answered ones (and the database must hold at least that many).
    counted = min(stored, answered)
    rate = counted / seconds if seconds else 0.0
    met = "met" if rate >= TARGET else "missed"
    report.add(
        "heartbeats stored per second",
        round(rate),
        "/s",
        note=f"target ≥ {TARGET:,.0f}/s: {met}; {found['ok']:,} batches answered 200 in {seconds:.1f} s = "
        f"{answered:,} heartbeats, {stored:,} found stored; {found['refused']} refused, "
        f"{found['errors']} transport errors; {found['tool']}; load average {load_before:.1f} → {load_after:.1f} "
        "(2 cores: above 2, work waits for a core)",
    )
    report.add("batch p50 latency", round(found["p50_us"] / 1000, 2), "ms")
    report.add("batch p99 latency", round(found["p99_us"] / 1000, 2), "ms")
    per_heartbeat = cpu / stored * 1e6 if stored else float("nan")
    report.add(
        "server CPU per heartbeat",
        round(per_heartbeat, 1),
        "µs",
        note=f"all workers; 2 cores at this cost take at most {2e6 / per_heartbeat:,.0f} heartbeats/s",
    )
    report.details = {
        "batch": args.batch,
        "connections": args.connections,
        "server_workers": args.workers,
        "seconds": args.seconds,
        "stored": stored,
        "answered_200_heartbeats": answered,
        "server_cpu_seconds": cpu,
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_over_run": [load_before, load_after],
        "raw": found,
    }
    common.finish(report)


if __name__ == "__main__":
    main()
