"""Shared fixtures and the hypothesis profiles (``HYPOTHESIS_PROFILE=long`` for the long runs)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import URL, make_url

from databases import MYSQL_URL, POSTGRES_URL, scratch_database, unavailable

settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile(
    "ci", max_examples=60, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
# the long profile of the compiler's differential suite: 17,000 random rules, 6 snapshots each
settings.register_profile("long", max_examples=17_000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture
def now() -> datetime.datetime:
    """The fixed evaluation time of the tests."""
    return NOW


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write text to a file under the test's temporary directory and return its path."""

    def write_file(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write_file


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] SparkSession per test process (its start costs seconds): UTC, two shuffle
    partitions, no UI; skipped without Java or pyspark (failed under CI=true)."""
    from tagrules.spark._session import java_missing, spark_session

    missing = java_missing()
    if missing is not None:
        unavailable(missing)
    try:
        import pyspark  # noqa: F401
    except ImportError:
        unavailable("pyspark is not installed (tagrules[spark])")
    session = spark_session("local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[URL]:
    """A scratch PostgreSQL database for this test session (dropped at the end)."""
    with scratch_database(POSTGRES_URL) as url:
        yield url


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[URL]:
    """A scratch MariaDB/MySQL database for this test session (dropped at the end)."""
    with scratch_database(MYSQL_URL) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    """A SQLite database file under the test's temporary directory."""
    return make_url(f"sqlite:///{tmp_path / 'tagrules.db'}")


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def database_url(request: pytest.FixtureRequest) -> URL:
    """Each database tagrules supports in turn: a SQLite file, PostgreSQL, MariaDB."""
    name = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[request.param]
    url: URL = request.getfixturevalue(name)
    return url
