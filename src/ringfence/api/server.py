"""The app as uvicorn starts it in each worker: settings from the environment ``ringfence serve`` set."""

from __future__ import annotations

import logging
import os
import sys

from fastapi import FastAPI

from ringfence.api.app import Settings, create_app, tune_garbage_collector

GIL_SWITCH_SECONDS = 0.001
"""How long the event loop's thread may keep Python's GIL from a thread that wants it (CPython: 5 ms).

Why: under a flood the event loop thread never waits for the network, so it gives the GIL up only when
the interval runs out. A heartbeat's database work runs in the thread pool and gives the GIL up at every
round trip to the database; each time it comes back it waited up to the whole interval for the loop to let
go, so a heartbeat of a few statements took tens of milliseconds longer behind a flood than alone
(``bench/token_flood.py``). A fifth of the interval bounds that wait at about a millisecond per round trip;
the loop switches more often only while another thread wants the GIL. Measured (two cores shared with other
work, so roughly): 8 round trips to PostgreSQL beside a thread busy in Python took p95 60–145 ms at 5 ms and
20–25 ms at 0.5 ms; the server's CPU per refused token moved within the noise (73–95 µs against 80–96 µs)."""


def app_from_environment() -> FastAPI:
    app = create_app(
        Settings(
            database_url=os.environ.get("RINGFENCE_DATABASE_URL") or None,
            sample_estate=os.environ.get("RINGFENCE_SERVE_SAMPLE") == "1",
            controller=os.environ.get("RINGFENCE_SERVE_CONTROLLER", "1") == "1",
        )
    )
    tune_garbage_collector()  # this worker process is ours: see the function for why
    sys.setswitchinterval(GIL_SWITCH_SECONDS)  # likewise ours: see the constant for why
    return app


class RefusalsNotLogged(logging.Filter):
    """Keeps refusals (401 and 429) out of uvicorn's access log, when ``ringfence serve --access-log`` has one.

    Why: a flood of fake tokens is thousands of refusals a second; a log line for each would cost more than
    the refusal itself (formatting, a write), fill the disk, and bury the requests worth reading. The flood
    shows in ``/metrics`` (``ringfence_http_requests_total`` by status) instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client, method, path, HTTP version, status).
        return not (isinstance(args, tuple) and len(args) == 5 and args[4] in (401, 429))
