"""Databases under a SQL tag store: engines with the settings the store relies on, the translation
of driver errors into :class:`~tagrules.StoreError`, and the Alembic migrations.

Every database error is translated here into a :class:`~tagrules.StoreError` that names the store
(password hidden) and keeps the driver's error as its cause.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy.engine import URL, Connection, Engine, make_url

from tagrules.errors import ConcurrentUpdate, StoreError
from tagrules.stores._tables import DEFAULT_PREFIX, check_prefix

__all__ = [
    "FIRST_ANALYZE",
    "HEAD_REVISION",
    "analyze_threshold",
    "create_engine",
    "current_revision",
    "describe",
    "naive_utc",
    "translated",
    "upgrade",
]

#: The schema revision this version of tagrules reads and writes.
HEAD_REVISION = "0001"
_MIGRATIONS = Path(__file__).with_name("migrations")
# Deadlocks and lock timeouts: the transaction was rolled back, and running it again is safe.
# how SQLite, PostgreSQL and MariaDB say that a table is not there
_MISSING_TABLE = ("no such table", "does not exist", "doesn't exist")
_RETRYABLE_CODES = {"40P01", "40001", "55P03", 1213, 1205, 1020}


#: rows a PostgreSQL store inserts into new tables before it refreshes their statistics itself
FIRST_ANALYZE = 20_000


def analyze_threshold(connection: Connection, table: str) -> int:
    """Rows to insert into ``table`` before its statistics are worth refreshing (PostgreSQL): as
    many as they last counted in it (``pg_class.reltuples``; a table that doubled), at least
    :data:`FIRST_ANALYZE` (a new table's first rows)."""
    counted = connection.execute(
        sqlalchemy.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"), {"name": table}
    ).scalar()
    return max(FIRST_ANALYZE, int(counted or 0))


def naive_utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def describe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _is_retryable(error: sqlalchemy.exc.DBAPIError) -> bool:
    orig = error.orig
    code = getattr(orig, "sqlstate", None)
    if code is None and orig is not None and orig.args and isinstance(orig.args[0], int):
        code = orig.args[0]
    return code in _RETRYABLE_CODES or "database is locked" in str(orig)


def create_engine(url: str | URL) -> Engine:
    """An engine for ``url`` with the settings the store relies on.

    Raises:
        StoreError: ``url`` is not a database URL, or its driver is not installed.
    """
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError as error:
        raise StoreError(
            f"{url!s}: not a database URL (examples: sqlite:///tagrules.db, "
            "postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db)"
        ) from error
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        raise StoreError(
            f"{describe(parsed)}: DuckDB is not a tag store (it evaluates catalogs: `tagrules count --db`, "
            "count_tags); keep tags in SQLite, PostgreSQL or MariaDB"
        )
    options: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        options["connect_args"] = {"timeout": 60}
    elif backend in ("mysql", "mariadb"):
        options["isolation_level"] = "READ COMMITTED"
    try:
        engine = sqlalchemy.create_engine(parsed, **options)
    except (sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError) as error:
        extra = {"postgresql": " (install tagrules[postgres])", "mysql": " (install tagrules[mysql])"}
        raise StoreError(
            f"{describe(parsed)}: no database driver for {parsed.drivername!r}{extra.get(backend, '')}"
        ) from error
    except sqlalchemy.exc.ArgumentError as error:
        raise StoreError(f"{describe(parsed)}: {error}") from error
    if backend == "sqlite":
        sqlalchemy.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@contextmanager
def translated(url: URL, doing: str) -> Iterator[None]:
    try:
        yield
    except sqlalchemy.exc.DBAPIError as error:
        if _is_retryable(error):
            raise ConcurrentUpdate(f"{describe(url)}: {doing}: {_first_line(error)}") from error
        message = _first_line(error)
        missing_table = any(marker in message for marker in _MISSING_TABLE)
        if not missing_table and isinstance(
            error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
        ):
            raise StoreError(
                f"{describe(url)}: cannot {doing}: {message}; is the database running and reachable?"
            ) from error
        if missing_table or isinstance(error, sqlalchemy.exc.ProgrammingError):
            raise StoreError(
                f"{describe(url)}: cannot {doing}: {_first_line(error)}; are the tables created "
                "(tagrules db upgrade URL) with this table prefix?"
            ) from error
        raise StoreError(f"{describe(url)}: cannot {doing}: {_first_line(error)}") from error
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise StoreError(f"{describe(url)}: cannot {doing}: {error}") from error


def _alembic_config(connection: Connection, prefix: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes["table_prefix"] = prefix
    return config


def current_revision(engine: Engine, prefix: str = DEFAULT_PREFIX) -> str | None:
    """The schema revision of the store with ``prefix`` in ``engine``'s database; ``None`` if none."""
    from alembic.runtime.migration import MigrationContext

    with translated(engine.url, "read the schema revision"), engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": f"{prefix}alembic_version"})
        revision: str | None = context.get_current_revision()
        return revision


def upgrade(url: str | URL | Engine, *, prefix: str = DEFAULT_PREFIX) -> str:
    """Create or upgrade the store's tables at ``url`` to the newest schema; return the revision.

    Tables are named ``<prefix>customers``, ``<prefix>memberships``, ... and the schema revision is
    kept in ``<prefix>alembic_version``, so a store can live in an application's own database.

    Raises:
        StoreError: the database cannot be reached, or the migration failed.
    """
    from alembic import command

    check_prefix(prefix)
    engine = url if isinstance(url, Engine) else create_engine(url)
    try:
        with translated(engine.url, "upgrade the schema"), engine.begin() as connection:
            command.upgrade(_alembic_config(connection, prefix), "head")
    finally:
        if not isinstance(url, Engine):
            engine.dispose()
    return HEAD_REVISION
