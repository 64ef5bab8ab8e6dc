"""The change feed's SQL: versions checked and rows appended inside a write's
transaction, and what a following sidecar reads (feed/ has the rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from imc_sidecar.feed.cursor import FeedRow
from imc_sidecar.feed.versions import Claim
from imc_sidecar.imc.changes import StoredMember, StoredRoom

from .connect import StoreError
from .schema import ImcTables

__all__ = [
    "FEED_LOOKBACK",
    "NOTIFY_CHANNEL",
    "VersionConflict",
    "feed_start",
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
    feed rows; VersionConflict when a room is not at the expected version."""
    versions, changes = tables.room_versions, tables.changes
    for room, expected in claims:
        if expected == 0:
            found = await conn.scalar(select(versions.c.version).where(versions.c.room == room))
            if found is not None:
                raise VersionConflict(f"{room} is at version {found}, not new")
            # Two sidecars inserting at once: the second gets an IntegrityError.
            await conn.execute(insert(versions).values(room=room, version=1))
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
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


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


def read_feed(conn: Connection, tables: ImcTables, after: int) -> list[FeedRow]:
    changes = tables.changes
    rows = conn.execute(
        select(changes.c.id, changes.c.room, changes.c.version, changes.c.origin)
        .where(changes.c.id > after)
        .order_by(changes.c.id)
        .limit(_READ_LIMIT)
    )
    return [FeedRow(int(i), room, int(version), origin) for i, room, version, origin in rows]


def read_room(conn: Connection, tables: ImcTables, key: str) -> tuple[int, StoredRoom | None]:
    """One room's version and then its rows (None: no such room), any case.

    The version is read first: the rows are then at least that new, and a write that
    lands in between shows up again in the feed with a higher version.
    """
    versions, rooms, members = tables.room_versions, tables.rooms, tables.members
    version = conn.scalar(select(versions.c.version).where(versions.c.room == key))
    name_domain = key.removeprefix("sip:")
    name, _, domain = name_domain.rpartition("@")
    found: Any = conn.execute(
        select(rooms.c.name, rooms.c.domain, rooms.c.flag)
        .where(func.lower(rooms.c.name) == name, func.lower(rooms.c.domain) == domain)
        .order_by(rooms.c.id)
        .limit(1)
    ).first()
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
    """Drop feed rows written before `before` (unix time); how many went."""
    changes = tables.changes
    return conn.execute(delete(changes).where(changes.c.changed_at < before)).rowcount or 0
