"""Fixtures shared by the whole test suite.

Databases: ``db_url`` runs a test on SQLite (a fresh file) and on PostgreSQL (a fresh schema in the server
named by ``RINGFENCE_TEST_POSTGRES_URL``). Without that variable the PostgreSQL case is skipped, unless
``RINGFENCE_REQUIRE_SERVICES=1`` (as in CI), where it fails: a CI run must not pass by skipping.
Each PostgreSQL test gets its own schema (``search_path`` set through the URL), so parallel workers
(pytest-xdist) never see each other's tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from ringfence.store.db import make_engine, normalise_url, upgrade

POSTGRES_URL_ENV = "RINGFENCE_TEST_POSTGRES_URL"
REQUIRE_SERVICES_ENV = "RINGFENCE_REQUIRE_SERVICES"


def postgres_base_url() -> str:
    """The test PostgreSQL server's URL, or skip (fail when services are required)."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if url:
        return url
    message = f"{POSTGRES_URL_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_SERVICES_ENV}=1 says PostgreSQL tests must run")
    pytest.skip(message)


@contextmanager
def isolated_postgres_schema(base_url: str) -> Iterator[str]:
    """A URL whose connections live in a new, empty schema, dropped (with everything in it) afterwards."""
    schema = f"rf_test_{uuid.uuid4().hex[:16]}"
    base = normalise_url(base_url)
    admin = sa.create_engine(base, poolclass=NullPool)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


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
