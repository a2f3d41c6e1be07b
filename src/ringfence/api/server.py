"""The app as uvicorn starts it in each worker: settings from the environment ``ringfence serve`` set."""

from __future__ import annotations

import os

from fastapi import FastAPI

from ringfence.api.app import Settings, create_app, tune_garbage_collector


def app_from_environment() -> FastAPI:
    app = create_app(
        Settings(
            database_url=os.environ.get("RINGFENCE_DATABASE_URL") or None,
            sample_estate=os.environ.get("RINGFENCE_SERVE_SAMPLE") == "1",
            controller=os.environ.get("RINGFENCE_SERVE_CONTROLLER", "1") == "1",
        )
    )
    tune_garbage_collector()  # this worker process is ours: see the function for why
    return app
