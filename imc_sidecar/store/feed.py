"""The change feed's SQL: versions checked and rows appended inside a write's
transaction, and what a following sidecar reads (feed/ has the rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from imc_sidecar.feed.cursor import FeedRow
from imc_sidecar.feed.versions import Claim
from imc_sidecar.imc.changes import StoredMember, StoredRoom

from .connect import StoreError
from .schema import ImcTables, caseless

__all__ = [
    "FEED_LOOKBACK",
    "NOTIFY_CHANNEL",
    "VersionConflict",
    "feed_start",
    "lock_rooms",
    "lost_a_lock",
    "prune_feed",
    "read_feed",
    "read_room",
    "read_versions",
    "record_claims",
]

# A sidecar that starts reads the feed from this many rows before its newest: rows of
# transactions that were still open while it loaded (their ids are older) are then
# not missed.  Rows it already holds cost a comparison each.
FEED_LOOKBACK = 10_000
_READ_LIMIT = 5_000  # feed rows per read
NOTIFY_CHANNEL = "imc_sidecar_changes"  # PostgreSQL: committed changes wake followers


class VersionConflict(StoreError):
    """Another sidecar changed the room first; nothing of the command was written."""


async def record_claims(
    conn: AsyncConnection, tables: ImcTables, claims: Sequence[Claim], origin: str,
    now: float,
) -> None:
    """Move each room from the version its write expects to the next, and append the
    feed rows; VersionConflict when a room is not at the expected version.  Called
    after `lock_rooms` for the whole batch."""
    versions, changes = tables.room_versions, tables.changes
    for room, expected in claims:
        if expected == 0:
            # A room nobody has versioned yet; of two sidecars inserting it at once,
            # the second inserts nothing (and waits for the first on PostgreSQL/MySQL).
            added = await conn.execute(_insert_if_absent(conn, versions, room))
            if added.rowcount != 1:
                raise VersionConflict(f"{room} was versioned elsewhere first")
        else:
            moved = await conn.execute(
                update(versions)
                .where(versions.c.room == room, versions.c.version == expected)
                .values(version=expected + 1)
            )
            if moved.rowcount != 1:
                raise VersionConflict(f"{room} changed elsewhere since version {expected}")
    await conn.execute(
        insert(changes),
        [
            {"room": room, "version": expected + 1, "origin": origin, "changed_at": now}
            for room, expected in claims
        ],
    )
    if conn.dialect.name == "postgresql":  # delivered at commit, once per transaction
        await conn.execute(
            text("SELECT pg_notify(:channel, :origin)"),
            {"channel": NOTIFY_CHANNEL, "origin": origin},
        )


async def lock_rooms(conn: AsyncConnection, tables: ImcTables, rooms: Iterable[str]) -> None:
    """Lock the version rows a batch will move, in one order (sorted): two sidecars'
    batches over the same rooms then wait for each other instead of deadlocking.
    SQLite locks the whole database anyway."""
    if conn.dialect.name == "sqlite":
        return
    versions = tables.room_versions
    ordered = sorted(set(rooms))
    if ordered:
        await conn.execute(
            select(versions.c.room).where(versions.c.room.in_(ordered))
            .order_by(versions.c.room).with_for_update()
        )


def _insert_if_absent(conn: AsyncConnection, versions: Table, room: str) -> Executable:
    values = {"room": room, "version": 1}
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(versions).values(values).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(versions).values(values).on_conflict_do_nothing()
    return insert(versions).values(values).prefix_with("IGNORE")  # MySQL, MariaDB


# What a database says when two transactions waited on each other's locks: MySQL's
# deadlock and lock wait timeout (error numbers), and the SQLSTATEs of a deadlock or
# serialization failure (40001, 40P01) and of a lock not available (55P03).
_LOCK_ERRORS = frozenset({1213, 1205, "40001", "40P01", "55P03"})


def lost_a_lock(exc: BaseException) -> bool:
    """Whether `exc` is a deadlock or lock timeout, which between sidecars is a race
    lost (the command runs again), not a database that stopped answering."""
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    orig = exc.orig
    codes = {getattr(orig, "sqlstate", None), getattr(orig, "pgcode", None)}
    if orig is not None and orig.args:
        codes.add(orig.args[0])
    return not _LOCK_ERRORS.isdisjoint(codes)


def read_versions(conn: Connection, tables: ImcTables) -> dict[str, int]:
    """Every room's version (read before the rooms, so memory is at least that new)."""
    versions = tables.room_versions
    return {room: int(version) for room, version in conn.execute(
        select(versions.c.room, versions.c.version)
    )}


def feed_start(conn: Connection, tables: ImcTables) -> int:
    """Where a sidecar that is loading now starts following the feed."""
    newest = conn.scalar(select(func.max(tables.changes.c.id)))
    return max(0, int(newest or 0) - FEED_LOOKBACK)


def read_feed(
    conn: Connection, tables: ImcTables, since: tuple[int, Sequence[int]]
) -> list[FeedRow]:
    """The rows after id `since[0]` (at most a page), and those of the ids `since[1]`."""
    after, missing = since
    changes = tables.changes
    columns = (changes.c.id, changes.c.room, changes.c.version, changes.c.origin)
    rows = list(conn.execute(
        select(*columns).where(changes.c.id > after).order_by(changes.c.id).limit(_READ_LIMIT)
    ))
    if missing:
        rows += conn.execute(select(*columns).where(changes.c.id.in_(list(missing))))
    return [FeedRow(int(i), room, int(version), origin) for i, room, version, origin in rows]


def read_room(conn: Connection, tables: ImcTables, key: str) -> tuple[int, StoredRoom | None]:
    """One room's version and then its rows (None: no such room), any case.

    The version is read first: the rows are then at least that new, and a write that
    lands in between shows up again in the feed with a higher version.
    """
    versions, rooms, members = tables.room_versions, tables.rooms, tables.members
    version = conn.scalar(select(versions.c.version).where(versions.c.room == key))
    name, _, domain = key.removeprefix("sip:").rpartition("@")
    dialect = conn.dialect.name
    room_columns = (rooms.c.name, rooms.c.domain, rooms.c.flag)
    found: Any = conn.execute(
        select(*room_columns)
        .where(caseless(dialect, rooms.c.name, name), caseless(dialect, rooms.c.domain, domain))
        .order_by(rooms.c.id)
        .limit(1)
    ).first()
    if found is None:
        # The key is lower case as Python has it; SQL's lower() may differ on letters
        # outside ASCII (SQLite's knows only ASCII).  Rare: compare here instead.
        found = next((
            row for row in conn.execute(
                select(*room_columns)
                .where(caseless(dialect, rooms.c.domain, domain)).order_by(rooms.c.id)
            )
            if row.name.lower() == name and row.domain.lower() == domain
        ), None)
    if found is None:
        return int(version or 0), None
    # Member rows name the room as its row spells it (the engine and Kamailio both
    # write `sip:<name>@<domain>` from it): an exact match can use the room index.
    rows = conn.execute(
        select(members.c.username, members.c.domain, members.c.flag)
        .where(members.c.room == f"sip:{found.name}@{found.domain}")
        .order_by(members.c.id)
    )
    stored = StoredRoom(
        found.name, found.domain, int(found.flag),
        tuple(StoredMember(user, domain, int(flag)) for user, domain, flag in rows),
    )
    return int(version or 0), stored


def prune_feed(conn: Connection, tables: ImcTables, before: float) -> int:
    """Drop feed rows written before `before` (unix time), but never the newest row:
    an empty table could hand out ids from the start again (MySQL before 8.0 after a
    restart), below every follower's cursor.  How many went."""
    changes = tables.changes
    newest = conn.scalar(select(func.max(changes.c.id)))
    if newest is None:
        return 0
    pruned = conn.execute(
        delete(changes).where(changes.c.changed_at < before, changes.c.id < newest)
    )
    return pruned.rowcount or 0
