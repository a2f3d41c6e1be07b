"""The directive endpoint under load: 10,000 simulated agents asking ``GET /v1/agents/{asset}/directive``.

Set-up (not timed): a fresh PostgreSQL database (created on the server of ``--postgres``, dropped at the
end), a generated estate of ``--assets`` assets, one agent token per asset (hashed at rest, as
``ringfence token create --role agent`` makes them; inserted in one statement to save minutes), one
rollout of ``crowdstrike/falcon`` on the ``agent`` driver, and ``ringfence serve --workers 2
--no-controller`` on 127.0.0.1 (no controller, so the rollout holds still while it is measured).

The load comes from a separate process: ``wrk`` (Debian's package) with a Lua script that cycles through
every asset, each request carrying that asset's own agent token, over ``--connections`` keep-alive
connections for ``--seconds``. (Without wrk, an httpx async client does the same, more slowly.) Two
scenarios, each measured after a warm-up pass over every asset (so each worker has seen each token once):

- ``ring 0 open``: the rollout has started and its canaries (one per stratum) are being told to install;
  every other agent is told to wait. Almost every answer comes from the worker's snapshot.
- ``ring 1 open``: the canaries reported healthy and ring 1 (every remaining target, ``rings: [1, 100%]``)
  is open: nearly every agent is told to install, and every such answer is confirmed against the database
  (one primary-key query). The worst case: the moment a big ring opens.

Reported per scenario: requests/s, p50 and p99 latency (wrk's), the answers by action, errors. Targets
(issue 4): ≥ 3,000 requests/s with p99 ≤ 50 ms. Results: ``bench/results/directive.json`` (with
``-agents-first`` and ``-cN`` in the name for those options). The load is closed-loop: with N
connections always busy, the median latency is about N / rate, so the latency figures depend on N.

    .venv/bin/python bench/directive.py [--assets 10000] [--seconds 20] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
THROUGHPUT_TARGET = 3000.0
DEFAULT_CONNECTIONS = 64
P99_TARGET_MS = 50.0

UPDATE = """apiVersion: ringfence/v1
update:
  id: falcon-7-16
  product: crowdstrike/falcon
  version: "7.16"
  rings: [1, "100%"]
  bake: 0s
  rollback: reinstall
"""

LUA = r"""
local ids, tokens, n = {}, {}, 0
local counter = 0
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local asset, token = line:match("^([^\t]+)\t([^\t]+)$")
    n = n + 1
    ids[n], tokens[n] = asset, token
  end
  counter = offset or 0
  installs, rollbacks, waits, others = 0, 0, 0, 0
end

function request()
  counter = counter % n + 1
  return wrk.format("GET", "/v1/agents/" .. ids[counter] .. "/directive",
    {["Authorization"] = "Bearer " .. tokens[counter]})
end

function response(status, headers, body)
  if status ~= 200 then others = others + 1
  elseif body:find('"action":"install"', 1, true) then installs = installs + 1
  elseif body:find('"action":"rollback"', 1, true) then rollbacks = rollbacks + 1
  else waits = waits + 1 end
end

function done(summary, latency, requests)
  local i, r, w, o = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    i = i + t:get("installs"); r = r + t:get("rollbacks"); w = w + t:get("waits"); o = o + t:get("others")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%f,' ..
    '"install":%d,"rollback":%d,"wait":%d,"non_200":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, i, r, w, o,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# ------------------------------------------------------------------------------------------ set-up


@contextmanager
def bench_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``admin_url``, dropped afterwards; its URL."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from ringfence.store.db import normalise_url

    base = normalise_url(admin_url)
    name = f"rf_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its workers so far."""
        import psutil

        root = psutil.Process(self.pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


def agents_first_app() -> Any:
    """The app with the agent routes matched before every other router (``--agents-first``).

    Not how ``ringfence serve`` builds it: a measurement of what listing ``ringfence.api.routes.agents``
    first in ``ringfence.api.app.ROUTERS`` would gain (its paths overlap no other router's).
    """
    import ringfence.api.app as application
    from ringfence.api.server import app_from_environment

    agents = "ringfence.api.routes.agents"
    application.ROUTERS = (agents, *(name for name in application.ROUTERS if name != agents))
    return app_from_environment()


@contextmanager
def served(database_url: str, workers: int, log_path: Path, *, agents_first: bool = False) -> Iterator[Server]:
    """``ringfence serve --workers N --no-controller`` on a free loopback port."""
    import httpx

    port = free_port()
    env = dict(os.environ)
    if agents_first:
        # The same uvicorn settings as `ringfence serve`, with the factory above.
        env |= {"RINGFENCE_DATABASE_URL": database_url, "RINGFENCE_SERVE_CONTROLLER": "0"}
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "directive:agents_first_app",
            "--app-dir",
            str(common.BENCH_DIR),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    else:
        argv = [
            *common.ringfence_command(),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-controller",
            "--database",
            database_url,
        ]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited ({process.returncode}): {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        time.sleep(2.0)  # the first worker answered; give the others a moment to finish starting
        yield Server(url, process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def issue_agent_tokens(engine: Any, asset_ids: list[str]) -> dict[str, str]:
    """One agent token per asset, stored hashed exactly as ``issue_token`` stores them, in one statement."""
    import sqlalchemy as sa

    from ringfence.service.tokens import TOKEN_PREFIX, hash_token
    from ringfence.store.db import session_scope
    from ringfence.store.tables import ApiTokenRow

    now = datetime.now(UTC)
    tokens = {asset: TOKEN_PREFIX + secrets.token_urlsafe(32) for asset in asset_ids}
    rows = [
        {
            "name": f"agent-{asset}",
            "role": "agent",
            "token_hash": hash_token(secret),
            "asset_id": asset,
            "created_at": now,
            "revoked_at": None,
        }
        for asset, secret in tokens.items()
    ]
    with session_scope(engine) as session:
        session.execute(sa.insert(ApiTokenRow.__table__), rows)
    return tokens


def prepare_rollout(engine: Any, estate_text: str) -> tuple[str, int]:
    """The falcon rollout on the agent driver, started (ring 0 open); its id and target count."""
    from ringfence.service import rollouts

    now = datetime.now(UTC)
    created = rollouts.create_rollout(
        engine,
        estate_text=estate_text,
        estate_source="bench-estate.json",
        update_text=UPDATE,
        update_source="falcon-7-16.yaml",
        actor="bench",
        at=now,
        driver="agent",
    )
    assert created.rollout is not None
    rollouts.start(engine, created.rollout.id, actor="bench", at=now)
    # One controller step records ring 0's installs as started: the canaries are told to install.
    from ringfence.drivers.agent import AgentDriver

    rollouts.controller(engine, AgentDriver(engine=engine), lambda: datetime.now(UTC)).step(created.rollout.id)
    return created.rollout.id, created.strategy.targets


def open_ring_one(engine: Any, rollout_id: str) -> int:
    """Drive the rollout with the real controller and agent driver until ring 1 is open; its size.

    The canaries report a successful install and healthy heartbeats, as their agents would.
    """
    from ringfence.drivers.agent import AgentDriver
    from ringfence.rollout.state import AssetState, RolloutPhase
    from ringfence.service import rollouts
    from ringfence.service.agents import Heartbeat, HeartbeatStatus, ReportedOperation, ReportedResult
    from ringfence.service.agents import record_heartbeats as record
    from ringfence.service.tokens import Caller, Role
    from ringfence.store import repo
    from ringfence.store.db import session_scope

    def now() -> datetime:
        return datetime.now(UTC)

    controller = rollouts.controller(engine, AgentDriver(engine=engine), now)
    with session_scope(engine, readonly=True) as session:
        canaries = [a.asset_id for a in repo.list_rollout_assets(session, rollout_id, ring=0)]
    proxy = Caller(0, "bench-proxy", Role.OPERATOR)
    result = ReportedResult(ReportedOperation.install, True, "installed")
    beats = [Heartbeat(a, HeartbeatStatus.ok, rollout_id=rollout_id, result=result) for a in canaries]
    record(engine, proxy, beats, now())
    for _ in range(20):
        report = controller.step(rollout_id)
        if report.phase is RolloutPhase.APPLYING and report.ring == 1:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"ring 1 did not open: the rollout is {report.phase} at ring {report.ring}")
    controller.step(rollout_id)  # records ring 1's installs as started
    with session_scope(engine, readonly=True) as session:
        ring = repo.list_rollout_assets(session, rollout_id, ring=1)
    return sum(1 for a in ring if a.state is AssetState.APPLYING)


# ------------------------------------------------------------------------------------------ load


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    answers: dict[str, int]
    errors: int
    tool: str
    server_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_us(self) -> float:
        """Server CPU (all workers) per request: what a request costs whatever else the machine runs."""
        return self.server_cpu_seconds / self.requests * 1e6 if self.requests else float("nan")


def run_wrk(url: str, table: Path, script: Path, seconds: int, connections: int, threads: int) -> Load:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        str(table),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    found = json.loads(lines[-1])
    errors = sum(found["errors"].values())
    return Load(
        requests=int(found["requests"]),
        seconds=found["duration_us"] / 1e6,
        p50_ms=found["p50_us"] / 1000,
        p99_ms=found["p99_us"] / 1000,
        answers={k: int(found[k]) for k in ("install", "rollback", "wait")} | {"not 200": int(found["non_200"])},
        errors=errors,
        tool="wrk",
    )


def run_httpx(url: str, pairs: list[tuple[str, str]], seconds: int, connections: int) -> Load:
    """The fallback load generator: ``connections`` coroutines, each one request at a time."""
    import httpx

    latencies: list[float] = []
    answers: Counter[str] = Counter()
    errors = 0

    async def worker(client: httpx.AsyncClient, offset: int, stop_at: float) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop_at:
            asset, token = pairs[i % len(pairs)]
            i += 1
            start = time.perf_counter()
            try:
                response = await client.get(
                    f"/v1/agents/{asset}/directive", headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            answers[response.json().get("action", "not 200") if response.status_code == 200 else "not 200"] += 1

    async def main() -> float:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
            start = time.perf_counter()
            stop_at = start + seconds
            await asyncio.gather(*(worker(client, k * 7919, stop_at) for k in range(connections)))
            return time.perf_counter() - start

    elapsed = asyncio.run(main())
    return Load(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=common.percentile(latencies, 0.50) * 1000,
        p99_ms=common.percentile(latencies, 0.99) * 1000,
        answers=dict(answers),
        errors=errors,
        tool="httpx",
    )


def measure(
    server: Server, table: Path, pairs: list[tuple[str, str]], script: Path, args: argparse.Namespace, seconds: int
) -> Load:
    from dataclasses import replace

    before = server.cpu_seconds()
    if shutil.which("wrk"):
        load = run_wrk(server.url, table, script, seconds, args.connections, args.threads)
    else:
        load = run_httpx(server.url, pairs, seconds, args.connections)
    return replace(load, server_cpu_seconds=server.cpu_seconds() - before)


def warm_up(server: Server, table: Path, pairs: list[tuple[str, str]], script: Path, args: argparse.Namespace) -> None:
    """Requests until every worker has read the tokens and the rollouts once (not measured)."""
    measure(server, table, pairs, script, args, max(3, args.warmup))


def scenario_row(report: common.Report, name: str, load: Load) -> None:
    met = "met" if load.rate >= THROUGHPUT_TARGET else "missed"
    answers = ", ".join(f"{k} {v:,}" for k, v in load.answers.items() if v)
    report.add(
        f"{name}: requests/s",
        round(load.rate),
        "req/s",
        note=f"target ≥ {THROUGHPUT_TARGET:,.0f}/s: {met}; {load.requests:,} requests in {load.seconds:.1f} s "
        f"({load.tool}); answers: {answers}; transport errors {load.errors}",
    )
    report.add(f"{name}: p50 latency", round(load.p50_ms, 2), "ms")
    report.add(f"{name}: p99 latency", round(load.p99_ms, 2), "ms", target=P99_TARGET_MS)
    report.add(
        f"{name}: server CPU per request",
        round(load.server_cpu_us),
        "µs",
        note=f"all workers; 2 cores at this cost serve at most {2e6 / load.server_cpu_us:,.0f} req/s",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=10_000, help="simulated agents, one per asset (default 10,000)")
    parser.add_argument("--seconds", type=int, default=20, help="length of each measured run (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up before each scenario")
    parser.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        help=f"keep-alive connections (default {DEFAULT_CONNECTIONS})",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", default=os.environ.get("RINGFENCE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument(
        "--agents-first",
        action="store_true",
        help="serve an app whose agent routes are matched first (what that one-line change would gain)",
    )
    args = parser.parse_args()

    from ringfence.generate import generate_estate
    from ringfence.store.db import make_engine, upgrade

    report = common.Report(
        name="directive"
        + ("-agents-first" if args.agents_first else "")
        + (f"-c{args.connections}" if args.connections != DEFAULT_CONNECTIONS else ""),
        title=f"Directive endpoint, {args.assets:,} simulated agents, {args.workers} workers, PostgreSQL"
        + (" (agent routes matched first)" if args.agents_first else ""),
        assets=args.assets,
        nominal_assets=10_000,
        seed=args.seed,
        quick=False,
    )
    with tempfile.TemporaryDirectory(prefix="ringfence-bench-directive-") as tmp, bench_database(args.postgres) as db:
        work = Path(tmp)
        engine = make_engine(db)
        upgrade(engine)
        common.log(f"generating a {args.assets:,}-asset estate and planning the rollout…")
        document = generate_estate(args.assets, seed=args.seed)
        asset_ids = [str(a["id"]) for a in document["assets"]]  # type: ignore[attr-defined]
        rollout_id, targets = prepare_rollout(engine, json.dumps(document))
        tokens = issue_agent_tokens(engine, asset_ids)
        pairs = list(tokens.items())
        table = work / "agents.tsv"
        table.write_text("".join(f"{asset}\t{token}\n" for asset, token in pairs))
        script = work / "directive.lua"
        script.write_text(LUA)
        details: dict[str, Any] = {
            "connections": args.connections,
            "wrk_threads": args.threads,
            "server_workers": args.workers,
            "seconds": args.seconds,
            "targets": targets,
            "load_generator": "wrk" if shutil.which("wrk") else "httpx",
            "agents_router_first": args.agents_first,
            "load_average_1m_at_start": os.getloadavg()[0],
        }
        with served(db, args.workers, work / "server.log", agents_first=args.agents_first) as server:
            common.log("scenario 1: ring 0 open (warm-up, then measured)…")
            warm_up(server, table, pairs, script, args)
            ring0 = measure(server, table, pairs, script, args, args.seconds)
            scenario_row(report, "ring 0 open", ring0)
            common.log(f"  {ring0.rate:,.0f} req/s, p99 {ring0.p99_ms:.1f} ms")

            common.log("scenario 2: opening ring 1 with the controller and the agent driver…")
            opened = open_ring_one(engine, rollout_id)
            details["ring_1_assets"] = opened
            time.sleep(1.5)  # let each worker's snapshot see the new ring
            ring1 = measure(server, table, pairs, script, args, args.seconds)
            scenario_row(report, f"ring 1 open ({opened:,} told to install)", ring1)
            common.log(f"  {ring1.rate:,.0f} req/s, p99 {ring1.p99_ms:.1f} ms")
        details["scenarios"] = {
            "ring_0_open": {**ring0.__dict__, "server_cpu_us_per_request": ring0.server_cpu_us},
            "ring_1_open": {**ring1.__dict__, "server_cpu_us_per_request": ring1.server_cpu_us},
        }
        report.details = details
        engine.dispose()
    common.finish(report)


if __name__ == "__main__":
    main()
