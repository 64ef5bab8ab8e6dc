"""Store.load: member rows grouped under their rooms as Kamailio's imc reads them.

The grouping is a pure function of the two tables' rows (`_assemble`); one SQLite file
checks that `Store.load` feeds it the rows in id order and reports a broken table.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from imc_sidecar.imc.changes import StoredMember, StoredRoom
from imc_sidecar.store.repository import Store, StoreError, _assemble

D = "example.com"


def test_members_go_to_their_room_in_row_order() -> None:
    rooms = [("a", D, 0), ("b", D, 1)]
    members = [
        ("a1", D, f"sip:a@{D}", 1),
        ("b1", D, f"sip:b@{D}", 1),
        ("a2", D, f"sip:a@{D}", 0),  # a room's rows need not be adjacent
        ("b2", "other.test", f"sip:b@{D}", 4),
        ("a3", D, f"sip:a@{D}", 2),
    ]
    assert _assemble(rooms, members) == [
        StoredRoom("a", D, 0, (StoredMember("a1", D, 1), StoredMember("a2", D, 0),
                               StoredMember("a3", D, 2))),
        StoredRoom("b", D, 1, (StoredMember("b1", D, 1), StoredMember("b2", "other.test", 4))),
    ]  # fmt: skip


def test_room_uris_match_in_any_case() -> None:
    rooms = [("Chat", "Example.COM", 0)]
    members = [
        ("u1", D, "sip:chat@example.com", 1),
        ("u2", D, "SIP:CHAT@EXAMPLE.COM", 0),
        ("u3", D, "sip:Chat@Example.COM", 0),
    ]
    [room] = _assemble(rooms, members)
    assert [m.user for m in room.members] == ["u1", "u2", "u3"]
    assert (room.name, room.domain) == ("Chat", "Example.COM")  # spelled as stored


def test_rooms_without_members_and_members_without_rooms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rooms = [("empty", D, 0), ("full", D, 0), ("last", D, 1)]
    members = [
        ("x", D, f"sip:gone@{D}", 0),
        ("o", D, f"sip:full@{D}", 1),
        ("y", D, f"sip:gone@{D}", 0),
        ("z", D, f"sip:elsewhere@{D}", 0),
    ]
    with caplog.at_level(logging.WARNING, logger="imc_sidecar.store.repository"):
        loaded = _assemble(rooms, members)
    assert loaded == [
        StoredRoom("empty", D, 0, ()),
        StoredRoom("full", D, 0, (StoredMember("o", D, 1),)),
        StoredRoom("last", D, 1, ()),
    ]
    assert "ignored 3 member row(s) of rooms that do not exist" in caplog.text


def test_loaded_records_have_their_types() -> None:
    # Drivers may hand back flags as another numeric type (e.g. Decimal); they load as int.
    [room] = _assemble([("r", D, 1.0)], [("u", D, f"sip:r@{D}", True)])
    assert type(room) is StoredRoom and type(room.flags) is int
    [member] = room.members
    assert type(member) is StoredMember and type(member.flags) is int
    assert (member.user, member.domain, member.flags) == ("u", D, 1)


def _make_db(
    path: Path, rooms: list[tuple[str, str, int]], members: list[tuple[str, str, str, int]]
) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO imc_rooms (name, domain, flag) VALUES (?, ?, ?)", rooms)
        db.executemany(
            "INSERT INTO imc_members (username, domain, room, flag) VALUES (?, ?, ?, ?)",
            members,
        )


async def test_load_reads_both_tables_in_id_order(tmp_path: Path) -> None:
    path = tmp_path / "imc.sqlite"
    store = await Store.open(f"sqlite:///{path}")
    try:
        _make_db(
            path,
            [("zeta", D, 0), ("alpha", D, 1)],
            [("u9", D, f"sip:alpha@{D}", 1), ("u1", D, f"sip:zeta@{D}", 0),
             ("u5", D, f"sip:ALPHA@{D}", 4)],
        )  # fmt: skip
        assert await store.load() == [
            StoredRoom("zeta", D, 0, (StoredMember("u1", D, 0),)),
            StoredRoom("alpha", D, 1, (StoredMember("u9", D, 1), StoredMember("u5", D, 4))),
        ]
    finally:
        await store.close()


async def test_load_reports_a_broken_table(tmp_path: Path) -> None:
    path = tmp_path / "imc.sqlite"
    store = await Store.open(f"sqlite:///{path}")
    try:
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("DROP TABLE imc_members")
        with pytest.raises(StoreError, match=r"cannot load rooms from .*imc_members"):
            await store.load()
    finally:
        await store.close()
