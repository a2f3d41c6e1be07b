"""Fixtures for incidents and downtime packs: a small ward estate, fixed times, the real CLI, a real server.

The ward estate is small enough to reason about by hand:

    sql-epr-1 ← epr-app-1, epr-app-2 ← (any 1) epr (T1, 4h) ← pharmacy (T2, 1h)
    rota-app ⇄ rota-db (they need each other) ← rota (T4, no RTO, no plan)

Failing ``asset:sql-epr-1`` takes down 5 items in 4 steps: sql-epr-1; epr-app-1, epr-app-2; epr; pharmacy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from live_server import Tokens, make_tokens, running_server
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate

WARD = """\
apiVersion: ringfence/v1
estate: ward
suppliers:
  - {id: acme, name: Acme Health, contact: "Acme support 01632 960999"}
services:
  - id: epr
    name: Patient record
    tier: 1
    rto: 4h
    rpo: 15m
    continuity: >-
      Paper notes from the ward downtime box; the 4-hourly printout of current patients
      is in the sister's office.
    contacts: ["Service desk 01632 960000", "EPR analyst on call via switchboard"]
    requires: [{any: 1, of: [epr-app-1, epr-app-2]}]
  - id: pharmacy
    name: Pharmacy stock
    tier: 2
    rto: 1h
    continuity: Manual stock cards; urgent orders by phone to the wholesaler.
    contacts: ["Pharmacy ext 4100"]
    requires: [epr]
  - id: rota
    name: Staff rota
    tier: 4
    requires: [rota-app]
assets:
  - {id: sql-epr-1, kind: vm, site: city}
  - {id: epr-app-1, kind: vm, site: city, supplier: acme, requires: [sql-epr-1]}
  - {id: epr-app-2, kind: vm, site: north, supplier: acme, requires: [sql-epr-1]}
  - {id: rota-app, kind: vm, site: north, requires: [rota-db]}
  - {id: rota-db, kind: vm, site: north, requires: [rota-app]}
"""

T0 = datetime(2022, 8, 4, 7, 0, tzinfo=UTC)
"""When the ransomware hit Advanced: the declaration time of the domain tests."""

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "ringfence" / "examples" / "city-general"
RINGFENCE = shutil.which("ringfence", path=os.path.dirname(sys.executable))


@pytest.fixture(scope="session")
def ward() -> EstateGraph:
    return compile_estate(parse_estate_text(WARD, "ward.yaml"))


@pytest.fixture(scope="session")
def sample_graph() -> EstateGraph:
    """The bundled city-general estate, compiled once."""
    return compile_estate(parse_estate_text((SAMPLE / "estate.yaml").read_text(encoding="utf-8"), "estate.yaml"))


@pytest.fixture
def ward_file(tmp_path: Path) -> Path:
    path = tmp_path / "ward.yaml"
    path.write_text(WARD, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ CLI


def run_cli(
    *args: str | Path, database_url: str, cwd: Path | None = None, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed ``ringfence`` console script on ``database_url``; never raises on a non-zero exit.

    ``columns``: the width Rich lays tables out in (wide enough, no cell text wraps).
    """
    assert RINGFENCE is not None, f"no ringfence console script next to {sys.executable}"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    env["RINGFENCE_DATABASE_URL"] = database_url
    env["RINGFENCE_ACTOR"] = "alice"
    return subprocess.run(
        [RINGFENCE, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


# --------------------------------------------------------------------------------------------- server


@pytest.fixture
def live_server(db_url: str) -> Iterator[str]:
    """A real uvicorn server on a fresh ``db_url`` database (the controller loop off: these tests drive no
    rollout)."""
    with running_server(db_url, controller=False) as server:
        yield server.url


@pytest.fixture
def tokens(db_url: str, live_server: str) -> Tokens:
    """Tokens of each role on the live server's database."""
    return make_tokens(db_url)
