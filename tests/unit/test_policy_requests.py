"""The request policy without sockets: parsed requests in, decisions out, time passed in."""

from __future__ import annotations

import pytest

from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.outcome import ChatRequest, InviteTicket, Outcome
from imc_sidecar.policy import Admission, Lifecycle, RequestPolicy
from imc_sidecar.policy.rates import SenderRates
from imc_sidecar.sip.message import Request
from imc_sidecar.sip.parse import parse_message

ROOM = "sip:chat-1@chat.example"
RUNNING = Lifecycle.RUNNING


def request(user: str, body: str, uri: str = ROOM) -> Request:
    data = (
        f"MESSAGE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        f"From: <sip:{user}@example.com>;tag=1\r\nTo: <{uri}>\r\nCall-ID: c-{user}\r\n"
        f"CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    parsed = parse_message(data)
    assert isinstance(parsed, Request)
    return parsed


def policy(limit: int = 0, durable: bool = True) -> RequestPolicy:
    return RequestPolicy(ImcEngine(EngineConfig()), Admission(limit), durable)


def room_with(p: RequestPolicy, *users: str) -> None:
    """A room whose owner is the first user and whose members are the others."""
    for i, name in enumerate(users):
        body = "#create" if i == 0 else "#join"
        p.engine.handle(ChatRequest(ROOM, f"sip:{name}@example.com", "c", body.encode(), None))


def test_a_command_that_changes_state_is_made_durable_first() -> None:
    decision = policy().decide(request("alice", "#create"), 0, RUNNING, 0.0)
    assert (decision.status, decision.reason) == (200, "OK")
    assert decision.outcome is not None and decision.outcome.changes
    assert decision.durable_first and not decision.chat
    # Without a database (db_mode 0) nothing waits for a write.
    assert not policy(durable=False).decide(
        request("alice", "#create"), 0, RUNNING, 0.0
    ).durable_first


def test_a_chat_text_is_sent_at_once_and_marked_for_its_history_row() -> None:
    p = policy()
    room_with(p, "alice", "bob", "carol")
    decision = p.decide(request("alice", "hi"), 0, RUNNING, 0.0)
    assert decision.chat and not decision.durable_first
    assert decision.outcome is not None
    [copies] = decision.outcome.messages
    assert set(copies.recipients) == {"sip:bob@example.com", "sip:carol@example.com"}


@pytest.mark.parametrize(
    ("lifecycle", "reason"),
    [(Lifecycle.STOPPING, "Shutting down"), (Lifecycle.RELOADING, "Reloading state, retry")],
)
def test_no_change_while_stopping_or_reloading(lifecycle: Lifecycle, reason: str) -> None:
    p = policy()
    decision = p.decide(request("alice", "#create"), 0, lifecycle, 0.0)
    assert (decision.status, decision.reason, decision.outcome) == (503, reason, None)
    assert not decision.refused  # not an overload refusal: not counted as one
    assert p.engine.find_room(ROOM) is None


def test_while_reloading_chat_and_reading_commands_are_served_from_memory() -> None:
    p = policy()
    room_with(p, "alice", "bob")
    reloading = Lifecycle.RELOADING
    assert p.decide(request("alice", "hi"), 0, reloading, 0.0).chat
    assert p.decide(request("bob", "#members"), 0, reloading, 0.0).status == 200
    assert p.decide(request("bob", "#leave"), 0, reloading, 0.0).status == 503
    room = p.engine.find_room(ROOM)
    assert room is not None and [m.user for m in room.members] == ["alice", "bob"]
    # Nothing at all once stopping.
    assert p.decide(request("alice", "hi"), 0, Lifecycle.STOPPING, 0.0).outcome is None


def test_overload_refuses_texts_with_retry_after_and_still_serves_commands() -> None:
    p = policy(limit=2)
    room_with(p, "alice", "bob", "carol")
    assert p.decide(request("alice", "one"), 0, RUNNING, 1.0).chat  # 2 copies: at the limit
    refused = p.decide(request("alice", "two"), 2, RUNNING, 2.0)
    assert (refused.status, refused.headers, refused.refused) == (
        503, (("Retry-After", "1"),), True,
    )
    # Still above the resume mark: refused before the engine even looks at the text.
    assert p.decide(request("bob", "three"), 2, RUNNING, 3.0).refused
    assert p.decide(request("dave", "#join"), 2, RUNNING, 3.0).status == 200
    assert p.decide(request("alice", "four"), 0, RUNNING, 4.0).chat  # drained: resumed
    assert p.admission.refused == 2


def test_an_engine_fault_costs_one_500_not_the_server() -> None:
    p = policy()

    def broken(chat: ChatRequest) -> Outcome:
        raise RuntimeError("bug")

    p.engine.handle = broken  # type: ignore[method-assign]
    decision = p.decide(request("alice", "#create"), 0, RUNNING, 0.0)
    assert (decision.status, decision.reason) == (500, "Internal Server Error")
    assert decision.outcome is not None and not decision.outcome.changes


def test_a_refused_write_acknowledges_nothing() -> None:
    p = policy()
    decision = p.decide(request("alice", "#create"), 0, RUNNING, 0.0)
    assert decision.outcome is not None
    refused = p.write_failed(decision.outcome, unavailable=False)
    failed = refused.outcome
    assert failed is not None
    assert (failed.rc, failed.status, failed.reason) == (-1, 500, "Database error")
    assert failed.changes == [] and failed.messages == []
    assert (failed.command, failed.actor, failed.room) == (
        decision.outcome.command, decision.outcome.actor, decision.outcome.room,
    )


def test_a_write_the_database_did_not_answer_is_refused_with_a_notice() -> None:
    p = policy()
    decision = p.decide(request("alice", "#create"), 0, RUNNING, 0.0)
    assert decision.outcome is not None
    refused = p.write_failed(decision.outcome, unavailable=True)
    assert (refused.status, refused.reason, refused.limited) == (
        503, "Database Unavailable", "database",
    )
    assert refused.headers == (("Retry-After", "5"),)
    assert refused.outcome is not None and refused.outcome.changes == []
    [notice] = refused.outcome.messages
    assert notice.recipients == ("sip:alice@example.com",) and notice.from_uri == ROOM
    assert notice.body.startswith(b"*** The room database is not reachable, so #create")


def database_down(p: RequestPolicy) -> None:
    p.database.lost(10.0, "connection refused")


def test_while_the_database_is_down_changing_commands_are_taken_back_and_refused() -> None:
    p = policy()
    room_with(p, "alice", "bob")
    database_down(p)
    for user, body in (("carol", "#join"), ("alice", "#invite dave"),
                       ("alice", "#remove sip:bob@example.com"), ("alice", "#destroy")):
        decision = p.decide(request(user, body), 0, RUNNING, 11.0)
        assert (decision.status, decision.reason) == (503, "Database Unavailable"), body
        assert decision.outcome is not None and not decision.outcome.changes
        assert not decision.durable_first
        [notice] = decision.outcome.messages
        assert notice.recipients == (f"sip:{user}@example.com",)
        assert b"was not carried out" in notice.body
    room = p.engine.find_room(ROOM)
    assert room is not None
    assert [(m.user, m.flags) for m in room.members] == [("alice", 1), ("bob", 0)]


def test_while_the_database_is_down_chat_and_reading_commands_go_on() -> None:
    p = policy()
    room_with(p, "alice", "bob")
    database_down(p)
    chat = p.decide(request("alice", "hello"), 0, RUNNING, 11.0)
    assert chat.status == 200 and chat.chat
    for body in ("#members", "#rooms", "#help", "#join"):  # #join: already a member
        decision = p.decide(request("bob", body), 0, RUNNING, 11.0)
        assert decision.status == 200, body
        assert decision.outcome is not None and decision.outcome.messages
    p.database.restored(20.0)
    assert p.decide(request("carol", "#join"), 0, RUNNING, 21.0).durable_first


def test_a_failed_invitation_while_the_database_is_down_keeps_the_invitee() -> None:
    p = policy()
    room_with(p, "alice")
    p.decide(request("alice", "#invite sip:bob@example.com"), 0, RUNNING, 0.0)
    database_down(p)
    ticket = InviteTicket(ROOM, "sip:bob@example.com", "sip:alice@example.com")
    decision = p.delivery_failed(ticket, 408, "Request Timeout", RUNNING)
    assert decision.outcome is not None and not decision.outcome.changes
    assert not decision.outcome.messages and not decision.durable_first
    room = p.engine.find_room(ROOM)
    assert room is not None and [m.user for m in room.members] == ["alice", "bob"]


def test_a_failed_invitation_goes_back_to_the_engine() -> None:
    p = policy()
    room_with(p, "alice")
    p.decide(request("alice", "#invite sip:bob@example.com"), 0, RUNNING, 0.0)
    ticket = InviteTicket(ROOM, "sip:bob@example.com", "sip:alice@example.com")
    decision = p.delivery_failed(ticket, 404, "Not Found", RUNNING)
    assert decision.outcome is not None and decision.outcome.changes  # bob is dropped
    assert decision.durable_first


def test_reloaded_replaces_the_engine() -> None:
    p = policy()
    fresh = ImcEngine(EngineConfig())
    p.reloaded(fresh)
    assert p.engine is fresh


def test_a_body_over_max_body_gets_413_before_anything_else() -> None:
    p = RequestPolicy(ImcEngine(EngineConfig()), Admission(0), True, max_body=10)
    decision = p.decide(request("alice", "#create " + "x" * 10), 0, RUNNING, 0.0)
    assert (decision.status, decision.reason, decision.limited) == (
        413, "Request Entity Too Large", "size")
    assert decision.outcome is None and p.engine.find_room(ROOM) is None
    assert p.decide(request("alice", "#create"), 0, RUNNING, 0.0).status == 200


def test_a_fast_sender_is_refused_with_retry_after_and_one_notice_per_burst() -> None:
    p = RequestPolicy(ImcEngine(EngineConfig()), Admission(0), True,
                      rates=SenderRates(rate=1.0, burst=2))
    room_with(p, "alice", "bob", "carol")
    assert p.decide(request("alice", "one"), 0, RUNNING, 0.0).chat
    assert p.decide(request("alice", "two"), 0, RUNNING, 0.0).chat
    first = p.decide(request("alice", "three"), 0, RUNNING, 0.2)
    assert (first.status, first.reason, first.headers, first.limited) == (
        503, "Too Many Messages", (("Retry-After", "1"),), "rate")
    assert first.outcome is not None and not first.outcome.changes
    [notice] = first.outcome.messages
    assert notice.recipients == ("sip:alice@example.com",) and notice.from_uri == ROOM
    assert notice.body == b"*** You are sending messages too fast; wait 1 s before the next one"
    again = p.decide(request("alice", "four"), 0, RUNNING, 0.3)
    assert again.status == 503 and again.outcome is None  # no second notice in a burst
    assert p.decide(request("bob", "hi"), 0, RUNNING, 0.3).chat  # others are served
    assert p.decide(request("alice", "#members"), 0, RUNNING, 0.3).status == 200  # commands
    assert p.decide(request("alice", "five"), 0, RUNNING, 1.2).chat  # a token is back
