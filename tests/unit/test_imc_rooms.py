"""The room table: Kamailio's orders (reference §9), dict lookups, loading (B12 fixed)."""

from __future__ import annotations

import pytest

from imc_sidecar.imc.changes import StoredMember, StoredRoom
from imc_sidecar.imc.hashing import bucket_index
from imc_sidecar.imc.model import MEMBER_INVITED, MEMBER_OWNER, ROOM_PRIVATE
from imc_sidecar.imc.rooms import RoomTable


def names(table: RoomTable) -> list[str]:
    return [room.name for room in table]


def users(table: RoomTable, name: str) -> list[str]:
    room = table.get(name, "d")
    assert room is not None
    return [m.user for m in room.members]


def same_bucket_names(count: int, hash_size: int = 4) -> list[str]:
    found: list[str] = []
    i = 0
    while len(found) < count:
        name = f"room-{i}"
        if bucket_index(name, "d", hash_size) == 3:
            found.append(name)
        i += 1
    return found


def test_rooms_iterate_by_bucket() -> None:
    table = RoomTable(4)
    for name in ["chat-y", "chat-pre", "chat-1", "chat-X"]:
        table.add(name, "127.0.0.5", 0)
    buckets = [bucket_index(r.name, r.domain, 4) for r in table]
    assert buckets == sorted(buckets)
    assert len(table) == 4


def test_newest_room_first_within_a_bucket() -> None:
    a, b, c = same_bucket_names(3)
    table = RoomTable(4)
    for name in (a, b, c):
        table.add(name, "d", 0)
    assert names(table) == [c, b, a]
    room = table.get(b, "d")
    assert room is not None
    table.remove(room)
    assert names(table) == [c, a]
    table.add(b, "d", 0)
    assert names(table) == [b, c, a]


def test_lookup_is_case_insensitive_and_keeps_first_spelling() -> None:
    table = RoomTable(4)
    table.add("chat-X", "D", ROOM_PRIVATE)
    room = table.get("CHAT-x", "d")
    assert room is not None
    assert room.uri == "sip:chat-X@D"
    with pytest.raises(KeyError):
        table.add("chat-x", "d", 0)


def test_member_order_head_then_newest() -> None:
    table = RoomTable(4)
    room = table.add("r", "d", 0)
    for user in ["alice", "bob", "carol", "dave"]:
        table.add_member(room, user, "d", 0)
    assert users(table, "r") == ["alice", "dave", "carol", "bob"]
    # Without the head, the next one becomes head and later members follow it.
    alice = table.get_member(room, "ALICE", "D")
    assert alice is not None
    table.remove_member(room, alice)
    table.add_member(room, "erin", "d", 0)
    assert users(table, "r") == ["dave", "erin", "carol", "bob"]


def test_member_lookup_is_case_insensitive() -> None:
    table = RoomTable(4)
    room = table.add("r", "d", 0)
    table.add_member(room, "Alice", "D", MEMBER_OWNER)
    member = table.get_member(room, "alice", "d")
    assert member is not None
    assert member.uri == "sip:Alice@D"
    with pytest.raises(KeyError):
        table.add_member(room, "ALICE", "d", 0)


def test_broadcast_audience_skips_invited_and_follows_changes() -> None:
    table = RoomTable(4)
    room = table.add("r", "d", 0)
    alice = table.add_member(room, "alice", "d", MEMBER_OWNER)
    bob = table.add_member(room, "bob", "d", MEMBER_INVITED)
    carol = table.add_member(room, "carol", "d", 0)
    assert table.broadcast_uris(room) == ("sip:alice@d", "sip:carol@d")
    assert table.broadcast_uris(room, skip=alice) == ("sip:carol@d",)
    table.set_flags(room, bob, 0)
    assert table.broadcast_uris(room) == ("sip:alice@d", "sip:carol@d", "sip:bob@d")
    table.remove_member(room, carol)
    assert table.broadcast_uris(room, skip=bob) == ("sip:alice@d",)
    assert table.active_members(room) == (alice, bob)


def test_load_reproduces_kamailio_and_continues_after_an_empty_room() -> None:
    a, b, c = same_bucket_names(3)
    table = RoomTable(4)
    table.load(
        [
            StoredRoom(a, "d", 0, (StoredMember("o", "d", 1), StoredMember("m1", "d", 0))),
            StoredRoom(b, "d", ROOM_PRIVATE, ()),  # stopped Kamailio's load (B12)
            StoredRoom(
                c,
                "d",
                0,
                (StoredMember("o", "d", 1), StoredMember("m1", "d", 4), StoredMember("m2", "d", 2)),
            ),
        ]
    )
    assert names(table) == [c, b, a]
    assert users(table, c) == ["o", "m2", "m1"]
    room_b = table.get(b, "d")
    assert room_b is not None and room_b.private and room_b.members == []


def test_load_merges_a_room_loaded_twice() -> None:
    table = RoomTable(4)
    table.load(
        [
            StoredRoom("chat-x", "d", 0, (StoredMember("o", "d", 1),)),
            StoredRoom("CHAT-X", "d", 1, (StoredMember("O", "d", 0), StoredMember("p", "d", 0))),
        ]
    )
    room = table.get("chat-x", "d")
    assert room is not None
    assert (room.name, room.flags) == ("chat-x", 0)
    assert [(m.user, m.flags) for m in room.members] == [("o", 1), ("p", 0)]


@pytest.mark.parametrize("size", [0, -1, 31])
def test_hash_size_is_checked(size: int) -> None:
    with pytest.raises(ValueError, match="hash_size"):
        RoomTable(size)
