from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imc_sidecar.sip.transaction import (
    CLIENT_TABLE,
    SERVER_TABLE,
    ClientAction,
    ClientEvent,
    Peer,
    RequestCompleted,
    ServerAction,
    ServerEvent,
    State,
    Timers,
    TransactionLayer,
    Transmit,
)

UDP = Peer("udp", ("192.0.2.1", 5060))
TCP = Peer("tcp", ("192.0.2.1", 5060))
T = Timers()  # T1 0.5, T2 4, T4 5


# --- the tables themselves --------------------------------------------------------------


def test_tables_cover_every_state_and_event() -> None:
    assert set(SERVER_TABLE) == set(itertools.product(State, ServerEvent))
    assert set(CLIENT_TABLE) == set(itertools.product(State, ClientEvent))


def test_terminated_ignores_everything() -> None:
    for (state, _), (action, nxt) in [*SERVER_TABLE.items(), *CLIENT_TABLE.items()]:
        if state is State.TERMINATED:
            assert action == 0 and nxt is State.TERMINATED  # IGNORE in both enums


SERVER_EXPECTED = {
    (State.TRYING, ServerEvent.REQUEST): (ServerAction.IGNORE, State.TRYING),
    (State.TRYING, ServerEvent.SEND_PROVISIONAL): (ServerAction.SEND, State.PROCEEDING),
    (State.TRYING, ServerEvent.SEND_FINAL): (ServerAction.SEND_FINAL, State.COMPLETED),
    (State.PROCEEDING, ServerEvent.REQUEST): (ServerAction.RESEND, State.PROCEEDING),
    (State.PROCEEDING, ServerEvent.SEND_FINAL): (ServerAction.SEND_FINAL, State.COMPLETED),
    (State.COMPLETED, ServerEvent.REQUEST): (ServerAction.RESEND, State.COMPLETED),
    (State.COMPLETED, ServerEvent.SEND_FINAL): (ServerAction.IGNORE, State.COMPLETED),
    (State.COMPLETED, ServerEvent.TIMER_J): (ServerAction.DESTROY, State.TERMINATED),
}
CLIENT_EXPECTED = {
    (State.TRYING, ClientEvent.TIMER_E): (ClientAction.RETRANSMIT, State.TRYING),
    (State.TRYING, ClientEvent.TIMER_F): (ClientAction.TIMEOUT, State.TERMINATED),
    (State.TRYING, ClientEvent.PROVISIONAL): (ClientAction.PROCEED, State.PROCEEDING),
    (State.TRYING, ClientEvent.FINAL): (ClientAction.COMPLETE, State.COMPLETED),
    (State.TRYING, ClientEvent.TRANSPORT_ERROR): (ClientAction.FAIL, State.TERMINATED),
    (State.PROCEEDING, ClientEvent.TIMER_E): (ClientAction.RETRANSMIT, State.PROCEEDING),
    (State.PROCEEDING, ClientEvent.FINAL): (ClientAction.COMPLETE, State.COMPLETED),
    (State.COMPLETED, ClientEvent.FINAL): (ClientAction.IGNORE, State.COMPLETED),
    (State.COMPLETED, ClientEvent.TIMER_K): (ClientAction.DESTROY, State.TERMINATED),
}


@pytest.mark.parametrize(("key", "expected"), SERVER_EXPECTED.items())
def test_server_table_rfc_rows(key: tuple[State, ServerEvent], expected: object) -> None:
    assert SERVER_TABLE[key] == expected


@pytest.mark.parametrize(("key", "expected"), CLIENT_EXPECTED.items())
def test_client_table_rfc_rows(key: tuple[State, ClientEvent], expected: object) -> None:
    assert CLIENT_TABLE[key] == expected


def test_states_never_go_backwards() -> None:
    for (state, _), (_, nxt) in [*SERVER_TABLE.items(), *CLIENT_TABLE.items()]:
        assert nxt >= state


# --- client transactions ----------------------------------------------------------------


def start(layer: TransactionLayer, peer: Peer = UDP, branch: str = "b1", now: float = 0.0) -> None:
    layer.client_start(branch, "MESSAGE", b"REQ", peer, "ctx", now)


def run(layer: TransactionLayer, until: float) -> tuple[list[float], list[RequestCompleted]]:
    """Fire timers up to `until`; return when retransmissions went out and the results."""
    sent: list[float] = []
    done: list[RequestCompleted] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        done.extend(layer.handle_timer(deadline))
        sent.extend(deadline for _ in layer.transmits())
    return sent, done


def test_client_udp_retransmits_per_timer_e_then_times_out() -> None:
    layer = TransactionLayer(T)
    start(layer)
    assert layer.transmits() == [Transmit(b"REQ", UDP)]
    sent, done = run(layer, 100)
    # 0.5, 1.5, 3.5, 7.5, then every 4 s (T2) until Timer F at 32 s
    assert sent == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert done == [RequestCompleted("ctx", 408, "Request Timeout")]
    assert layer.clients == {} and layer.in_flight == 0
    assert layer.next_deadline() is None


def test_client_provisional_caps_retransmit_interval_at_t2() -> None:
    layer = TransactionLayer(T)
    start(layer)
    layer.transmits()
    assert layer.client_response("b1", "MESSAGE", 100, "Trying", 0.1) is None
    assert layer.clients["b1"].state is State.PROCEEDING
    sent, _ = run(layer, 9)
    assert sent == [0.5, 4.5, 8.5]


def test_client_final_then_timer_k() -> None:
    layer = TransactionLayer(T)
    start(layer)
    layer.transmits()
    done = layer.client_response("b1", "MESSAGE", 200, "OK", 0.4)
    assert done == RequestCompleted("ctx", 200, "OK")
    assert layer.in_flight == 0
    # retransmitted 200s are absorbed while Completed
    assert layer.client_response("b1", "MESSAGE", 200, "OK", 2.0) is None
    assert layer.client_response("b1", "MESSAGE", 180, "Ringing", 2.0) is None
    assert "b1" in layer.clients
    sent, later = run(layer, 100)
    assert sent == [] and later == []  # answered before Timer E fired
    assert layer.clients == {}


def test_client_timer_k_is_t4() -> None:
    layer = TransactionLayer(T)
    start(layer)
    layer.client_response("b1", "MESSAGE", 404, "Not Found", 0.2)
    layer.handle_timer(5.1)
    assert "b1" in layer.clients
    layer.handle_timer(5.2)
    assert "b1" not in layer.clients


def test_client_tcp_no_retransmissions_and_no_timer_k() -> None:
    layer = TransactionLayer(T)
    start(layer, TCP)
    assert len(layer.transmits()) == 1
    assert layer.next_deadline() == 32.0
    assert layer.client_response("b1", "MESSAGE", 200, "OK", 1.0) == RequestCompleted(
        "ctx", 200, "OK"
    )
    assert layer.clients == {}
    assert layer.next_deadline() is None


def test_client_tcp_timeout() -> None:
    layer = TransactionLayer(T)
    start(layer, TCP)
    layer.transmits()
    sent, done = run(layer, 100)
    assert sent == [] and done == [RequestCompleted("ctx", 408, "Request Timeout")]


def test_client_response_matching_needs_branch_and_method() -> None:
    layer = TransactionLayer(T)
    start(layer)
    assert layer.client_response("other", "MESSAGE", 200, "OK", 0.1) is None
    assert layer.client_response("b1", "OPTIONS", 200, "OK", 0.1) is None
    assert layer.clients["b1"].state is State.TRYING


def test_client_transport_error_fails_in_flight_to_that_peer_only() -> None:
    layer = TransactionLayer(T)
    start(layer, UDP, "a")
    start(layer, UDP, "b")
    start(layer, TCP, "c")
    layer.client_response("b", "MESSAGE", 200, "OK", 0.1)
    done = layer.client_transport_error(UDP, 0.2)
    assert done == [RequestCompleted("ctx", 503, "Service Unavailable")]
    assert set(layer.clients) == {"b", "c"}
    assert layer.client_transport_error(UDP, 0.3) == []
    assert layer.in_flight == 1


def test_configurable_timers() -> None:
    layer = TransactionLayer(Timers(t1=0.1, t2=0.2, t4=0.3))
    start(layer)
    layer.transmits()
    sent, done = run(layer, 100)
    assert sent[:3] == pytest.approx([0.1, 0.3, 0.5])
    assert done == [RequestCompleted("ctx", 408, "Request Timeout")]
    assert len(sent) == 32  # 0.1, then every 0.2 s until Timer F at 6.4 s


# --- server transactions ----------------------------------------------------------------


def test_server_absorbs_in_trying_and_resends_later() -> None:
    layer = TransactionLayer(T)
    key = ("z9hG4bK1", "h:5060", "MESSAGE")
    assert layer.server_match(key, 0.0) is False
    txn = layer.server_start(key, UDP)
    assert layer.server_match(key, 0.1) is True
    assert layer.transmits() == []
    assert layer.server_send(txn, 100, b"100", 0.2)
    assert layer.server_match(key, 0.3)
    assert layer.transmits() == [Transmit(b"100", UDP), Transmit(b"100", UDP)]
    assert layer.server_send(txn, 200, b"200", 0.4)
    assert layer.server_match(key, 0.5)
    assert layer.transmits() == [Transmit(b"200", UDP), Transmit(b"200", UDP)]
    assert layer.server_send(txn, 500, b"500", 0.6) is False  # discarded once Completed
    assert layer.transmits() == []
    layer.handle_timer(32.39)
    assert key in layer.servers
    layer.handle_timer(32.4)  # Timer J = 64*T1 after the final response
    assert key not in layer.servers
    assert layer.server_match(key, 33) is False


def test_server_reliable_terminates_at_once() -> None:
    layer = TransactionLayer(T)
    key = ("k",)
    txn = layer.server_start(key, TCP)
    layer.server_send(txn, 200, b"200", 0.0)
    assert layer.transmits() == [Transmit(b"200", TCP)]
    assert key not in layer.servers
    assert layer.next_deadline() is None


def test_stateless_queue() -> None:
    layer = TransactionLayer(T)
    layer.queue(Transmit(b"x", UDP))
    assert layer.transmits() == [Transmit(b"x", UDP)]
    assert layer.transmits() == []


# --- scale: the timer heap --------------------------------------------------------------


def test_heap_is_compacted_when_cancelled_timers_dominate() -> None:
    layer = TransactionLayer(T)
    for i in range(20_000):
        start(layer, UDP, f"b{i}", now=i * 1e-4)
        layer.client_response(f"b{i}", "MESSAGE", 200, "OK", i * 1e-4)
    layer.transmits()
    # each finished transaction keeps one live Timer K; its E and F entries are dead
    assert len(layer._heap) <= 4 * len(layer.clients) + 4096
    assert layer.in_flight == 0
    _, done = run(layer, 100)
    assert done == [] and layer.clients == {} and layer.next_deadline() is None


# --- property: any sequence of inputs gives exactly one completion ----------------------

client_inputs = st.lists(
    st.tuples(
        st.sampled_from(["timer", "1xx", "2xx", "4xx", "error"]),
        st.floats(min_value=0, max_value=5, allow_nan=False),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(inputs=client_inputs, reliable=st.booleans())
def test_client_exactly_one_completion(inputs: list[tuple[str, float]], reliable: bool) -> None:
    layer = TransactionLayer(T)
    peer = TCP if reliable else UDP
    layer.client_start("b", "MESSAGE", b"REQ", peer, "ctx", 0.0)
    now = 0.0
    done: list[RequestCompleted] = []
    for kind, step in inputs:
        now += step
        if kind == "timer":
            done.extend(layer.handle_timer(now))
        elif kind == "error":
            done.extend(layer.client_transport_error(peer, now))
        else:
            status = {"1xx": 180, "2xx": 200, "4xx": 486}[kind]
            result = layer.client_response("b", "MESSAGE", status, "x", now)
            if result is not None:
                done.append(result)
        if reliable:
            assert all(t.data == b"REQ" for t in layer.transmits())
    done.extend(layer.handle_timer(now + 1000))
    assert len(done) == 1 and done[0].context == "ctx"
    assert layer.clients == {} and layer.in_flight == 0 and layer.next_deadline() is None


@settings(max_examples=200, deadline=None)
@given(
    inputs=st.lists(st.sampled_from(["request", "1xx", "final", "timer"]), max_size=20),
    reliable=st.booleans(),
)
def test_server_never_sends_two_different_finals(inputs: list[str], reliable: bool) -> None:
    layer = TransactionLayer(T)
    key = ("k",)
    txn = layer.server_start(key, TCP if reliable else UDP)
    now = 0.0
    finals: set[bytes] = set()
    for i, kind in enumerate(inputs):
        now += 1.0
        if kind == "request":
            layer.server_match(key, now)
        elif kind == "1xx":
            layer.server_send(txn, 180, b"180", now)
        elif kind == "final":
            layer.server_send(txn, 200, f"final{i}".encode(), now)
        else:
            layer.handle_timer(now + 40)
        finals |= {t.data for t in layer.transmits() if t.data.startswith(b"final")}
    assert len(finals) <= 1
    layer.handle_timer(now + 1000)
    assert key not in layer.servers or txn.state is not State.COMPLETED


def test_timer_f_queue_is_compacted_when_answered_requests_dominate() -> None:
    layer = TransactionLayer(T)
    start(layer, UDP, "slow", now=0.0)  # never answered: keeps the queue's head alive
    for i in range(20_000):
        start(layer, UDP, f"b{i}", now=1 + i * 1e-4)
        layer.client_response(f"b{i}", "MESSAGE", 200, "OK", 1 + i * 1e-4)
        layer.transmits()
    assert layer.in_flight == 1
    assert len(layer._timer_f) <= 4 * layer.in_flight + 4097
    _, done = run(layer, 100)
    assert done == [RequestCompleted("ctx", 408, "Request Timeout")]
    assert layer.clients == {} and layer.in_flight == 0 and layer.next_deadline() is None


def test_time_never_runs_backwards_for_scheduling() -> None:
    layer = TransactionLayer(T)
    start(layer, UDP, "a", now=10.0)
    start(layer, UDP, "b", now=9.0)  # an earlier now schedules as 10.0
    layer.transmits()
    assert layer.next_deadline() == 10.5
    assert layer.handle_timer(10.5) == []
    assert len(layer.transmits()) == 2  # both retransmitted at the first Timer E


def test_timers_e_and_f_fire_in_deadline_order_when_handled_late() -> None:
    layer = TransactionLayer(T)
    start(layer)
    layer.transmits()
    layer.handle_timer(31.6)  # E fired (late) at 31.6: the next E is due at 35.6
    assert len(layer.transmits()) == 1
    # Timer F (32.0) comes before that E: the transaction times out without resending.
    assert layer.handle_timer(40.0) == [RequestCompleted("ctx", 408, "Request Timeout")]
    assert layer.transmits() == []


def test_transport_error_skips_answered_transactions_still_queued() -> None:
    layer = TransactionLayer(T)
    for branch in ("a", "b", "c"):
        start(layer, UDP, branch)
    layer.client_response("b", "MESSAGE", 200, "OK", 0.1)
    done = layer.client_transport_error(UDP, 0.2)
    assert done == [RequestCompleted("ctx", 503, "Service Unavailable")] * 2
    assert layer.in_flight == 0
