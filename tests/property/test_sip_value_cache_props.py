"""Requests read with a ParseCache (names, To and CSeq values seen before) equal what
parsing without one gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imc_sidecar.sip.errors import ParseError
from imc_sidecar.sip.grammar import parse_cseq
from imc_sidecar.sip.headers import parse_name_addr
from imc_sidecar.sip.message import ParseCache, Request
from imc_sidecar.sip.parse import parse_message

to_values = st.sampled_from(
    [
        "<sip:room@chat.example>",
        "<sip:room@chat.example>;tag=abc",
        '"Room" <sip:room@chat.example>',
        "sip:room@chat.example;tag=x",
        "<sip:room@chat.example",
        "room",
        "",
    ]
) | st.text(max_size=12).filter(lambda v: "\r" not in v and "\n" not in v)
cseq_values = st.sampled_from(
    ["1 MESSAGE", "2147483648 MESSAGE", "01 MESSAGE", "1 OPTIONS", "x MESSAGE", "1  MESSAGE"]
) | st.text("0123456789 MESAGx", max_size=12)


SEEN = ParseCache()  # shared across examples, as an endpoint's is across requests


def _request(to: str, cseq: str) -> bytes:
    return (
        "MESSAGE sip:room@chat.example SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1\r\n"
        f"From: <sip:a@example>;tag=1\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: {cseq}\r\n"
        "Content-Length: 2\r\n\r\nhi"
    ).encode()


@settings(max_examples=400)
@given(to_values, cseq_values)
def test_cached_reading_equals_parsing(to: str, cseq: str) -> None:
    data = _request(to, cseq)
    results = []
    for seen in (None, SEEN, SEEN):  # uncached, then the second time from the caches
        try:
            message = parse_message(data, seen)
        except ParseError as exc:
            results.append((exc.status, exc.reason))
            continue
        assert isinstance(message, Request)
        assert message.to_addr == parse_name_addr(message.headers.get("To") or "", "To")
        assert message.cseq == parse_cseq(message.headers.get("CSeq") or "")
        results.append(message)
    assert results[0] == results[1] == results[2]
