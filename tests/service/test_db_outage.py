"""A database outage is a 503 with Retry-After on every route, /v1/health names it, and the service recovers
by itself when the database comes back (issue #12, item 9).

PostgreSQL: a cluster of its own (``initdb`` in a temporary directory, on a free port, run as the ``postgres``
user when the tests run as root), a real ``ringfence serve`` on it; the cluster is stopped under the server and
started again. SQLite (best effort: a file cannot be made unreadable to root): another process holds the
write lock, so the server's writes time out with "database is locked".
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from live_server import ServerProcess, make_tokens
from ringfence.api.outage import RETRY_AFTER_SECONDS

WARD = """\
apiVersion: ringfence/v1
estate: ward
services:
  - {id: epr, name: Patient record, tier: 1, rto: 4h, requires: [app-1]}
assets:
  - {id: app-1, kind: vm, requires: [db-1]}
  - {id: db-1, kind: vm}
"""


def _pg_bin(tool: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return found[-1] if found else shutil.which(tool)


@dataclass
class PostgresCluster:
    """A PostgreSQL server of the test's own: ``stop`` and ``start`` it under a running ringfence."""

    directory: Path
    port: int
    run_as: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/ringfence"

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl is not None
        subprocess.run(
            [*self.run_as, pg_ctl, "-D", str(self.directory / "data"), "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
            timeout=90,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self.directory / "postgres.log"), "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresCluster]:
    initdb = _pg_bin("initdb")
    if initdb is None:
        if os.environ.get("RINGFENCE_REQUIRE_SERVICES"):
            pytest.fail("initdb is not installed (apt install postgresql)")
        pytest.skip("initdb is not installed")
    # Straight under /tmp, not pytest's own (private to root): the postgres user must reach it.
    directory = Path(tempfile.mkdtemp(prefix="ringfence-pg-outage-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
        shutil.chown(directory, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, initdb, "-D", str(directory / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = PostgresCluster(directory, _free_port(), run_as)
    cluster.start()
    try:
        createdb = _pg_bin("createdb")
        assert createdb is not None
        subprocess.run(
            [createdb, "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "ringfence"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.25)


def assert_outage_problem(answer: httpx.Response) -> None:
    assert answer.status_code == 503, (answer.request.url, answer.status_code, answer.text[:500])
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    problem = answer.json()
    assert (problem["status"], problem["title"]) == (503, "Database unreachable")
    assert "the database cannot be reached" in problem["detail"]


def test_a_postgresql_outage_is_503_everywhere_and_the_service_recovers(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    server = ServerProcess(postgres_cluster.url, tmp_path / "server.log")
    server.start()
    try:
        tokens = make_tokens(postgres_cluster.url)
        admin = tokens.headers(tokens.admin)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/v1/estates", json={"content": WARD}, headers=admin).status_code == 201
            healthy = client.get("/v1/health")
            assert healthy.status_code == 200, healthy.text
            assert healthy.json()["database"]["status"] == "ok"
            assert healthy.json()["controller"]["running"] is True
            pid = server.process.pid if server.process else None

            postgres_cluster.stop()
            # Give the token cache its few seconds: a route then finds the database gone, not a cached answer.
            time.sleep(2.5)

            health = client.get("/v1/health")
            assert health.status_code == 503, health.text
            assert health.headers["content-type"] == "application/problem+json"
            report = health.json()
            assert report["title"] == "Database unreachable"
            assert report["database"]["status"] == "unreachable"
            assert report["database"]["reason"], report
            assert report["detail"].startswith("the database is unreachable: ")

            for method, path, body in (
                ("GET", "/v1/estates", None),
                ("GET", "/v1/rollouts", None),
                ("GET", "/v1/incidents", None),
                ("GET", "/v1/audit", None),
                ("GET", "/v1/tokens", None),
                ("POST", "/v1/estates", {"content": WARD.replace("ward", "ward-2")}),
                ("POST", "/v1/tokens", {"name": "night-shift", "role": "viewer"}),
            ):
                assert_outage_problem(client.request(method, path, json=body, headers=admin))
            # A token the server has not seen: the gate must ask the database, which is not there.
            assert_outage_problem(client.get("/v1/estates", headers=tokens.headers("rf_" + "x" * 43)))

            # The dashboard: a page saying so, not a traceback.
            client.cookies.set("ringfence_token", tokens.viewer)
            for page in ("/", "/rollouts", "/incidents", "/audit"):
                answer = client.get(page)
                assert answer.status_code == 503, (page, answer.text[:300])
                assert answer.headers["content-type"].startswith("text/html")
                assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
                assert "The database is unreachable" in answer.text
                assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            client.cookies.clear()

            postgres_cluster.start()
            wait_for(lambda: client.get("/v1/health").status_code == 200)
            assert client.get("/v1/health").json()["database"]["status"] == "ok"
            estates = client.get("/v1/estates", headers=admin)
            assert estates.status_code == 200, estates.text
            assert [e["name"] for e in estates.json()["estates"]] == ["ward"]
            created = client.post("/v1/tokens", json={"name": "night-shift", "role": "viewer"}, headers=admin)
            assert created.status_code == 201, created.text
            client.cookies.set("ringfence_token", tokens.viewer)
            assert client.get("/").status_code == 200
            # The same process throughout: it recovered without a restart.
            assert server.process is not None
            assert server.process.pid == pid
            assert server.process.poll() is None
        assert "Traceback" not in server.log(), server.log()
    finally:
        server.close()


def test_a_sqlite_database_whose_write_lock_is_held_elsewhere_answers_writes_503(tmp_path: Path) -> None:
    database = tmp_path / "ringfence.db"
    url = f"sqlite:///{database}"
    server = ServerProcess(url, tmp_path / "server.log")
    server.start()
    try:
        tokens = make_tokens(url)
        admin = tokens.headers(tokens.admin)
        with httpx.Client(base_url=server.url, timeout=90) as client:
            assert client.get("/v1/estates", headers=admin).status_code == 200
            # Another process takes the database's write lock and keeps it, as a stuck writer or a backup might.
            holder = sqlite3.connect(database, isolation_level=None, timeout=5)
            try:
                holder.execute("BEGIN IMMEDIATE")
                # A write waits SQLite's busy timeout (30 s) for the lock, then is answered 503, not 500.
                assert_outage_problem(client.post("/v1/estates", json={"content": WARD}, headers=admin))
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert client.post("/v1/estates", json={"content": WARD}, headers=admin).status_code == 201
            assert client.get("/v1/health").status_code == 200
        assert "Traceback" not in server.log(), server.log()
    finally:
        server.close()


def _postgres_processes(cluster: PostgresCluster) -> list[int]:
    postmaster = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False)
    return [postmaster, *(int(pid) for pid in children.stdout.split())]


def test_health_answers_within_its_timeout_when_the_database_hangs(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    """A database that accepts but never answers (every PostgreSQL process stopped with SIGSTOP): /v1/health
    says so within its 2 s, and does not pile a second check behind the one still hanging."""
    server = ServerProcess(postgres_cluster.url, tmp_path / "server.log")
    server.start()
    frozen = _postgres_processes(postgres_cluster)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/v1/health").status_code == 200
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            started = time.monotonic()
            first = client.get("/v1/health")
            took = time.monotonic() - started
            assert first.status_code == 503, first.text
            assert first.json()["database"]["reason"] == "the database did not answer within 2 s"
            assert 1.5 < took < 10, took
            started = time.monotonic()
            second = client.get("/v1/health")
            assert time.monotonic() - started < 1.5
            assert second.status_code == 503
            assert second.json()["database"]["reason"].startswith("the database has not answered for ")
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            wait_for(lambda: client.get("/v1/health").status_code == 200)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        server.close()
