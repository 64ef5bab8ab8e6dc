"""db_url spellings -> SQLAlchemy async URLs, and password redaction."""

from __future__ import annotations

import pytest

from imc_sidecar.store.urls import redact, to_async_url, to_sync_url


@pytest.mark.parametrize(
    ("db_url", "driver", "user", "password", "host", "port", "database"),
    [
        # Kamailio spellings
        ("mysql://kamailio:kamailiorw@localhost/kamailio",
         "mysql+aiomysql", "kamailio", "kamailiorw", "localhost", None, "kamailio"),
        ("mysql://u:pw@db.example:3307/k", "mysql+aiomysql", "u", "pw", "db.example", 3307, "k"),
        ("postgres://postgres@127.0.0.1/k", "postgresql+asyncpg", "postgres", None,
         "127.0.0.1", None, "k"),
        ("postgresql://a:b@[::1]:5433/k", "postgresql+asyncpg", "a", "b", "::1", 5433, "k"),
        ("mysql://h/k", "mysql+aiomysql", None, None, "h", None, "k"),
        # Kamailio takes the password up to the last '@', literally (no %-decoding)
        ("mysql://u:p@ss/w:rd%41@h/k", "mysql+aiomysql", "u", "p@ss/w:rd%41", "h", None, "k"),
        # ...and drops parameters after '?'
        ("mysql://u@h/k?foo=1", "mysql+aiomysql", "u", None, "h", None, "k"),
        # SQLAlchemy spellings
        ("mysql+aiomysql://u:p%40x@h/k", "mysql+aiomysql", "u", "p@x", "h", None, "k"),
        ("mysql+asyncmy://u@h:3306/k", "mysql+asyncmy", "u", None, "h", 3306, "k"),
        ("postgresql+asyncpg://u@h/k", "postgresql+asyncpg", "u", None, "h", None, "k"),
        ("mysql+pymysql://u@h/k", "mysql+aiomysql", "u", None, "h", None, "k"),
        ("postgresql+psycopg2://u@h/k", "postgresql+asyncpg", "u", None, "h", None, "k"),
    ],
)
def test_server_urls(db_url: str, driver: str, user: str | None, password: str | None,
                     host: str, port: int | None, database: str) -> None:
    url = to_async_url(db_url)
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        driver, user, password, host, port, database)


@pytest.mark.parametrize(
    ("db_url", "path"),
    [
        ("sqlite:///imc.sqlite", "imc.sqlite"),  # relative to the working directory
        ("sqlite:///data/imc.sqlite", "data/imc.sqlite"),
        ("sqlite:////var/lib/imc.sqlite", "/var/lib/imc.sqlite"),  # absolute
        ("sqlite://imc.sqlite", "imc.sqlite"),  # lenient relative form
        ("sqlite://localhost/imc.sqlite", "imc.sqlite"),  # Kamailio ignores the host
        ("sqlite:///imc.sqlite?x=1", "imc.sqlite"),
        ("sqlite+aiosqlite:///imc.sqlite", "imc.sqlite"),
        ("sqlite+aiosqlite:////tmp/imc.sqlite", "/tmp/imc.sqlite"),
        ("sqlite+pysqlite:///imc.sqlite", "imc.sqlite"),
    ],
)
def test_sqlite_urls(db_url: str, path: str) -> None:
    url = to_async_url(db_url)
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == path


def test_sqlalchemy_query_is_kept() -> None:
    assert dict(to_async_url("sqlite+aiosqlite:///a.db?timeout=3").query) == {"timeout": "3"}


@pytest.mark.parametrize(
    ("db_url", "message"),
    [
        ("text:///etc/kamailio/dbtext", "unsupported database scheme 'text'"),
        ("oracle://u:p@h/k", "unsupported database scheme 'oracle'"),
        ("mysql+mysqlfoo://u@h/k", "unsupported driver 'mysqlfoo'"),
        ("mssql+aioodbc://u@h/k", "unsupported database 'mssql'"),
        ("kamailio", "not a database URL"),
        ("mysql://u@h", "no database name"),
        ("mysql://u@h:99999/k", "bad port"),
        ("sqlite://", "SQLite needs a file"),
        ("sqlite:///:memory:", "SQLite needs a file"),
        ("sqlite+aiosqlite://", "SQLite needs a file"),
    ],
)
def test_bad_urls(db_url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_async_url(db_url)


@pytest.mark.parametrize(
    ("db_url", "shown"),
    [
        ("mysql://kamailio:kamailiorw@localhost/kamailio", "mysql://kamailio:***@localhost/kamailio"),
        ("mysql://u:p@ss/w:rd@h:3306/k", "mysql://u:***@h:3306/k"),
        ("postgresql+asyncpg://u:p%40x@h/k", "postgresql+asyncpg://u:***@h/k"),
        ("postgres://u@h/k", "postgres://u@h/k"),
        ("sqlite:////var/imc.sqlite", "sqlite:////var/imc.sqlite"),
        ("mysql:/u:secret@h/k", "mysql:/u:***@h/k"),  # malformed, still hidden
        ("no url here", "no url here"),
    ],
)
def test_redact(db_url: str, shown: str) -> None:
    assert redact(db_url) == shown


@pytest.mark.parametrize(
    ("db_url", "driver", "database"),
    [
        ("sqlite:///imc.sqlite", "sqlite+pysqlite", "imc.sqlite"),
        ("sqlite:////var/lib/imc.sqlite", "sqlite+pysqlite", "/var/lib/imc.sqlite"),
        ("sqlite+aiosqlite:///imc.sqlite", "sqlite+pysqlite", "imc.sqlite"),
        ("mysql://u:p@ss@h/k", "mysql+pymysql", "k"),
        ("mysql+aiomysql://u@h/k", "mysql+pymysql", "k"),
        ("mysql+mysqldb://u@h/k", "mysql+mysqldb", "k"),
        ("postgres://u@h/k", "postgresql+psycopg", "k"),
        ("postgresql+asyncpg://u@h/k", "postgresql+psycopg", "k"),
        ("postgresql+psycopg2://u@h/k", "postgresql+psycopg2", "k"),
    ],
)
def test_sync_urls(db_url: str, driver: str, database: str) -> None:
    url = to_sync_url(db_url)
    assert (url.drivername, url.database) == (driver, database)
    if db_url.startswith("mysql://"):
        assert (url.username, url.password) == ("u", "p@ss")


def test_sync_url_refuses_what_the_sidecar_refuses() -> None:
    with pytest.raises(ValueError, match="SQLite needs a file"):
        to_sync_url("sqlite:///:memory:")
