"""Room limits: members per room, rooms per user, rooms in all.

Each refusal names its limit, is marked for the counters, and leaves the engine exactly
as it was (no room, no member, no notice).
"""

from __future__ import annotations

import pytest
from test_imc_engine import members, send

from imc_sidecar.imc.changes import StoredMember, StoredRoom
from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.limits import RoomLimits
from imc_sidecar.imc.model import MEMBER_INVITED, MEMBER_OWNER


def limited(**limits: int) -> ImcEngine:
    return ImcEngine(EngineConfig(limits=RoomLimits(**limits)))


def snapshot(engine: ImcEngine) -> list[tuple[str, list[tuple[str, int]]]]:
    return [(room.uri, members(engine, room.uri)) for room in engine.rooms()]


def refused(engine: ImcEngine, sender: str, ruri: str, body: str, reason: str, kind: str) -> None:
    before = snapshot(engine)
    outcome = send(engine, sender, ruri, body)
    assert (outcome.status, outcome.reason, outcome.limit) == (500, reason, kind)
    assert outcome.rc < 0
    assert outcome.changes == [] and outcome.messages == []
    assert snapshot(engine) == before


ROOM = "sip:chat-1@d"
FULL = "Room is full (limit 3 members)"


@pytest.mark.parametrize(
    ("sender", "body"),
    [
        ("dave", "#join"),
        ("dave", "#create"),  # an existing public room: #create joins it
        ("alice", "#invite dave"),
        ("alice", "#add dave"),
    ],
)
def test_a_full_room_refuses_one_more_member(sender: str, body: str) -> None:
    engine = limited(members_per_room=3)
    send(engine, "alice", ROOM, "#create")
    send(engine, "bob", ROOM, "#join")
    send(engine, "alice", ROOM, "#invite carol")  # an invitee holds a place too
    refused(engine, sender, ROOM, body, FULL, "room_members")


def test_a_place_freed_can_be_taken_again() -> None:
    engine = limited(members_per_room=2)
    send(engine, "alice", ROOM, "#create")
    send(engine, "bob", ROOM, "#join")
    refused(engine, "carol", ROOM, "#join", "Room is full (limit 2 members)", "room_members")
    assert send(engine, "bob", ROOM, "#leave").status == 200
    assert send(engine, "carol", ROOM, "#join").status == 200
    assert members(engine, ROOM) == [("alice", MEMBER_OWNER), ("carol", 0)]


def test_rooms_per_user_counts_every_room_and_invitation() -> None:
    engine = limited(rooms_per_user=2)
    send(engine, "alice", "sip:a1@d", "#create")
    send(engine, "bob", "sip:b1@d", "#create")
    send(engine, "bob", "sip:b1@d", "#invite alice")  # alice: a1, b1 (invited)
    reason = "User is in too many rooms (limit 2)"
    refused(engine, "alice", "sip:a2@d", "#create", reason, "user_rooms")
    refused(engine, "alice", "sip:b2@d", "#join", reason, "user_rooms")
    send(engine, "bob", "sip:b2@d", "#create")
    refused(engine, "bob", "sip:b2@d", "#add alice", reason, "user_rooms")
    # Another user is not affected; case does not make a second user.
    assert send(engine, "carol", "sip:b2@d", "#join").status == 200
    refused(engine, "ALICE", "sip:a3@d", "#create", reason, "user_rooms")
    # Rejecting the invitation frees a place.
    assert send(engine, "alice", "sip:b1@d", "#reject").status == 200
    assert send(engine, "alice", "sip:a2@d", "#create").status == 200


def test_destroying_a_room_frees_its_members_places() -> None:
    engine = limited(rooms_per_user=1)
    send(engine, "alice", "sip:a1@d", "#create")
    send(engine, "bob", "sip:a1@d", "#join")
    refused(engine, "bob", "sip:b1@d", "#create", "User is in too many rooms (limit 1)",
            "user_rooms")
    assert send(engine, "alice", "sip:a1@d", "#destroy").status == 200
    assert send(engine, "bob", "sip:b1@d", "#create").status == 200


def test_rooms_per_user_counts_loaded_rooms() -> None:
    engine = limited(rooms_per_user=2)
    engine.load([
        StoredRoom("r1", "d", 0, (StoredMember("Alice", "D", MEMBER_OWNER),)),
        StoredRoom("r2", "d", 0, (StoredMember("alice", "d", MEMBER_INVITED),)),
    ])
    refused(engine, "alice", "sip:r3@d", "#create", "User is in too many rooms (limit 2)",
            "user_rooms")
    # Counted once asked, then kept up to date by every change, loads included.
    engine.load([StoredRoom("r9", "d", 0, (StoredMember("bob", "d", MEMBER_OWNER),))])
    assert send(engine, "alice", "sip:r2@d", "#reject").status == 200
    assert send(engine, "alice", "sip:r3@d", "#create").status == 200


def test_rooms_in_all() -> None:
    engine = limited(rooms=2)
    send(engine, "alice", "sip:r1@d", "#create")
    send(engine, "bob", "sip:r2@d", "#join")  # create_on_join makes a room too
    reason = "Too many rooms on this server (limit 2)"
    refused(engine, "carol", "sip:r3@d", "#create", reason, "rooms")
    refused(engine, "carol", "sip:r3@d", "#join", reason, "rooms")
    # Joining an existing room is not creating one.
    assert send(engine, "carol", "sip:r1@d", "#join").status == 200
    assert send(engine, "alice", "sip:r1@d", "#destroy").status == 200
    assert send(engine, "carol", "sip:r3@d", "#create").status == 200


def test_loaded_rooms_over_a_limit_are_kept() -> None:
    engine = limited(rooms=1, members_per_room=1)
    engine.load([
        StoredRoom("r1", "d", 0, (StoredMember("a", "d", MEMBER_OWNER),
                                  StoredMember("b", "d", 0))),
        StoredRoom("r2", "d", 0, (StoredMember("c", "d", MEMBER_OWNER),)),
    ])
    assert len(snapshot(engine)) == 2
    assert members(engine, "sip:r1@d") == [("a", MEMBER_OWNER), ("b", 0)]
    refused(engine, "e", "sip:r1@d", "#join", "Room is full (limit 1 members)", "room_members")
    # Chat and the rest still work in a room over its limit.
    assert send(engine, "a", "sip:r1@d", "hello").status == 200
    assert send(engine, "b", "sip:r1@d", "#leave").status == 200


def test_no_limits_by_default() -> None:
    engine = ImcEngine(EngineConfig())
    for n in range(50):
        assert send(engine, f"u{n}", ROOM, "#join").status == 200
        assert send(engine, "owner", f"sip:r{n}@d", "#join").status == 200
    assert len(members(engine, ROOM)) == 50
    assert ("owner", MEMBER_OWNER) in members(engine, "sip:r49@d")
