"""The history writer: rows queued in memory, written in batches by one background task.

Nothing on the request path waits for it.  `add_*` appends to a bounded queue and
returns; every `flush_interval` the task writes what is queued in one transaction.  A
database error is logged (at most once per `_LOG_EVERY` seconds) and counted, and the
rows stay queued for the next attempt; rows that do not fit the queue are dropped,
counted and logged, never silently.  Old rows are pruned in small batches when a
retention is set, so a prune never holds a long lock.

It reads too: the sidecar's history RPC methods page through the same engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from sqlalchemy import Connection, delete, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..store.connect import StoreError, open_engine, reason
from .query import HistoryFilter, Page, read_page
from .records import EventRecord, MessageRecord
from .tables import (
    HistoryTables,
    build_history_tables,
    ensure_history_schema,
    event_row,
    message_row,
)

__all__ = ["HistoryCounters", "HistoryWriter"]

log = logging.getLogger("imc_sidecar.history")

_BATCH = 5_000  # rows per transaction: bounds one commit's size under a backlog
_LOG_EVERY = 10.0  # seconds between two log lines about the same trouble
_PRUNE_EVERY = 60.0
_PRUNE_BATCH = 1_000
_RETRY_MAX = 30.0
_CLOSE_TIMEOUT = 5.0

class HistoryCounters:
    """What the statistics show of the writer (plain ints, bumped in place)."""

    __slots__ = ("dropped", "errors", "written")

    def __init__(self) -> None:
        self.written = 0  # rows committed
        self.dropped = 0  # rows that did not fit the queue
        self.errors = 0  # failed write attempts


class HistoryWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        tables: HistoryTables,
        label: str,
        flush_interval: float,
        capacity: int,
        retention_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self.tables = tables
        self.label = label
        self._interval = flush_interval
        self._capacity = capacity
        self._retention = retention_days
        self._clock = clock
        self._events: list[EventRecord] = []
        self._messages: list[MessageRecord] = []
        self.counters = HistoryCounters()
        self._last_log: dict[str, float] = {}
        self._closing = False
        self._ready = False  # the tables are known to exist
        self._schema_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="imc-history")

    @classmethod
    async def open(
        cls,
        db_url: str,
        flush_interval: float,
        capacity: int,
        retention_days: int,
        wait: bool = True,
    ) -> HistoryWriter:
        """Connect and create the history tables when missing.

        `wait` False (the sidecar's start): a history database that cannot be reached
        must not keep chat from starting, so the tables are made by the background
        task, retried like any failed write, while rows queue up meanwhile.
        """
        engine, label = open_engine(db_url, "history_db_url")
        writer = cls(engine, build_history_tables(), label, flush_interval, capacity,
                     retention_days)
        if wait:
            try:
                await writer._ensure_tables()
            except Exception as exc:
                await writer.close()
                raise StoreError(
                    f"cannot open history database {label}: {reason(exc)}"
                ) from None
        return writer

    async def _ensure_tables(self) -> None:
        async with self._schema_lock:  # open() and the first flush may both get here
            if self._ready:
                return
            async with self._engine.begin() as conn:
                created = await conn.run_sync(ensure_history_schema, self.tables)
            if created:
                log.info("history %s: created table(s) %s", self.label, ", ".join(created))
            self._ready = True

    # -- the request path: never waits ------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._events) + len(self._messages)

    def add_events(self, events: Iterable[EventRecord]) -> None:
        for event in events:
            if self.queued >= self._capacity:
                self._drop(1)
            else:
                self._events.append(event)

    def add_message(self, message: MessageRecord) -> None:
        if self.queued >= self._capacity:
            self._drop(1)
        else:
            self._messages.append(message)

    def _drop(self, count: int) -> None:
        self.counters.dropped += count
        self._warn(
            "full",
            "history queue full (%d rows): %d row(s) dropped so far (imc:history_dropped); "
            "the history database is slow or down, or history_queue is too small",
            self._capacity, self.counters.dropped,
        )

    def _warn(self, topic: str, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._last_log.get(topic, -_LOG_EVERY) >= _LOG_EVERY:
            self._last_log[topic] = now
            log.warning(message, *args)

    # -- the background task -----------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._interval
        last_prune = -_PRUNE_EVERY
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            # After a failure, wait longer each time (up to _RETRY_MAX) before retrying.
            ok = await self._flush()
            delay = self._interval if ok else min(max(delay * 2, 1.0), _RETRY_MAX)
            if self._closing:
                return
            if self._retention and self._clock() - last_prune >= _PRUNE_EVERY:
                last_prune = self._clock()
                await self._prune()

    async def _flush(self) -> bool:
        """Write what is queued, a batch per transaction; False after a failure."""
        if not self._ready:
            try:
                await self._ensure_tables()
            except Exception as exc:
                self.counters.errors += 1
                self._warn("write", "history %s: cannot create the history tables, "
                           "rows kept for the next attempt: %s", self.label, reason(exc))
                return False
        while self._events or self._messages:
            events = self._events[:_BATCH]
            messages = self._messages[: _BATCH - len(events)]
            try:
                await self._insert(events, messages)
            except Exception as exc:
                if not _is_row_error(exc):
                    self.counters.errors += 1
                    self._warn(
                        "write", "history %s: cannot write %d row(s), kept for the next "
                        "attempt: %s", self.label, self.queued, reason(exc),
                    )
                    return False
                # Some row the database will never take: keep the others, not the batch.
                await self._insert_each(events, messages)
            # Rows added while the transaction ran are behind these: cut from the front.
            del self._events[: len(events)]
            del self._messages[: len(messages)]
        return True

    async def _insert(self, events: list[EventRecord], messages: list[MessageRecord]) -> None:
        tables = self.tables
        batches = [(tables.events, [event_row(e) for e in events]),
                   (tables.messages, [message_row(m) for m in messages])]
        async with self._engine.begin() as conn:
            for table, rows in batches:
                if not rows:
                    continue
                if conn.dialect.paramstyle in _PLACEHOLDERS:
                    await conn.run_sync(_insert_many, table.name, rows)
                else:
                    await conn.execute(table.insert(), rows)
        self.counters.written += len(events) + len(messages)

    async def _insert_each(
        self, events: list[EventRecord], messages: list[MessageRecord]
    ) -> None:
        """Insert one row per transaction; a row the database refuses is dropped, counted
        and logged (retrying it would block every row behind it forever)."""
        rows: list[tuple[list[EventRecord], list[MessageRecord]]] = [
            ([e], []) for e in events
        ]
        rows += [([], [m]) for m in messages]
        for one_event, one_message in rows:
            try:
                await self._insert(one_event, one_message)
            except Exception as exc:
                self.counters.errors += 1
                self.counters.dropped += 1
                log.error("history %s: the database refused a row, dropped: %s (%r)",
                          self.label, reason(exc), (one_event or one_message)[0])

    async def _prune(self) -> None:
        cutoff = int((self._clock() - self._retention * 86_400) * 1_000_000)
        for table in (self.tables.events, self.tables.messages):
            while not self._closing:
                try:
                    async with self._engine.begin() as conn:
                        ids = (await conn.execute(
                            select(table.c.id).where(table.c.time_us < cutoff)
                            .order_by(table.c.time_us).limit(_PRUNE_BATCH)  # the time index
                        )).scalars().all()
                        if ids:
                            await conn.execute(delete(table).where(table.c.id.in_(ids)))
                except Exception as exc:
                    self._warn("prune", "history %s: pruning failed: %s", self.label, reason(exc))
                    return
                if len(ids) < _PRUNE_BATCH:
                    break
                await asyncio.sleep(0)  # let a flush or a reader in between batches

    # -- reading (the history RPC) ---------------------------------------------------------

    async def page(self, which: str, where: HistoryFilter, after: int, limit: int) -> Page:
        def read(conn: Connection) -> Page:
            return read_page(conn, self.tables, which, where, after, limit)

        async with self._engine.connect() as conn:
            return await conn.run_sync(read)

    # -- stopping ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Write what is queued (for a few seconds at most), then disconnect."""
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _CLOSE_TIMEOUT)
        except TimeoutError:
            self._task.cancel()
        except Exception:  # the task's own failure was logged where it happened
            pass
        if self.queued:
            log.warning("history %s: %d row(s) not written at stop", self.label, self.queued)
        await self._engine.dispose()


def _is_row_error(exc: BaseException) -> bool:
    """Whether `exc` is about the rows themselves (a value the database refuses), not the
    database being unreachable or the tables missing, which a retry can cure."""
    if isinstance(exc, IntegrityError | DataError | UnicodeError):
        return True
    # The driver's own classes (rows inserted through its cursor): DB-API names them.
    if any(cls.__name__ in ("IntegrityError", "DataError") for cls in type(exc).__mro__):
        return True
    # Errors the driver raised before the database saw the statement (say, encoding).
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


# Multi-row INSERT statements, written out here because the drivers' own executemany
# binds and steps one row at a time: in SQLite's case, in a thread that takes the GIL
# back for every row, which stalled the sidecar's event loop for tens of milliseconds
# at each flush under load (bench: history comparison).  One statement per few hundred
# rows keeps the batch's hand-overs to a handful.
_ROWS_PER_STATEMENT = 200  # x 12 columns: well under every engine's parameter limit
_PLACEHOLDERS: dict[str, Callable[[int], str]] = {
    "qmark": lambda n: "?",
    "format": lambda n: "%s",
    "numeric_dollar": lambda n: f"${n}",
}


def _insert_many(conn: Connection, table: str, rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    placeholder = _PLACEHOLDERS[conn.dialect.paramstyle]
    cursor = conn.connection.cursor()
    try:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            numbers = iter(range(1, len(chunk) * len(columns) + 1))
            values = ", ".join(
                "(" + ", ".join(placeholder(next(numbers)) for _ in columns) + ")"
                for _ in chunk
            )
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"
            cursor.execute(sql, [row[column] for row in chunk for column in columns])
    finally:
        cursor.close()
