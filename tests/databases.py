"""Real databases for the tests: URLs from the environment, one scratch database per test session.

``TAGRULES_TEST_POSTGRES_URL`` and ``TAGRULES_TEST_MYSQL_URL`` name a server and a database the
tests may connect to (defaults: the local servers). Each test session creates its own database on
each server, named ``tagrules_test_<random>``, and drops it at the end. A server that cannot be
reached skips its tests with the reason, except under ``CI=true``, where it fails them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy
from sqlalchemy.engine import URL, make_url

POSTGRES_URL = os.environ.get(
    "TAGRULES_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("TAGRULES_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
SERVER_URLS = {"postgresql": POSTGRES_URL, "mysql": MYSQL_URL}


def unavailable(reason: str) -> None:
    """Skip the test with ``reason``; under ``CI=true`` fail it instead."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: database tests must run)", pytrace=False)
    pytest.skip(reason)


@contextmanager
def scratch_database(server_url: str) -> Iterator[URL]:
    """Create a database with a random name on the server at ``server_url``; drop it afterwards."""
    url = make_url(server_url)
    name = f"tagrules_test_{secrets.token_hex(4)}"
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    except sqlalchemy.exc.OperationalError as error:
        admin.dispose()
        unavailable(f"{url.get_backend_name()} not reachable at {url.render_as_string()}: {error.orig}")
    try:
        yield url.set(database=name)
    finally:
        if url.get_backend_name() == "postgresql":
            drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        else:
            drop = f"DROP DATABASE IF EXISTS {name}"
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(drop))
        admin.dispose()
