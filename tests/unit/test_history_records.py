"""History records from real engine outcomes: which rows each command and text leaves."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imc_sidecar.history.records import (
    EVENT_KINDS,
    OK,
    EventRecord,
    FanoutTally,
    command_events,
)
from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.outcome import ChatRequest, InviteTicket, Outcome

T = 1_700_000_000_000_000
ROOM = "sip:chat-1@d"


def _uri(user: str) -> str:
    return f"sip:{user}@d"


def _send(engine: ImcEngine, user: str, body: str, ruri: str = ROOM) -> Outcome:
    return engine.handle(ChatRequest(ruri, _uri(user), "cid", body.encode(), "text/plain"))


def _rows(engine: ImcEngine, user: str, body: str, ruri: str = ROOM) -> list[tuple[object, ...]]:
    """(kind, room, actor, subject, result, detail) of each row the command leaves."""
    return [(e.kind, e.room, e.actor, e.subject, e.result, e.detail)
            for e in command_events(_send(engine, user, body, ruri), T)]


def test_each_command_leaves_the_rows_of_what_it_changed() -> None:
    engine = ImcEngine(EngineConfig())
    a, b, c = _uri("alice"), _uri("bob"), _uri("carol")
    assert _rows(engine, "alice", "#create") == [("created", ROOM, a, a, OK, None)]
    assert _rows(engine, "bob", "#join") == [("joined", ROOM, b, b, OK, None)]
    assert _rows(engine, "alice", "#invite carol") == [("invited", ROOM, a, c, OK, None)]
    assert _rows(engine, "carol", "#accept") == [("accepted", ROOM, c, c, OK, None)]
    assert _rows(engine, "alice", "#modify bob admin") == [
        ("role_changed", ROOM, a, b, OK, "admin")]
    assert _rows(engine, "alice", "#invite dave") == [
        ("invited", ROOM, a, _uri("dave"), OK, None)]
    assert _rows(engine, "dave", "#deny") == [("rejected", ROOM, _uri("dave"), _uri("dave"),
                                               OK, None)]
    assert _rows(engine, "alice", "#add erin") == [("joined", ROOM, a, _uri("erin"), OK, None)]
    assert _rows(engine, "bob", "#remove erin") == [("removed", ROOM, b, _uri("erin"), OK, None)]
    assert _rows(engine, "carol", "#exit") == [("left", ROOM, c, c, OK, None)]
    # Commands that only read leave nothing.
    assert _rows(engine, "alice", "#members") == []
    assert _rows(engine, "alice", "#rooms") == []
    assert _rows(engine, "alice", "#help") == []
    assert _rows(engine, "alice", "#destroy") == [("destroyed", ROOM, a, None, OK, None)]


def test_an_invitees_join_counts_as_accepting() -> None:
    engine = ImcEngine(EngineConfig())
    _send(engine, "alice", "#create")
    _send(engine, "alice", "#invite carol")
    assert _rows(engine, "carol", "#join") == [
        ("accepted", ROOM, _uri("carol"), _uri("carol"), OK, None)]


def test_a_command_that_names_another_room_is_recorded_in_that_room() -> None:
    engine = ImcEngine(EngineConfig())
    manager = "sip:chat-manager@d"
    assert _rows(engine, "alice", "#create chat-9 private", manager) == [
        ("created", "sip:chat-9@d", _uri("alice"), _uri("alice"), OK, None)]
    assert _rows(engine, "alice", "#invite bob chat-9", manager) == [
        ("invited", "sip:chat-9@d", _uri("alice"), _uri("bob"), OK, None)]


def test_a_refused_command_leaves_one_row_with_its_reason() -> None:
    engine = ImcEngine(EngineConfig())
    _send(engine, "alice", "#create")
    assert _rows(engine, "mallory", "#destroy") == [
        ("destroyed", ROOM, _uri("mallory"), None, "Not a member of the room", None)]
    assert _rows(engine, "alice", "#invite alice") == [
        ("invited", ROOM, _uri("alice"), None, "User is already in the room", None)]
    assert _rows(engine, "alice", "#members", "sip:nope@d") == []  # reads leave nothing


def test_chat_texts_leave_no_event() -> None:
    engine = ImcEngine(EngineConfig())
    _send(engine, "alice", "#create")
    _send(engine, "bob", "#join")
    outcome = _send(engine, "alice", "hello")
    assert outcome.command is None and outcome.actor == _uri("alice") and outcome.room == ROOM
    assert command_events(outcome, T) == []


def test_a_failed_invitation_is_recorded_only_if_it_removed_the_invitee() -> None:
    engine = ImcEngine(EngineConfig())
    _send(engine, "alice", "#create")
    _send(engine, "alice", "#invite zed")
    ticket = InviteTicket(ROOM, _uri("zed"), _uri("alice"))
    outcome = engine.invite_failed(ticket, 404, "Not Found")
    assert command_events(outcome, T) == [
        EventRecord(T, ROOM, "invite_failed", _uri("alice"), _uri("zed"), OK, "404 Not Found")]
    again = engine.invite_failed(ticket, 408, "Request Timeout")
    assert command_events(again, T) == []


def test_every_kind_is_known() -> None:
    engine = ImcEngine(EngineConfig())
    kinds: set[str] = set()
    for user, body in [("alice", "#create"), ("bob", "#join"), ("alice", "#invite c"),
                       ("c", "#accept"), ("alice", "#modify bob admin"), ("bob", "#leave"),
                       ("alice", "#invite d"), ("d", "#reject"), ("alice", "#add e"),
                       ("alice", "#remove e"), ("alice", "#destroy")]:
        kinds |= {e.kind for e in command_events(_send(engine, user, body), T)}
    assert kinds | {"invite_failed"} == set(EVENT_KINDS)


@given(st.lists(st.tuples(st.integers(100, 699), st.integers(0, 40_000_000)), min_size=1,
                max_size=50))
def test_a_tally_counts_every_answer_once(answers: list[tuple[int, int]]) -> None:
    """Delays in whole microseconds, so the float sums are exact."""
    tally = FanoutTally(T, 10.0, ROOM, _uri("a"), 5, "text/plain", len(answers), None)
    done = [tally.answered(status, 10.0 + delay / 1e6) for status, delay in answers]
    assert done == [False] * (len(answers) - 1) + [True]
    row = tally.record()
    failures = [status for status, _ in answers if status >= 300]
    assert row.delivered + row.failed == row.recipients == len(answers)
    assert row.failed == len(failures)
    assert row.worst_status == (max(failures) if failures else None)
    assert abs(row.latency_us - max(delay for _, delay in answers)) <= 1


def test_an_abandoned_tally_counts_the_missing_copies_as_failed() -> None:
    tally = FanoutTally(T, 0.0, ROOM, _uri("a"), 5, "text/plain", 3, None)
    tally.answered(200, 0.5)
    tally.abandon(408)
    row = tally.record()
    assert (row.delivered, row.failed, row.worst_status, row.latency_us) == (1, 2, 408, 500_000)
