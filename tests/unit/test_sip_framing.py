from __future__ import annotations

import pytest

from imc_sidecar.sip.framing import StreamFramer
from imc_sidecar.sip.message import MAX_BODY_BYTES, MAX_HEAD_BYTES, ParseError
from imc_sidecar.sip.parse import parse_message


def message(body: bytes = b"hello", cid: str = "c1") -> bytes:
    return (
        "MESSAGE sip:r@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
        "From: <sip:a@h>;tag=1\r\nTo: <sip:r@h>\r\n"
        f"Call-ID: {cid}\r\nCSeq: 1 MESSAGE\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_one_message_in_one_chunk() -> None:
    framer = StreamFramer()
    assert framer.feed(message()) == ([message()], 0)
    assert framer.buffered == 0


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    data = message(b"a\r\n\r\nb") + message(cid="c2")
    out: list[bytes] = []
    for i in range(len(data)):
        messages, pongs = framer.feed(data[i : i + 1])
        out.extend(messages)
        assert pongs == 0
    assert out == [message(b"a\r\n\r\nb"), message(cid="c2")]


def test_several_messages_in_one_chunk() -> None:
    framer = StreamFramer()
    data = message(cid="1") + message(cid="2") + message(cid="3")[:20]
    messages, _ = framer.feed(data)
    assert [parse_message(m).call_id for m in messages] == ["1", "2"]
    messages, _ = framer.feed(message(cid="3")[20:])
    assert [parse_message(m).call_id for m in messages] == ["3"]


def test_keepalive_ping_owes_one_pong() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == ([], 1)
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == ([], 2)


def test_ping_split_across_chunks() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == ([], 0)
    assert framer.feed(b"\r") == ([], 0)
    assert framer.feed(b"\n") == ([], 1)


def test_single_crlf_before_message_is_skipped_without_pong() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n" + message()) == ([message()], 0)
    assert framer.feed(b"\r\n\r\n" + message() + b"\r\n\r\n") == ([message()], 2)


def test_crlf_inside_a_body_is_not_a_ping() -> None:
    framer = StreamFramer()
    data = message(b"\r\n\r\n")
    assert framer.feed(data[:-4]) == ([], 0)
    assert framer.feed(data[-4:]) == ([data], 0)


def test_missing_content_length_is_fatal() -> None:
    framer = StreamFramer()
    data = message().replace(b"Content-Length: 5\r\n", b"")
    with pytest.raises(ParseError) as info:
        framer.feed(data)
    assert info.value.reason == "Missing Content-Length"
    with pytest.raises(ParseError):
        framer.feed(message())  # the stream stays failed


def test_compact_content_length() -> None:
    framer = StreamFramer()
    data = message().replace(b"Content-Length:", b"l :")
    assert framer.feed(data) == ([data], 0)


@pytest.mark.parametrize("value", [b"x", b"-1", b"5 5"])
def test_bad_content_length(value: bytes) -> None:
    with pytest.raises(ParseError) as info:
        StreamFramer().feed(message().replace(b"Content-Length: 5", b"Content-Length: " + value))
    assert info.value.reason == "Bad Content-Length"


def test_conflicting_content_lengths() -> None:
    data = message().replace(b"Content-Length: 5", b"Content-Length: 5\r\nl: 6")
    with pytest.raises(ParseError):
        StreamFramer().feed(data)


def test_huge_content_length_is_513() -> None:
    data = message().replace(b"Content-Length: 5", f"Content-Length: {MAX_BODY_BYTES + 1}".encode())
    with pytest.raises(ParseError) as info:
        StreamFramer().feed(data)
    assert info.value.status == 513


def test_endless_headers_are_513() -> None:
    framer = StreamFramer()
    framer.feed(b"MESSAGE sip:r@h SIP/2.0\r\n")
    with pytest.raises(ParseError) as info:
        for _ in range(MAX_HEAD_BYTES // 1000 + 2):
            framer.feed(b"X-Pad: " + b"a" * 1000 + b"\r\n")
    assert info.value.status == 513


def test_garbage_keepalive() -> None:
    with pytest.raises(ParseError):
        StreamFramer().feed(b"\rX")


def test_bare_lf_message() -> None:
    data = message().replace(b"\r\n", b"\n")
    assert StreamFramer().feed(b"\n" + data) == ([data], 0)
