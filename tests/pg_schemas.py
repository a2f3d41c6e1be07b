"""PostgreSQL for tests: the server's URL (or a skip/fail), and a fresh schema per test.

One module, imported by every conftest that needs a database (``tests/`` is on ``sys.path``
because the root conftest lives there).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from ringfence.store.db import normalise_url

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
