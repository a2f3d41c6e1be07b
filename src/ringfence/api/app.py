"""The FastAPI application: one factory, routers under ``/v1``, the dashboard at ``/``.

Routers live in ``ringfence.api.routes`` (and the dashboard in ``ringfence.web``); each module exposes
``router``. Migrations run when the app starts, so a fresh SQLite file or PostgreSQL database just works.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from ringfence import __version__
from ringfence.api.problems import install_problem_handlers
from ringfence.store.db import make_engine, upgrade

# Router modules, mounted in this order when they exist (each is owned by its own part of the service).
ROUTERS = (
    "ringfence.api.routes.estates",
    "ringfence.api.routes.analysis",
    "ringfence.api.routes.rollouts",
    "ringfence.api.routes.drills",
    "ringfence.api.routes.audit",
    "ringfence.api.routes.tokens",
    "ringfence.api.routes.agents",
    "ringfence.api.routes.incidents",
    "ringfence.api.routes.metrics",
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
    extra: dict[str, str] = field(default_factory=dict)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine or make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate:
            upgrade(engine)
        for hook in list(app.state.startup_hooks):
            await hook(app)
        try:
            yield
        finally:
            for stop in app.state.shutdown_hooks:
                await stop(app)

    app = FastAPI(
        title="ringfence",
        version=__version__,
        summary="Resilience control plane for critical IT estates",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.startup_hooks = []
    app.state.shutdown_hooks = []
    install_problem_handlers(app)

    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, str]:
        """Liveness: the process answers. No token needed."""
        return {"status": "ok", "version": __version__}

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
    return app
