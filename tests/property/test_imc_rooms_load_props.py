"""RoomTable.load builds exactly what `add` and `add_member`, row by row, would build.

The bulk load skips the per-call checks for speed; this pins it to the one-at-a-time
API over random rows with case variants, repeated rooms and repeated members.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imc_sidecar.imc.changes import StoredMember, StoredRoom
from imc_sidecar.imc.model import MEMBER_INVITED, MEMBER_OWNER, Room
from imc_sidecar.imc.rooms import RoomTable

NAMES = st.sampled_from(["chat-1", "CHAT-1", "Chat-1", "chat-2", "lobby", "straße", "STRASSE"])
DOMAINS = st.sampled_from(["d.test", "D.Test", "other.test"])
USERS = st.sampled_from(["alice", "Alice", "ALICE", "bob", "carol", "Ärger", "ärger"])
FLAGS = st.sampled_from([0, MEMBER_OWNER, MEMBER_INVITED, 2])

MEMBERS = st.builds(StoredMember, USERS, DOMAINS, FLAGS)
ROOMS = st.builds(StoredRoom, NAMES, DOMAINS, st.sampled_from([0, 1]),
                  st.lists(MEMBERS, max_size=8).map(tuple))  # fmt: skip


def _one_by_one(hash_size: int, stored: list[StoredRoom]) -> RoomTable:
    """The plain way: what the table's public calls make of the rows."""
    table = RoomTable(hash_size)
    for row in stored:
        room = table.get(row.name, row.domain) or table.add(row.name, row.domain, row.flags)
        for member in row.members:
            if table.get_member(room, member.user, member.domain) is None:
                table.add_member(room, member.user, member.domain, member.flags)
    return table


def _snapshot(table: RoomTable) -> list[tuple[object, ...]]:
    return [
        (room.name, room.domain, room.flags,
         [(m.user, m.domain, m.flags) for m in room.members], table.broadcast_uris(room))
        for room in table
    ]  # fmt: skip


@given(st.lists(ROOMS, max_size=12), st.integers(1, 4))
def test_load_equals_adding_one_by_one(stored: list[StoredRoom], hash_size: int) -> None:
    loaded = RoomTable(hash_size)
    loaded.load(stored)
    expected = _one_by_one(hash_size, stored)
    assert _snapshot(loaded) == _snapshot(expected)
    assert len(loaded) == len(expected)
    for row in stored:
        room = loaded.get(row.name.lower(), row.domain.upper())
        assert isinstance(room, Room)
        for member in row.members:  # every member is found in any case, and can leave
            found = loaded.get_member(room, member.user.lower(), member.domain.upper())
            assert found is not None and found in room.members
    # The loaded state keeps working with the one-at-a-time calls.
    for room in list(loaded):
        for member in list(room.members):
            loaded.remove_member(room, member)
        assert room.members == [] and loaded.broadcast_uris(room) == ()
        loaded.add_member(room, "late", "d.test", 0)
        loaded.remove(room)
    assert len(loaded) == 0
