"""Property tests: the parser only ever raises ParseError, and serialization round-trips."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imc_sidecar.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from imc_sidecar.sip.framing import StreamFramer
from imc_sidecar.sip.headers import Headers, parse_name_addr, parse_via
from imc_sidecar.sip.ids import IdSource
from imc_sidecar.sip.message import ParseError, Request, Response
from imc_sidecar.sip.parse import parse_message
from imc_sidecar.sip.replies import response_bytes

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Tests that build whole messages cost more per example.
SLOW = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
HOST = st.lists(LABEL, min_size=1, max_size=3).map(".".join) | st.sampled_from(
    ["192.0.2.1", "[2001:db8::1]", "example.com"]
)
PORT = st.none() | st.integers(1, 65535)
# Header values: any text but line breaks, NUL and surrogates, without edge whitespace.
VALUE = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x00"), max_size=40
).map(lambda v: v.strip(" \t"))
# Extra headers whose names the parser treats as plain, single values.
EXTRA_NAME = st.sampled_from(
    ["Subject", "User-Agent", "Date", "Content-Type", "X-Thing"]
) | TOKEN.map(lambda t: "X-" + t)


@st.composite
def hostport(draw: st.DrawFn) -> str:
    port = draw(PORT)
    host = draw(HOST)
    return host if port is None else f"{host}:{port}"


@st.composite
def via(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP"]))
    rport = draw(st.sampled_from(["", ";rport", ";rport=5060;received=192.0.2.1"]))
    return f"SIP/2.0/{transport} {draw(hostport())};branch=z9hG4bK{draw(TOKEN)}{rport}"


@st.composite
def address(draw: st.DrawFn, tag: bool) -> str:
    uri = f"sip:{draw(TOKEN)}@{draw(hostport())}"
    display = draw(
        st.none()
        | st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'))
    )
    text = f"<{uri}>" if display is None else f'"{display}" <{uri}>'
    return text + (f";tag={draw(TOKEN)}" if tag else "")


@st.composite
def common_headers(draw: st.DrawFn, method: str) -> list[tuple[str, str]]:
    headers = [("Via", draw(via())) for _ in range(draw(st.integers(1, 3)))]
    headers += [
        ("From", draw(address(tag=True))),
        ("To", draw(address(tag=draw(st.booleans())))),
        ("Call-ID", draw(TOKEN) + "@" + draw(HOST)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    if draw(st.booleans()):
        headers.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    extras = draw(st.lists(st.tuples(EXTRA_NAME, VALUE), max_size=5))
    return draw(st.permutations(headers + extras))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(["MESSAGE", "OPTIONS", "INFO"]) | TOKEN)
    uri = f"sip:{draw(TOKEN)}@{draw(hostport())}"
    headers = Headers(draw(common_headers(method)))
    return Request(method, uri, headers, draw(st.binary(max_size=200)))


@st.composite
def responses(draw: st.DrawFn) -> Response:
    status = draw(st.integers(100, 699))
    reason = draw(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n")))
    headers = Headers(draw(common_headers(draw(TOKEN))))
    return Response(status, reason, headers, draw(st.binary(max_size=200)))


messages = requests() | responses()


@SLOW
@given(message=messages)
def test_round_trip(message: Request | Response) -> None:
    data = message.to_bytes()
    parsed = parse_message(data)
    assert parsed == message
    assert parsed.to_bytes() == data


@FAST
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    try:
        parse_message(data)
    except ParseError as exc:
        assert exc.status in (400, 505, 513) and exc.reason


@FAST
@given(
    prefix=st.sampled_from([b"MESSAGE sip:a@b SIP/2.0\r\n", b"SIP/2.0 200 OK\r\n"]),
    rest=st.binary(),
)
def test_start_line_then_garbage(prefix: bytes, rest: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_message(prefix + rest)


mutation = st.tuples(
    st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]),
    st.integers(0, 10_000),
    st.integers(0, 40),
    st.binary(min_size=1, max_size=8)
    | st.sampled_from([b"\r\n", b"\r\n\r\n", b":", b";", b",", b"<", b">", b'"', b" ", b"\n "]),
)


def mutate(data: bytes, mutations: list[tuple[str, int, int, bytes]]) -> bytes:
    for kind, pos, length, chunk in mutations:
        pos = pos % (len(data) + 1)
        if kind == "delete":
            data = data[:pos] + data[pos + length :]
        elif kind == "insert":
            data = data[:pos] + chunk + data[pos:]
        elif kind == "replace":
            data = data[:pos] + chunk + data[pos + len(chunk) :]
        elif kind == "duplicate":
            data = data[:pos] + data[pos : pos + length] + data[pos:]
        else:
            data = data[:pos]
    return data


@SLOW
@given(message=messages, mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_messages_raise_only_parse_error(
    message: Request | Response, mutations: list[tuple[str, int, int, bytes]]
) -> None:
    data = mutate(message.to_bytes(), mutations)
    try:
        parsed = parse_message(data)
    except ParseError as exc:
        assert exc.reason
        return
    # Whatever parses serializes, and that parses to the same thing.
    assert parse_message(parsed.to_bytes()) == parsed


@SLOW
@given(message=messages, mutations=st.lists(mutation, max_size=3), tcp=st.booleans())
def test_endpoint_survives_anything(
    message: Request | Response, mutations: list[tuple[str, int, int, bytes]], tcp: bool
) -> None:
    ep = SipEndpoint(EndpointConfig(via_address={"udp": ("10.0.0.9", 5060)}), IdSource("p"))
    peer = Peer("tcp" if tcp else "udp", ("192.0.2.1", 5060))
    data = mutate(message.to_bytes(), mutations)
    for event in ep.receive(data, peer, 0.0):
        ep.reply(event.handle, 200, "OK", 0.0)  # type: ignore[union-attr]
    for transmit in ep.transmits():
        assert transmit.data.startswith(b"SIP/2.0 ")
    ep.receive(data, peer, 0.1)  # a retransmission
    ep.handle_timer(100.0)


@FAST
@given(text=st.text(max_size=80))
def test_header_grammars_raise_only_parse_error(text: str) -> None:
    for parse in (parse_via, parse_name_addr):
        with contextlib.suppress(ParseError):
            parse(text)


@SLOW
@given(
    items=st.lists(st.sampled_from(["msg", "ping", "crlf"]), max_size=8),
    cuts=st.lists(st.integers(0, 5000), max_size=10),
    batch=st.lists(requests(), min_size=1, max_size=2),
)
def test_framer_any_chunking(items: list[str], cuts: list[int], batch: list[Request]) -> None:
    stream = b""
    expected: list[bytes] = []
    pings = 0
    for i, item in enumerate(items):
        if item == "msg":
            data = batch[i % len(batch)].to_bytes()
            stream += data
            expected.append(data)
        elif item == "ping":
            stream += b"\r\n\r\n"
            pings += 1
        elif items[i + 1 : i + 2] == ["msg"]:
            # A lone CRLF is only unambiguous right before a message: next to other
            # CRLFs it would pair up into a ping.
            stream += b"\r\n"
    framer = StreamFramer()
    got: list[bytes] = []
    pongs = 0
    start = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        out, owed = framer.feed(stream[start:cut])
        got += out
        pongs += owed
        start = cut
    assert got == expected
    assert pongs == pings


@FAST
@given(chunks=st.lists(st.binary(max_size=200), max_size=10))
def test_framer_arbitrary_bytes_raise_only_parse_error(chunks: list[bytes]) -> None:
    framer = StreamFramer()
    try:
        for chunk in chunks:
            messages, _ = framer.feed(chunk)
            for message in messages:
                with contextlib.suppress(ParseError):
                    parse_message(message)
    except ParseError:
        pass


@SLOW
@given(
    request=requests(),
    status=st.sampled_from([100, 180, 200, 404, 503]),
    reason=st.sampled_from(["OK", "Service Unavailable", "x y"]),
    extra=st.lists(
        st.sampled_from([("Server", "imc-sidecar"), ("Retry-After", "1"), ("Allow", "MESSAGE"),
                         ("l", "9"), ("Content-Length", "7")]),
        max_size=3,
    ),
    parsed=st.booleans(),
)
def test_response_bytes_follow_rfc3261_8_2_6(
    request: Request, status: int, reason: str, extra: list[tuple[str, str]], parsed: bool
) -> None:
    if parsed:  # as the endpoint has it: parsed, so its first To is known already
        reparsed = parse_message(request.to_bytes())
        assert isinstance(reparsed, Request)
        request = reparsed
    # RFC 3261 §8.2.6, written out: every Via, the first From, To, Call-ID and CSeq, a
    # To-tag above 100 when the To has none (or cannot be read), then the extra headers;
    # Content-Length is framing.
    copied: list[tuple[str, str]] = [("Via", via) for via in request.headers.get_all("Via")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "To" and status > 100:
            try:
                tagged = parse_name_addr(value, "To").tag is not None
            except ParseError:
                tagged = True
            value = value if tagged else f"{value};tag=tt"
        copied.append((name, value))
    copied += [(n, v) for n, v in extra if n.lower() not in ("l", "content-length")]
    data = response_bytes(request, status, reason, to_tag="tt", headers=extra)
    assert parse_message(data) == Response(status, reason, Headers(copied))  # names any case
