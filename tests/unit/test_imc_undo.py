"""Taking a command's changes back out of memory (what the sidecar does when the
database cannot store them): each kind of change, list orders included."""

from __future__ import annotations

from test_imc_engine import members, send

from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.outcome import InviteTicket

ROOM = "sip:chat-1@d"


def rooms(engine: ImcEngine) -> list[str]:
    return [room.uri for room in engine.rooms()]


def test_a_destroyed_room_comes_back_in_its_place_with_its_members() -> None:
    engine = ImcEngine(EngineConfig(hash_size=1))  # two buckets: rooms share them
    for n in range(6):
        send(engine, "alice", f"sip:r{n}@d", "#create")
        send(engine, "bob", f"sip:r{n}@d", "#join")
    send(engine, "carol", "sip:r2@d", "#join")
    order, people = rooms(engine), members(engine, "sip:r2@d")
    for n in (2, 0, 5):  # a middle, an oldest and a newest room of their buckets
        outcome = send(engine, "alice", f"sip:r{n}@d", "#destroy")
        assert f"sip:r{n}@d" not in rooms(engine)
        engine.undo(outcome)
        assert rooms(engine) == order
    assert members(engine, "sip:r2@d") == people
    # The room works as before: chat reaches its members.
    [copy] = send(engine, "alice", "sip:r2@d", "hi").messages
    assert copy.recipients == ("sip:carol@d", "sip:bob@d")


def test_a_member_removed_from_the_middle_comes_back_in_its_place() -> None:
    engine = ImcEngine(EngineConfig())
    send(engine, "alice", ROOM, "#create")
    for user in ("bob", "carol", "dave"):
        send(engine, user, ROOM, "#join")
    before = members(engine, ROOM)
    outcome = send(engine, "alice", ROOM, "#remove carol")
    assert "carol" not in {user for user, _ in members(engine, ROOM)}
    engine.undo(outcome)
    assert members(engine, ROOM) == before
    assert [m.recipients for m in send(engine, "alice", ROOM, "hi").messages] == [
        ("sip:dave@d", "sip:carol@d", "sip:bob@d")
    ]


def test_flags_and_creations_are_taken_back_newest_first() -> None:
    engine = ImcEngine(EngineConfig())
    created = send(engine, "alice", ROOM, "#create")
    invited = send(engine, "alice", ROOM, "#invite bob")
    accepted = send(engine, "bob", ROOM, "#accept")
    promoted = send(engine, "alice", ROOM, "#modify bob admin")
    for outcome in (promoted, accepted, invited, created):
        engine.undo(outcome)
    assert rooms(engine) == []
    assert engine._table.rooms_of("alice", "d") == 0


def test_a_failed_invitation_removal_can_be_taken_back() -> None:
    engine = ImcEngine(EngineConfig())
    send(engine, "alice", ROOM, "#create")
    send(engine, "alice", ROOM, "#invite bob")
    before = members(engine, ROOM)
    ticket = InviteTicket(ROOM, "sip:bob@d", "sip:alice@d")
    outcome = engine.invite_failed(ticket, 404, "Not Found")
    assert members(engine, ROOM) != before
    engine.undo(outcome)
    assert members(engine, ROOM) == before


def test_outcomes_that_changed_nothing_have_nothing_to_undo() -> None:
    engine = ImcEngine(EngineConfig())
    send(engine, "alice", ROOM, "#create")
    for body in ("#members", "#rooms", "#help", "#join", "hello", "#leave"):
        assert send(engine, "alice", ROOM, body).undo is None
    assert send(engine, "bob", ROOM, "#remove alice").undo is None  # refused
