"""Fixtures shared by the whole test suite.

Databases: ``db_url`` runs a test on SQLite (a fresh file) and on PostgreSQL (a fresh schema in the server
named by ``RINGFENCE_TEST_POSTGRES_URL``). Without that variable the PostgreSQL case is skipped, unless
``RINGFENCE_REQUIRE_SERVICES=1`` (as in CI), where it fails: a CI run must not pass by skipping.
Each PostgreSQL test gets its own schema (``search_path`` set through the URL), so parallel workers
(pytest-xdist) never see each other's tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from pg_schemas import isolated_postgres_schema, postgres_base_url
from ringfence.store.db import make_engine, upgrade


@pytest.fixture(autouse=True, scope="session")
def _ringfence_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every ``ringfence`` a test runs out of the user's own home (``~/.local/share/ringfence``).

    The CLI keeps its database in ``$RINGFENCE_HOME`` when no URL is given; a test that forgets the URL
    must write into a throw-away folder, never into the state of the person running the tests.
    """
    saved = os.environ.get("RINGFENCE_HOME")
    os.environ["RINGFENCE_HOME"] = str(tmp_path_factory.mktemp("ringfence-home"))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("RINGFENCE_HOME", None)
        else:
            os.environ["RINGFENCE_HOME"] = saved


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database, once SQLite and once PostgreSQL. Not migrated: see ``db_engine``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'ringfence.db'}"
        return
    with isolated_postgres_schema(postgres_base_url()) as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL schema, for tests of what only PostgreSQL does (advisory locks)."""
    with isolated_postgres_schema(postgres_base_url()) as url:
        yield url


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url``, migrated to the newest revision; disposed after the test."""
    engine = make_engine(db_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()
