"""Databases under a SQL tag store: engines with the settings the store relies on, the translation
of driver errors into :class:`~tagrules.StoreError`, and the Alembic migrations.

Every database error is translated here into a :class:`~tagrules.StoreError` that names the store
(password hidden) and keeps the driver's error as its cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import functools
import logging
import math
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy.engine import URL, Connection, Engine, make_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

from tagrules.errors import ConcurrentUpdate, StoreError
from tagrules.stores._tables import DEFAULT_PREFIX, check_prefix

__all__ = [
    "DEFAULT_TIMEOUTS",
    "FIRST_ANALYZE",
    "HEAD_REVISION",
    "analyze_threshold",
    "create_async_engine",
    "create_engine",
    "current_revision",
    "describe",
    "naive_utc",
    "timeouts",
    "translated",
    "upgrade",
]

#: The schema revision this version of tagrules reads and writes.
HEAD_REVISION = "0006"
_MIGRATIONS = Path(__file__).with_name("migrations")
# Deadlocks and lock timeouts: the transaction was rolled back, and running it again is safe.
# how SQLite, PostgreSQL and MariaDB say that a table is not there
_MISSING_TABLE = ("no such table", "does not exist", "doesn't exist")
_RETRYABLE_CODES: set[str | int] = {"40P01", "40001", "55P03", 1213, 1205, 1020}
# PostgreSQL's disk_full, MariaDB/MySQL's "disk full" and "the table is full"
_DISK_FULL_CODES: set[str | int] = {"53100", 1021, 1114}
# PostgreSQL's query_canceled (statement_timeout), MariaDB's max_statement_time, MySQL's max_execution_time
_STATEMENT_TIMEOUT_CODES: set[str | int] = {"57014", 1969, 3024}
# PostgreSQL's and MariaDB's words for a database that is not there (the server is)
_MISSING_DATABASE = re.compile(r"""database "([^"]+)" does not exist|Unknown database '([^']+)'""")
#: URL schemes people write for a database tagrules reaches under another driver name
_SCHEME_HINTS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
}


# A connection lost mid-call makes SQLAlchemy's pool log its failed reset, with a traceback, before
# the caller's error is reported: without logging configured, that log goes nowhere.
logging.getLogger("sqlalchemy.pool").addHandler(logging.NullHandler())

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


def _codes(error: sqlalchemy.exc.DBAPIError) -> set[str | int]:
    """PostgreSQL's SQLSTATE; MariaDB/MySQL's error number (and its SQLSTATE, which PyMySQL 1.2 adds)."""
    orig = error.orig
    codes: set[str | int] = set()
    if getattr(orig, "sqlstate", None) is not None:
        codes.add(orig.sqlstate)  # type: ignore[union-attr]
    if orig is not None and orig.args and isinstance(orig.args[0], int):
        codes.add(orig.args[0])
    return codes


def _is_retryable(error: sqlalchemy.exc.DBAPIError) -> bool:
    return bool(_codes(error) & _RETRYABLE_CODES) or "database is locked" in str(error.orig)


def _is_disk_full(error: sqlalchemy.exc.DBAPIError) -> bool:
    text = str(error.orig)
    return (
        bool(_codes(error) & _DISK_FULL_CODES)
        or "database or disk is full" in text
        or "No space left on device" in text
        or getattr(error.orig, "errno", None) == errno.ENOSPC
    )


#: Timeouts in seconds, each set per store by a URL query parameter of the same name
#: (``...?lock_timeout=5``): connecting; a statement on the server (PostgreSQL ``statement_timeout``,
#: MariaDB ``max_statement_time``, MySQL ``max_execution_time``); waiting for a lock (PostgreSQL
#: ``lock_timeout``, InnoDB ``innodb_lock_wait_timeout``, SQLite's busy timeout); and waiting for the
#: server's answer on the client side (``read_timeout``, by default the statement timeout and 30 s
#: more), which ends the wait on a server or a network that stops answering.
DEFAULT_TIMEOUTS: dict[str, float] = {
    "connect_timeout": 10.0,
    "statement_timeout": 300.0,
    "lock_timeout": 60.0,
}
_READ_MARGIN = 30.0
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def timeouts(url: URL) -> tuple[URL, dict[str, float]]:
    """``url`` without tagrules' timeout parameters, and the timeouts it sets (defaults for the others).

    Raises:
        StoreError: a timeout that is not a number of seconds greater than 0.
    """
    query = dict(url.query)
    values = dict(DEFAULT_TIMEOUTS)
    for name in (*DEFAULT_TIMEOUTS, "read_timeout"):
        text = query.pop(name, None)
        if text is None:
            continue
        text = text[-1] if isinstance(text, tuple) else text
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 < value < math.inf:
            raise StoreError(f"{describe(url)}: {name}={text!r}: give a number of seconds greater than 0")
        values[name] = value
    values.setdefault("read_timeout", values["statement_timeout"] + _READ_MARGIN)
    return url.set(query=query), values


def _parsed(url: str | URL) -> URL:
    try:
        return make_url(url)
    except sqlalchemy.exc.ArgumentError as error:
        raise StoreError(
            f"{url!s}: not a database URL (examples: sqlite:///tagrules.db, "
            "postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db)"
        ) from error


def _is_async(url: URL) -> bool:
    try:
        return bool(url.get_dialect().is_async)
    except (sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError):
        return False


def _engine_options(parsed: URL, limits: dict[str, float]) -> dict[str, Any]:
    """The engine arguments of the store's settings and timeouts, for ``parsed``'s driver."""
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    options: dict[str, Any] = {} if backend == "duckdb" else {"pool_pre_ping": True}
    if backend == "sqlite":
        if "timeout" not in parsed.query:
            options["connect_args"] = {"timeout": limits["lock_timeout"]}
    elif backend == "postgresql" and driver == "asyncpg":
        options["connect_args"] = {
            "timeout": limits["connect_timeout"],
            # asyncpg's own client-side limit on each command: the read timeout
            "command_timeout": limits["read_timeout"],
            "server_settings": {
                "statement_timeout": _ms(limits["statement_timeout"]),
                "lock_timeout": _ms(limits["lock_timeout"]),
            },
        }
    elif backend == "postgresql":
        settings = (
            f"-c statement_timeout={_ms(limits['statement_timeout'])} "
            f"-c lock_timeout={_ms(limits['lock_timeout'])}"
        )
        given = parsed.query.get("options")
        options["connect_args"] = {
            **{name: value for name, value in _KEEPALIVE.items() if name not in parsed.query},
            "connect_timeout": max(1, math.ceil(limits["connect_timeout"])),
            "options": f"{given} {settings}" if isinstance(given, str) else settings,
        }
    elif backend in ("mysql", "mariadb"):
        options["isolation_level"] = "READ COMMITTED"
        read = max(1, math.ceil(limits["read_timeout"]))
        options["connect_args"] = {"connect_timeout": max(1, math.ceil(limits["connect_timeout"]))}
        if driver != "aiomysql":  # aiomysql has no read timeout: the statement timeout still holds
            options["connect_args"]["read_timeout"] = read
        if driver not in ("asyncmy", "aiomysql"):
            options["connect_args"]["write_timeout"] = read
    return options


def _driver_missing(parsed: URL) -> StoreError:
    backend = parsed.get_backend_name()
    extra = {"postgresql": " (install tagrules[postgres])", "mysql": " (install tagrules[mysql])"}
    # the driver as the URL names it: asking SQLAlchemy would load the missing dialect again
    if _ASYNC_DRIVERS.get(backend) == parsed.drivername.partition("+")[2]:
        extra = {backend: " (install tagrules[async])"}
    hint = extra.get(backend, "")
    if parsed.drivername in _SCHEME_HINTS and backend not in extra:
        hint = f"; did you mean {_SCHEME_HINTS[parsed.drivername]}://...?"
    return StoreError(f"{describe(parsed)}: no database driver for {parsed.drivername!r}{hint}")


def _bad_url(url: str | URL, parsed: URL, error: Exception) -> StoreError:
    if parsed.get_backend_name() == "sqlite":
        return StoreError(
            f"{url!s}: not a SQLite URL; a file is sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db (three or four slashes), memory is sqlite://"
        )
    return StoreError(f"{describe(parsed)}: {_first_line(error)}")


def _listen(engine: Engine, limits: dict[str, float]) -> None:
    backend = engine.url.get_backend_name()
    if backend == "sqlite":
        sqlalchemy.event.listen(engine, "connect", _sqlite_pragmas)
    elif backend == "postgresql" and engine.url.get_driver_name() != "asyncpg":
        sqlalchemy.event.listen(engine, "connect", ReadWatchdog(limits["read_timeout"]).watch)
    elif backend in ("mysql", "mariadb"):
        sqlalchemy.event.listen(engine, "connect", functools.partial(_mysql_limits, limits=limits))


def create_engine(url: str | URL, *, store: bool = True) -> Engine:
    """An engine for ``url`` with the settings the store relies on, and timeouts (:data:`DEFAULT_TIMEOUTS`,
    changed by URL query parameters), so that no call waits forever. With ``store=False`` the engine
    reads snapshots only, and DuckDB (in process: no connection to wait on) is accepted too.

    Raises:
        StoreError: ``url`` is not a database URL, or its driver is not installed.
    """
    parsed, limits = timeouts(_parsed(url))
    backend = parsed.get_backend_name()
    if backend == "duckdb" and store:
        raise StoreError(
            f"{describe(parsed)}: DuckDB is not a tag store (it evaluates catalogs: `tagrules count --db`, "
            "count_tags); keep tags in SQLite, PostgreSQL or MariaDB"
        )
    if _is_async(parsed):
        raise StoreError(
            f"{describe(parsed)}: {parsed.get_driver_name()} is an asyncio driver; use AsyncSQLStore, "
            f"or a driver of SQLStore's ({_SCHEME_HINTS.get(backend, 'sqlite')}://...)"
        )
    try:
        engine = sqlalchemy.create_engine(parsed, **_engine_options(parsed, limits))
    except (sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError) as error:
        raise _driver_missing(parsed) from error
    except (sqlalchemy.exc.ArgumentError, TypeError) as error:
        raise _bad_url(url, parsed, error) from error
    _listen(engine, limits)
    return engine


#: each database's asyncio driver, as :class:`~tagrules.AsyncSQLStore` names it in its errors
_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "asyncmy"}


def create_async_engine(url: str | URL) -> AsyncEngine:
    """An asyncio engine for ``url`` (``sqlite+aiosqlite``, ``postgresql+asyncpg``, ``mysql+asyncmy``,
    ``mysql+aiomysql``) with the settings and timeouts of :func:`create_engine`.

    Raises:
        StoreError: ``url`` is not a database URL, names no asyncio driver, or its driver is not
            installed.
    """
    from sqlalchemy.ext.asyncio import create_async_engine as create

    parsed, limits = timeouts(_parsed(url))
    backend = parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise StoreError(f"{describe(parsed)}: not a tag store database (SQLite, PostgreSQL or MariaDB)")
    try:
        asynchronous = bool(parsed.get_dialect().is_async)
    except (sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError) as error:
        raise _driver_missing(parsed) from error
    if not asynchronous:
        raise StoreError(
            f"{describe(parsed)}: {parsed.get_driver_name()} is not an asyncio driver; use "
            f"{backend}+{_ASYNC_DRIVERS[backend]}://... (or SQLStore for this URL)"
        )
    try:
        engine = create(parsed, **_engine_options(parsed, limits))
    except (sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError) as error:
        raise _driver_missing(parsed) from error
    except (sqlalchemy.exc.ArgumentError, TypeError) as error:
        raise _bad_url(url, parsed, error) from error
    _listen(engine.sync_engine, limits)
    return engine


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _mysql_limits(connection: Any, record: Any, *, limits: dict[str, float]) -> None:
    cursor = connection.cursor()
    lock = max(1, math.ceil(limits["lock_timeout"]))
    server_info = getattr(connection, "get_server_info", None)
    if server_info is None:  # the asyncio drivers' adapted connections: ask the server
        cursor.execute("SELECT VERSION()")
        version = str(cursor.fetchone()[0])
    else:
        version = server_info()
    if "mariadb" in version.lower():
        cursor.execute(
            f"SET SESSION max_statement_time = {limits['statement_timeout']:.3f}, "
            f"innodb_lock_wait_timeout = {lock}"
        )
    else:  # MySQL: only SELECT statements have a time limit
        cursor.execute(
            f"SET SESSION max_execution_time = {round(limits['statement_timeout'] * 1000)}, "
            f"innodb_lock_wait_timeout = {lock}"
        )
    cursor.close()


class ReadWatchdog:
    """The client-side read timeout of PostgreSQL connections, which libpq lacks: a thread shuts the
    socket of a connection whose command has had no answer for ``timeout`` seconds, so that the
    waiting call fails ("server closed the connection") instead of waiting forever on a server, or
    a network path, that stopped answering."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._connections: weakref.WeakKeyDictionary[Any, float | None] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, connection: Any, record: Any) -> None:
        with self._lock:
            self._connections[connection] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tagrules-read-timeout", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        interval = min(1.0, self.timeout / 4)
        while True:
            time.sleep(interval)
            with self._lock:
                if not self._connections:
                    self._thread = None
                    return
                watched = list(self._connections.items())
            now = time.monotonic()
            for connection, since in watched:
                try:
                    busy = connection.pgconn.transaction_status == _PG_ACTIVE
                    socket_number = connection.pgconn.socket if busy else -1
                except Exception:  # closed: nothing to watch
                    with self._lock:
                        self._connections.pop(connection, None)
                    continue
                if not busy:
                    since = None
                elif since is None:
                    since = now
                elif now - since > self.timeout:
                    _shut(socket_number)
                    since = None
                with self._lock:
                    if connection in self._connections:
                        self._connections[connection] = since


_PG_ACTIVE = 1  # PQtransactionStatus: a command in progress


def _shut(socket_number: int) -> None:
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(socket_number)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def translated(url: URL, doing: str) -> Iterator[None]:
    try:
        yield
    except sqlalchemy.exc.DBAPIError as error:
        if _is_retryable(error):
            raise ConcurrentUpdate(f"{describe(url)}: {doing}: {_first_line(error)}") from error
        message = _first_line(error)
        missing_database = _MISSING_DATABASE.search(str(error.orig))
        if missing_database:
            name = missing_database.group(1) or missing_database.group(2)
            raise StoreError(
                f"{describe(url)}: the database {name!r} does not exist on the server; create the "
                f"database first (CREATE DATABASE {name})"
            ) from error
        folder = Path(url.database or "").parent
        if (
            url.get_backend_name() == "sqlite"
            and url.database not in (None, "", ":memory:")
            and not folder.is_dir()
        ):
            raise StoreError(
                f"{describe(url)}: the folder {str(folder)!r} does not exist; create it or give another path"
            ) from error
        if _is_disk_full(error):
            raise StoreError(
                f"{describe(url)}: cannot {doing}: {message}; the disk is full: free some space and run "
                "again (committed work is kept)"
            ) from error
        if _codes(error) & _STATEMENT_TIMEOUT_CODES:
            raise StoreError(
                f"{describe(url)}: cannot {doing}: {message}; the statement ran longer than the "
                "statement timeout (raise it with ?statement_timeout=SECONDS in the URL)"
            ) from error
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
    except (OSError, asyncio.TimeoutError) as error:
        # the asyncio drivers' own errors, which SQLAlchemy passes on as they are: a connection
        # refused or lost, and asyncpg's command timeout (the read timeout)
        what = str(error) or type(error).__name__
        raise StoreError(
            f"{describe(url)}: cannot {doing}: {what}; is the database running and reachable?"
        ) from error


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
