from __future__ import annotations

import pytest

from imc_sidecar.sip.headers import Headers, Via, parse_name_addr, parse_via
from imc_sidecar.sip.message import MAX_BODY_BYTES, MAX_HEAD_BYTES, ParseError, Request, Response
from imc_sidecar.sip.parse import find_head_end, parse_message
from imc_sidecar.sip.replies import response_bytes
from imc_sidecar.sip.routing import apply_received, response_address
from imc_sidecar.sip.scan import scan_request

BASE = (
    "MESSAGE sip:room@chat.example SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport\r\n"
    'From: "Alice" <sip:alice@example.com;transport=udp>;tag=a1\r\n'
    "To: <sip:room@chat.example>\r\n"
    "Call-ID: abc@10.0.0.1\r\n"
    "CSeq: 7 MESSAGE\r\n"
    "Max-Forwards: 69\r\n"
    "Content-Type: text/plain;charset=UTF-8\r\n"
    "Content-Length: 5\r\n"
    "\r\n"
    "hello"
)


RESPONSE_HEADERS = (
    b"Via: SIP/2.0/UDP h\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 X\r\n\r\n"
)


def msg(text: str = BASE) -> bytes:
    return text.encode()


def req(text: str = BASE) -> Request:
    message = parse_message(msg(text))
    assert isinstance(message, Request)
    return message


def reason_of(data: bytes) -> tuple[int, str]:
    with pytest.raises(ParseError) as info:
        parse_message(data)
    return info.value.status, info.value.reason


# --- parsing requests -------------------------------------------------------------------


def test_parse_request_accessors() -> None:
    r = req()
    assert r.method == "MESSAGE"
    assert r.uri == "sip:room@chat.example"
    assert r.call_id == "abc@10.0.0.1"
    assert r.cseq == (7, "MESSAGE")
    assert r.from_uri == "sip:alice@example.com;transport=udp"
    assert r.from_tag == "a1"
    assert r.to_tag is None
    assert r.to_uri == "sip:room@chat.example"
    assert r.content_type == "text/plain;charset=UTF-8"
    assert r.max_forwards == 69
    assert r.body == b"hello"
    via = r.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "10.0.0.1", 5070)
    assert via.branch == "z9hG4bK776"
    assert via.has_param("rport") and via.rport is None
    assert "Content-Length" not in r.headers  # framing, never stored


def test_compact_forms_are_expanded() -> None:
    text = (
        "MESSAGE sip:r@h SIP/2.0\r\n"
        "v: SIP/2.0/TCP h:5060;branch=z9hG4bK1\r\n"
        "f: <sip:a@h>;tag=1\r\nt: <sip:r@h>\r\ni: cid\r\nCSeq: 1 MESSAGE\r\n"
        "c: text/plain\r\nl: 2\r\nk: path\r\ns: hi\r\ne: gzip\r\no: x\r\nr: <sip:x@y>\r\n"
        "u: talk\r\nx: 90\r\ny: abc\r\nm: <sip:a@h>\r\n\r\nok"
    )
    r = req(text)
    names = [name for name, _ in r.headers]
    assert names == [
        "Via", "From", "To", "Call-ID", "CSeq", "Content-Type", "Supported", "Subject",
        "Content-Encoding", "Event", "Refer-To", "Allow-Events", "Session-Expires",
        "Identity", "Contact",
    ]  # fmt: skip
    assert r.headers.get("i") == r.headers.get("CALL-ID") == "cid"
    assert r.body == b"ok"


def test_header_names_case_insensitive_and_spelling_kept() -> None:
    r = req(BASE.replace("Call-ID:", "call-id:").replace("CSeq:", "CSEQ  :"))
    assert r.call_id == "abc@10.0.0.1"
    assert ("call-id", "abc@10.0.0.1") in list(r.headers)
    assert r.headers.get("CsEq") == "7 MESSAGE"


def test_folding_joins_continuation_lines() -> None:
    r = req(
        BASE.replace("Content-Type: text/plain;charset=UTF-8", "Subject: one\r\n  two\r\n\tthree")
    )
    assert r.headers.get("Subject") == "one two three"


def test_folding_on_first_header_is_an_error() -> None:
    bad = BASE.replace("\r\nVia:", "\r\n Via:", 1)
    assert reason_of(msg(bad)) == (400, "Malformed header folding")


def test_list_headers_split_but_not_inside_quotes_or_brackets() -> None:
    text = (
        BASE.replace(
            "Max-Forwards: 69\r\n",
            "Max-Forwards: 69\r\n"
            'Contact: "Smith, J" <sip:j@h;a=1,2>, <sip:k@h>\r\n'
            "Allow: MESSAGE,OPTIONS , INFO\r\n"
            "Supported: \r\n"
            "User-Agent: X, Y\r\n"
            "Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n",
        )
        .replace(
            "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport",
            'Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport;x="a,b", SIP/2.0/TCP p:5061',
        )
        .replace('From: "Alice"', 'From: "Doe, Alice"')
    )
    r = req(text)
    assert r.headers.get_all("Via") == [
        'SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport;x="a,b"',
        "SIP/2.0/TCP p:5061",
    ]
    assert r.headers.get_all("Contact") == ['"Smith, J" <sip:j@h;a=1,2>', "<sip:k@h>"]
    assert r.headers.get_all("Allow") == ["MESSAGE", "OPTIONS", "INFO"]
    assert r.headers.get_all("Supported") == [""]
    assert r.headers.get("User-Agent") == "X, Y"
    assert r.headers.get("Date") == "Sat, 13 Nov 2010 23:29:00 GMT"
    assert r.from_addr.display == '"Doe, Alice"'
    assert r.top_via.param("x") == '"a,b"'


def test_bare_lf_line_ends_tolerated() -> None:
    r = req(BASE.replace("\r\n", "\n"))
    assert r.call_id == "abc@10.0.0.1" and r.body == b"hello"


def test_leading_crlf_ignored() -> None:
    assert req("\r\n\r\n" + BASE).method == "MESSAGE"


# --- From/To forms ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "display", "uri", "tag"),
    [
        ('"Alice A." <sip:a@h;transport=tcp>;tag=x', '"Alice A."', "sip:a@h;transport=tcp", "x"),
        ("Alice <sip:alice@h>;tag=x", "Alice", "sip:alice@h", "x"),
        ("<sip:alice@h:5070>", None, "sip:alice@h:5070", None),
        ("sip:alice@h;tag=x", None, "sip:alice@h", "x"),
        ("sip:alice@h;transport=tcp;tag=x", None, "sip:alice@h", "x"),
        ('"quote \\" <x>" <sip:a@h> ; tag = y ', '"quote \\" <x>"', "sip:a@h", "y"),
        ("tel:+15551234;tag=9", None, "tel:+15551234", "9"),
    ],
)  # fmt: skip
def test_name_addr_forms(value: str, display: str | None, uri: str, tag: str | None) -> None:
    addr = parse_name_addr(value)
    assert (addr.display, addr.uri, addr.tag) == (display, uri, tag)


@pytest.mark.parametrize(
    "value", ["", "<sip:a@h", '"open <sip:a@h>', "<sip:a@h> junk", "nocolon", "<>", '"x" sip:a@h']
)
def test_name_addr_malformed(value: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr(value, "From")


def test_bare_from_params_are_header_params() -> None:
    r = req(
        BASE.replace('"Alice" <sip:alice@example.com;transport=udp>;tag=a1', "sip:alice@h;tag=a1")
    )
    assert r.from_uri == "sip:alice@h"
    assert r.from_tag == "a1"


# --- Via --------------------------------------------------------------------------------


def test_via_parse_and_format() -> None:
    via = parse_via(
        "SIP / 2.0 / udp  [2001:db8::1] : 5080 ; branch=z9hG4bKx ; rport=1;received=1.2.3.4"
    )
    assert via == Via(
        "UDP",
        "[2001:db8::1]",
        5080,
        (("branch", "z9hG4bKx"), ("rport", "1"), ("received", "1.2.3.4")),
    )
    assert via.rport == 1 and via.received == "1.2.3.4"
    assert str(via) == "SIP/2.0/UDP [2001:db8::1]:5080;branch=z9hG4bKx;rport=1;received=1.2.3.4"
    assert parse_via(str(via)) == via


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP",
        "SIP/3.0/UDP h",
        "SIP/2.0 UDP h",
        "SIP/2.0/UDP h:0",
        "SIP/2.0/UDP h:70000",
        "SIP/2.0/UDP h:x",
        "SIP/2.0/UDP bad$host",
        "SIP/2.0/UDP h;=x",
        "SIP/2.0/UDP [::1",
    ],
)
def test_via_malformed(value: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_via(value)
    assert info.value.reason == "Malformed Via"


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "status", "reason"),
    [
        (("Call-ID: abc@10.0.0.1\r\n", ""), 400, "Missing Call-ID"),
        (("Call-ID: abc@10.0.0.1", "Call-ID: "), 400, "Malformed Call-ID"),
        (("Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport\r\n", ""), 400, "Missing Via"),
        (("SIP/2.0/UDP 10.0.0.1:5070", "SIP/2.0/UDP 10.0.0.1:99999"), 400, "Malformed Via"),
        (("To: <sip:room@chat.example>\r\n", ""), 400, "Missing To"),
        (("To: <sip:room@chat.example>", "To: <sip:room"), 400, "Malformed To"),
        (('From: "Alice" <sip', 'From: "Alice <sip'), 400, "Malformed From"),
        (("CSeq: 7 MESSAGE\r\n", ""), 400, "Missing CSeq"),
        (("CSeq: 7 MESSAGE", "CSeq: seven MESSAGE"), 400, "Malformed CSeq"),
        (("CSeq: 7 MESSAGE", "CSeq: 4294967296 MESSAGE"), 400, "Malformed CSeq"),
        (("CSeq: 7 MESSAGE", "CSeq: 7 OPTIONS"), 400, "CSeq method mismatch"),
        (("Max-Forwards: 69", "Max-Forwards: 256"), 400, "Malformed Max-Forwards"),
        (("Max-Forwards: 69", "Max-Forwards: -1"), 400, "Malformed Max-Forwards"),
        (("Content-Length: 5", "Content-Length: 6"), 400, "Bad Content-Length"),
        (("Content-Length: 5", "Content-Length: five"), 400, "Bad Content-Length"),
        (("Content-Length: 5", "Content-Length: 5\r\nl: 4"), 400, "Bad Content-Length"),
        (("Content-Length: 5", "Content-Length: 2000000"), 513, "Message Too Large"),
        (("Content-Length: 5", "Content-Length: 99999999999999"), 513, "Message Too Large"),
        (("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"), 505, "Unsupported SIP version"),
        (("MESSAGE sip:room@chat.example SIP", "MESSAGE  SIP"), 400, "Malformed request line"),
        (("MESSAGE sip:room@chat.example", "MESSAGE nocolon"), 400, "Malformed Request-URI"),
        (("Max-Forwards: 69", "Max-Forwards 69"), 400, "Malformed header line"),
        (("Max-Forwards: 69", "Max Forwards: 69"), 400, "Malformed header line"),
        (("\r\n\r\nhello", "\r\nhello"), 400, "Missing end of headers"),
    ],
)
def test_validation_reasons(edit: tuple[str, str], status: int, reason: str) -> None:
    assert edit[0] in BASE
    assert reason_of(msg(BASE.replace(*edit))) == (status, reason)


def test_parse_error_keeps_request_headers_for_a_reply() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(msg(BASE.replace("CSeq: 7 MESSAGE", "CSeq: 7 OPTIONS")))
    assert info.value.method == "MESSAGE"
    assert info.value.headers is not None and info.value.headers.get("Call-ID") == "abc@10.0.0.1"


def test_empty_and_garbage() -> None:
    assert reason_of(b"") == (400, "Empty message")
    assert reason_of(b"\r\n\r\n") == (400, "Empty message")
    assert reason_of(b"\x00\xff\r\n\r\n")[0] == 400


@pytest.mark.parametrize(
    "edit", [("branch=z9hG4bK776", "branch=z9hG4b\x00K776"), ("Alice", "Al\x00ice")]
)
def test_a_nul_in_a_header_value_is_refused(edit: tuple[str, str]) -> None:
    # Found by the fuzz campaign (corpus/sip_request/crash-via-nul): the parser kept the
    # NUL, which Headers never hold, and rewriting the top Via (apply_received) raised
    # ValueError in the endpoint.  The fast scan leaves such a message to the parser.
    data = msg(BASE.replace(*edit))
    assert reason_of(data) == (400, "Malformed header line")
    assert scan_request(data) is None


def test_a_nul_in_the_request_uri_is_refused() -> None:
    # Found by the fuzz campaign (corpus/commands/crash-ruri-nul): imc echoes the
    # Request-URI as the From of its notices, NUL included.
    data = msg(BASE.replace("sip:room@chat.example SIP", "sip:room@chat.example;x=\x00 SIP"))
    assert reason_of(data) == (400, "Malformed Request-URI")
    assert scan_request(data) is None


@pytest.mark.parametrize(
    "to",
    [
        'sip:room@chat.example;x="y',
        '<sip:room@chat.example>;x="y',
        'sip:ro"om@chat.example',
        "<sip:room@chat.example>;tag",  # (corpus/sip_request/crash-to-tag-without-value)
        "<sip:room@chat.example>;tag=",
    ],
)
def test_a_stray_quote_in_to_is_refused(to: str) -> None:
    # Found by the fuzz campaign (corpus/sip_request/crash-to-*): the To was taken, and
    # the To-tag our reply added sat inside the open quote, or behind a `tag` without a
    # value that hid it, unreadable either way.
    data = msg(BASE.replace("To: <sip:room@chat.example>", f"To: {to}"))
    assert reason_of(data) == (400, "Malformed To")


def test_a_quoted_parameter_value_is_kept() -> None:
    to = req(BASE.replace("<sip:room@chat.example>", '<sip:room@chat.example>;x="a;b"')).to_addr
    assert to.params == (("x", '"a;b"'),)


def test_header_block_too_large() -> None:
    big = "X-Pad: " + "a" * MAX_HEAD_BYTES + "\r\n"
    assert reason_of(msg(BASE.replace("\r\n\r\n", "\r\n" + big + "\r\n"))) == (
        513,
        "Message Too Large",
    )
    assert reason_of(msg(BASE.split("\r\n\r\n")[0] + "\r\n" + big)) == (513, "Message Too Large")


def test_body_too_large_without_content_length() -> None:
    text = BASE.replace("Content-Length: 5\r\n", "")
    assert reason_of(msg(text) + b"x" * MAX_BODY_BYTES) == (513, "Message Too Large")


def test_udp_body_truncated_to_content_length() -> None:
    assert parse_message(msg(BASE) + b"trailing garbage").body == b"hello"


def test_absent_content_length_means_rest_of_datagram() -> None:
    r = req(BASE.replace("Content-Length: 5\r\n", ""))
    assert r.body == b"hello"


def test_body_bytes_exact() -> None:
    body = "héllo wörld ✓\r\n\r\nsecond".encode()
    data = (
        msg(BASE.replace("Content-Length: 5", f"Content-Length: {len(body)}").replace("hello", ""))
        + body
    )
    r = parse_message(data)
    assert r.body == body
    assert parse_message(r.to_bytes()) == r


def test_utf8_and_invalid_bytes_in_headers_round_trip() -> None:
    data = msg(BASE.replace('"Alice"', '"Ålice ✓"')).replace(b"\xc3\x85", b"\xc5")
    r = parse_message(data)
    assert r.to_bytes() == data


# --- responses --------------------------------------------------------------------------


def test_parse_response() -> None:
    data = (
        b"SIP/2.0 180 Ringing Now\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"From: <sip:a@h>;tag=1\r\n"
        b"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 10 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    )
    r = parse_message(data)
    assert isinstance(r, Response)
    assert (r.status, r.reason, r.to_tag, r.cseq) == (180, "Ringing Now", "2", (10, "MESSAGE"))
    assert r.to_bytes() == data


@pytest.mark.parametrize(
    "line", [b"SIP/2.0 99 X", b"SIP/2.0 700 X", b"SIP/2.0 2000 X", b"SIP/2.0 abc X", b"SIP/2.0"]
)
def test_bad_status_line(line: bytes) -> None:
    rest = b"\r\n" + RESPONSE_HEADERS
    assert reason_of(line + rest) == (400, "Malformed status line")


def test_response_missing_call_id_rejected() -> None:
    data = b"SIP/2.0 200 OK\r\n" + RESPONSE_HEADERS.replace(b"Call-ID: c\r\n", b"")
    assert reason_of(data) == (400, "Missing Call-ID")


def test_response_status_without_reason() -> None:
    data = b"SIP/2.0 200\r\n" + RESPONSE_HEADERS
    r = parse_message(data)
    assert isinstance(r, Response) and r.reason == ""


# --- serialization ----------------------------------------------------------------------


def test_to_bytes_writes_correct_content_length() -> None:
    r = Request(
        "MESSAGE",
        "sip:a@h",
        Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("Content-Length", "999")]),
        b"abc",
    )
    assert "Content-Length" not in r.headers
    assert r.to_bytes() == (
        b"MESSAGE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Content-Length: 3\r\n\r\nabc"
    )


def test_round_trip_of_parsed_message() -> None:
    r = req()
    assert parse_message(r.to_bytes()) == r


# --- Headers ----------------------------------------------------------------------------


def test_headers_api() -> None:
    h = Headers([("Via", "a"), ("v", "b"), ("Subject", "x")])
    assert list(h) == [("Via", "a"), ("Via", "b"), ("Subject", "x")]
    assert h.get_all("VIA") == ["a", "b"] and len(h) == 3
    assert "s" in h and "Route" not in h and 3 not in h
    h2 = h.with_first("via", "c")
    assert h2.get_all("Via") == ["c", "b"] and h.get_all("Via") == ["a", "b"]
    assert (
        h.without("v").get_all("Via") == [] and h.with_header("Route", "<r>").get("route") == "<r>"
    )
    assert h.with_first("Route", "<r>").get("Route") == "<r>"
    assert Headers([("via", "a")]) == Headers([("Via", "a")])
    assert hash(Headers([("via", "a")])) == hash(Headers([("Via", "a")]))
    assert h.get("Missing", "d") == "d"
    assert repr(Headers([("A", "b")])) == "Headers([('A', 'b')])"


@pytest.mark.parametrize(
    ("name", "value"), [("Bad Name", "x"), ("X", "a\r\nInjected: 1"), ("", "x")]
)
def test_headers_reject_injection(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Headers([(name, value)])


# --- responses to requests --------------------------------------------------------------


def reply(request: Request, status: int, reason: str, **kwargs: object) -> Response:
    response = parse_message(response_bytes(request, status, reason, **kwargs))  # type: ignore[arg-type]
    assert isinstance(response, Response)
    return response


def test_response_copies_headers_and_adds_to_tag() -> None:
    text = BASE.replace(
        "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport\r\n",
        "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport\r\n"
        "Via: SIP/2.0/TCP p;branch=z9hG4bKp\r\n",
    )
    r = req(text)
    resp = reply(r, 200, "OK", to_tag="tt", headers=[("Server", "me")])
    assert list(resp.headers) == [
        ("Via", "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport"),
        ("Via", "SIP/2.0/TCP p;branch=z9hG4bKp"),
        ("From", '"Alice" <sip:alice@example.com;transport=udp>;tag=a1'),
        ("To", "<sip:room@chat.example>;tag=tt"),
        ("Call-ID", "abc@10.0.0.1"),
        ("CSeq", "7 MESSAGE"),
        ("Server", "me"),
    ]
    assert resp.body == b""
    assert reply(r, 100, "Trying", to_tag="tt").to_tag is None


def test_response_keeps_existing_to_tag() -> None:
    r = req(BASE.replace("To: <sip:room@chat.example>", "To: <sip:room@chat.example>;tag=old"))
    assert reply(r, 200, "OK", to_tag="new").to_tag == "old"


# --- received / rport -------------------------------------------------------------------


def test_apply_received_with_rport() -> None:
    r = apply_received(req(), ("192.0.2.7", 40000))
    via = r.top_via
    assert via.received == "192.0.2.7" and via.rport == 40000
    assert (
        r.headers.get("Via")
        == "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport=40000;received=192.0.2.7"
    )
    assert response_address(via) == ("192.0.2.7", 40000)
    assert r.cseq == (7, "MESSAGE") and r.from_tag == "a1"


def test_apply_received_rport_added_even_when_host_matches() -> None:
    via = apply_received(req(), ("10.0.0.1", 5070)).top_via
    assert via.received == "10.0.0.1" and via.rport == 5070


def test_apply_received_without_rport() -> None:
    plain = BASE.replace(";rport", "")
    same = req(plain)
    assert apply_received(same, ("10.0.0.1", 6000)) is same
    assert response_address(same.top_via) == ("10.0.0.1", 5070)
    moved = apply_received(req(plain), ("192.0.2.7", 6000)).top_via
    assert moved.received == "192.0.2.7" and moved.rport is None
    assert response_address(moved) == ("192.0.2.7", 5070)


@pytest.mark.parametrize("rport", ["99999", "0", "1" * 5000])
def test_an_rport_that_is_no_port_is_ignored(rport: str) -> None:
    # Found by the fuzz campaign (corpus/sip_request/via_rport_*): the reply went to port
    # 99999 (OverflowError in the UDP transport's sendto) or int() raised on the digits.
    via = parse_via(f"SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport={rport}")
    assert via.rport is None
    assert response_address(via) == ("10.0.0.1", 5070)


def test_response_address_defaults() -> None:
    assert response_address(parse_via("SIP/2.0/UDP example.com")) == ("example.com", 5060)
    assert response_address(parse_via("SIP/2.0/UDP [::1]:5062")) == ("::1", 5062)
    ipv6 = apply_received(
        req(BASE.replace("10.0.0.1:5070", "[::1]:5070").replace(";rport", "")), ("::1", 9)
    )
    assert ipv6.top_via.received is None


def test_find_head_end() -> None:
    assert find_head_end(b"A\r\nB: c\r\n\r\nbody") == (7, 11)
    assert find_head_end(b"A\nB: c\n\nbody") == (6, 8)
    assert find_head_end(b"A\r\nB: c\r\n") == (-1, -1)
