"""Reading the history a page at a time: the one rule for filters and the cursor.

The sidecar's RPC (`sidecar.events`, `sidecar.messages`) and the analysts' offline
client (`Client.from_db`) both read through here, so the two give the same rows.

A page is the rows with `id` greater than the cursor that match the filters, in `id`
order, at most `limit` of them; the next cursor is the last row's `id`, or None when
the page was the last.  Because `id` only grows, paging while the sidecar writes
returns every row that existed when paging began exactly once (and possibly some
newer ones).  Times are UTC microseconds: `since` inclusive, `until` exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, Table, select

from .tables import HistoryTables

__all__ = [
    "EVENT_COLUMNS",
    "MAX_PAGE",
    "MESSAGE_COLUMNS",
    "HistoryFilter",
    "Page",
    "read_page",
]

MAX_PAGE = 2_000  # rows per reply: rendering a page must not hold up the SIP traffic
EVENT_COLUMNS = ("id", "time_us", "room", "kind", "actor", "subject", "result", "detail")
MESSAGE_COLUMNS = (
    "id", "time_us", "room", "sender", "body_size", "content_type", "recipients",
    "delivered", "failed", "worst_status", "latency_us", "body",
)


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    since_us: int | None = None
    until_us: int | None = None
    room: str | None = None
    kind: str | None = None  # events only
    sender: str | None = None  # messages only


@dataclass(frozen=True, slots=True)
class Page:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    next: int | None  # cursor for the next page; None: this was the last


def _select(table: Table, columns: tuple[str, ...], where: HistoryFilter) -> Select[Any]:
    query = select(*(table.c[name] for name in columns))
    if where.since_us is not None:
        query = query.where(table.c.time_us >= where.since_us)
    if where.until_us is not None:
        query = query.where(table.c.time_us < where.until_us)
    if where.room is not None:
        query = query.where(table.c.room == where.room)
    if where.kind is not None and "kind" in table.c:
        query = query.where(table.c.kind == where.kind)
    if where.sender is not None and "sender" in table.c:
        query = query.where(table.c.sender == where.sender)
    return query


def read_page(
    conn: Connection,
    tables: HistoryTables,
    which: str,
    where: HistoryFilter,
    after: int = 0,
    limit: int = MAX_PAGE,
) -> Page:
    """One page of `which` ("events" or "messages") rows after cursor `after`."""
    columns: tuple[str, ...]
    if which == "events":
        table, columns = tables.events, EVENT_COLUMNS
    elif which == "messages":
        table, columns = tables.messages, MESSAGE_COLUMNS
    else:
        raise ValueError(f"no history table {which!r}")
    limit = max(1, min(limit, MAX_PAGE))
    query = _select(table, columns, where).where(table.c.id > after)
    query = query.order_by(table.c.id).limit(limit + 1)
    rows = [tuple(row) for row in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(columns, rows, int(rows[-1][0]) if more else None)
