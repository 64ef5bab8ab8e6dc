from __future__ import annotations

import pytest

from imc_sidecar.sip.endpoint import (
    EndpointConfig,
    Peer,
    RequestCompleted,
    RequestReceived,
    SipEndpoint,
    Transmit,
)
from imc_sidecar.sip.ids import IdSource
from imc_sidecar.sip.message import Request, Response
from imc_sidecar.sip.parse import parse_message
from imc_sidecar.sip.replies import response_bytes

VIA = {"udp": ("10.0.0.9", 5060), "tcp": ("10.0.0.9", 5061)}
ALICE = Peer("udp", ("192.0.2.10", 40000))


def endpoint(**kwargs: object) -> SipEndpoint:
    config = EndpointConfig(via_address=dict(VIA), **kwargs)  # type: ignore[arg-type]
    return SipEndpoint(config, IdSource("t"))


def incoming(
    method: str = "MESSAGE",
    branch: str = "z9hG4bKa1",
    extra: str = "",
    body: bytes = b"hi",
    via_host: str = "192.0.2.10:5070",
) -> bytes:
    return (
        f"{method} sip:room@chat SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host};branch={branch};rport\r\n"
        "From: <sip:alice@example.com>;tag=a\r\nTo: <sip:room@chat>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 {method}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def sent(ep: SipEndpoint) -> list[tuple[Response | Request, Peer]]:
    return [(parse_message(t.data), t.peer) for t in ep.transmits()]


def only_response(ep: SipEndpoint) -> tuple[Response, Peer]:
    out = sent(ep)
    assert len(out) == 1
    response, peer = out[0]
    assert isinstance(response, Response)
    return response, peer


# --- outgoing MESSAGE --------------------------------------------------------------------


def test_send_many_exact_shape() -> None:
    ep = endpoint()
    ep.send_many(
        ["sip:alice@192.0.2.10:5070"],
        "sip:room@chat",
        b"hello",
        b"Content-Type: text/plain\r\n",
        "ctx",
        0.0,
    )
    [transmit] = ep.transmits()
    assert transmit.peer == Peer("udp", ("192.0.2.10", 5070))
    assert transmit.data == (
        b"MESSAGE sip:alice@192.0.2.10:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKt-1;rport\r\n"
        b"To: <sip:alice@192.0.2.10:5070>\r\n"
        b"From: <sip:room@chat>;tag=t-2\r\n"
        b"CSeq: 10 MESSAGE\r\n"
        b"Call-ID: t-3@10.0.0.9\r\n"
        b"Max-Forwards: 70\r\n"
        b"Content-Type: text/plain\r\n"
        b"User-Agent: imc-sidecar\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    assert ep.pending_requests == 1


def test_extra_headers_get_a_line_end_and_may_be_empty() -> None:
    ep = endpoint()
    ep.send_many(["sip:a@h"], "sip:r@c", b"", b"X-A: 1", None, 0.0)
    ep.send_many(["sip:a@h"], "sip:r@c", b"", b"", None, 0.0)
    first, second = (parse_message(t.data) for t in ep.transmits())
    assert first.headers.get("X-A") == "1" and first.headers.get("User-Agent") == "imc-sidecar"
    assert "X-A" not in second.headers


def _expected_copy(uri: str, transport: str, via: str, n: int) -> bytes:
    """One copy as tm shapes it, written out (ids t-1, t-2, ... in request_ids order)."""
    return (
        f"MESSAGE {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via};branch=z9hG4bKt-{n};rport\r\n"
        f"To: <{uri}>\r\n"
        f"From: <sip:room@chat>;tag=t-{n + 1}\r\n"
        "CSeq: 10 MESSAGE\r\n"
        f"Call-ID: t-{n + 2}@10.0.0.9\r\n"
        "Max-Forwards: 70\r\n"
        "X-A: 1%s\r\n"
        "User-Agent: imc-sidecar\r\n"
        "Content-Length: 7\r\n\r\n50% off"
    ).encode()


def test_send_many_fills_the_template_per_recipient() -> None:
    uris = ["sip:a@192.0.2.1", "sip:b@192.0.2.2:5070", "sip:c@h;transport=tcp"]
    ep = endpoint()
    ep.send_many(uris, "sip:room@chat", b"50% off", b"X-A: 1%s", "ctx", 0.0)
    # Each copy is the whole MESSAGE with its own Request-URI, To and ids; '%' in the
    # body and the headers survives the template.
    udp, tcp = "10.0.0.9:5060", "10.0.0.9:5061"
    assert ep.transmits() == [
        Transmit(_expected_copy(uris[0], "UDP", udp, 1), Peer("udp", ("192.0.2.1", 5060))),
        Transmit(_expected_copy(uris[1], "UDP", udp, 4), Peer("udp", ("192.0.2.2", 5070))),
        Transmit(_expected_copy(uris[2], "TCP", tcp, 7), Peer("tcp", ("h", 5060))),
    ]
    assert ep.pending_requests == 3


def test_send_many_fails_each_unusable_recipient_alone() -> None:
    ep = endpoint()
    ep.send_many(["sip:a@h", "tel:+1", "sip:b@h;x=<y>", "sip:c@h"], "sip:r@c", b"x", b"", "c", 1.0)
    assert [t.data.split(b" ")[1] for t in ep.transmits()] == [b"sip:a@h", b"sip:c@h"]
    assert ep.pending_requests == 4
    assert sorted(done.status for done in ep.handle_timer(1.0)) == [400, 416]
    ep2 = endpoint()
    ep2.send_many(["sip:a@h", "sip:b@h"], "sip:r c@x", b"x", b"", "c", 1.0)  # unsafe From
    assert ep2.transmits() == []
    assert [done.status for done in ep2.handle_timer(1.0)] == [400, 400]


@pytest.mark.parametrize(
    ("uri", "peer"),
    [
        ("sip:a@h", Peer("udp", ("h", 5060))),
        ("sip:a@h:5080;transport=TCP", Peer("tcp", ("h", 5080))),
        ("sip:a@[2001:db8::1]:5070", Peer("udp", ("2001:db8::1", 5070))),
        ("sip:example.org;transport=udp", Peer("udp", ("example.org", 5060))),
    ],
)
def test_next_hop_from_request_uri(uri: str, peer: Peer) -> None:
    ep = endpoint()
    ep.send_many([uri], "sip:r@c", b"", b"", None, 0.0)
    [transmit] = ep.transmits()
    assert transmit.peer == peer
    if peer.transport == "tcp":
        assert b"Via: SIP/2.0/TCP 10.0.0.9:5061;" in transmit.data


def test_outbound_proxy_is_next_hop() -> None:
    ep = endpoint(outbound_proxy="sip:proxy.example;transport=tcp")
    ep.send_many(["sip:a@h:9999"], "sip:r@c", b"", b"", None, 0.0)
    [transmit] = ep.transmits()
    assert transmit.peer == Peer("tcp", ("proxy.example", 5060))
    assert transmit.data.startswith(b"MESSAGE sip:a@h:9999 SIP/2.0\r\n")
    with pytest.raises(ValueError):
        endpoint(outbound_proxy="not a uri")


@pytest.mark.parametrize(
    ("uri", "status"),
    [
        ("tel:+123", 416),
        ("sip:", 400),
        ("sips:a@h", 503),
        ("sip:a@h;transport=sctp", 503),
        ("sip:a@h;x=<y>", 400),
    ],
)
def test_unsendable_requests_complete_on_next_timer(uri: str, status: int) -> None:
    ep = endpoint()
    ep.send_many([uri], "sip:r@c", b"", b"", "ctx", 3.0)
    assert ep.transmits() == []
    assert ep.pending_requests == 1
    assert ep.get_timer() == 3.0
    assert ep.handle_timer(2.9) == []
    [done] = ep.handle_timer(3.0)
    assert (done.context, done.status) == ("ctx", status)
    assert ep.pending_requests == 0 and ep.get_timer() is None


def test_missing_transport_completes_with_503() -> None:
    ep = SipEndpoint(EndpointConfig(via_address={"udp": ("10.0.0.9", 5060)}), IdSource("t"))
    ep.send_many(["sip:a@h;transport=tcp"], "sip:r@c", b"", b"", "ctx", 0.0)
    assert ep.handle_timer(0.0) == [RequestCompleted("ctx", 503, "No tcp transport")]


def test_ipv6_via_address_is_bracketed() -> None:
    ep = SipEndpoint(EndpointConfig(via_address={"udp": ("2001:db8::9", 5060)}), IdSource("t"))
    ep.send_many(["sip:a@h"], "sip:r@c", b"", b"", None, 0.0)
    request = parse_message(ep.transmits()[0].data)
    assert (request.headers.get("Via") or "").startswith("SIP/2.0/UDP [2001:db8::9]:5060;")
    assert request.call_id == "t-3@[2001:db8::9]"


def answer(ep: SipEndpoint, status: int, reason: str = "X", index: int = 0) -> bytes:
    transmit = ep.transmits()[index]
    request = parse_message(transmit.data)
    assert isinstance(request, Request)
    return response_bytes(request, status, reason, to_tag="r")


def test_response_completes_request_once() -> None:
    ep = endpoint()
    ep.send_many(["sip:a@192.0.2.10"], "sip:r@c", b"x", b"", "ctx", 0.0)
    ok = answer(ep, 200, "OK")
    assert ep.receive(ok, ALICE, 0.1) == [RequestCompleted("ctx", 200, "OK")]
    assert ep.receive(ok, ALICE, 0.2) == []
    assert ep.pending_requests == 0


def test_provisional_then_final() -> None:
    ep = endpoint()
    ep.send_many(["sip:a@h"], "sip:r@c", b"x", b"", "ctx", 0.0)
    data = ep.transmits()[0].data
    request = parse_message(data)
    assert isinstance(request, Request)
    trying = response_bytes(request, 100, "Trying", to_tag="unused")
    assert ep.receive(trying, ALICE, 0.1) == []
    assert ep.handle_timer(0.5) == []
    assert [t.data for t in ep.transmits()] == [data]
    assert ep.get_timer() == 4.5  # T2 after a provisional
    final = response_bytes(request, 486, "Busy Here", to_tag="x")
    assert ep.receive(final, ALICE, 1.0) == [RequestCompleted("ctx", 486, "Busy Here")]


def test_stray_and_malformed_responses_are_ignored() -> None:
    ep = endpoint()
    ep.send_many(["sip:a@h"], "sip:r@c", b"x", b"", "ctx", 0.0)
    ok = answer(ep, 200, "OK")
    assert ep.receive(ok.replace(b"z9hG4bKt-1", b"z9hG4bKzz"), ALICE, 0.1) == []
    assert ep.receive(ok.replace(b"10 MESSAGE", b"10 OPTIONS"), ALICE, 0.1) == []
    assert ep.receive(ok.replace(b";branch=z9hG4bKt-1", b""), ALICE, 0.1) == []
    assert ep.receive(ok.replace(b"Call-ID", b"X-Call-ID"), ALICE, 0.1) == []
    assert ep.transmits() == []  # responses are never answered
    assert ep.pending_requests == 1


def test_udp_timeout_408_and_tcp_has_no_retransmissions() -> None:
    ep = endpoint()
    ep.send_many(["sip:a@h"], "sip:r@c", b"x", b"", "udp", 0.0)
    ep.send_many(["sip:a@h;transport=tcp"], "sip:r@c", b"x", b"", "tcp", 0.0)
    ep.transmits()
    done: list[RequestCompleted] = []
    peers: list[Peer] = []
    while (deadline := ep.get_timer()) is not None:
        done.extend(ep.handle_timer(deadline))
        peers.extend(t.peer for t in ep.transmits())
    assert {d.context for d in done} == {"udp", "tcp"}
    assert all(d.status == 408 and d.reason == "Request Timeout" for d in done)
    assert peers and all(p.transport == "udp" for p in peers)


def test_transport_error_503() -> None:
    ep = endpoint()
    ep.send_many(["sip:a@h;transport=tcp"], "sip:r@c", b"x", b"", "ctx", 0.0)
    assert ep.transport_error(Peer("tcp", ("other", 5060)), 0.1) == []
    assert ep.transport_error(Peer("tcp", ("h", 5060)), 0.1) == [
        RequestCompleted("ctx", 503, "Service Unavailable")
    ]
    assert ep.pending_requests == 0


# --- incoming requests -------------------------------------------------------------------


def test_message_delivered_once_and_reply_resent_for_retransmissions() -> None:
    ep = endpoint()
    [event] = ep.receive(incoming(), ALICE, 0.0)
    assert isinstance(event, RequestReceived)
    assert event.peer == ALICE and event.request.body == b"hi"
    assert event.request.top_via.received == "192.0.2.10" and event.request.top_via.rport == 40000
    assert ep.receive(incoming(), ALICE, 0.4) == []  # absorbed while Trying
    assert ep.transmits() == []
    ep.reply(event.handle, 200, "OK", 0.5)
    response, peer = only_response(ep)
    assert peer == ALICE  # rport + received
    assert (response.status, response.reason) == (200, "OK")
    assert response.to_tag == "t-1" and response.headers.get("Server") == "imc-sidecar"
    assert response.call_id == "c1" and response.cseq == (1, "MESSAGE")
    assert ep.receive(incoming(), ALICE, 1.0) == []
    again, _ = only_response(ep)
    assert again == response
    ep.reply(event.handle, 500, "Late", 1.1)  # ignored: already final
    assert ep.transmits() == []
    ep.handle_timer(0.5 + 32)
    assert isinstance(ep.receive(incoming(), ALICE, 40.0)[0], RequestReceived)


def test_provisional_reply_shares_to_tag_with_final() -> None:
    ep = endpoint()
    [event] = ep.receive(incoming(), ALICE, 0.0)
    assert isinstance(event, RequestReceived)
    ep.reply(event.handle, 180, "Working", 0.1)
    ep.reply(event.handle, 202, "Accepted", 0.2)
    first, second = (r for r, _ in sent(ep))
    assert first.to_tag == second.to_tag == "t-1"


def test_udp_reply_without_rport_goes_to_sent_by_port() -> None:
    ep = endpoint()
    data = incoming().replace(b";rport", b"")
    [event] = ep.receive(data, ALICE, 0.0)
    assert isinstance(event, RequestReceived)
    ep.reply(event.handle, 200, "OK", 0.0)
    _, peer = only_response(ep)
    assert peer == Peer("udp", ("192.0.2.10", 5070))


def test_tcp_reply_goes_back_to_the_connection() -> None:
    ep = endpoint()
    conn = Peer("tcp", ("198.51.100.1", 33333))
    [event] = ep.receive(incoming(via_host="somewhere.invalid"), conn, 0.0)
    assert isinstance(event, RequestReceived)
    ep.reply(event.handle, 200, "OK", 0.0)
    _, peer = only_response(ep)
    assert peer == conn
    assert isinstance(
        ep.receive(incoming(via_host="somewhere.invalid"), conn, 0.1)[0], RequestReceived
    )


def test_rfc2543_requests_are_matched_without_a_branch() -> None:
    ep = endpoint()
    data = incoming(branch="old1")
    [event] = ep.receive(data, ALICE, 0.0)
    assert isinstance(event, RequestReceived)
    ep.reply(event.handle, 200, "OK", 0.0)
    ep.transmits()
    assert ep.receive(data, ALICE, 0.5) == []
    assert len(ep.transmits()) == 1
    assert ep.receive(data.replace(b"CSeq: 1", b"CSeq: 2"), ALICE, 0.6) != []


def test_options_answered() -> None:
    ep = endpoint()
    assert ep.receive(incoming("OPTIONS", body=b""), ALICE, 0.0) == []
    [transmit] = ep.transmits()
    assert b"\r\nAllow: MESSAGE, OPTIONS\r\nAccept: text/plain, */*\r\n" in transmit.data
    response = parse_message(transmit.data)
    assert isinstance(response, Response) and response.status == 200
    assert response.headers.get_all("Allow") == ["MESSAGE", "OPTIONS"]
    assert response.headers.get_all("Accept") == ["text/plain", "*/*"]
    assert response.to_tag


@pytest.mark.parametrize("method", ["INVITE", "INFO", "SUBSCRIBE", "BYE"])
def test_other_methods_405(method: str) -> None:
    ep = endpoint()
    assert ep.receive(incoming(method), ALICE, 0.0) == []
    response, _ = only_response(ep)
    assert (response.status, response.headers.get_all("Allow")) == (405, ["MESSAGE", "OPTIONS"])


def test_allowed_methods_configurable() -> None:
    ep = endpoint(allowed_methods=("MESSAGE", "INFO"))
    assert isinstance(ep.receive(incoming("INFO"), ALICE, 0.0)[0], RequestReceived)
    ep.receive(incoming("OPTIONS", branch="z9hG4bKo"), ALICE, 0.0)
    response, _ = only_response(ep)
    assert (response.status, response.headers.get_all("Allow")) == (405, ["MESSAGE", "INFO"])


def test_ack_is_never_answered() -> None:
    ep = endpoint()
    assert ep.receive(incoming("ACK"), ALICE, 0.0) == []
    assert ep.transmits() == []


def test_cancel_unknown_481_known_200() -> None:
    ep = endpoint()
    ep.receive(incoming("CANCEL", branch="z9hG4bKnone"), ALICE, 0.0)
    response, _ = only_response(ep)
    assert (response.status, response.reason) == (481, "Call/Transaction Does Not Exist")
    [event] = ep.receive(incoming(), ALICE, 0.0)
    ep.receive(incoming("CANCEL"), ALICE, 0.1)
    response, _ = only_response(ep)
    assert response.status == 200 and response.cseq == (1, "CANCEL")
    assert isinstance(event, RequestReceived)
    ep.reply(event.handle, 200, "OK", 0.2)  # the MESSAGE itself is unaffected
    assert only_response(ep)[0].cseq == (1, "MESSAGE")


def test_cancel_matches_rfc2543_request() -> None:
    ep = endpoint()
    ep.receive(incoming(branch="old"), ALICE, 0.0)
    ep.receive(incoming("CANCEL", branch="old"), ALICE, 0.1)
    assert only_response(ep)[0].status == 200


def test_max_forwards_zero_483() -> None:
    ep = endpoint()
    assert ep.receive(incoming(extra="Max-Forwards: 0\r\n"), ALICE, 0.0) == []
    response, _ = only_response(ep)
    assert (response.status, response.reason) == (483, "Too Many Hops")
    assert ep.receive(incoming(extra="Max-Forwards: 0\r\n"), ALICE, 0.1) == []
    assert only_response(ep)[0].status == 483  # the retransmission gets the same answer


def test_malformed_request_gets_400_with_reason() -> None:
    ep = endpoint()
    data = incoming().replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 OPTIONS")
    assert ep.receive(data, ALICE, 0.0) == []
    response, peer = only_response(ep)
    assert (response.status, response.reason) == (400, "CSeq method mismatch")
    assert peer == ALICE
    assert response.to_tag


def test_bad_content_length_400() -> None:
    ep = endpoint()
    ep.receive(incoming().replace(b"Content-Length: 2", b"Content-Length: 9"), ALICE, 0.0)
    assert only_response(ep)[0].reason == "Bad Content-Length"


def test_too_large_513() -> None:
    ep = endpoint()
    ep.receive(incoming().replace(b"Content-Length: 2", b"Content-Length: 99999999"), ALICE, 0.0)
    response, _ = only_response(ep)
    assert (response.status, response.reason) == (513, "Message Too Large")


@pytest.mark.parametrize(
    "data",
    [
        incoming().replace(b"Call-ID: c1\r\n", b""),
        incoming().replace(b"SIP/2.0/UDP", b"SIP/2.0/UDP bad host"),
        incoming("ACK").replace(b"CSeq: 1 ACK", b"CSeq: x"),
        b"garbage\r\n\r\n",
        b"\x00\x01\x02",
        b"\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
    ],
)
def test_unaddressable_garbage_is_dropped(data: bytes) -> None:
    ep = endpoint()
    assert ep.receive(data, ALICE, 0.0) == []
    assert ep.transmits() == []


# --- two endpoints talking ---------------------------------------------------------------------


def test_two_endpoints_with_a_lost_datagram() -> None:
    room = endpoint()
    alice = SipEndpoint(EndpointConfig(via_address={"udp": ("192.0.2.10", 5070)}), IdSource("a"))
    room_peer = Peer("udp", ("10.0.0.9", 5060))
    alice_peer = Peer("udp", ("192.0.2.10", 5070))
    room.send_many(["sip:alice@192.0.2.10:5070"], "sip:room@chat", b"hey", b"", "n1", 0.0)
    lost = room.transmits()  # the first copy never arrives
    assert len(lost) == 1
    now = room.get_timer()
    assert now == 0.5
    room.handle_timer(now)
    [retransmit] = room.transmits()
    assert retransmit.data == lost[0].data
    [event] = alice.receive(retransmit.data, room_peer, now)
    assert isinstance(event, RequestReceived) and event.request.body == b"hey"
    alice.reply(event.handle, 200, "OK", now)
    [reply] = alice.transmits()
    assert reply.peer == Peer("udp", ("10.0.0.9", 5060))
    assert room.receive(reply.data, alice_peer, now + 0.01) == [RequestCompleted("n1", 200, "OK")]
    assert room.pending_requests == 0


def test_many_fan_out_requests_complete() -> None:
    ep = endpoint()
    for i in range(2000):
        ep.send_many([f"sip:m{i}@10.1.0.{i % 250}"], "sip:room@chat", b"x", b"", i, 0.0)
    transmits = ep.transmits()
    done: list[RequestCompleted] = []
    for t in transmits:
        request = parse_message(t.data)
        assert isinstance(request, Request)
        done.extend(
            e
            for e in ep.receive(response_bytes(request, 200, "OK", to_tag="r"), t.peer, 0.1)
            if isinstance(e, RequestCompleted)
        )
    assert sorted(d.context for d in done) == list(range(2000))  # type: ignore[type-var]
    assert ep.pending_requests == 0


def test_transmit_type_is_reexported() -> None:
    assert Transmit(b"", ALICE).peer == ALICE
