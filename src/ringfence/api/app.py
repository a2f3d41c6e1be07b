"""The FastAPI application: one factory, routers under ``/v1``, the dashboard at ``/``.

Routers live in ``ringfence.api.routes`` (and the dashboard in ``ringfence.web``); each module exposes
``router``. Migrations run when the app starts, so a fresh SQLite file or PostgreSQL database just works.
"""

from __future__ import annotations

import gc
import importlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.engine import Engine

from ringfence import __version__
from ringfence.api.gate import AuthGate
from ringfence.api.headers import SecurityHeaders
from ringfence.api.outage import install_outage_handling
from ringfence.api.problems import install_problem_handlers
from ringfence.service.schema import upgrade_audited
from ringfence.service.tokens import TokenCache
from ringfence.store.db import make_engine

SERVER_ACTOR = "server"
"""Who the audit log says migrated the database when the server did it on start."""

DOCS_ASSETS = "/docs/assets"
"""Where Swagger UI's own script and stylesheet for /docs are served."""

# Router modules, mounted in this order when they exist (each is owned by its own part of the service).
ROUTERS = (
    "ringfence.api.routes.estates",
    "ringfence.api.routes.analysis",
    "ringfence.api.routes.estate_diff",
    "ringfence.api.routes.assurance",
    "ringfence.api.routes.rollouts",
    "ringfence.api.routes.drills",
    "ringfence.api.routes.audit",
    "ringfence.api.routes.tokens",
    "ringfence.api.routes.agents",
    "ringfence.api.routes.incidents",
    "ringfence.api.routes.metrics",
    "ringfence.api.routes.health",
    "ringfence.api.routes.notifications",
    "ringfence.api.routes.alerts",
    "ringfence.web.routes",
)


@dataclass
class Settings:
    database_url: str | None = None
    """None: RINGFENCE_DATABASE_URL, else the SQLite file under RINGFENCE_HOME."""
    migrate: bool = True
    controller: bool = True
    """Run the rollout controller loop inside the server (one per database: it takes each rollout's lock)."""
    controller_interval: float = 2.0
    sample_estate: bool = False
    """Load the bundled sample estate on start if the database has no estate yet (`make serve`)."""
    telemetry: bool = False
    """FastAPI's native OpenTelemetry (traces, metrics and logs to the globally configured providers).
    Off by default: ``/metrics`` serves Prometheus, and the check alone costs every request a few
    microseconds of environment look-ups, on a path (the agent gate) that thousands of agents poll."""
    oidc_config: str | None = None
    """The sign-in configuration file (people sign in at an OpenID Connect provider; ``ringfence.web.routes.oidc``).
    None: RINGFENCE_OIDC_CONFIG, else API token sign-in only."""
    max_estate_bytes: int | None = None
    """The largest estate a writer may upload (bytes); None: RINGFENCE_MAX_ESTATE_BYTES, else 256 MiB
    (``ringfence.api.gate.BodyLimits``)."""
    notifications: str | None = None
    """The notifications file (``ringfence.api.routes.notifications`` runs the notifier); None:
    RINGFENCE_NOTIFICATIONS, else no notifier."""
    notification_interval: float = 2.0
    """Seconds between the notifier's looks at the audit log (and its due deliveries)."""
    extra: dict[str, str] = field(default_factory=dict)
    monotonic: Callable[[], float] = time.monotonic
    """The clock the worker's caches (token cache, directive snapshot) measure their age by. Tests pass a
    clock they step, so a cache expires when the test says, not after a sleep."""


GC_THRESHOLDS = (10_000, 10, 10)
"""Young collections after 10,000 new objects instead of CPython's 700 (see :func:`tune_garbage_collector`)."""


def tune_garbage_collector() -> None:
    """Make Python's cyclic garbage collector pause a server worker less often and for less time.

    Why: a worker holding thousands of agents' kept-alive connections tracks some 330,000 objects (each
    connection's own, the token cache, the directive snapshot), and with CPython's default thresholds
    its collections paused it for 25–200 ms every few seconds: the p99 latency of the directive endpoint
    under 10,000 agents at 3,000 requests/s was 17–73 ms over six runs, its maximum up to 240 ms
    (``bench/directive.py``; 3.3 ms with the collector off). Collecting the young generation after
    10,000 new objects instead of 700 and freezing what the worker built while starting (modules, the
    app: objects that live as long as the process, which a full collection would otherwise walk every
    time) brought p99 to about 3 ms.
    Memory stays bounded: everything made after start-up is still collected, the young in bigger steps.
    Called by each ``ringfence serve`` worker once its app is built; not by tests or embedding code,
    whose process is not ours to tune.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine or make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate:
            upgrade_audited(engine, SERVER_ACTOR)
        for hook in list(app.state.startup_hooks):
            await hook(app)
        try:
            yield
        finally:
            for stop in app.state.shutdown_hooks:
                await stop(app)

    # The explorer at /docs is Swagger UI served from this server (fastapi-offline ships its files), so it
    # works where the estate lives: on a network that reaches no CDN.
    app = FastAPIOffline(
        title="ringfence",
        version=__version__,
        summary="Resilience control plane for critical IT estates",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        static_url=DOCS_ASSETS,
        lifespan=lifespan,
        telemetry={"tracing": settings.telemetry, "metrics": settings.telemetry, "logs": settings.telemetry},
    )
    app.state.engine = engine
    # One per worker, shared by every route that takes a token (see ringfence.service.tokens).
    app.state.token_cache = TokenCache(engine, monotonic=settings.monotonic)
    app.state.settings = settings
    app.state.startup_hooks = []
    app.state.shutdown_hooks = []
    install_problem_handlers(app)
    # Added before the routers' middlewares, so it runs after them (the metrics middleware counts its
    # refusals, the directive fast lane answers known agents before it): every /v1 request is authenticated,
    # and every body capped, before anything reads the body (see ringfence.api.gate).
    app.add_middleware(
        AuthGate, tokens=app.state.token_cache, routes=app.router.routes, max_estate_bytes=settings.max_estate_bytes
    )

    for name in ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that part of the service is not installed in this build
            raise
        app.include_router(module.router)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(app)
    # Last, so outermost: a database outage met anywhere (the gate's token look-up included) is a 503.
    install_outage_handling(app)
    # Outside even that: every response, the outage's and /docs' included, carries the browser's protections.
    app.add_middleware(SecurityHeaders)
    return app
