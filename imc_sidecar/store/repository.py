"""The store: load every room at start, then write the engine's changes through.

One writer task owns all writes.  `submit()` queues a command's changes in call order
and returns a future; the writer takes everything queued so far, applies it in order
in ONE transaction, commits, and only then resolves the futures of the commands in
that batch (group commit: one fsync serves many commands under load).  If a batch
fails on a statement (say a duplicate key), it is retried command by command so that
one bad command does not fail its neighbours.

If the database does not answer (or not within the statement timeout), the store turns
unavailable: that batch, everything queued behind it and every later submit fail with
`StoreUnavailable`, so the commands that failed are always the newest ones and memory
can take them back newest first.  `probe()` asks whether the database answers again;
`resume()` takes writes again.

Each command's write also claims its rooms' versions and appends to the change feed
(feed/, store/feed.py), so several sidecars can share the tables: a write that finds
a room changed by another sidecar fails with `VersionConflict`, and so does every
later write of ours to that room until memory is reloaded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Table, and_, select, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imc_sidecar.feed.cursor import FeedRow
from imc_sidecar.feed.versions import Claim, RoomVersions
from imc_sidecar.imc.changes import (
    Change,
    MemberAdded,
    MemberFlagsChanged,
    MemberRemoved,
    RoomCreated,
    RoomDestroyed,
    StoredMember,
    StoredRoom,
)
from imc_sidecar.store.connect import (
    DEFAULT_CONNECT_TIMEOUT,
    StoreError,
    open_engine,
    reason,
)
from imc_sidecar.store.drift import storage_engine_problem
from imc_sidecar.store.feed import (
    VersionConflict,
    feed_start,
    lock_rooms,
    lost_a_lock,
    prune_feed,
    read_feed,
    read_room,
    read_versions,
    record_claims,
)
from imc_sidecar.store.schema import (
    ImcTables,
    SchemaMismatch,
    build_tables,
    caseless,
    check_fits,
    ensure_schema,
)

__all__ = [
    "DEFAULT_STATEMENT_TIMEOUT",
    "DoesNotFit",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "VersionConflict",
    "check_fits",
    "read_rooms",
]

log = logging.getLogger(__name__)

_MAX_BATCH_CHANGES = 500  # bounds one transaction's size under a burst
DEFAULT_STATEMENT_TIMEOUT = 10.0  # seconds for one batch's transaction; db_statement_timeout
# Loading every room reads whole tables: it may take this many statement timeouts.
_LOAD_TIMEOUTS = 10
_new_tuple = tuple.__new__
_T = TypeVar("_T")


class DoesNotFit(StoreError):
    """A change has a value longer than its column; nothing of the command was written."""


class StoreUnavailable(StoreError):
    """The database did not answer, or not in time.  What was being written may or may
    not have been committed; only a fresh load tells."""


@dataclass(slots=True)
class _Pending:
    changes: tuple[Change, ...]
    claims: tuple[Claim, ...]  # the rooms' versions this write expects
    done: asyncio.Future[None]


class Store:
    """Kamailio's imc tables behind `load()` and write-through `apply()`."""

    def __init__(
        self, engine: AsyncEngine, tables: ImcTables, label: str,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT, origin: str = "",
    ) -> None:
        self._engine = engine
        self._tables = tables
        self.label = label  # redacted URL, for logs
        self.statement_timeout = statement_timeout
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self.unavailable: StoreUnavailable | None = None  # why writes are refused now
        self.origin = origin  # this sidecar's name in the change feed
        self.versions = RoomVersions()  # the rooms' versions, as of the last load
        self.feed_start = 0  # where following the feed starts, as of the last load
        # Rooms whose write met a change by another sidecar: our later writes to them
        # were computed on a stale room, so they fail too, until the next load.
        self._conflicted: set[str] = set()
        # Told the seconds of each committed write transaction (the Prometheus histogram).
        self.on_commit: Callable[[float], None] | None = None
        self._writer = asyncio.get_running_loop().create_task(self._run(), name="imc-store")

    @classmethod
    async def open(
        cls, db_url: str, rooms_table: str = "imc_rooms", members_table: str = "imc_members",
        *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT, origin: str = "",
    ) -> Store:
        """Connect and create whatever tables and version rows are missing."""
        engine, label = open_engine(db_url, "db_url", connect_timeout)
        dialect = engine.url.get_backend_name()
        tables = build_tables(dialect, rooms_table, members_table)
        try:
            created = await _within(
                statement_timeout * _LOAD_TIMEOUTS, _prepare(engine, tables, label)
            )
        except TimeoutError as exc:
            await engine.dispose()
            raise StoreError(f"cannot open database {label}: {exc}") from None
        except BaseException:
            await engine.dispose()
            raise
        if created:
            log.info("store %s: created table(s) %s", label, ", ".join(created))
        return cls(engine, tables, label, statement_timeout, origin)

    @property
    def reachable(self) -> bool:
        """False from a write the database did not answer until `resume()`."""
        return self.unavailable is None

    async def load(self) -> list[StoredRoom]:
        """Every room with its members, rooms and members each in insertion (id) order;
        the rooms' versions and the feed's starting point are taken before them."""
        await self.apply(())  # read our own writes
        try:
            versions, start, room_rows, member_rows = await _within(
                self.statement_timeout * _LOAD_TIMEOUTS, self._fetch()
            )
        except Exception as exc:
            raise StoreUnavailable(
                f"cannot load rooms from {self.label}: {reason(exc)}"
            ) from None
        self.versions = RoomVersions(versions)
        self.feed_start = start
        self._conflicted.clear()
        return _assemble(room_rows, member_rows)

    async def _fetch(self) -> tuple[dict[str, int], int, Sequence[Any], Sequence[Any]]:
        async with self._engine.connect() as conn:
            return await conn.run_sync(_fetch_with_versions, self._tables)

    @property
    def dialect(self) -> str:
        return str(self._engine.dialect.name)

    async def listen(self, channel: str, callback: Callable[..., None]) -> Listening:
        """PostgreSQL: a connection that LISTENs on `channel`, calling `callback` for
        each notification, until the result is closed."""
        async def open_listening() -> Listening:
            conn = await self._engine.connect()
            try:
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection  # asyncpg's own connection
                assert driver is not None
                await driver.add_listener(channel, callback)
            except BaseException:
                await conn.close()
                raise
            return Listening(conn)

        try:
            return await _within(self.statement_timeout, open_listening())
        except Exception as exc:
            raise StoreUnavailable(f"database {self.label}: {reason(exc)}") from None

    def refuse_rooms(self, rooms: Iterable[str]) -> None:
        """Refuse our writes to these rooms (VersionConflict) until `accept_rooms`: memory
        of them is stale, and what was computed on it must not be stored."""
        self._conflicted.update(rooms)

    def accept_rooms(self, rooms: Iterable[str]) -> None:
        """Memory of these rooms was read again: take writes to them again."""
        self._conflicted.difference_update(rooms)

    async def read_feed(self, after: int, missing: Sequence[int] = ()) -> list[FeedRow]:
        """Feed rows after id `after` (a page, oldest first) and the rows of the ids
        `missing` that exist by now (StoreUnavailable if no answer)."""
        rows: list[FeedRow] = await self._read(read_feed, (after, missing))
        return rows

    async def read_room(self, key: str) -> tuple[int, StoredRoom | None]:
        """One room (by its lower-case URI) as the tables hold it, and its version."""
        room: tuple[int, StoredRoom | None] = await self._read(read_room, key)
        return room

    async def prune_feed(self, before: float) -> int:
        """Drop feed rows older than `before` (unix time)."""
        pruned: int = await self._read(prune_feed, before, commit=True)
        return pruned

    async def _read(self, work: Any, argument: Any, commit: bool = False) -> Any:
        async def run() -> Any:
            opened = self._engine.begin() if commit else self._engine.connect()
            async with opened as conn:
                return await conn.run_sync(work, self._tables, argument)

        try:
            return await _within(self.statement_timeout, run())
        except Exception as exc:
            raise StoreUnavailable(f"database {self.label}: {reason(exc)}") from None

    async def probe(self) -> None:
        """Return once the database answers a query; StoreUnavailable if it does not."""
        try:
            await _within(self.statement_timeout, self._select_one())
        except Exception as exc:
            raise StoreUnavailable(f"database {self.label}: {reason(exc)}") from None

    async def _select_one(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def resume(self) -> None:
        """Take writes again (after `probe()` succeeded)."""
        self.unavailable = None


    def submit(self, changes: Sequence[Change]) -> asyncio.Future[None]:
        """Queue one command's changes now; the future resolves once they are committed.

        Raises DoesNotFit at once, before anything is queued, if a value is too long for
        its column.  An empty `changes` is a barrier: it resolves after everything
        queued before it is durable.
        """
        if self._closed:
            raise StoreError("store is closed")
        if self.unavailable is not None:
            raise self.unavailable
        for change in changes:
            problem = check_fits(change)
            if problem is not None:
                raise DoesNotFit(problem)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        claims = self.versions.claim(changes) if changes else ()
        self._queue.append(_Pending(tuple(changes), claims, done))
        self._wakeup.set()
        return done

    async def apply(self, changes: Sequence[Change]) -> None:
        """Write `changes` in one transaction; return once committed (StoreError if not).

        Calls are applied in the order they start; a caller cancelled while waiting does
        not withdraw its changes, which are committed all the same.
        """
        await asyncio.shield(self.submit(changes))

    async def close(self) -> None:
        """Finish the queued writes, then release the connections."""
        if not self._closed:
            self._closed = True
            self._wakeup.set()
            await self._writer
            await self._engine.dispose()

    async def _run(self) -> None:
        try:
            while True:
                while not self._queue:
                    if self._closed:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                await self._write(self._take_batch())
        finally:
            # Only reached early if the task is cancelled: nobody may wait forever.
            while self._queue:
                self._settle([self._queue.popleft()], StoreError("store stopped before writing"))

    def _take_batch(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        size = len(batch[0].changes)
        while self._queue and size + len(self._queue[0].changes) <= _MAX_BATCH_CHANGES:
            item = self._queue.popleft()
            size += len(item.changes)
            batch.append(item)
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        if not any(p.changes for p in batch):
            self._settle(batch, None)
            return
        if self.unavailable is not None:
            self._settle(batch, self.unavailable)
            return
        started = time.perf_counter()
        try:
            await _within(self.statement_timeout, self._transaction(batch))
        except (IntegrityError, DataError, VersionConflict, DBAPIError) as exc:
            lost = isinstance(exc, VersionConflict) or lost_a_lock(exc)
            if not lost and not isinstance(exc, IntegrityError | DataError):
                await self._unavailable(batch, exc)
                return
            if len(batch) > 1:
                for pending in batch:  # find the culprit; the others still get written
                    await self._write([pending])
                return
            self._conflicted.update(room for room, _ in batch[0].claims)
            if lost:
                # A deadlock or lock timeout with another sidecar: a race lost, too.
                conflict = exc if isinstance(exc, VersionConflict) else VersionConflict(reason(exc))
                self._settle(batch, conflict)
            else:
                self._settle(batch, StoreError(f"database refused the change: {reason(exc)}"))
        except Exception as exc:
            await self._unavailable(batch, exc)
        else:
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started)
            self._settle(batch, None)

    async def _unavailable(self, batch: list[_Pending], exc: BaseException) -> None:
        why = reason(exc)
        log.error("store %s: write failed: %s; refusing writes until it answers",
                  self.label, why)
        # Everything queued behind this batch fails with it: the failed commands are
        # then always the newest, which memory can take back in order.
        self.unavailable = StoreUnavailable(f"database unavailable: {why}")
        self._settle(batch, self.unavailable)
        while self._queue:
            self._settle([self._queue.popleft()], self.unavailable)

    async def _transaction(self, batch: list[_Pending]) -> None:
        now = time.time()
        async with self._engine.begin() as conn:
            await lock_rooms(
                conn, self._tables,
                (room for pending in batch for room, expected in pending.claims if expected),
            )
            for pending in batch:
                stale = [room for room, _ in pending.claims if room in self._conflicted]
                if stale:
                    raise VersionConflict(f"{stale[0]} changed elsewhere; not reloaded yet")
                # Versions first: a room made elsewhere is a conflict, not a duplicate key.
                if pending.claims:
                    await record_claims(conn, self._tables, pending.claims, self.origin, now)
                for change in pending.changes:
                    await _execute(conn, self._tables, change)

    def _settle(self, batch: list[_Pending], error: StoreError | None) -> None:
        for pending in batch:
            if not pending.claims:
                continue
            if pending.done.done():  # cancelled: nobody takes anything back
                self.versions.settled(pending.claims)
            else:
                # After the callbacks the caller added at submit: the room stays busy
                # (not to be re-read) until the caller has taken a failed write back.
                pending.done.add_done_callback(functools.partial(self._settled, pending.claims))
        _settle(batch, error)

    def _settled(self, claims: tuple[Claim, ...], _: object) -> None:
        self.versions.settled(claims)


class Listening:
    """A LISTENing connection; `close()` drops it rather than pool it, listeners and
    all."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def close(self) -> None:
        try:
            await self._conn.invalidate()
        finally:
            await self._conn.close()


def read_rooms(conn: Connection, tables: ImcTables) -> list[StoredRoom]:
    """Every room with its members, as the sidecar loads them at start: the one loading
    rule, which the analysts' offline client (`Client.from_db`) uses too."""
    return _assemble(*_fetch_all(conn, tables))


def _fetch_with_versions(
    conn: Connection, tables: ImcTables
) -> tuple[dict[str, int], int, Sequence[Any], Sequence[Any]]:
    # Versions and the feed position first: the rooms read after are at least as new.
    versions = read_versions(conn, tables)
    start = feed_start(conn, tables)
    return (versions, start, *_fetch_all(conn, tables))


def _fetch_all(conn: Connection, tables: ImcTables) -> tuple[Sequence[Any], Sequence[Any]]:
    """Both tables as the driver's plain rows (tuples, or asyncpg's Records).

    SQLAlchemy's Row objects would add about 0.15 s per million member rows to the
    start-up; no column here needs its result processing (strings and integers).
    """
    rooms_t, members_t = tables.rooms, tables.members
    queries = (
        select(rooms_t.c.name, rooms_t.c.domain, rooms_t.c.flag).order_by(rooms_t.c.id),
        select(
            members_t.c.username, members_t.c.domain, members_t.c.room, members_t.c.flag
        ).order_by(members_t.c.id),
    )
    cursor = conn.connection.cursor()
    try:
        fetched = []
        for query in queries:
            cursor.execute(str(query.compile(dialect=conn.dialect)))
            fetched.append(cursor.fetchall())
    finally:
        cursor.close()
    return fetched[0], fetched[1]


def _assemble(room_rows: Sequence[Any], member_rows: Sequence[Any]) -> list[StoredRoom]:
    """Group member rows under their rooms (by `room` URI, any case), keeping row order."""
    by_room: dict[str, list[StoredMember]] = {}
    current: list[StoredMember] = []
    last_uri: object = None
    for user, domain, uri, flag in member_rows:
        # Rows of one room usually come together: a string comparison then saves the
        # lower() and the lookup.
        if uri != last_uri:
            last_uri = uri
            current = by_room.setdefault(uri.lower(), [])
        # tuple.__new__ skips the Python-level __new__ of the NamedTuple: half the cost.
        current.append(_new_tuple(StoredMember, (user, domain, int(flag))))
    loaded: list[StoredRoom] = []
    for name, domain, flag in room_rows:
        found = by_room.pop(f"sip:{name}@{domain}".lower(), None)
        members = tuple(found) if found else ()
        loaded.append(_new_tuple(StoredRoom, (name, domain, int(flag), members)))
    if by_room:
        orphans = sum(len(v) for v in by_room.values())
        log.warning("store: ignored %d member row(s) of rooms that do not exist", orphans)
    return loaded


async def _prepare(engine: AsyncEngine, tables: ImcTables, label: str) -> list[str]:
    for attempt in (1, 2):
        try:
            async with engine.begin() as conn:
                created = await conn.run_sync(ensure_schema, tables)
                if engine.dialect.name in ("mysql", "mariadb"):
                    await _warn_non_transactional(conn, tables)
            return created
        except SchemaMismatch as exc:
            raise StoreError(f"database {label}: {exc}") from None
        except DBAPIError as exc:
            # Two sidecars starting together may race to create the same table.
            if attempt == 1 and not exc.connection_invalidated and _is_race(exc):
                continue
            raise StoreError(f"cannot open database {label}: {reason(exc)}") from None
        except (OSError, ImportError) as exc:
            raise StoreError(f"cannot open database {label}: {reason(exc)}") from None
    raise AssertionError("unreachable")


def _is_race(exc: DBAPIError) -> bool:
    return isinstance(exc, IntegrityError) or "already exists" in str(exc.orig).lower()


async def _warn_non_transactional(conn: AsyncConnection, tables: ImcTables) -> None:
    # Old Kamailio scripts said ENGINE=MyISAM: no rollback, so a failed command may
    # leave half its rows.  Worth a loud hint, not a refusal (`db check` fails on it).
    ours = {t.name: t for t in (tables.rooms, tables.members)}
    rows = await conn.execute(
        text(
            "SELECT table_name, engine FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name IN (:rooms, :members)"
        ),
        {"rooms": tables.rooms.name, "members": tables.members.name},
    )
    for name, engine in rows:
        problem = storage_engine_problem(ours[name], engine) if name in ours and engine else None
        if problem is not None:
            log.warning("store: %s", problem)


async def _execute(conn: AsyncConnection, tables: ImcTables, change: Change) -> None:
    rooms, members = tables.rooms, tables.members
    if isinstance(change, RoomCreated):
        await conn.execute(
            rooms.insert().values(name=change.name, domain=change.domain, flag=change.flags)
        )
    elif isinstance(change, RoomDestroyed):
        uri = f"sip:{change.name}@{change.domain}"
        dialect = conn.dialect.name
        await conn.execute(members.delete().where(caseless(dialect, members.c.room, uri)))
        await conn.execute(
            rooms.delete().where(
                caseless(dialect, rooms.c.name, change.name),
                caseless(dialect, rooms.c.domain, change.domain),
            )
        )
    elif isinstance(change, MemberAdded):
        await conn.execute(
            members.insert().values(
                username=change.user, domain=change.domain, room=change.room_uri, flag=change.flags
            )
        )
    elif isinstance(change, MemberFlagsChanged):
        for where in _member_keys(conn.dialect.name, members, change):
            result = await conn.execute(members.update().where(where).values(flag=change.flags))
            if result.rowcount:
                return
        log.warning("store: no row to update for %s in %s", change.user, change.room_uri)
    elif isinstance(change, MemberRemoved):
        for where in _member_keys(conn.dialect.name, members, change):
            result = await conn.execute(members.delete().where(where))
            if result.rowcount:
                return


def _member_keys(
    dialect: str, members: Table, change: MemberFlagsChanged | MemberRemoved
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    # The engine names a member as first stored, so the exact (indexed) match normally
    # hits; a row written with other case by someone else is found by the second.
    exact = and_(
        members.c.username == change.user,
        members.c.domain == change.domain,
        members.c.room == change.room_uri,
    )
    any_case = and_(
        caseless(dialect, members.c.username, change.user),
        caseless(dialect, members.c.domain, change.domain),
        caseless(dialect, members.c.room, change.room_uri),
    )
    return exact, any_case


async def _within(seconds: float, work: Coroutine[Any, Any, _T]) -> _T:
    """`work`'s result, or TimeoutError after `seconds`.

    Unlike asyncio.timeout, this does not wait for the cancelled work to unwind: its
    cleanup (a ROLLBACK to a database that stopped answering) could hang as long as the
    work itself.  The abandoned task finishes, or not, on its own.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_forget)
        raise TimeoutError(f"no answer within {seconds:g} s")
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" noise


def _settle(batch: list[_Pending], error: StoreError | None) -> None:
    for pending in batch:
        if pending.done.done():
            continue
        if error is None:
            pending.done.set_result(None)
        else:
            pending.done.set_exception(error)
