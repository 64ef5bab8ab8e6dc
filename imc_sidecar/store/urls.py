"""Turn a `db_url` setting into a SQLAlchemy URL with an asyncio driver (the sidecar),
or with a synchronous one (`to_sync_url`: the analysts' offline client).

Two spellings are accepted:

* Kamailio's (`mysql://user:pass@host[:port]/db`, `postgres://…`, `postgresql://…`,
  `sqlite://…`): a scheme with no `+driver`.  These are split the way Kamailio's
  `parse_db_url()` (srdb1/db_id.c) splits them: no percent-decoding, and the password
  runs to the *last* `@`, so `pa@ss/w:rd` works as written.  Anything after `?` is
  dropped, as Kamailio drops it.
* SQLAlchemy's (`sqlite+aiosqlite:///…`, `mysql+aiomysql://…`, `mysql+asyncmy://…`,
  `postgresql+asyncpg://…`): parsed by SQLAlchemy, percent-escapes and query included.
  A synchronous driver (`+pymysql`, `+psycopg2`, …) is swapped for the default
  asyncio driver of that database.

SQLite paths: as in both Kamailio and SQLAlchemy, the path is what follows the third
slash, so `sqlite:///imc.sqlite` is relative to the working directory and
`sqlite:////var/lib/imc.sqlite` is absolute.  (Kamailio's docs write
`sqlite:///etc/kamailio/kamailio.db` and mean an absolute path only because Kamailio
runs from `/`; we do not guess.)  `sqlite://imc.sqlite`, which Kamailio rejects, is
taken as a relative file name.  In-memory SQLite is refused: nothing would survive.

`to_sync_url` reads the same spellings the same way and only picks the driver: one
named in a SQLAlchemy URL is kept when it is synchronous, otherwise pysqlite, PyMySQL
(installed with aiomysql) or psycopg (the `postgres` extra).
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["redact", "to_async_url", "to_sync_url"]

# Backend -> the asyncio driver used when none (or a synchronous one) is named.
_DEFAULT_DRIVER = {
    "sqlite": "aiosqlite",
    "mysql": "aiomysql",
    "mariadb": "aiomysql",
    "postgresql": "asyncpg",
}
_ASYNC_DRIVERS = {
    "sqlite": {"aiosqlite"},
    "mysql": {"aiomysql", "asyncmy"},
    "mariadb": {"aiomysql", "asyncmy"},
    "postgresql": {"asyncpg", "psycopg"},
}
_SYNC_DRIVERS = {
    "sqlite": {"pysqlite"},
    "mysql": {"pymysql", "mysqldb", "mysqlconnector", "mariadbconnector", "cymysql"},
    "mariadb": {"pymysql", "mysqldb", "mysqlconnector", "mariadbconnector", "cymysql"},
    "postgresql": {"psycopg2", "psycopg2cffi", "pg8000"},
}
# Backend -> the synchronous driver used when none (or an asyncio one) is named.
_DEFAULT_SYNC_DRIVER = {
    "sqlite": "pysqlite",
    "mysql": "pymysql",
    "mariadb": "pymysql",
    "postgresql": "psycopg",
}
# Kamailio scheme -> SQLAlchemy backend.
_KAMAILIO_SCHEMES = {
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "sqlite": "sqlite",
}
_SUPPORTED = "mysql://, postgres://, postgresql://, sqlite:// or a SQLAlchemy async URL"


def to_async_url(db_url: str) -> URL:
    """Return the SQLAlchemy URL (asyncio driver) for `db_url`; ValueError if unusable."""
    text = db_url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme:
        raise ValueError(f"not a database URL (expected {_SUPPORTED})")
    scheme = scheme.lower()
    if "+" in scheme:
        return _from_sqlalchemy(text)
    backend = _KAMAILIO_SCHEMES.get(scheme)
    if backend is None:
        raise ValueError(f"unsupported database scheme '{scheme}' (use {_SUPPORTED})")
    if backend == "sqlite":
        return _sqlite_url(_DEFAULT_DRIVER["sqlite"], _kamailio_sqlite_path(rest), {})
    return _kamailio_server_url(backend, rest)


def to_sync_url(db_url: str) -> URL:
    """Return the SQLAlchemy URL (synchronous driver) for `db_url`; ValueError if unusable."""
    url = to_async_url(db_url)  # the one parser: same spellings, same checks
    backend = url.get_backend_name()
    scheme = db_url.strip().partition("://")[0].lower()
    named = scheme.partition("+")[2]
    sync = _SYNC_DRIVERS[backend] | {"psycopg"}  # psycopg 3 serves both worlds
    driver = named if named in sync else _DEFAULT_SYNC_DRIVER[backend]
    return url.set(drivername=f"{backend}+{driver}")


def redact(db_url: str) -> str:
    """`db_url` with any password replaced by `***`; safe on malformed input too."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*:/*)(.*)", db_url, re.DOTALL)
    if match is None:
        return db_url
    prefix, rest = match.groups()
    at = rest.rfind("@")  # the password may hold '@' itself; Kamailio takes the last one
    if at < 0:
        return db_url
    user, colon, _password = rest[:at].partition(":")
    if not colon:
        return db_url
    return f"{prefix}{user}:***@{rest[at + 1:]}"


def _from_sqlalchemy(text: str) -> URL:
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise ValueError(f"cannot parse database URL: {exc}") from None
    backend = url.get_backend_name()
    driver = url.get_driver_name()
    if backend not in _DEFAULT_DRIVER:
        raise ValueError(f"unsupported database '{backend}' (use {_SUPPORTED})")
    if driver in _SYNC_DRIVERS[backend]:
        driver = _DEFAULT_DRIVER[backend]
    elif driver not in _ASYNC_DRIVERS[backend]:
        known = ", ".join(sorted(_ASYNC_DRIVERS[backend]))
        raise ValueError(f"unsupported driver '{driver}' for {backend} (use one of: {known})")
    if backend == "sqlite":
        return _sqlite_url(driver, url.database or "", dict(url.query))
    return url.set(drivername=f"{backend}+{driver}")


def _kamailio_sqlite_path(rest: str) -> str:
    rest = rest.split("?", 1)[0]
    slash = rest.find("/")
    if slash < 0:
        return rest  # `sqlite://imc.sqlite`: lenient, Kamailio would refuse it
    return rest[slash + 1 :]  # Kamailio ignores whatever "host" precedes the slash


def _sqlite_url(driver: str, path: str, query: dict[str, str | tuple[str, ...]]) -> URL:
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        raise ValueError("SQLite needs a file (use db_mode=0 to keep rooms in memory only)")
    return URL.create(f"sqlite+{driver}", database=path, query=query)


def _kamailio_server_url(backend: str, rest: str) -> URL:
    userinfo: str | None = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
    hostport, slash, database = rest.partition("/")
    database = database.split("?", 1)[0]
    if not slash or not database:
        raise ValueError("database URL has no database name (expected .../<database>)")
    user: str | None = None
    password: str | None = None
    if userinfo is not None:
        name, colon, secret = userinfo.partition(":")
        user = name or None
        password = secret if colon else None
    host, port = _split_hostport(hostport)
    return URL.create(
        f"{backend}+{_DEFAULT_DRIVER[backend]}",
        username=user,
        password=password,
        host=host,
        port=port,
        database=database,
    )


def _split_hostport(hostport: str) -> tuple[str | None, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("database URL has an unterminated IPv6 address")
        host, tail = hostport[1:end], hostport[end + 1 :]
        if tail and not tail.startswith(":"):
            raise ValueError("database URL has junk after the IPv6 address")
        port_text = tail[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not port_text:
        return host or None, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"database URL has a bad port '{port_text}'")
    return host or None, int(port_text)
