"""How the tables a database has differ from the tables the sidecar would create.

Pure: `compare()` takes the expected tables (the very SQLAlchemy metadata that creates
them), the `version` rows Kamailio expects, and a description of the live tables (read
by store/live.py), and returns one Difference per problem, each a line an operator can
act on.  The rules, all judged by what the sidecar and Kamailio's imc need:

* A column must hold every value the sidecar writes: strings at least as long (one
  length rule with check_fits: `schema.holds`), integers and floats at least as wide;
  other types must be the same SQL type.  SQLite does not enforce lengths, so there a
  shorter declared length is only a note.
* A column the sidecar writes NULL into must take NULL; one that allows NULL where we
  expect NOT NULL is a note (we never write NULL there).  The auto-increment id must be
  numbered by the database.
* A column we do not know is a note, unless it is NOT NULL with no default: then our
  inserts would be refused.
* Keys and indexes are matched by their columns, not their names (an operator's own
  name is fine): the primary key must be the same, each unique key must exist, each
  index must be served by one starting with its columns, and a unique key of the
  database's own must not refuse rows ours accept.
* On MySQL, each table's storage engine must be the one the metadata names (InnoDB).
* Kamailio's `version` must have each imc table's row at its version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Index, Table, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.types import BigInteger, Double, Float, Integer, SmallInteger, String, TypeEngine

from .schema import _MYSQL, VERSION_TABLE, holds

__all__ = [
    "Difference",
    "LiveColumn",
    "LiveSchema",
    "LiveTable",
    "compare",
    "storage_engine_problem",
]

# MySQL's unsized text types hold this many bytes; elsewhere TEXT is unbounded.
_MYSQL_TEXT = {"TINYTEXT": 255, "TEXT": 65_535, "MEDIUMTEXT": 16_777_215,
               "LONGTEXT": 4_294_967_295}
_MYSQL_INT_BITS = {"TINYINT": 8, "MEDIUMINT": 24}


@dataclass(frozen=True)
class LiveColumn:
    name: str
    type: TypeEngine[Any]
    nullable: bool
    filled: bool  # the database fills it when an INSERT leaves it out (default, serial)


@dataclass(frozen=True)
class LiveTable:
    name: str
    columns: tuple[LiveColumn, ...]
    primary_key: tuple[str, ...]
    unique_keys: tuple[tuple[str, ...], ...]  # unique constraints and unique indexes
    indexes: tuple[tuple[str, ...], ...]  # every index, unique or not
    engine: str | None = None  # MySQL's storage engine; None elsewhere


@dataclass(frozen=True)
class LiveSchema:
    tables: Mapping[str, LiveTable]  # only the tables that exist
    versions: Mapping[str, int] | None  # Kamailio's `version` rows; None: not readable


@dataclass(frozen=True)
class Difference:
    text: str  # one line, starting with the table or table.column it is about
    fails: bool = True  # False: a note, worth knowing but harmless

    def __str__(self) -> str:
        return self.text if self.fails else f"note: {self.text}"


def compare(
    expected: Iterable[Table],
    versions: Mapping[str, int],
    live: LiveSchema,
    dialect: Dialect,
) -> list[Difference]:
    """Every way `live` differs from `expected` (tables, then `version` rows)."""
    found: list[Difference] = []
    for table in expected:
        have = live.tables.get(table.name)
        if have is None:
            found.append(Difference(f"{table.name}: missing table"))
        else:
            found += _compare_table(table, have, dialect)
    if live.versions is not None:
        for name, version in versions.items():
            got = live.versions.get(name)
            if got is None:
                found.append(Difference(
                    f"{VERSION_TABLE}: no row for {name}, expected table_version {version} "
                    "(Kamailio's imc will not start without it)"
                ))
            elif got != version:
                found.append(Difference(
                    f"{VERSION_TABLE}: {name} is at table_version {got}, expected {version} "
                    "(Kamailio's imc will not start with it)"
                ))
    return found


def storage_engine_problem(table: Table, engine: str) -> str | None:
    """Why a MySQL table on `engine` is not as the metadata asks, or None if it is."""
    wanted = table.dialect_kwargs.get("mysql_engine")
    if not isinstance(wanted, str) or engine.lower() == wanted.lower():
        return None
    return (
        f"{table.name}: storage engine {engine}, expected {wanted}: without transactions "
        f"a failed command may leave half its rows (ALTER TABLE {table.name} "
        f"ENGINE={wanted})"
    )


def _compare_table(table: Table, live: LiveTable, dialect: Dialect) -> list[Difference]:
    found: list[Difference] = []
    columns = {c.name.lower(): c for c in live.columns}
    primary = {c.name.lower() for c in table.primary_key.columns}
    auto = table.autoincrement_column
    for column in table.columns:
        have = columns.pop(column.name.lower(), None)
        where = f"{table.name}.{column.name}"
        if have is None:
            found.append(Difference(
                f"{where}: missing column (expected {_describe(column, dialect)})"
            ))
            continue
        problem = _type_problem(column.type, have.type, dialect)
        if problem is not None:
            found.append(Difference(f"{where}: {problem[0]}", problem[1]))
        if column.name.lower() not in primary:  # a primary key never holds NULL
            if column.nullable and not have.nullable and not have.filled:
                found.append(Difference(
                    f"{where}: NOT NULL, expected NULL allowed: "
                    "the sidecar's rows with no value there would be refused"
                ))
            elif not column.nullable and have.nullable:
                found.append(Difference(
                    f"{where}: NULL allowed, expected NOT NULL "
                    "(the sidecar never writes NULL there)", fails=False
                ))
        if column is auto and not have.filled:
            found.append(Difference(
                f"{where}: not numbered by the database, expected auto-increment: "
                "the sidecar's inserts would be refused"
            ))
    for extra in columns.values():
        where = f"{table.name}.{extra.name}"
        if not extra.nullable and not extra.filled:
            found.append(Difference(
                f"{where}: not in the sidecar's schema, and NOT NULL with no default: "
                "the sidecar's inserts would be refused"
            ))
        else:
            found.append(Difference(
                f"{where}: not in the sidecar's schema (harmless: NULL or a default fills "
                "it)", fails=False
            ))
    found += _compare_keys(table, live)
    if live.engine is not None:
        problem_text = storage_engine_problem(table, live.engine)
        if problem_text is not None:
            found.append(Difference(problem_text))
    return found


def _compare_keys(table: Table, live: LiveTable) -> list[Difference]:
    found: list[Difference] = []
    want_pk = _lower(c.name for c in table.primary_key.columns)
    have_pk = _lower(live.primary_key)
    if set(want_pk) != set(have_pk):
        now = f"primary key {_cols(have_pk)}" if have_pk else "no primary key"
        found.append(Difference(f"{table.name}: {now}, expected {_cols(want_pk)}"))
    unique: list[tuple[str | None, tuple[str, ...]]] = []
    plain: list[tuple[str | None, tuple[str, ...]]] = []
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            unique.append((_name(constraint.name), _lower(c.name for c in constraint.columns)))
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        if not all(isinstance(e, Column) for e in index.expressions):
            continue  # lower(...) indexes: SQLAlchemy's reflection cannot see them
        keys = unique if index.unique else plain
        keys.append((_name(index.name), _index_columns(index)))
    live_unique = [_lower(k) for k in live.unique_keys]
    for name, cols in unique:
        if not any(set(k) == set(cols) for k in live_unique):
            found.append(Difference(f"{table.name}: missing {_key('unique key', name, cols)}"))
    serving = [_lower(k) for k in (*live.indexes, *live.unique_keys)] + [have_pk]
    for name, cols in plain:
        if not any(k[: len(cols)] == cols for k in serving):
            found.append(Difference(f"{table.name}: missing {_key('index', name, cols)}"))
    # A unique key over columns that include one of ours refuses nothing ours accepts.
    ours = [set(cols) for _, cols in unique] + [set(want_pk)]
    for key in dict.fromkeys(live_unique):
        if not any(set(key) >= cols for cols in ours):
            found.append(Difference(
                f"{table.name}: unique key on {_cols(key)} that the sidecar does not have: "
                "it may refuse rows the sidecar writes"
            ))
    return found


def _type_problem(
    expected: TypeEngine[Any], live: TypeEngine[Any], dialect: Dialect
) -> tuple[str, bool] | None:
    """What is wrong with `live` where `expected` is wanted, and whether it fails."""
    want = expected.dialect_impl(dialect)
    shown = f"{_sql(live, dialect)}, expected {_sql(expected, dialect)}"
    if isinstance(want, Integer):
        if not isinstance(live, Integer):
            return shown, True
        if dialect.name == "sqlite":
            return None  # every SQLite integer is 64-bit, whatever its declared type
        low, high = _int_range(want)
        live_low, live_high = _int_range(live)
        if live_low <= low and high <= live_high:
            return None
        return f"{shown} or wider: not every value the sidecar stores would fit", True
    if isinstance(want, Float):
        if not isinstance(live, Float):
            return shown, True
        if _float_bits(live, dialect) >= _float_bits(want, dialect):
            return None
        return f"{shown} or wider: values would lose precision", True
    if isinstance(want, String):
        if not isinstance(live, String):
            return shown, True
        size = _capacity(want, dialect)
        if size is None or holds(_capacity(live, dialect), size):
            return None
        if dialect.name == "sqlite":
            return f"{shown}; SQLite does not enforce lengths, so nothing is cut", False
        return f"{shown} or longer: longer values would not fit", True
    return None if _sql(live, dialect) == _sql(want, dialect) else (shown, True)


def _int_range(type_: TypeEngine[Any]) -> tuple[int, int]:
    if isinstance(type_, BigInteger):
        bits = 64
    elif isinstance(type_, SmallInteger):
        bits = 16
    else:
        bits = _MYSQL_INT_BITS.get(type_.__visit_name__.upper(), 32)
    if getattr(type_, "unsigned", False):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _float_bits(type_: TypeEngine[Any], dialect: Dialect) -> int:
    if dialect.name == "sqlite" or isinstance(type_, Double):
        return 64  # SQLite stores every real as 8 bytes
    precision = getattr(type_, "precision", None)
    if isinstance(precision, int):
        return 32 if precision <= 24 else 64  # FLOAT(p): single up to 24 binary digits
    if type_.__visit_name__.upper() == "REAL":
        return 32
    return 32 if dialect.name in _MYSQL else 64  # plain FLOAT: single only on MySQL


def _capacity(type_: TypeEngine[Any], dialect: Dialect) -> int | None:
    """Characters a string column holds (MySQL's TEXT types: bytes); None: no limit."""
    length = getattr(type_, "length", None)
    if isinstance(length, int):
        return length
    if dialect.name in _MYSQL:
        return _MYSQL_TEXT.get(type_.__visit_name__.upper())
    return None


def _sql(type_: TypeEngine[Any], dialect: Dialect) -> str:
    try:
        return type_.compile(dialect=dialect)
    except CompileError:  # a type the inspector did not recognise
        return str(type_.__class__.__name__).upper()


def _describe(column: Column[Any], dialect: Dialect) -> str:
    return _sql(column.type, dialect) + ("" if column.nullable else " NOT NULL")


def _index_columns(index: Index) -> tuple[str, ...]:
    return _lower(c.name for c in index.columns)


def _lower(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(n.lower() for n in names)


def _name(name: object) -> str | None:
    return name if isinstance(name, str) else None


def _cols(names: Sequence[str]) -> str:
    return "(" + ", ".join(names) + ")"


def _key(kind: str, name: str | None, columns: Sequence[str]) -> str:
    return f"{kind} {name} on {_cols(columns)}" if name else f"{kind} on {_cols(columns)}"
