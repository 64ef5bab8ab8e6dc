"""Kamailio's imc tables and its `version` table, as SQLAlchemy Core objects.

Column names, types, sizes, NOT NULL, auto-increment ids and unique-constraint names
match Kamailio's generated DDL (utils/kamctl/<db>/imc-create.sql, standard-create.sql)
so that a real Kamailio and this sidecar can share the tables in either direction.
Constraint names differ per database exactly as Kamailio's do: bare on MySQL,
prefixed with the table name on PostgreSQL and SQLite.  One addition to them is an
explicit InnoDB engine on MySQL, because a write-through store needs transactions.

Two tables are the sidecar's own, for several sidecars on one database (feed/): the
rooms' versions and the change feed.  Kamailio never reads them, so its imc can take
over the imc tables, and give them back, with these beside them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import SAWarning
from sqlalchemy.schema import CreateIndex
from sqlalchemy.types import TypeEngine

from imc_sidecar.imc.changes import (
    Change,
    MemberAdded,
    MemberFlagsChanged,
    RoomCreated,
)

__all__ = [
    "FIELD_SIZE",
    "TABLE_VERSION",
    "VERSION_TABLE",
    "ImcTables",
    "SchemaMismatch",
    "build_tables",
    "caseless",
    "check_fits",
    "ensure_schema",
    "holds",
]

FIELD_SIZE = 64  # every string column of imc_rooms/imc_members is VARCHAR(64)
TABLE_VERSION = 1  # both imc tables are version 1 in every Kamailio release
VERSION_TABLE = "version"
ROOM_VERSIONS_TABLE = "imc_sidecar_room_versions"
CHANGES_TABLE = "imc_sidecar_changes"
ROOM_KEY_SIZE = 2 * FIELD_SIZE + 5  # "sip:" + name + "@" + domain, in lower case
ORIGIN_SIZE = 64
_VERSION_NAME_SIZE = 32
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1  # flag is a signed 32-bit INT
_MYSQL = ("mysql", "mariadb")  # SQLAlchemy's names for the MySQL family


class SchemaMismatch(Exception):
    """An existing table lacks a column the imc module relies on."""


@dataclass(frozen=True)
class ImcTables:
    metadata: MetaData
    rooms: Table
    members: Table
    version: Table
    room_versions: Table  # the sidecar's own: one row per room ever changed
    changes: Table  # the sidecar's own: the change feed

    def versions(self) -> dict[str, int]:
        """The `version` rows Kamailio's imc checks at start (it refuses other values)."""
        return {self.rooms.name: TABLE_VERSION, self.members.name: TABLE_VERSION}


def build_tables(
    dialect: str, rooms_table: str = "imc_rooms", members_table: str = "imc_members"
) -> ImcTables:
    """The three tables with the constraint names Kamailio uses on `dialect`."""
    metadata = MetaData()
    rooms = Table(
        rooms_table,
        metadata,
        _id_column(),
        Column("name", String(FIELD_SIZE), nullable=False),
        Column("domain", String(FIELD_SIZE), nullable=False),
        Column("flag", _int11(), nullable=False),
        UniqueConstraint("name", "domain", name=_name(dialect, rooms_table, "name_domain_idx")),
        mysql_engine="InnoDB",
    )
    members = Table(
        members_table,
        metadata,
        _id_column(),
        Column("username", String(FIELD_SIZE), nullable=False),
        Column("domain", String(FIELD_SIZE), nullable=False),
        Column("room", String(FIELD_SIZE), nullable=False),
        Column("flag", _int11(), nullable=False),
        UniqueConstraint(
            "username",
            "domain",
            "room",
            name=_name(dialect, members_table, "account_room_idx"),
        ),
        # Not in Kamailio's DDL: a sidecar re-reads one room's members when another
        # changed it (feed/), and the unique index above cannot find them by room.
        Index(f"{members_table}_room_idx", "room"),
        mysql_engine="InnoDB",
    )
    version = Table(
        VERSION_TABLE,
        metadata,
        _id_column(),
        Column("table_name", String(_VERSION_NAME_SIZE), nullable=False),
        Column(
            "table_version",
            Integer().with_variant(mysql.INTEGER(unsigned=True), *_MYSQL),
            nullable=False,
            server_default=text("0"),
        ),
        UniqueConstraint("table_name", name=_name(dialect, VERSION_TABLE, "table_name_idx")),
        mysql_engine="InnoDB",
    )
    room_versions = Table(
        ROOM_VERSIONS_TABLE,
        metadata,
        Column("room", String(ROOM_KEY_SIZE), primary_key=True, nullable=False),
        Column("version", BigInteger, nullable=False),
        mysql_engine="InnoDB",
    )
    changes = Table(
        CHANGES_TABLE,
        metadata,
        # SQLite: INTEGER PRIMARY KEY (the rowid alias); BIGINT elsewhere.
        Column(
            "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
            autoincrement=True, nullable=False,
        ),
        Column("room", String(ROOM_KEY_SIZE), nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("origin", String(ORIGIN_SIZE), nullable=False),
        Column("changed_at", Double, nullable=False),  # unix time, for pruning
        Index(f"{CHANGES_TABLE}_changed_at_idx", "changed_at"),
        mysql_engine="InnoDB",
        # Never hand an id out twice, even after the newest rows were deleted: the
        # followers' cursors only move forward.
        sqlite_autoincrement=True,
    )
    if dialect not in _MYSQL:
        # Not in Kamailio's DDL: rooms and members are found in any case (`caseless`),
        # and MySQL's case-insensitive collations serve that from the plain indexes.
        Index(f"{rooms_table}_lower_name_domain_idx",
              func.lower(rooms.c.name), func.lower(rooms.c.domain))
        Index(f"{members_table}_lower_room_idx", func.lower(members.c.room))
    return ImcTables(metadata, rooms, members, version, room_versions, changes)


def caseless(dialect: str, column: Any, value: str) -> ColumnElement[bool]:
    """`column` equals `value` in any case, as imc matches names, in the form the
    indexes serve: MySQL's collations ignore case already; elsewhere lower() on both
    sides, which the lower() indexes above serve."""
    if dialect in _MYSQL:
        return cast("ColumnElement[bool]", column == value)
    return func.lower(column) == func.lower(value)


def ensure_schema(conn: Connection, tables: ImcTables) -> list[str]:
    """Create whichever table is missing and add absent rows to Kamailio's `version`.

    Existing tables (a real Kamailio's) are left exactly as they are, apart from a
    check that the columns we read and write are there.  Returns the tables created.
    """
    existing = set(inspect(conn).get_table_names())
    created: list[str] = []
    for table in (
        tables.version, tables.rooms, tables.members, tables.room_versions, tables.changes
    ):
        if table.name in existing:
            _check_columns(conn, table)
            _add_missing_indexes(conn, table)
        else:
            table.create(conn)
            created.append(table.name)
    wanted = tables.versions()
    if tables.version.name in created:
        # standard-create.sql records the table itself, first
        wanted = {VERSION_TABLE: TABLE_VERSION, **wanted}
    version = tables.version
    present = set(
        conn.execute(
            select(version.c.table_name).where(version.c.table_name.in_(list(wanted)))
        ).scalars()
    )
    rows = [
        {"table_name": n, "table_version": v} for n, v in wanted.items() if n not in present
    ]
    if rows:
        conn.execute(version.insert(), rows)
    return created


def check_fits(change: Change) -> str | None:
    """Why `change` cannot be stored without truncation, or None if it fits.

    Every string column is VARCHAR(64) (characters, on MySQL and PostgreSQL), and
    `imc_members.room` holds the whole `sip:<name>@<domain>`, so a room whose URI is
    longer than 64 characters could never get a member row: it is refused up front.
    """
    fields: list[tuple[str, str]]
    if isinstance(change, RoomCreated):
        fields = [
            ("room name", change.name),
            ("room domain", change.domain),
            ("room URI", f"sip:{change.name}@{change.domain}"),
        ]
    elif isinstance(change, MemberAdded | MemberFlagsChanged):
        fields = [
            ("room URI", change.room_uri),
            ("member user", change.user),
            ("member domain", change.domain),
        ]
    else:
        return None  # deletions remove rows that fit by construction
    for label, value in fields:
        if not holds(FIELD_SIZE, len(value)):
            return (
                f"{label} is {len(value)} characters long; "
                f"the database column holds at most {FIELD_SIZE}"
            )
        if "\x00" in value:
            return f"{label} contains a NUL character"
    if not _INT_MIN <= change.flags <= _INT_MAX:
        return f"flags value {change.flags} does not fit the database INT column"
    return None


def holds(size: int | None, length: int) -> bool:
    """Whether a column of `size` characters (None: unbounded) takes `length` of them:
    the one length rule, for values (check_fits) and for live columns (`db check`)."""
    return size is None or length <= size


def _id_column() -> Column[int]:
    # MySQL: INT(10) UNSIGNED AUTO_INCREMENT; PostgreSQL: SERIAL; SQLite: INTEGER
    # PRIMARY KEY (the rowid alias).
    id_type: TypeEngine[int] = Integer().with_variant(
        mysql.INTEGER(display_width=10, unsigned=True), *_MYSQL
    )
    return Column("id", id_type, primary_key=True, autoincrement=True, nullable=False)


def _int11() -> TypeEngine[int]:
    return Integer().with_variant(mysql.INTEGER(display_width=11), *_MYSQL)


def _name(dialect: str, table: str, suffix: str) -> str:
    return suffix if dialect in _MYSQL else f"{table}_{suffix}"


def _add_missing_indexes(conn: Connection, table: Table) -> None:
    """Create the indexes of ours that a table made by Kamailio lacks.  Reflection does
    not list expression indexes (lower(...)), so those are made with IF NOT EXISTS,
    which PostgreSQL and SQLite have (MySQL gets none of them)."""
    with warnings.catch_warnings():  # "Skipped unsupported reflection of expression..."
        warnings.simplefilter("ignore", SAWarning)
        have = {index["name"] for index in inspect(conn).get_indexes(table.name)}
    for index in table.indexes:
        if index.name in have:
            continue
        if conn.dialect.name in _MYSQL:
            index.create(conn)
        else:
            conn.execute(CreateIndex(index, if_not_exists=True))


def _check_columns(conn: Connection, table: Table) -> None:
    have = {c["name"].lower() for c in inspect(conn).get_columns(table.name)}
    missing = [c.name for c in table.columns if c.name not in have]
    if missing:
        raise SchemaMismatch(
            f"existing table {table.name} has no column(s) {', '.join(missing)}"
        )
