"""The usage-history tables, ours, beside Kamailio's `imc_rooms` and `imc_members`.

Kamailio's tables are never altered.  Ours are prefixed `imc_sidecar_`, a name no
Kamailio module uses, and carry no `version` row (Kamailio's tools must not think they
own them).  `sql/<db>/imc-sidecar-history.sql` creates the same tables by hand.

Times are UTC microseconds since the epoch in a BIGINT: one type that every engine
stores, compares and indexes the same way, with no time zone to get wrong.  Each table
is indexed by (room, time) for one room's history and by time for everyone's; `id`
grows with each insert and is the paging cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.dialects import mysql

from .records import EventRecord, MessageRecord

__all__ = [
    "EVENTS_TABLE",
    "MESSAGES_TABLE",
    "HistoryTables",
    "build_history_tables",
    "ensure_history_schema",
    "event_row",
    "message_row",
]

EVENTS_TABLE = "imc_sidecar_events"
MESSAGES_TABLE = "imc_sidecar_messages"
URI_SIZE = 255
KIND_SIZE = 16
RESULT_SIZE = 128
TYPE_SIZE = 128
_MYSQL = ("mysql", "mariadb")


@dataclass(frozen=True)
class HistoryTables:
    metadata: MetaData
    events: Table
    messages: Table


def _id() -> Column[int]:
    # BIGINT everywhere but SQLite, where only INTEGER PRIMARY KEY is the rowid alias.
    return Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
        autoincrement=True,
    )


def build_history_tables() -> HistoryTables:
    metadata = MetaData()
    events = Table(
        EVENTS_TABLE,
        metadata,
        _id(),
        Column("time_us", BigInteger(), nullable=False),
        Column("room", String(URI_SIZE), nullable=False),
        Column("kind", String(KIND_SIZE), nullable=False),
        Column("actor", String(URI_SIZE), nullable=False),
        Column("subject", String(URI_SIZE), nullable=True),
        Column("result", String(RESULT_SIZE), nullable=False),
        Column("detail", String(RESULT_SIZE), nullable=True),
        Index(f"{EVENTS_TABLE}_room_time_idx", "room", "time_us"),
        Index(f"{EVENTS_TABLE}_time_idx", "time_us"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    messages = Table(
        MESSAGES_TABLE,
        metadata,
        _id(),
        Column("time_us", BigInteger(), nullable=False),
        Column("room", String(URI_SIZE), nullable=False),
        Column("sender", String(URI_SIZE), nullable=False),
        Column("body_size", Integer(), nullable=False),
        Column("content_type", String(TYPE_SIZE), nullable=False),
        Column("recipients", Integer(), nullable=False),
        Column("delivered", Integer(), nullable=False),
        Column("failed", Integer(), nullable=False),
        Column("worst_status", Integer(), nullable=True),
        Column("latency_us", BigInteger(), nullable=True),
        Column("body", Text().with_variant(mysql.MEDIUMTEXT(), *_MYSQL), nullable=True),
        Index(f"{MESSAGES_TABLE}_room_time_idx", "room", "time_us"),
        Index(f"{MESSAGES_TABLE}_time_idx", "time_us"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    return HistoryTables(metadata, events, messages)


def ensure_history_schema(conn: Connection, tables: HistoryTables) -> list[str]:
    """Create whichever history table is missing; returns the ones created."""
    existing = set(inspect(conn).get_table_names())
    created = []
    for table in (tables.events, tables.messages):
        if table.name not in existing:
            table.create(conn)
            created.append(table.name)
    return created


def _cut(text: str | None, size: int) -> str | None:
    # MySQL in strict mode refuses a long value outright; a history row is worth more
    # shortened than lost.  No column can hold NUL on PostgreSQL.
    if text is None:
        return None
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        # Header values keep undecodable bytes as surrogates, which no driver encodes.
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text if len(text) <= size else text[:size]


def event_row(record: EventRecord) -> dict[str, object]:
    return {
        "time_us": record.time_us,
        "room": _cut(record.room, URI_SIZE),
        "kind": record.kind,
        "actor": _cut(record.actor, URI_SIZE),
        "subject": _cut(record.subject, URI_SIZE),
        "result": _cut(record.result, RESULT_SIZE),
        "detail": _cut(record.detail, RESULT_SIZE),
    }


def message_row(record: MessageRecord) -> dict[str, object]:
    return {
        "time_us": record.time_us,
        "room": _cut(record.room, URI_SIZE),
        "sender": _cut(record.sender, URI_SIZE),
        "body_size": record.body_size,
        "content_type": _cut(record.content_type, TYPE_SIZE),
        "recipients": record.recipients,
        "delivered": record.delivered,
        "failed": record.failed,
        "worst_status": record.worst_status,
        "latency_us": record.latency_us,
        "body": _cut(record.body, 16_000_000),
    }
