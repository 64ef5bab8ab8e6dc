"""The reference model of the kill -9 cycles test (tests/support/kill_cycles.py): it
accepts what a correct store may leave after a kill, and refuses lost, half-done or
out-of-order changes, so the e2e test can fail for each of them."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from kill_cycles import (
    DOMAIN,
    KIND_NAMES,
    Command,
    KillReport,
    RoomLedger,
    RoomState,
    State,
    choose,
    expect,
    read_tables,
    room_uri,
)

ROOM = room_uri(0)


def _ledger() -> RoomLedger:
    return RoomLedger(ROOM, random.Random(0))


def _send(ledger: RoomLedger, sender: str, body: str) -> str:
    call_id = f"c{len(ledger.recent)}"
    ledger.send(call_id, Command(ROOM, sender, body))
    return call_id


def _ack(ledger: RoomLedger, call_id: str) -> None:
    sent = ledger.awaiting[call_id]
    assert ledger.answered(call_id, sent.expected.status, sent.expected.reason) is None


def _room(*members: tuple[str, int], flag: int = 0) -> RoomState:
    return RoomState(flag, frozenset((user, DOMAIN, f) for user, f in members))


def test_an_acknowledged_change_missing_from_the_tables_is_reported() -> None:
    ledger = _ledger()
    _ack(ledger, _send(ledger, "u01", "#create"))
    _ack(ledger, _send(ledger, "u02", "#join"))
    problem = ledger.after_kill(_room(("u01", 1)))
    assert isinstance(problem, str) and "the database holds room flag 0 members {u01:1}" in problem


def _create_then_two_unanswered() -> RoomLedger:
    ledger = _ledger()
    _ack(ledger, _send(ledger, "u01", "#create"))
    _send(ledger, "u02", "#join")
    _send(ledger, "u01", "#invite u03")
    return ledger


def test_unanswered_commands_may_have_landed_but_only_in_order() -> None:
    invite_only = _room(("u01", 1), ("u03", 4))
    assert isinstance(_create_then_two_unanswered().after_kill(invite_only), str)
    # Neither, the join alone, or both are fine; the ledger carries on from there.
    none, join = _room(("u01", 1)), _room(("u01", 1), ("u02", 0))
    both = _room(("u01", 1), ("u02", 0), ("u03", 4))
    for found, landed in ((none, 0), (join, 1), (both, 2)):
        ledger = _create_then_two_unanswered()
        assert ledger.after_kill(found) == KillReport(2, 2, landed)
        assert ledger.durable == found and ledger.head == found and not ledger.awaiting


def test_a_200_to_a_text_proves_nothing_about_the_command_before_it() -> None:
    ledger = _ledger()
    _ack(ledger, _send(ledger, "u01", "#create"))
    _send(ledger, "u02", "#join")
    _ack(ledger, _send(ledger, "u02", "hello"))  # answered at once, before the join commits
    assert ledger.after_kill(_room(("u01", 1))) == KillReport(1, 1, 0)


def test_a_200_to_a_change_makes_every_earlier_change_durable() -> None:
    ledger = _ledger()
    _ack(ledger, _send(ledger, "u01", "#create"))
    _send(ledger, "u02", "#join")
    _ack(ledger, _send(ledger, "u03", "#join"))  # the join of u02 committed before it
    assert isinstance(ledger.after_kill(_room(("u01", 1), ("u03", 0))), str)


def test_a_half_done_create_or_destroy_breaks_the_invariants() -> None:
    rooms, problems = read_tables([("chat-0", DOMAIN, "0")], [])
    assert rooms == {ROOM: _room()} and problems == [f"room {ROOM} has 0 owner rows: []"]
    rooms, problems = read_tables([], [("u01", DOMAIN, ROOM, "1")])
    assert rooms == {} and problems == [f"member row u01@{DOMAIN} (flag 1) of missing room {ROOM}"]
    ledger = _ledger()
    _send(ledger, "u01", "#create private")
    assert isinstance(ledger.after_kill(_room(flag=1)), str)


def test_a_reply_the_engine_would_not_give_is_reported() -> None:
    ledger = _ledger()
    call_id = _send(ledger, "u01", "#create")
    problem = ledger.answered(call_id, 500, "Database error")
    assert problem is not None and "the engine answers '200 OK'" in problem


def test_the_mix_sends_every_kind_and_both_answers() -> None:
    rng, state, kinds, statuses = random.Random(7), None, Counter[str](), Counter[int]()
    for _ in range(5000):
        kind, command = choose(ROOM, state, rng)
        expected = expect(state, command)
        kinds[kind] += 1
        statuses[expected.status] += 1
        state = expected.state
    assert set(kinds) == set(KIND_NAMES)
    assert set(statuses) == {200, 500}


def _tables(state: State) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]]]:
    if state is None:
        return [], []
    rooms = [("chat-0", DOMAIN, str(state.flag))]
    return rooms, [(u, d, ROOM, str(f)) for u, d, f in state.members]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_every_state_of_the_mix_keeps_the_table_invariants(seed: int) -> None:
    """So a broken invariant in the database is the store's fault, never the mix's."""
    rng, state = random.Random(seed), None
    for _ in range(300):
        _kind, command = choose(ROOM, state, rng)
        state = expect(state, command).state
        rooms, problems = read_tables(*_tables(state))
        assert problems == [] and rooms.get(ROOM) == state
