from __future__ import annotations

import pytest

from imc_sidecar.sip.endpoint import EndpointConfig, Peer, RequestCompleted, SipEndpoint
from imc_sidecar.sip.ids import IdSource
from imc_sidecar.sip.message import Response
from imc_sidecar.sip.parse import parse_message
from imc_sidecar.sip.scan import scan_response

ANSWER = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKt-1;rport=5060;received=10.0.0.9\r\n"
    b"To: <sip:a@h>;tag=x\r\nFrom: <sip:r@c>;tag=t-2\r\nCall-ID: t-3@10.0.0.9\r\n"
    b"CSeq: 10 MESSAGE\r\nServer: ua\r\nContent-Length: 0\r\n\r\n"
)


def test_usual_answer_is_read() -> None:
    assert scan_response(ANSWER) == (200, "OK", "z9hG4bKt-1", "MESSAGE")
    parsed = parse_message(ANSWER)
    assert isinstance(parsed, Response) and parsed.top_via.branch == "z9hG4bKt-1"


def test_first_via_counts_and_branch_may_come_later() -> None:
    data = ANSWER.replace(
        b"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKt-1;rport=5060;received=10.0.0.9\r\n",
        b"Via: SIP/2.0/UDP h:5060;rport;branch=z9hG4bKt-1\r\n"
        b"Via: SIP/2.0/UDP o;branch=z9hG4bKo\r\n",
    )
    assert scan_response(data) == (200, "OK", "z9hG4bKt-1", "MESSAGE")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Via:", b"v:"),  # compact name
        (b"CSeq:", b"cseq:"),  # other case
        (b"\r\nTo:", b"\nTo:"),  # a bare LF
        (b"<sip:a@h>;tag=x", b"<sip:a@h>\r\n ;tag=x"),  # folding
        (b"Call-ID:", b"Call-ID :"),  # space before the colon
        (b";received=10.0.0.9", b";received=10.0.0.9,SIP/2.0/UDP o"),  # two Vias on a line
        (b"Content-Length: 0\r\n", b"Content-Length: 0\r\nContent-Length: 0\r\n"),
        (b"SIP/2.0 200", b"\r\nSIP/2.0 200"),  # leading CRLF
    ],
)
def test_unusual_answers_are_left_to_the_parser(old: bytes, new: bytes) -> None:
    data = ANSWER.replace(old, new, 1)
    assert data != ANSWER
    assert scan_response(data) is None
    parsed = parse_message(data)  # all still valid SIP
    assert isinstance(parsed, Response) and parsed.top_via.branch == "z9hG4bKt-1"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Call-ID: t-3@10.0.0.9\r\n", b""),  # missing Call-ID
        (b"Call-ID: t-3@10.0.0.9", b"Call-ID: "),  # empty Call-ID
        (b"Call-ID: t-3@10.0.0.9", b"Call-ID: a b"),
        (b"From: <sip:r@c>;tag=t-2\r\n", b""),
        (b"CSeq: 10 MESSAGE", b"CSeq: MESSAGE"),
        (b":5060;branch", b":65536;branch"),
        (b"Content-Length: 0", b"Content-Length: 9"),  # body too short
        (b"200 OK", b"700 OK"),
        (b"Server: ua", b"Bad Name: ua"),
    ],
)
def test_invalid_answers_are_not_taken(old: bytes, new: bytes) -> None:
    assert scan_response(ANSWER.replace(old, new, 1)) is None


def test_endpoint_matches_answers_the_scan_declines() -> None:
    ep = SipEndpoint(EndpointConfig(via_address={"udp": ("10.0.0.9", 5060)}), IdSource("t"))
    ep.send_many(["sip:a@h"], "sip:r@c", b"x", b"", "ctx", 0.0)
    [sent] = ep.transmits()
    compact = ANSWER.replace(b"Via:", b"v:").replace(b"CSeq:", b"CSEQ:")
    assert scan_response(compact) is None
    assert ep.receive(compact, Peer("udp", ("10.0.0.1", 5060)), 0.1) == [
        RequestCompleted("ctx", 200, "OK")
    ]
    assert ep.pending_requests == 0 and sent.data.startswith(b"MESSAGE sip:a@h ")
