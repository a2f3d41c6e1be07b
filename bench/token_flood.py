"""A flood of bad tokens against a real server, while a real agent keeps sending its heartbeat.

Why (issue 12, item 5): every unknown token used to be looked up in the database, so a flood of fake tokens
was refused at about 1,000/s and slowed a real agent's heartbeat from 3 ms to about 500 ms. Now a secret not
shaped like our tokens is refused without a lookup, a token refused a moment ago is refused from memory,
a client refused too often is answered 429 without a lookup, and lookups of unknown tokens run a few at a
time (``ringfence.api.gate``, ``ringfence.service.tokens.TokenCache``).

Set-up (not timed): a fresh PostgreSQL database (created on the server of ``--postgres``, dropped at the
end), ``--tokens`` agent tokens in the table (as a fleet has them; hashed at rest, inserted in one
statement), one more agent token for the agent that is watched, and ``ringfence serve --workers 2
--no-controller`` on 127.0.0.1, as in ``directive.py``.

The watched agent: a thread of this script posting one heartbeat (``POST /v1/heartbeats``, its own asset)
every ``--every`` seconds over one kept-alive connection, as an agent does, timing each answer. It runs
alone first (the baseline), then beside each flood.

The floods (``wrk``, ``GET /v1/estates``; a Lua script makes each request's token), each run twice:

- **paced** (the target): ``--paced-connections`` connections (256) each asking, waiting its share of the
  period and asking again, so the flood offers ``--rate`` requests a second (6,000, 20% above the target)
  whatever the server does, and a slow answer shows as latency, not as a lower rate (as the fleet load of
  ``directive.py``, which explains why with Little's law);
- **closed loop** (for information): ``--closed-connections`` connections (64; 0 skips it) each asking again
  the moment it is answered: the most the server refuses when it does nothing else, the agent's heartbeat
  waiting behind a saturated server.

The shapes:

- ``malformed``: secrets that cannot be ours (no ``rf_`` prefix), from one address;
- ``random, one address``: a new well-formed ``rf_…`` token on every request, never seen before, from one
  address (after its first refusals the address is answered 429);
- ``random, many addresses``: the same, each request from one of ``--addresses`` addresses, as a botnet
  would (sent as ``X-Forwarded-For``, which uvicorn takes from a proxy on 127.0.0.1, its default; the
  addresses are from 198.18.0.0/15, the range set aside for benchmarks, and no packet goes to them);
- ``repeated, many addresses``: 100 fixed fake tokens from the many addresses (answered from memory).

Reported per flood: refusals/s (every answer of the flood is one: 401 or 429), the answers by status, the
flood's p50/p99 latency (wrk's), the watched agent's heartbeat p50/p99/max and how many were answered 200,
the server's CPU per refusal and the machine's load average. Target (issue 12): refusing an unknown token
at ≥ 5,000/s while the agent's heartbeat p99 stays ≤ 50 ms, on every paced flood. Results:
``bench/results/token_flood.json``.

In process, first (``--in-process N``, 20,000; ``--only-in-process`` for nothing else): each flood's requests
handed straight to the app (every middleware, the gate, a real token cache over the same database), no
network and no wrk, timing this process's CPU: the server's own cost per refusal, which stays comparable
on a machine shared with other work, where the flood's numbers move with the load.

    .venv/bin/python bench/token_flood.py [--seconds 20] [--rate 6000] [--closed-connections 64] [--tokens 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
from directive import DEFAULT_POSTGRES, Server, bench_database, issue_agent_tokens, served

RATE_TARGET = 5000.0
P99_TARGET_MS = 50.0

LUA = r"""
-- args: mode ("malformed", "random", "repeated"), addresses (0: none sent), period_ms (0: a closed loop)
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local threads = {}
local mode, addresses = "random", 0
local fixed = {}

function setup(thread)
  thread:set("seed", #threads * 7919 + 17)
  table.insert(threads, thread)
end

local function secret(length)
  local chars = {}
  for i = 1, length do
    local k = math.random(1, 64)
    chars[i] = alphabet:sub(k, k)
  end
  return table.concat(chars)
end

function init(args)
  mode = args[1] or "random"
  addresses = tonumber(args[2] or "0")
  period_ms = tonumber(args[3] or "0")
  math.randomseed(os.time() + (seed or 0))
  for i = 1, 100 do fixed[i] = "rf_" .. secret(43) end
  s401, s429, s2xx, other = 0, 0, 0, 0
end

function request()
  local token
  if mode == "malformed" then token = "junk-" .. secret(20)
  elseif mode == "repeated" then token = fixed[math.random(1, 100)]
  else token = "rf_" .. secret(43) end
  local headers = {["Authorization"] = "Bearer " .. token}
  if addresses > 0 then
    local n = math.random(0, addresses - 1)
    headers["X-Forwarded-For"] = string.format("198.18.%d.%d", math.floor(n / 250) % 256, n % 250 + 1)
  end
  return wrk.format("GET", "/v1/estates", headers)
end

function response(status, headers, body)
  if status == 401 then s401 = s401 + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status < 300 then s2xx = s2xx + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local a, b, c, d = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("s401"); b = b + t:get("s429"); c = c + t:get("s2xx"); d = d + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"s401":%d,"s429":%d,"s2xx":%d,"other":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    a, b, c, d, e.connect + e.read + e.write + e.timeout))
end
"""

PACED = (
    LUA
    + r"""
-- Each connection asks, waits its period (give or take 10%), and asks again: the offered rate is about
-- connections / period whatever the server does (wrk calls delay() before each request when it is defined).
function delay()
  return period_ms * (0.9 + 0.2 * math.random())
end
"""
)
"""The paced flood: a fixed offered rate, so a slow answer shows as latency, not as a lower rate."""


@dataclass(frozen=True)
class Flood:
    name: str
    mode: str
    addresses: int


FLOODS = (
    Flood("malformed, one address", "malformed", 0),
    Flood("random, one address", "random", 0),
    Flood("random, many addresses", "random", -1),
    Flood("repeated, many addresses", "repeated", -1),
)


@dataclass
class Heartbeats:
    """The watched agent: one heartbeat every ``every`` seconds, each answer timed, until stopped."""

    url: str
    token: str
    asset: str
    every: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watched-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"}
        body = [{"asset": self.asset, "status": "ok"}]
        with httpx.Client(base_url=self.url, timeout=10) as client:
            next_at = time.perf_counter()
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    answer = client.post("/v1/heartbeats", json=body, headers=headers)
                except httpx.HTTPError:
                    self.failures += 1
                else:
                    self.latencies.append(time.perf_counter() - started)
                    self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                next_at += self.every
                self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def summary(self) -> dict[str, Any]:
        values = self.latencies
        return {
            "sent": len(values) + self.failures,
            "answered_200": self.statuses.get(200, 0),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "transport_errors": self.failures,
            "p50_ms": common.percentile(values, 0.50) * 1000 if values else float("nan"),
            "p99_ms": common.percentile(values, 0.99) * 1000 if values else float("nan"),
            "max_ms": max(values, default=float("nan")) * 1000,
        }


def watched(server: Server, token: str, asset: str, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """The agent alone for ``seconds``: the baseline."""
    agent = Heartbeats(server.url, token, asset, args.every)
    agent.start()
    time.sleep(seconds)
    agent.stop()
    return agent.summary()


def flood(
    server: Server, work: Path, shape: Flood, paced: bool, token: str, asset: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One flood with the agent beside it: paced at ``args.rate`` or a closed loop."""
    addresses = args.addresses if shape.addresses < 0 else shape.addresses
    connections = args.paced_connections if paced else args.closed_connections
    period_ms = connections / args.rate * 1000 if paced else 0.0
    argv = [
        "wrk",
        f"-t{args.threads}",
        f"-c{connections}",
        f"-d{args.seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(work / ("paced.lua" if paced else "closed.lua")),
        server.url,
        "--",
        shape.mode,
        str(addresses),
        f"{period_ms:.2f}",
    ]
    agent = Heartbeats(server.url, token, asset, args.every)
    load_before = os.getloadavg()[0]
    cpu_before = server.cpu_seconds()
    agent.start()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    agent.stop()
    cpu = server.cpu_seconds() - cpu_before
    load_after = os.getloadavg()[0]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    seconds = found["duration_us"] / 1e6
    refused = int(found["s401"]) + int(found["s429"])
    return {
        "flood": shape.name,
        "paced": paced,
        "offered_per_second": args.rate if paced else None,
        "addresses": max(addresses, 1),
        "connections": connections,
        "seconds": seconds,
        "requests": int(found["requests"]),
        "refusals_per_second": refused / seconds if seconds else 0.0,
        "answers": {"401": found["s401"], "429": found["s429"], "2xx": found["s2xx"], "other": found["other"]},
        "transport_errors": found["errors"],
        "flood_p50_ms": found["p50_us"] / 1000,
        "flood_p99_ms": found["p99_us"] / 1000,
        "flood_max_ms": found["max_us"] / 1000,
        "server_cpu_us_per_refusal": cpu / refused * 1e6 if refused else float("nan"),
        "load_average": [load_before, load_after],
        "heartbeat": agent.summary(),
    }


def in_process(database_url: str, shapes: list[Flood], requests: int, addresses: int) -> list[dict[str, Any]]:
    """The app's own CPU per refusal: ``requests`` of each flood handed to the whole ASGI app (every middleware,
    the gate, a real token cache over the bench database) in this process, no network, no wrk.

    Why: the flood above shares the machine with wrk (and, on a busy machine, with everything else), so its
    CPU per refusal moves with the load; this part of it is the server's own code only, comparable between
    runs on a shared machine. The rest of a real refusal's cost is uvicorn's (HTTP parsing, the socket).
    """
    import asyncio
    import secrets

    from ringfence.api.app import Settings, create_app

    app = create_app(Settings(database_url=database_url, migrate=False, controller=False))
    fixed = [f"rf_{secrets.token_urlsafe(32)}" for _ in range(100)]
    results = []

    async def received() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def run(shape: Flood) -> dict[str, Any]:
        statuses: dict[int, int] = {}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        many = addresses if shape.addresses < 0 else shape.addresses
        started = time.process_time()  # every thread of this process: lookups run in the thread pool
        for n in range(requests):
            if shape.mode == "malformed":
                token = f"junk-{secrets.token_hex(10)}"
            elif shape.mode == "repeated":
                token = fixed[n % len(fixed)]
            else:
                token = f"rf_{secrets.token_urlsafe(32)}"
            client = f"198.18.{(n % many) // 250 % 256}.{(n % many) % 250 + 1}" if many else "127.0.0.1"
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/v1/estates",
                "raw_path": b"/v1/estates",
                "query_string": b"",
                "root_path": "",
                "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
                "client": (client, 40000),
                "server": ("127.0.0.1", 8321),
                "state": {},
            }
            await app(scope, received, send)
        cpu = time.process_time() - started
        refused = statuses.get(401, 0) + statuses.get(429, 0)
        return {
            "flood": shape.name,
            "requests": requests,
            "answers": {str(k): v for k, v in sorted(statuses.items())},
            "cpu_us_per_refusal": cpu / refused * 1e6 if refused else float("nan"),
        }

    async def all_floods() -> None:
        for shape in shapes:
            await run(shape)  # once to warm up (routes, caches), then measured
            results.append(await run(shape))

    asyncio.run(all_floods())
    return results


def rows(report: common.Report, result: dict[str, Any]) -> None:
    beat = result["heartbeat"]
    paced = result["paced"]
    name = result["flood"] + (f" (paced, {result['offered_per_second']:,.0f}/s offered)" if paced else " (closed loop)")
    answers = ", ".join(f"{k} {int(v):,}" for k, v in result["answers"].items() if int(v))
    met = "met" if result["refusals_per_second"] >= RATE_TARGET else "missed"
    verdict = f"target ≥ {RATE_TARGET:,.0f}/s: {met}; " if paced else "the most it refuses (for information); "
    report.add(
        f"{name}: refusals/s",
        round(result["refusals_per_second"]),
        "/s",
        note=f"{verdict}{result['requests']:,} requests from "
        f"{result['addresses']:,} address(es) over {result['connections']} connections in "
        f"{result['seconds']:.1f} s; answers {answers}; transport errors {result['transport_errors']}; flood p50 "
        f"{result['flood_p50_ms']:.1f} ms, p99 {result['flood_p99_ms']:.1f} ms; server CPU "
        f"{result['server_cpu_us_per_refusal']:.0f} µs/refusal (all workers); load average "
        f"{result['load_average'][0]:.1f} → {result['load_average'][1]:.1f}",
    )
    report.add(
        f"{name}: agent heartbeat p99",
        round(beat["p99_ms"], 1),
        "ms",
        target=P99_TARGET_MS if paced else None,
        note=f"p50 {beat['p50_ms']:.1f} · max {beat['max_ms']:.0f} ms; {beat['answered_200']:,} of {beat['sent']:,} "
        f"answered 200",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20, help="length of each flood (default 20)")
    parser.add_argument("--rate", type=float, default=6000.0, help="the paced floods' offered rate (default 6,000/s)")
    parser.add_argument(
        "--paced-connections", type=int, default=256, help="the paced floods' connections (default 256)"
    )
    parser.add_argument(
        "--closed-connections", type=int, default=64, help="the closed loops' connections (default 64; 0: none)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--addresses", type=int, default=5000, help="addresses of the many-address floods (5,000)")
    parser.add_argument("--tokens", type=int, default=10_000, help="agent tokens in the table (default 10,000)")
    parser.add_argument("--every", type=float, default=0.025, help="seconds between the agent's heartbeats")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument(
        "--floods",
        default=",".join(f.mode + ("@many" if f.addresses else "") for f in FLOODS),
        help="the floods to run, comma-separated (default: malformed,random,random@many,repeated@many)",
    )
    parser.add_argument(
        "--in-process",
        type=int,
        default=20_000,
        help="requests of each flood handed to the app in this process, for its own CPU per refusal (0: skip)",
    )
    parser.add_argument(
        "--only-in-process", action="store_true", help="measure in process only (no server, no wrk, no agent)"
    )
    parser.add_argument("--postgres", default=os.environ.get("RINGFENCE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument(
        "--name",
        default="token_flood",
        help="results file name (e.g. token_flood-before, for a run of an older ringfence through PYTHONPATH)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk") and not args.only_in_process:
        raise SystemExit("this benchmark needs wrk (Debian: apt-get install wrk)")
    chosen = set(args.floods.split(","))
    shapes = [f for f in FLOODS if f.mode + ("@many" if f.addresses else "") in chosen]

    from ringfence.service.tokens import issue_token
    from ringfence.store.db import make_engine, upgrade

    report = common.Report(
        name=args.name,
        title=f"Refusing bad tokens, {args.workers} workers, PostgreSQL, {args.tokens:,} tokens in the table",
        assets=args.tokens,
        nominal_assets=args.tokens,
        seed=0,
        quick=False,
    )
    details: dict[str, Any] = {"arguments": vars(args), "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="ringfence-bench-flood-") as tmp, bench_database(args.postgres) as db:
        work = Path(tmp)
        engine = make_engine(db)
        upgrade(engine)
        issue_agent_tokens(engine, [f"ws-{n:06d}" for n in range(args.tokens)])
        asset = "ws-watched"
        token = issue_token(engine, name="watched-agent", role="agent", asset_id=asset).secret
        (work / "closed.lua").write_text(LUA)
        (work / "paced.lua").write_text(PACED)
        results: list[dict[str, Any]] = []
        if args.in_process:
            common.log("in process: the app's own CPU per refusal…")
            measured = in_process(db, shapes, args.in_process, args.addresses)
            details["in_process"] = measured
            for each in measured:
                report.add(
                    f"{each['flood']} (in process): app CPU per refusal",
                    round(each["cpu_us_per_refusal"], 1),
                    "µs",
                    note=f"{each['requests']:,} requests through every middleware and the gate, no network; "
                    f"answers {', '.join(f'{k} {v:,}' for k, v in each['answers'].items())}",
                )
        if args.only_in_process:
            engine.dispose()
            report.details = details
            common.finish(report)
            return
        with served(db, args.workers, work / "server.log") as server:
            common.log("the watched agent alone…")
            baseline = watched(server, token, asset, args, min(args.seconds, 10))
            details["baseline"] = baseline
            report.add(
                "no flood: agent heartbeat p99",
                round(baseline["p99_ms"], 1),
                "ms",
                target=P99_TARGET_MS,
                note=f"p50 {baseline['p50_ms']:.1f} · max {baseline['max_ms']:.0f} ms; {baseline['answered_200']:,} "
                f"of {baseline['sent']:,} answered 200",
            )
            for shape in shapes:
                for paced in (True, False) if args.closed_connections else (True,):
                    common.log(f"flood: {shape.name}, {'paced' if paced else 'closed loop'}…")
                    result = flood(server, work, shape, paced, token, asset, args)
                    common.log(
                        f"  {result['refusals_per_second']:,.0f} refusals/s, heartbeat p99 "
                        f"{result['heartbeat']['p99_ms']:.1f} ms, load {result['load_average'][1]:.1f}"
                    )
                    rows(report, result)
                    results.append(result)
                    time.sleep(2)  # let the machine settle between floods
            details["floods"] = results
        engine.dispose()
    judged = [r for r in results if r["paced"]]
    worst_rate = min((r["refusals_per_second"] for r in judged), default=0.0)
    worst_p99 = max((r["heartbeat"]["p99_ms"] for r in judged), default=float("nan"))
    met = "met" if worst_rate >= RATE_TARGET and worst_p99 <= P99_TARGET_MS else "missed"
    report.add(
        "target: slowest paced flood's refusals/s, with the agent's p99 ≤ 50 ms on every one",
        round(worst_rate),
        "/s",
        note=f"target ≥ {RATE_TARGET:,.0f}/s and heartbeat p99 ≤ {P99_TARGET_MS:.0f} ms (worst "
        f"{worst_p99:.1f} ms): {met}",
    )
    report.details = details
    common.finish(report)


if __name__ == "__main__":
    main()
