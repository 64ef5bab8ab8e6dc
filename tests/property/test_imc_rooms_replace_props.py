"""RoomTable.replace (a room another sidecar changed, re-read from the tables) leaves
the table exactly as a fresh load of the same rows would: the room in its place, its
members in row order, the membership counts right."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imc_sidecar.imc.changes import StoredMember, StoredRoom
from imc_sidecar.imc.model import MEMBER_INVITED, MEMBER_OWNER
from imc_sidecar.imc.rooms import RoomTable, room_key

NAMES = st.sampled_from(["chat-1", "chat-2", "lobby", "straße", "a", "b"])
DOMAINS = st.sampled_from(["d.test", "other.test"])
USERS = st.sampled_from(["alice", "Alice", "bob", "carol", "dave", "ärger"])
FLAGS = st.sampled_from([0, MEMBER_OWNER, MEMBER_INVITED, 2])
MEMBERS = st.lists(st.builds(StoredMember, USERS, DOMAINS, FLAGS), max_size=6).map(
    lambda ms: tuple({(m.user.lower(), m.domain): m for m in ms}.values())
)


@st.composite
def tables(draw: st.DrawFn) -> list[StoredRoom]:
    rooms: dict[tuple[str, str], StoredRoom] = {}
    for name, domain in draw(st.lists(st.tuples(NAMES, DOMAINS), max_size=8)):
        rooms[(name, domain)] = StoredRoom(name, domain, draw(st.sampled_from([0, 1])),
                                           draw(MEMBERS))
    return list(rooms.values())


def _snapshot(table: RoomTable) -> list[tuple[object, ...]]:
    return [
        (room.name, room.domain, room.flags,
         [(m.user, m.domain, m.flags) for m in room.members], table.broadcast_uris(room),
         table.member_count(room))
        for room in table
    ]  # fmt: skip


def _memberships(table: RoomTable, rooms: list[StoredRoom]) -> dict[str, int]:
    users = {m.user for r in rooms for m in r.members} | {"alice", "bob"}
    return {f"{u}@{d}": table.rooms_of(u, d) for u in users for d in ("d.test", "other.test")}


@given(tables(), NAMES, DOMAINS, st.none() | st.tuples(st.sampled_from([0, 1]), MEMBERS),
       st.booleans())
def test_replace_equals_loading_the_new_rows(
    before: list[StoredRoom], name: str, domain: str,
    new: tuple[int, tuple[StoredMember, ...]] | None, counted_before: bool,
) -> None:
    table = RoomTable(2)
    table.load(before)
    if counted_before:
        table.rooms_of("alice", "d.test")  # the membership index is live: kept up to date
    stored = None if new is None else StoredRoom(name, domain, new[0], new[1])
    table.replace(room_key(name, domain), stored)

    after = [r for r in before if (r.name, r.domain) != (name, domain)]
    if stored is not None:
        where = next((i for i, r in enumerate(before) if (r.name, r.domain) == (name, domain)),
                     None)
        if where is None:
            after.append(stored)
        else:
            after.insert(where, stored)
    expected = RoomTable(2)
    expected.load(after)
    assert _snapshot(table) == _snapshot(expected)
    assert _memberships(table, before + after) == _memberships(expected, before + after)
