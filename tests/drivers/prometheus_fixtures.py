"""A real Prometheus for the tests (Debian's ``prometheus`` binary) scraping exporters the tests own.

:class:`Exporter` is a small HTTP server on 127.0.0.1 serving ``/metrics/<asset>`` per asset in Prometheus's
text format: ``app_requests_total{code="200"|"500"}`` counters that grow each scrape by the asset's request
and error counts, and ``ringfence_test_healthy`` (1 or 0). An asset set ``down`` answers 503, so Prometheus's
own ``up`` for it drops to 0. :func:`running_prometheus` starts Prometheus on a free port with a config of
one scrape target per asset (``instance`` = the asset id, ``__metrics_path__`` its page), every second, and
a storage folder under the test's tmp path; it stops it afterwards.

Without the binary the tests skip, unless ``RINGFENCE_REQUIRE_SERVICES=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_SECONDS = 1


def require_prometheus() -> str:
    """The binary's path; skip without it, or fail when the services are required (CI must not pass by skipping)."""
    found = PROMETHEUS if os.access(PROMETHEUS, os.X_OK) else shutil.which("prometheus")
    if found:
        return found
    message = "the prometheus binary is not installed (Debian: apt-get install prometheus)"
    if os.environ.get("RINGFENCE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; RINGFENCE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


@dataclass
class AssetMetrics:
    """What one asset's page says: requests and errors added per scrape, healthy or not, down (503) or not."""

    requests: int = 100
    errors: int = 0
    healthy: bool = True
    down: bool = False
    _served: int = 0


@dataclass
class Exporter:
    """Pages of metrics per asset, whose values a test flips (see the module docstring)."""

    assets: dict[str, AssetMetrics] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    extra: Callable[[], str] | None = None
    """A page of its own at ``/metrics`` (the bench's thousands of series on one target)."""

    def set(self, asset: str, **values: object) -> None:
        with self.lock:
            metrics = self.assets.setdefault(asset, AssetMetrics())
            for name, value in values.items():
                setattr(metrics, name, value)

    def page(self, asset: str) -> str | None:
        with self.lock:
            metrics = self.assets.get(asset)
            if metrics is None or metrics.down:
                return None
            metrics._served += 1
            ok = (metrics.requests - metrics.errors) * metrics._served
            bad = metrics.errors * metrics._served
            healthy = 1 if metrics.healthy else 0
        return (
            "# TYPE app_requests_total counter\n"
            f'app_requests_total{{code="200"}} {ok}\n'
            f'app_requests_total{{code="500"}} {bad}\n'
            "# TYPE ringfence_test_healthy gauge\n"
            f"ringfence_test_healthy {healthy}\n"
        )


@contextmanager
def serving(exporter: Exporter) -> Iterator[int]:
    """The exporter on 127.0.0.1 in a thread; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics" and exporter.extra is not None:
                text: str | None = exporter.extra()
            elif self.path.startswith("/metrics/"):
                text = exporter.page(self.path.removeprefix("/metrics/"))
            else:
                text = None
            if text is None:
                self.send_response(503)
                self.end_headers()
                return
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # Prometheus asks every second: keep the test's output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape_config(exporter_port: int, assets: Sequence[str], *, one_page: bool = False) -> str:
    """Prometheus's config: one target per asset (``instance`` its id), or one target serving ``/metrics``."""
    lines = [
        "global:",
        f"  scrape_interval: {SCRAPE_SECONDS}s",
        f"  scrape_timeout: {SCRAPE_SECONDS}s",
        "scrape_configs:",
        "  - job_name: assets",
        "    honor_labels: true",
        "    static_configs:",
    ]
    if one_page:
        lines += [f'      - targets: ["127.0.0.1:{exporter_port}"]', "        labels: {instance: bench}"]
    for asset in () if one_page else assets:
        lines += [
            f'      - targets: ["127.0.0.1:{exporter_port}"]',
            f'        labels: {{instance: "{asset}", __metrics_path__: "/metrics/{asset}"}}',
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, promql: str) -> list[dict[str, object]]:
        answer = httpx.post(f"{self.url}/api/v1/query", data={"query": promql}, timeout=10).json()
        result: list[dict[str, object]] = answer["data"]["result"]
        return result


@contextmanager
def running_prometheus(binary: str, config: str, tmp_path: Path) -> Iterator[RunningPrometheus]:
    """Prometheus on a free port of 127.0.0.1 with ``config``, ready to answer queries; stopped afterwards."""
    folder = tmp_path / f"prometheus-{free_port()}"
    folder.mkdir()
    (folder / "prometheus.yml").write_text(config)
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(folder / 'prometheus.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not become ready within 30 s")
            time.sleep(0.1)
        yield RunningPrometheus(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_for(condition: Callable[[], bool], *, timeout: float = 15.0, what: str = "the condition") -> None:
    """Poll ``condition`` until it holds (Prometheus scrapes every second); fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not hold within {timeout:g} s")
        time.sleep(0.2)
