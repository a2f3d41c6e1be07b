"""``GET /metrics``: Prometheus text, no token needed (scrapers on the management network read it).

What is shared by every worker is read from the database at scrape time, so any worker answers the same:

- ``ringfence_rollouts{phase}``: rollouts in each phase (gauge);
- ``ringfence_gate_verdicts_total{outcome}``: health-gate verdicts on rings — passed, failed, inconclusive,
  error — counted by the outcome the controller stored with each verdict (``gate_verdicts``), never read
  back out of its sentence;
- ``ringfence_heartbeat_lag_seconds``: seconds since the newest heartbeat from any asset;
- ``ringfence_rollout_heartbeat_lag_max_seconds``: over the assets of active rollouts that have sent a
  heartbeat, the longest time since an asset's latest one (the silent agent a gate is about to miss).

What each worker saw itself: ``ringfence_http_requests_total{method,route,status}`` and
``ringfence_http_request_duration_seconds{method,route}``, labelled by route template, never by raw path.
Every app has its own registry, so two apps in one process (tests) never share a metric.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ringfence.core.clock import utc_now
from ringfence.core.gates import GateOutcome
from ringfence.core.rollout.state import RolloutPhase
from ringfence.service.runner import DRIVEN_PHASES
from ringfence.store.db import session_scope
from ringfence.store.observations import newest_heartbeat_at, oldest_latest_heartbeat_at
from ringfence.store.rollouts import count_rollouts_by_phase
from ringfence.store.verdicts import count_gate_verdicts

router = APIRouter(tags=["service"])


class StateCollector(Collector):
    """The metrics read from the database when scraped (see the module docstring)."""

    def __init__(self, engine: Engine, clock: Any = None) -> None:
        self.engine = engine
        self.clock = clock or utc_now

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        with session_scope(self.engine, readonly=True) as session:
            phases = count_rollouts_by_phase(session)
            verdicts = count_gate_verdicts(session)
            newest = newest_heartbeat_at(session)
            oldest_latest = oldest_latest_heartbeat_at(session, DRIVEN_PHASES)

        rollouts = GaugeMetricFamily("ringfence_rollouts", "Rollouts by phase.", labels=["phase"])
        for phase in RolloutPhase:
            rollouts.add_metric([phase.value], float(phases[phase]))
        yield rollouts

        counted = CounterMetricFamily(
            "ringfence_gate_verdicts", "Health-gate verdicts on rings, by outcome.", labels=["outcome"]
        )
        for outcome in GateOutcome:
            counted.add_metric([outcome.value], float(verdicts[outcome]))
        yield counted

        lag = GaugeMetricFamily("ringfence_heartbeat_lag_seconds", "Seconds since the newest heartbeat of any asset.")
        if newest is not None:
            lag.add_metric([], max(0.0, (now - newest).total_seconds()))
        yield lag

        worst = GaugeMetricFamily(
            "ringfence_rollout_heartbeat_lag_max_seconds",
            "Over assets of active rollouts that sent a heartbeat: the longest time since one's latest.",
        )
        if oldest_latest is not None:
            worst.add_metric([], max(0.0, (now - oldest_latest).total_seconds()))
        yield worst


class RequestMetrics:
    """ASGI middleware counting requests by method, route template and status, and timing them."""

    def __init__(self, app: ASGIApp, *, requests: Counter, durations: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.durations = durations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router leaves the matched route in the scope; a path nothing matched is one label.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.requests.labels(method, route, str(status)).inc()
            self.durations.labels(method, route).observe(time.perf_counter() - started)


def metrics_registry(app: FastAPI) -> CollectorRegistry:
    registry: CollectorRegistry = app.state.metrics_registry
    return registry


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (no token needed)",
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(metrics_registry(request.app)), media_type=CONTENT_TYPE_LATEST)


def setup(app: FastAPI) -> None:
    registry = CollectorRegistry()
    registry.register(StateCollector(app.state.engine))
    requests = Counter(
        "ringfence_http_requests",
        "HTTP requests answered, by method, route template and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    durations = Histogram(
        "ringfence_http_request_duration_seconds",
        "Time to answer an HTTP request, by method and route template.",
        ["method", "route"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
    )
    app.state.metrics_registry = registry
    app.add_middleware(RequestMetrics, requests=requests, durations=durations)
