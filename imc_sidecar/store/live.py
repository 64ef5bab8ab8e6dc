"""Reading what tables a database really has, for store/drift.py to judge.

The edge of `imc-sidecar db check`: SQLAlchemy's inspector and one SELECT of Kamailio's
`version` rows, run on a synchronous connection (`AsyncConnection.run_sync`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, inspect, select
from sqlalchemy.engine import Inspector
from sqlalchemy.exc import DBAPIError, SAWarning

from .drift import LiveColumn, LiveSchema, LiveTable

__all__ = ["read_live"]


def read_live(conn: Connection, tables: Sequence[Table], version: Table | None) -> LiveSchema:
    """The live form of each of `tables` that exists, and the rows of `version` (when
    given and readable: a version table lacking a column is reported as such already)."""
    inspector = inspect(conn)
    present = set(inspector.get_table_names())
    described = {
        t.name: _describe(inspector, conn, t.name) for t in tables if t.name in present
    }
    versions: dict[str, int] | None = None
    if version is not None and version.name in present:
        query = select(version.c.table_name, version.c.table_version)
        try:  # last: on PostgreSQL a failed statement ends the transaction
            versions = {name: int(number) for name, number in conn.execute(query)}
        except DBAPIError:
            versions = None
    return LiveSchema(described, versions)


def _describe(inspector: Inspector, conn: Connection, name: str) -> LiveTable:
    primary = tuple(inspector.get_pk_constraint(name).get("constrained_columns") or ())
    columns = tuple(
        LiveColumn(c["name"], c["type"], bool(c["nullable"]),
                   _filled(conn.dialect.name, c, primary))
        for c in inspector.get_columns(name)
    )
    with warnings.catch_warnings():  # lower(...) indexes: not reflected (nor checked)
        warnings.simplefilter("ignore", SAWarning)
        indexes = inspector.get_indexes(name)
        unique: list[Sequence[str | None]] = [
            u["column_names"] for u in inspector.get_unique_constraints(name)
        ]
    unique += [i["column_names"] for i in indexes if i.get("unique")]
    return LiveTable(
        name,
        columns,
        primary,
        tuple(_names(cols) for cols in unique),
        tuple(_names(i["column_names"]) for i in indexes),
        _engine(inspector, conn.dialect.name, name),
    )


def _filled(dialect: str, column: Any, primary: tuple[str, ...]) -> bool:
    if column.get("default") is not None or column.get("autoincrement") is True:
        return True
    if column.get("identity") or column.get("computed"):
        return True
    # SQLite numbers a lone INTEGER PRIMARY KEY itself: it is the rowid.
    return (
        dialect == "sqlite"
        and primary == (column["name"],)
        and column["type"].__visit_name__.upper() == "INTEGER"
    )


def _engine(inspector: Inspector, dialect: str, name: str) -> str | None:
    try:
        options = inspector.get_table_options(name)
    except NotImplementedError:  # SQLite has no table options
        return None
    engine = options.get(f"{dialect}_engine")  # only MySQL's dialects name one
    return engine if isinstance(engine, str) else None


def _names(columns: Iterable[str | None]) -> tuple[str, ...]:
    # An index on an expression has None for that part: it serves no column lookup.
    return tuple(c if c is not None else "<expression>" for c in columns)
