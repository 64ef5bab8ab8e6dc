"""Opening a database: one engine factory and one way to word its errors.

The write-through store and the history writer each open their own engine through
here, so SQLite gets the same durability settings and every backend the same pool
options whichever part of the sidecar connects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .urls import redact, to_async_url

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "StoreError",
    "create_engine",
    "open_engine",
    "reason",
    "sqlite_pragmas",
]

log = logging.getLogger("imc_sidecar.store")

_SQLITE_BUSY_MS = 5000  # another process (Kamailio, a second sidecar) may hold the lock
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds; the db_connect_timeout setting


class StoreError(Exception):
    """A database problem, described in one line with no password in it."""


def open_engine(
    db_url: str, setting: str, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> tuple[AsyncEngine, str]:
    """An engine for the URL a setting (`db_url`, `history_db_url`) gives, and the URL's
    label for messages (no password); a StoreError naming the setting when it cannot."""
    label = redact(db_url)
    try:
        url = to_async_url(db_url)
    except ValueError as exc:
        raise StoreError(f"{setting} {label}: {exc}") from None
    return create_engine(url, label, setting, connect_timeout), label


def create_engine(
    url: URL, label: str, setting: str = "db_url",
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> AsyncEngine:
    """`connect_timeout` bounds opening a connection, and waiting for one from the pool,
    so a database that does not answer fails a request instead of holding it."""
    options: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = Path(url.database or "").expanduser()
        if not path.resolve().parent.is_dir():
            raise StoreError(
                f"cannot open SQLite database {path.resolve()}: its directory does not exist"
            )
        log.info("store %s: SQLite file %s", label, path.resolve())  # relative URLs surprise
    else:
        options["pool_pre_ping"] = True  # survive a database restart between commands
        options["pool_timeout"] = connect_timeout
        # Each driver names its connect timeout differently.
        driver = url.get_driver_name()
        if driver == "asyncpg":
            options["connect_args"] = {"timeout": connect_timeout}
        elif driver == "aiomysql":
            options["connect_args"] = {"connect_timeout": connect_timeout}
        if backend in ("mysql", "mariadb"):
            options["pool_recycle"] = 3600  # below MySQL's default wait_timeout
            if "charset" not in url.query:
                url = url.update_query_dict({"charset": "utf8mb4"})
    try:
        engine = create_async_engine(url, **options)
    except ImportError as exc:
        raise StoreError(
            f"{setting} {label}: driver {url.get_driver_name()} is not installed ({exc})"
        ) from None
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL + synchronous=FULL: a commit that returned is on disk, even after kill -9 or
    # a power cut; readers (RPC, analysts) do not block the writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
    cursor.close()


def reason(exc: BaseException) -> str:
    """One line saying what went wrong, without SQLAlchemy's SQL echo."""
    detail: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        detail = exc.orig
    lines = str(detail).strip().splitlines()
    return lines[0] if lines and lines[0] else type(detail).__name__
