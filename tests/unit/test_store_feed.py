"""The change feed's SQL on a real SQLite file (store/feed.py): ids never handed out
twice, the newest row never pruned, a room versioned by two writers at once; and which
database errors are a race lost to another sidecar rather than an outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from imc_sidecar.store.feed import (
    VersionConflict,
    lost_a_lock,
    prune_feed,
    read_feed,
    record_claims,
)
from imc_sidecar.store.schema import build_tables, ensure_schema


def test_pruning_keeps_the_newest_row_and_ids_are_never_reused(tmp_path: Path) -> None:
    tables = build_tables("sqlite")
    engine = create_engine(f"sqlite:///{tmp_path / 'feed.sqlite'}")
    changes = tables.changes
    with engine.begin() as conn:
        ensure_schema(conn, tables)
        for version in (1, 2, 3):
            conn.execute(insert(changes).values(
                room="sip:a@x", version=version, origin="t", changed_at=0.0))
        assert prune_feed(conn, tables, before=1.0) == 2  # the newest stays
        assert [r.id for r in read_feed(conn, tables, (0, ()))] == [3]
        conn.execute(changes.delete())  # even emptied by hand: no id comes back
        conn.execute(insert(changes).values(
            room="sip:a@x", version=4, origin="t", changed_at=0.0))
        assert [r.id for r in read_feed(conn, tables, (3, ()))] == [4]
        assert [r.id for r in read_feed(conn, tables, (10, [4, 2]))] == [4]


def test_a_room_versioned_elsewhere_first_is_a_conflict(tmp_path: Path) -> None:
    async def run() -> None:
        tables = build_tables("sqlite")
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'feed.sqlite'}")
        async with engine.begin() as conn:
            await conn.run_sync(ensure_schema, tables)
        async with engine.begin() as conn:
            await record_claims(conn, tables, [("sip:a@x", 0)], "one", 0.0)
        try:
            async with engine.begin() as conn:
                await record_claims(conn, tables, [("sip:a@x", 0)], "two", 0.0)
        except VersionConflict:
            pass
        else:
            raise AssertionError("the second first claim was taken")
        async with engine.connect() as conn:
            versions = tables.room_versions
            rows = (await conn.execute(select(versions.c.room, versions.c.version))).all()
            feed = (await conn.execute(select(tables.changes.c.origin))).scalars().all()
        assert rows == [("sip:a@x", 1)] and feed == ["one"]
        await engine.dispose()

    asyncio.run(run())


class _DriverError(Exception):
    def __init__(self, *args: object, sqlstate: str | None = None) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("orig", "lost"), [
    (_DriverError(1213, "Deadlock found when trying to get lock"), True),  # MySQL
    (_DriverError(1205, "Lock wait timeout exceeded"), True),
    (_DriverError("deadlock detected", sqlstate="40P01"), True),  # PostgreSQL
    (_DriverError("could not obtain lock", sqlstate="55P03"), True),
    (_DriverError(2013, "Lost connection to MySQL server"), False),
    (_DriverError("connection refused", sqlstate="08001"), False),
])
def test_a_lock_lost_to_another_sidecar_is_told_from_an_outage(
    orig: Exception, lost: bool
) -> None:
    error = OperationalError("UPDATE ...", {}, orig)
    assert lost_a_lock(error) is lost
    assert lost_a_lock(OperationalError("x", {}, orig, connection_invalidated=True)) is False
