"""The engine against the compatibility scenarios of imc-reference.md §14 (items 1-37).

Each test states rc, SIP status, exact bodies, From/To of every MESSAGE, recipient order
and the state changes, as Kamailio 5.6.3 would (plus master's #modify, done right), with
the deliberate differences named where they apply.
"""

from __future__ import annotations

import pytest

from imc_sidecar.imc.changes import (
    MemberAdded,
    MemberFlagsChanged,
    MemberRemoved,
    RoomCreated,
    RoomDestroyed,
    StoredMember,
    StoredRoom,
)
from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.model import MEMBER_INVITED
from imc_sidecar.imc.outcome import ChatRequest, InviteTicket, Outcome, Outgoing
from imc_sidecar.imc.texts import HELP

MANAGER = "sip:chat-manager@d"
CHAT1 = "sip:chat-1@d"
CHATP = "sip:chat-p@d"


def uri(user: str) -> str:
    return f"sip:{user}@d"


def send(
    engine: ImcEngine,
    sender: str,
    ruri: str,
    body: str | bytes,
    *,
    from_uri: str | None = None,
    content_type: str | None = "text/plain",
    call_id: str = "cid-1",
) -> Outcome:
    return engine.handle(
        ChatRequest(
            request_uri=ruri,
            from_uri=from_uri or uri(sender),
            call_id=call_id,
            body=body.encode() if isinstance(body, str) else body,
            content_type=content_type,
        )
    )


def sent(outcome: Outcome) -> list[tuple[tuple[str, ...], str, bytes]]:
    """(recipients, From, body) of every MESSAGE, in order."""
    return [(m.recipients, m.from_uri, m.body) for m in outcome.messages]


def ok(outcome: Outcome) -> None:
    assert (outcome.rc, outcome.status, outcome.reason) == (1, 200, "OK")


def failed(outcome: Outcome, rc: int, reason: str) -> None:
    assert (outcome.rc, outcome.status, outcome.reason) == (rc, 500, reason)
    assert outcome.messages == [] and outcome.changes == []


def members(engine: ImcEngine, room_uri: str) -> list[tuple[str, int]]:
    room = engine.find_room(room_uri)
    assert room is not None
    return [(m.user, m.flags) for m in room.members]


@pytest.fixture
def engine() -> ImcEngine:
    return ImcEngine(EngineConfig())


@pytest.fixture
def chat1(engine: ImcEngine) -> ImcEngine:
    """alice owns chat-1; bob joined, then carol (scenarios 1-3)."""
    send(engine, "alice", CHAT1, "#create")
    send(engine, "bob", CHAT1, "#join")
    send(engine, "carol", MANAGER, "#join chat-1")
    return engine


@pytest.fixture
def chatp(engine: ImcEngine) -> ImcEngine:
    """alice owns the private chat-p (scenario 14)."""
    send(engine, "alice", MANAGER, "#create chat-p private")
    return engine


# -- 1-13: public room --------------------------------------------------------------------


def test_01_create(engine: ImcEngine) -> None:
    out = send(engine, "alice", CHAT1, "#create", call_id="c-create")
    ok(out)
    assert out.command == "create"
    assert sent(out) == [((uri("alice"),), CHAT1, b"*** Room was created")]
    assert out.messages[0].in_reply_to == "c-create"
    assert out.messages[0].content_type == "text/plain"
    assert out.changes == [
        RoomCreated("chat-1", "d", 0),
        MemberAdded(CHAT1, "alice", "d", 1),
    ]
    assert members(engine, CHAT1) == [("alice", 1)]


def test_02_join_public(engine: ImcEngine) -> None:
    send(engine, "alice", CHAT1, "#create")
    out = send(engine, "bob", CHAT1, "#join")
    ok(out)
    assert sent(out) == [((uri("alice"), uri("bob")), CHAT1, b"*** [bob] has joined the room")]
    assert out.changes == [MemberAdded(CHAT1, "bob", "d", 0)]


def test_03_join_through_the_manager(engine: ImcEngine) -> None:
    send(engine, "alice", CHAT1, "#create")
    send(engine, "bob", CHAT1, "#join")
    out = send(engine, "carol", MANAGER, "#join chat-1")
    ok(out)
    assert sent(out) == [
        ((uri("alice"), uri("carol"), uri("bob")), CHAT1, b"*** [carol] has joined the room")
    ]
    assert out.changes == [MemberAdded(CHAT1, "carol", "d", 0)]
    assert engine.find_room(MANAGER) is None


def test_04_chat_fan_out(chat1: ImcEngine) -> None:
    out = send(chat1, "alice", CHAT1, "hello all", call_id="alice-cid")
    ok(out)
    assert out.command is None
    assert out.changes == []
    assert out.messages == [
        Outgoing(
            recipients=(uri("carol"), uri("bob")),
            from_uri=CHAT1,
            body=b"[alice]: hello all",
            content_type="text/plain",
            in_reply_to="alice-cid",
        )
    ]


@pytest.mark.parametrize("command", ["#members", "#list"])
def test_05_members(chat1: ImcEngine, command: str) -> None:
    out = send(chat1, "bob", CHAT1, command)
    ok(out)
    assert sent(out) == [((uri("bob"),), CHAT1, b"Members:\n*[alice]\n[carol]\n[bob]")]


def test_06_rooms(chat1: ImcEngine) -> None:
    send(chat1, "alice", MANAGER, "#create chat-pre")
    out = send(chat1, "alice", MANAGER, "#rooms", from_uri="sip:alice@d:6200;transport=udp")
    ok(out)
    names = [room.name for room in chat1.rooms()]
    body = ("Rooms:\n" + "\n".join(f"[{n}]" for n in names)).encode()
    assert sent(out) == [(("sip:alice@d:6200;transport=udp",), MANAGER, body)]


def test_06_rooms_empty(engine: ImcEngine) -> None:
    assert sent(send(engine, "alice", MANAGER, "#rooms")) == [((uri("alice"),), MANAGER, b"Rooms:")]


def test_07_unknown_command(chat1: ImcEngine) -> None:
    out = send(chat1, "alice", CHAT1, "#foo bar")
    ok(out)
    assert out.command == "unknown"
    assert sent(out) == [
        ((uri("alice"),), CHAT1, b"*** Invalid command 'foo' (send '#help' for help)")
    ]


def test_07_unknown_command_needs_no_room(engine: ImcEngine) -> None:
    out = send(engine, "dave", "sip:nowhere@d;x=1", "#Modif")
    ok(out)
    assert sent(out) == [
        (
            (uri("dave"),),
            "sip:nowhere@d;x=1",
            b"*** Invalid command 'Modif' (send '#help' for help)",
        )
    ]


@pytest.mark.parametrize("body", ["#", "# create", "#\r\ncreate"])
def test_08_parse_errors(chat1: ImcEngine, body: str) -> None:
    failed(send(chat1, "alice", CHAT1, body), -20, "Invalid command syntax")


def test_09_help(engine: ImcEngine) -> None:
    out = send(engine, "alice", "sip:chat-1@d:5070", "#help whatever")
    ok(out)
    assert sent(out) == [((uri("alice"),), "sip:chat-1@d:5070", HELP)]
    assert HELP.startswith(b"\r\n#create <room_name> - create new conference room\r\n")
    assert b"#modify <user_name> <role> [<room_name>] - modify user role" in HELP
    assert b"#members - list members is a conference room\r\n" in HELP
    assert HELP.count(b"\r\n") == 13 and HELP.endswith(b"destroy conference room\r\n")


def test_10_non_member_chat(chat1: ImcEngine) -> None:
    failed(send(chat1, "dave", CHAT1, "hi"), -200, "Not a member of the room")


def test_11_chat_to_missing_room(chat1: ImcEngine) -> None:
    failed(send(chat1, "alice", "sip:chat-nope@d", "hi"), -200, "Room not found")
    failed(send(chat1, "alice", "sip:d", "hi"), -200, "Room not found")


def test_12_leave(chat1: ImcEngine) -> None:
    out = send(chat1, "bob", CHAT1, "#leave")
    ok(out)
    assert sent(out) == [
        ((uri("alice"), uri("carol"), uri("bob")), CHAT1, b"*** [bob] has left the room")
    ]
    assert out.changes == [MemberRemoved(CHAT1, "bob", "d")]
    assert members(chat1, CHAT1) == [("alice", 1), ("carol", 0)]


def test_12_exit_alias_and_errors(chat1: ImcEngine) -> None:
    ok(send(chat1, "carol", CHAT1, "#exit"))
    failed(send(chat1, "carol", CHAT1, "#leave"), -90, "Not a member of the room")
    failed(send(chat1, "bob", CHAT1, "#leave chat-nope"), -90, "Room not found")


def test_13_owner_cannot_leave(chat1: ImcEngine) -> None:
    out = send(chat1, "alice", CHAT1, "#leave")
    ok(out)
    assert sent(out) == [
        (
            (uri("alice"),),
            CHAT1,
            b"*** You are the room's owner and cannot leave. "
            b"Use #destroy if you wish to destroy the room.",
        )
    ]
    assert out.changes == []
    assert members(chat1, CHAT1) == [("alice", 1), ("carol", 0), ("bob", 0)]


# -- 14-24: private room, invitations, add, remove ------------------------------------------


def test_14_private_room_join_attempt(engine: ImcEngine) -> None:
    out = send(engine, "alice", MANAGER, "#create chat-p private")
    ok(out)
    assert sent(out) == [((uri("alice"),), CHATP, b"*** Room was created")]
    assert out.changes == [RoomCreated("chat-p", "d", 1), MemberAdded(CHATP, "alice", "d", 1)]

    out = send(engine, "bob", CHATP, "#join", from_uri="sip:bob@d:5070;transport=tcp")
    ok(out)
    assert sent(out) == [
        (
            ("sip:bob@d:5070;transport=tcp",),
            CHATP,
            b"*** Private rooms are by invitation only. Room owners have been notified.",
        ),
        ((uri("alice"),), CHATP, b"*** [bob] attempted to join the room"),
    ]
    assert out.changes == []
    assert members(engine, CHATP) == [("alice", 1)]


def test_15_invite(chatp: ImcEngine) -> None:
    out = send(chatp, "alice", CHATP, "#invite bob", call_id="inv-cid")
    ok(out)
    assert out.messages == [
        Outgoing(
            recipients=(uri("bob"),),
            from_uri=CHATP,
            body=b"*** [alice] invites you to join the room (send '#accept' or '#reject')",
            in_reply_to="inv-cid",
            invite=InviteTicket(room_uri=CHATP, invitee_uri=uri("bob"), inviter_uri=uri("alice")),
        )
    ]
    assert out.changes == [MemberAdded(CHATP, "bob", "d", MEMBER_INVITED)]


def test_16_invitee_cannot_chat(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#invite bob")
    failed(send(chatp, "bob", CHATP, "hello"), -200, "Invitation not accepted yet")


def test_17_invitee_may_list(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#invite bob")
    out = send(chatp, "bob", CHATP, "#members")
    ok(out)
    assert sent(out) == [((uri("bob"),), CHATP, b"Members:\n*[alice]")]


def test_18_accept(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#invite bob")
    out = send(chatp, "bob", CHATP, "#accept")
    ok(out)
    assert sent(out) == [((uri("alice"), uri("bob")), CHATP, b"*** [bob] has joined the room")]
    assert out.changes == [MemberFlagsChanged(CHATP, "bob", "d", 0)]
    failed(send(chatp, "bob", CHATP, "#accept"), -60, "Not invited to the room")
    failed(send(chatp, "dave", CHATP, "#accept"), -60, "Not invited to the room")


def test_18_accept_through_another_uri(engine: ImcEngine) -> None:
    send(engine, "alice", MANAGER, "#create chat-y private")
    send(engine, "alice", "sip:chat-y@d", "#invite bob")
    ok(send(engine, "bob", "sip:chat-x@d", "#accept chat-y"))
    assert members(engine, "sip:chat-y@d") == [("alice", 1), ("bob", 0)]


@pytest.mark.parametrize("command", ["#reject", "#deny"])
def test_19_reject(chatp: ImcEngine, command: str) -> None:
    send(chatp, "alice", CHATP, "#invite carol@d")
    out = send(chatp, "carol", CHATP, command)
    ok(out)
    assert out.messages == []
    assert out.changes == [MemberRemoved(CHATP, "carol", "d")]
    assert members(chatp, CHATP) == [("alice", 1)]
    failed(send(chatp, "carol", CHATP, command), -70, "Not invited to the room")
    failed(send(chatp, "carol", "sip:nope@d", command), -70, "Room not found")


def test_20_invite_delivery_failure(chatp: ImcEngine) -> None:
    out = send(chatp, "alice", CHATP, "#invite ghost")
    ticket = out.messages[0].invite
    assert ticket is not None
    assert chatp.invite_failed(ticket, 200, "OK").changes == []

    out = chatp.invite_failed(ticket, 404, "Not Found")
    assert out.rc == 1
    # B11: the notice goes to the inviter, not to the unreachable invitee.
    assert out.messages == [
        Outgoing(
            recipients=(uri("alice"),),
            from_uri=CHATP,
            body=b"ghost@d is not registered. ",
            imc_headers=False,
        )
    ]
    # B10: the removal is persisted.
    assert out.changes == [MemberRemoved(CHATP, "ghost", "d")]
    assert sent(send(chatp, "alice", CHATP, "#members")) == [
        ((uri("alice"),), CHATP, b"Members:\n*[alice]")
    ]
    # A late second failure (or one for a room now gone) does nothing.
    assert chatp.invite_failed(ticket, 408, "Request Timeout").messages == []


def test_20_invite_failure_after_accept_keeps_the_member(chatp: ImcEngine) -> None:
    ticket = send(chatp, "alice", CHATP, "#invite bob").messages[0].invite
    assert ticket is not None
    send(chatp, "bob", CHATP, "#accept")
    out = chatp.invite_failed(ticket, 408, "Request Timeout")
    assert out.messages == [] and out.changes == []
    assert members(chatp, CHATP) == [("alice", 1), ("bob", 0)]


def test_21_invite_errors(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#add bob")
    failed(send(chatp, "alice", CHATP, "#invite"), -50, "Missing argument")
    failed(send(chatp, "bob", CHATP, "#invite erin"), -50, "Permission denied")
    failed(send(chatp, "alice", CHATP, "#invite bob"), -50, "User is already in the room")
    failed(send(chatp, "alice", CHATP, "#invite BOB@D"), -50, "User is already in the room")
    failed(send(chatp, "dave", CHATP, "#invite erin"), -50, "Not a member of the room")
    failed(send(chatp, "alice", CHATP, "#invite erin chat-nope"), -50, "Room not found")
    failed(send(chatp, "alice", CHATP, "#invite tel:123"), -50, "Invalid argument")


def test_22_add(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#invite bob")
    send(chatp, "bob", CHATP, "#accept")
    out = send(chatp, "bob", CHATP, "#add erin")
    ok(out)
    assert sent(out) == [
        (
            (uri("bob"),),
            CHATP,
            b"*** You don't have the permmission to add members to this room",
        )
    ]
    assert out.changes == []

    out = send(chatp, "alice", CHATP, "#add erin")
    ok(out)
    assert sent(out) == [
        ((uri("alice"), uri("erin"), uri("bob")), CHATP, b"*** [erin] has joined the room")
    ]
    assert out.changes == [MemberAdded(CHATP, "erin", "d", 0)]
    failed(send(chatp, "alice", CHATP, "#add erin"), -50, "User is already in the room")
    failed(send(chatp, "alice", CHATP, "#add"), -50, "Missing argument")
    failed(send(chatp, "dave", CHATP, "#add x"), -50, "Not a member of the room")


def test_23_remove(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#add bob")
    send(chatp, "alice", CHATP, "#add erin")
    out = send(chatp, "alice", CHATP, "#remove erin")
    ok(out)
    assert sent(out) == [
        ((uri("erin"),), CHATP, b"*** You have been removed from the room"),
        ((uri("alice"), uri("bob")), CHATP, b"*** [erin] has left the room"),
    ]
    assert out.changes == [MemberRemoved(CHATP, "erin", "d")]


def test_23_remove_an_invitee(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#invite fred")
    out = send(chatp, "alice", CHATP, "#remove fred")
    ok(out)
    assert sent(out) == [
        ((uri("fred"),), CHATP, b"*** You have been removed from the room"),
        ((uri("alice"),), CHATP, b"*** [fred] has left the room"),
    ]


def test_24_remove_errors(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#add bob")
    send(chatp, "alice", CHATP, "#add carol")
    send(chatp, "alice", CHATP, "#modify carol admin")
    failed(send(chatp, "bob", CHATP, "#remove alice"), -80, "Permission denied")
    failed(send(chatp, "carol", CHATP, "#remove alice"), -80, "Cannot remove the room owner")
    failed(send(chatp, "alice", CHATP, "#remove"), -80, "Missing argument")
    failed(send(chatp, "alice", CHATP, "#remove dave"), -80, "User is not a member of the room")
    failed(send(chatp, "dave", CHATP, "#remove bob"), -80, "Not a member of the room")
    failed(send(chatp, "alice", CHATP, "#remove bob nope"), -80, "Room not found")
    # An admin may remove another admin.
    send(chatp, "alice", CHATP, "#modify bob admin")
    ok(send(chatp, "carol", CHATP, "#remove bob"))


# -- 25-31: create/join variants, destroy ----------------------------------------------------


def test_25_create_on_existing_private_room(chatp: ImcEngine) -> None:
    for who in ("carol", "alice"):
        out = send(chatp, who, CHATP, "#create", from_uri=f"sip:{who}@d;transport=tcp")
        ok(out)
        assert sent(out) == [
            (
                (f"sip:{who}@d;transport=tcp",),
                CHATP,
                b"*** A private room with the same name already exists",
            )
        ]
        assert out.changes == []


def test_26_create_on_existing_public_room(chat1: ImcEngine) -> None:
    out = send(chat1, "dave", CHAT1, "#create")
    ok(out)
    assert sent(out) == [
        (
            (uri("alice"), uri("dave"), uri("carol"), uri("bob")),
            CHAT1,
            b"*** [dave] has joined the room",
        )
    ]
    assert out.changes == [MemberAdded(CHAT1, "dave", "d", 0)]

    out = send(chat1, "bob", CHAT1, "#create")
    assert sent(out) == [((uri("bob"),), CHAT1, b"*** Room already exists and you are a member")]


def test_26_check_on_create() -> None:
    engine = ImcEngine(EngineConfig(check_on_create=True))
    send(engine, "alice", CHAT1, "#create")
    for who in ("alice", "dave"):
        out = send(engine, who, CHAT1, "#create")
        ok(out)
        assert sent(out) == [((uri(who),), CHAT1, b"*** Room already exists")]
        assert out.changes == []


def test_27_create_arguments(engine: ImcEngine) -> None:
    failed(send(engine, "alice", MANAGER, "#create chat-y nonsense"), -30, "Invalid argument")
    assert engine.find_room("sip:chat-y@d") is None
    out = send(engine, "alice", MANAGER, "#create chat-y PRIVATE extra")
    ok(out)
    assert out.changes[0] == RoomCreated("chat-y", "d", 1)
    out = send(engine, "alice", "sip:chat-z@d", "#create private")
    assert out.changes[0] == RoomCreated("chat-z", "d", 1)
    out = send(engine, "alice", MANAGER, "#create chat-w@other.org")
    assert out.changes[0] == RoomCreated("chat-w", "other.org", 0)
    assert sent(out) == [((uri("alice"),), "sip:chat-w@other.org", b"*** Room was created")]
    failed(send(engine, "alice", "sip:d", "#create"), -30, "Invalid Request-URI")


def test_28_join_missing_room_creates_it(engine: ImcEngine) -> None:
    out = send(engine, "alice", "sip:chat-new@d", "#join")
    ok(out)
    assert sent(out) == [((uri("alice"),), "sip:chat-new@d", b"*** Room was created")]
    assert out.changes == [
        RoomCreated("chat-new", "d", 0),
        MemberAdded("sip:chat-new@d", "alice", "d", 1),
    ]


def test_28_join_missing_room_without_create_on_join() -> None:
    engine = ImcEngine(EngineConfig(create_on_join=False))
    out = send(engine, "alice", "sip:chat-new@d:5060;transport=udp", "#join")
    ok(out)
    assert sent(out) == [
        ((uri("alice"),), "sip:chat-new@d:5060;transport=udp", b"*** Room not found")
    ]
    assert out.changes == []
    assert list(engine.rooms()) == []


def test_29_invitee_join_counts_as_accept(chatp: ImcEngine) -> None:
    # B16: 5.6 says "You are in the room already" and promotes silently, unsaved.
    send(chatp, "alice", CHATP, "#invite erin")
    out = send(chatp, "erin", CHATP, "#join")
    ok(out)
    assert sent(out) == [((uri("alice"), uri("erin")), CHATP, b"*** [erin] has joined the room")]
    assert out.changes == [MemberFlagsChanged(CHATP, "erin", "d", 0)]
    out = send(chatp, "erin", CHATP, "#join")
    assert sent(out) == [((uri("erin"),), CHATP, b"*** You are in the room already")]
    assert out.changes == []


def test_30_invitee_leaves(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#invite fred")
    out = send(chatp, "fred", CHATP, "#leave")
    ok(out)
    assert sent(out) == [((uri("alice"),), CHATP, b"*** [fred] has left the room")]
    assert out.changes == [MemberRemoved(CHATP, "fred", "d")]


def test_31_destroy(chat1: ImcEngine) -> None:
    failed(send(chat1, "bob", CHAT1, "#destroy"), -110, "Permission denied")
    send(chat1, "alice", CHAT1, "#modify bob admin")
    failed(send(chat1, "bob", CHAT1, "#destroy"), -110, "Permission denied")
    failed(send(chat1, "dave", CHAT1, "#destroy"), -110, "Not a member of the room")
    send(chat1, "alice", CHAT1, "#invite dave")
    out = send(chat1, "alice", CHAT1, "#destroy")
    ok(out)
    # dave is only invited: no notice for him.
    assert sent(out) == [
        ((uri("alice"), uri("carol"), uri("bob")), CHAT1, b"*** Room has been destroyed")
    ]
    assert out.changes == [RoomDestroyed("chat-1", "d")]
    assert chat1.find_room(CHAT1) is None
    failed(send(chat1, "carol", CHAT1, "hi"), -200, "Room not found")
    failed(send(chat1, "alice", CHAT1, "#destroy"), -110, "Room not found")


# -- 32-37: normalization, bodies, content types, modify, lookups ----------------------------


def test_32_case_and_uri_normalization(engine: ImcEngine) -> None:
    out = send(
        engine,
        "Alice",
        "sip:chat-X@d:5060;transport=udp",
        "#CREATE",
        from_uri="sip:Alice@d:5070;transport=udp",
    )
    ok(out)
    assert sent(out) == [(("sip:Alice@d",), "sip:chat-X@d", b"*** Room was created")]
    assert out.changes == [
        RoomCreated("chat-X", "d", 0),
        MemberAdded("sip:chat-X@d", "Alice", "d", 1),
    ]

    out = send(engine, "bob", "sip:CHAT-x@d", "#Join")
    assert sent(out) == [
        (("sip:Alice@d", uri("bob")), "sip:chat-X@d", b"*** [bob] has joined the room")
    ]

    out = send(engine, "alice", "sip:CHAT-x@D:5060", "#create")
    assert sent(out) == [
        ((uri("alice"),), "sip:CHAT-x@D:5060", b"*** Room already exists and you are a member")
    ]
    out = send(engine, "bob", "sip:chat-x@d", "#members")
    assert sent(out) == [((uri("bob"),), "sip:chat-X@d", b"Members:\n*[Alice]\n[bob]")]
    # Chat copies name the sender as stored.
    out = send(engine, "ALICE", "sip:chat-x@d", "hi")
    assert sent(out) == [((uri("bob"),), "sip:chat-X@d", b"[Alice]: hi")]


def test_33_the_room_is_the_request_uri(chat1: ImcEngine) -> None:
    # The engine never sees To; the R-URI alone names the room.
    out = send(chat1, "dave", CHAT1, "#join")
    assert out.changes == [MemberAdded(CHAT1, "dave", "d", 0)]


def test_34_body_edge_cases(chat1: ImcEngine) -> None:
    failed(send(chat1, "alice", CHAT1, b""), -1, "Empty body")
    out = send(chat1, "alice", CHAT1, "#members\r\n#destroy")
    assert sent(out)[0][2].startswith(b"Members:")
    assert chat1.find_room(CHAT1) is not None
    # Kamailio prints the body with %.*s: it ends at the first NUL.
    out = send(chat1, "alice", CHAT1, b"line 1\r\nline 2\x00hidden")
    assert out.messages[0].body == b"[alice]: line 1\r\nline 2"
    prefix = len(b"[alice]: ")
    ok(send(chat1, "alice", CHAT1, b"x" * (32767 - prefix)))
    failed(send(chat1, "alice", CHAT1, b"x" * (32768 - prefix)), -200, "Message too long")


def test_34_bad_uris(chat1: ImcEngine) -> None:
    failed(send(chat1, "alice", "tel:+123", "hi"), -1, "Invalid Request-URI")
    failed(send(chat1, "alice", CHAT1, "hi", from_uri="alice"), -1, "Invalid From URI")
    failed(send(chat1, "alice", CHAT1, "#rooms", from_uri="sip:d"), -1, "Invalid From URI")


def test_35_content_types(chat1: ImcEngine) -> None:
    out = send(chat1, "alice", CHAT1, "hi", content_type="text/plain;charset=UTF-8")
    assert out.messages[0].content_type == "text/plain;charset=UTF-8"
    assert out.messages[0].body == b"[alice]: hi"
    out = send(chat1, "alice", CHAT1, "hi", content_type=None)
    assert out.messages[0].content_type == "text/plain"
    # Notices are text/plain whatever the sender used.
    out = send(chat1, "alice", CHAT1, "#members", content_type="text/html")
    assert out.messages[0].content_type == "text/plain"


def test_35_non_text_is_forwarded_untouched(chat1: ImcEngine) -> None:
    # B6: a prefix would corrupt it; the body goes out as sent, NULs included.
    body = b'<?xml version="1.0"?>\x00<isComposing/>'
    out = send(chat1, "alice", CHAT1, body, content_type="application/im-iscomposing+xml")
    ok(out)
    assert out.messages == [
        Outgoing(
            (uri("carol"), uri("bob")),
            CHAT1,
            body,
            "application/im-iscomposing+xml",
            "cid-1",
        )
    ]


def test_36_modify(chat1: ImcEngine) -> None:
    out = send(chat1, "alice", CHAT1, "#modify bob ADMIN")
    ok(out)
    assert sent(out) == [
        ((uri("alice"), uri("carol"), uri("bob")), CHAT1, b"*** sip:bob@d is now ADMIN")
    ]
    assert out.changes == [MemberFlagsChanged(CHAT1, "bob", "d", 2)]
    assert (
        sent(send(chat1, "bob", CHAT1, "#members"))[0][2] == b"Members:\n*[alice]\n[carol]\n~[bob]"
    )

    out = send(chat1, "carol", CHAT1, "#modify bob member")
    ok(out)
    assert sent(out) == [
        (
            (uri("carol"),),
            CHAT1,
            b"*** You don't have the permmission to modify members in this room",
        )
    ]
    failed(send(chat1, "alice", CHAT1, "#modify bob boss"), -120, "Invalid role")
    failed(send(chat1, "alice", CHAT1, "#modify bob"), -120, "Missing argument")
    failed(send(chat1, "alice", CHAT1, "#modify"), -120, "Missing argument")
    failed(send(chat1, "dave", CHAT1, "#modify bob owner"), -120, "Not a member of the room")
    # B2: master crashes on a non-member target.
    failed(
        send(chat1, "alice", CHAT1, "#modify dave admin"), -120, "User is not a member of the room"
    )


def test_36_modify_room_is_the_third_token(chat1: ImcEngine) -> None:
    send(chat1, "alice", "sip:chat-2@d", "#create")
    send(chat1, "alice", "sip:chat-2@d", "#add bob")
    out = send(chat1, "alice", CHAT1, "#modify bob owner chat-2")
    assert out.changes == [MemberFlagsChanged("sip:chat-2@d", "bob", "d", 1)]
    assert members(chat1, CHAT1) == [("alice", 1), ("carol", 0), ("bob", 0)]


def test_36_modify_clears_invited(chatp: ImcEngine) -> None:
    send(chatp, "alice", CHATP, "#invite bob")
    out = send(chatp, "alice", CHATP, "#modify bob member")
    assert out.changes == [MemberFlagsChanged(CHATP, "bob", "d", 0)]
    assert sent(out) == [((uri("alice"), uri("bob")), CHATP, b"*** sip:bob@d is now member")]


def test_37_lookups_for_rpc(chat1: ImcEngine) -> None:
    room = chat1.find_room("sip:CHAT-1@D;transport=udp")
    assert room is not None and room.uri == CHAT1
    assert [m.uri for m in room.members] == [uri("alice"), uri("carol"), uri("bob")]
    assert chat1.find_room("chat-1@d") is None
    assert chat1.find_room("sip:d") is None
    assert [r.uri for r in chat1.rooms()] == [CHAT1]


# -- configuration ---------------------------------------------------------------------------


def test_start_string_is_echoed_whole_but_help_keeps_hash() -> None:
    engine = ImcEngine(EngineConfig(cmd_start_char="!!"))
    send(engine, "alice", CHATP, "!create private")
    out = send(engine, "alice", CHATP, "!invite bob")
    assert out.messages[0].body == (
        b"*** [alice] invites you to join the room (send '!!accept' or '!!reject')"
    )
    out = send(engine, "alice", CHATP, "!nope")
    assert out.messages[0].body == b"*** Invalid command 'nope' (send '!!help' for help)"
    assert send(engine, "alice", CHATP, "!help").messages[0].body == HELP
    # The body's second character is part of the name when only [0] is matched.
    assert send(engine, "alice", CHATP, "!!help").command == "unknown"
    # A '#' is plain text now.
    assert send(engine, "alice", CHATP, "#help").messages == []


def test_load_then_handle(engine: ImcEngine) -> None:
    pending = (StoredMember("alice", "d", 1), StoredMember("bob", "d", 4))
    engine.load([StoredRoom("chat-empty", "d", 0, ()), StoredRoom("chat-after", "d", 1, pending)])
    assert engine.find_room("sip:chat-empty@d") is not None
    ok(send(engine, "bob", "sip:chat-after@d", "#accept"))
    assert members(engine, "sip:chat-after@d") == [("alice", 1), ("bob", 0)]


def test_lists_too_long_for_kamailio_buffer_fail(engine: ImcEngine) -> None:
    # 32765 bytes is the longest #members / #rooms body Kamailio's 32 KB buffer holds.
    name = "m" * 98  # "[" + 98 + "]" + "\n" = 101 bytes a line
    many = tuple(StoredMember(f"{i:03d}{name}", "d", 0) for i in range(400))
    engine.load([StoredRoom("big", "d", 0, (StoredMember("alice", "d", 1), *many))])
    failed(send(engine, "alice", "sip:big@d", "#members"), -100, "Message too long")
    engine.load([StoredRoom(f"{i:03d}{name}", "d", 0, ()) for i in range(400)])
    failed(send(engine, "alice", "sip:big@d", "#rooms"), -100, "Message too long")


@pytest.mark.parametrize(("extra", "rc"), [(0, 1), (1, -100)])
def test_rooms_list_limit_is_exact(engine: ImcEngine, extra: int, rc: int) -> None:
    # "Rooms:\n[" + name + "]" is 32765 bytes at most.
    engine.load([StoredRoom("r" * (32756 + extra), "d", 0, ())])
    assert send(engine, "alice", MANAGER, "#rooms").rc == rc


def test_admit_refuses_before_anything_changes() -> None:
    """The store's limits are asked first: a refused create or join changes nothing."""

    def admit(change: object) -> str | None:
        if isinstance(change, RoomCreated) and len(change.name) > 10:
            return "Room name too long"
        if isinstance(change, MemberAdded) and change.user == "mallory":
            return "User name not storable"
        return None

    engine = ImcEngine(EngineConfig(admit=admit))
    refused = send(engine, "alice", "sip:chat-very-long-name@d", "#create")
    assert (refused.rc, refused.status, refused.reason) == (-30, 500, "Room name too long")
    assert refused.changes == [] and refused.messages == []
    assert list(engine.rooms()) == []
    assert send(engine, "alice", CHAT1, "#create").rc == 1
    joined = send(engine, "mallory", CHAT1, "#join")
    assert (joined.rc, joined.reason, joined.changes) == (-40, "User name not storable", [])
    room = engine.find_room(CHAT1)
    assert room is not None and [m.user for m in room.members] == ["alice"]



def test_a_port_of_thousands_of_digits_is_refused_not_raised(chat1: ImcEngine) -> None:
    # Found by the fuzz campaign (corpus/commands/*port_long_digits): int() refuses more
    # than 4,300 digits, and its ValueError escaped the engine instead of a refusal.
    digits = "1" * 5000
    failed(send(chat1, "alice", CHAT1, f"#invite sip:zed@d:{digits}"), -50, "Invalid argument")
    failed(send(chat1, "alice", CHAT1, "#join", from_uri=f"sip:alice@d:{digits}"),
           -1, "Invalid From URI")
    failed(send(chat1, "alice", f"sip:chat-1@d:{digits}", "#join"), -1, "Invalid Request-URI")
