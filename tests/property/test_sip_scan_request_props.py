"""The cheap request parse and the plain-form readers agree with the general rules."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sip_agreement import check_request_scan
from test_sip_scan_response_props import NAMES, VALUES, _maybe, junk, tokens, via_values

from imc_sidecar.sip.errors import ParseError
from imc_sidecar.sip.headers import (
    NameAddr,
    Via,
    _parse_name_addr_full,
    _parse_via_full,
    parse_name_addr,
    parse_via,
)
from imc_sidecar.sip.parse import parse_message
from imc_sidecar.sip.scan import scan_request

display_names = st.sampled_from(
    ["", '"Alice" ', '"A b" ', '""', '"x<y>" ', "sipp ", "John Doe ", "a  b ", '"q\\"" ', "é "]
)
uris = st.sampled_from(
    ["sip:a@h", "sip:r@c;lr", "sip:u@127.0.0.1:5070", ":x", "x", "sip:a b", "sips:x@[::1]", ""]
)
name_params = st.lists(
    st.tuples(
        st.sampled_from(["tag", "TAG", "x", "", " tag"]),
        st.sampled_from([None, "", "ab-1", "1234SIPpTag001", "a b", '"q"', "a=b", "[::1]"]),
    ),
    max_size=3,
)


@st.composite
def name_addr_values(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(junk)
    tail = "".join(f";{n}" if v is None else f";{n}={v}" for n, v in draw(name_params))
    uri = draw(uris)
    if draw(st.integers(0, 5)) == 0:
        return uri + tail  # the bare form
    space = draw(st.sampled_from(["", "", " "]))
    return f"{space}{draw(display_names)}<{uri}>{tail}"


def _outcome(parse: object, value: str) -> Via | NameAddr | str:
    try:
        return parse(value)  # type: ignore[operator, no-any-return]
    except ParseError as exc:
        return f"{exc.status} {exc.reason}"


@settings(max_examples=2000, deadline=None)
@given(value=via_values())
@example("SIP/2.0/UDP [::1]:5060;received=::1;rport=5")
@example("SIP/2.0/UDP h:0;branch=x")
def test_parse_via_as_the_general_rules(value: str) -> None:
    assert _outcome(parse_via, value) == _outcome(_parse_via_full, value)


@settings(max_examples=2000, deadline=None)
@given(value=name_addr_values())
@example('"x<y>" <sip:a@h>;tag=1')
@example("a b<sip:c>")
def test_parse_name_addr_as_the_general_rules(value: str) -> None:
    assert _outcome(parse_name_addr, value) == _outcome(
        lambda v: _parse_name_addr_full(v, "address"), value
    )


REQUEST_NAMES = {
    **NAMES,
    "max-forwards": ["Max-Forwards", "max-forwards", "Max-Forwards "],
    "content-type": ["Content-Type", "c"],
    "record-route": ["Record-Route"],
}
REQUEST_VALUES = {
    **VALUES,
    "from": name_addr_values(),
    "to": name_addr_values(),
    "cseq": VALUES["cseq"] | st.sampled_from(["1 MESSAGE", "1 OPTIONS"]),
    "max-forwards": st.sampled_from(["70", "0", "256", "x", "", "007"]),
    "content-type": st.sampled_from(["text/plain", ""]),
    "record-route": st.sampled_from(["<sip:a;lr>", "<sip:a;lr>, <sip:b;lr>", "<sip:a,b>"]),
}


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Near-valid requests: the usual shape with now and then something odd in it."""
    method = _maybe(draw, "MESSAGE", st.sampled_from(["OPTIONS", "message", "ME SSAGE", "@"]))
    uri = _maybe(draw, "sip:room@chat", st.sampled_from([":x", "x", "sip:é@h", "sip:a\x85b"]))
    version = _maybe(draw, " SIP/2.0", st.sampled_from([" sip/2.0", " SIP/2.1", "  SIP/2.0"]))
    usual = {
        "via": "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKab-1",
        "cseq": "1 MESSAGE",
        "from": "sipp <sip:u@10.0.0.9:5070>;tag=ab-2",
        "to": "<sip:room@chat>",
        "call-id": "ab-3@10.0.0.9",
        "content-length": "3",
        "max-forwards": "70",
        "content-type": "text/plain",
        "record-route": "<sip:10.0.0.1;lr>",
        "other": "x",
    }
    kinds = list(draw(st.permutations(["via", "cseq", "from", "to", "call-id"])))
    kinds += draw(st.lists(st.sampled_from(list(REQUEST_NAMES)), max_size=4))
    if draw(st.integers(0, 5)) == 0:
        del kinds[draw(st.integers(0, len(kinds) - 1))]
    lines = [f"{method} {uri}{version}"]
    for kind in kinds:
        name = _maybe(draw, REQUEST_NAMES[kind][0], st.sampled_from(REQUEST_NAMES[kind]))
        colon = _maybe(draw, ": ", st.sampled_from([":", " : ", ":\t", ":  "]))
        value = _maybe(draw, usual[kind], REQUEST_VALUES[kind], 3)
        trail = _maybe(draw, "", st.sampled_from([" ", "\t"]), 10)
        lines.append(f"{name}{colon}{value}{trail}")
    eol = _maybe(draw, "\r\n", st.sampled_from(["\n", "\r"]), 30)
    head = eol.join(lines)
    if draw(st.integers(0, 30)) == 0:
        head = head.replace("\r\n", "\n", 1)
    if draw(st.integers(0, 30)) == 0:
        head = head.replace("\r\n", "\r\n ", 1)  # folding
    lead = _maybe(draw, "", st.just("\r\n"), 30)
    body = draw(st.binary(max_size=8) | st.just(b"abc"))
    data = (lead + head + eol + eol).encode("utf-8", "surrogateescape") + body
    if draw(st.integers(0, 9)) == 0:  # and now and then a random edit
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=3)) + data[at + draw(st.integers(0, 3)) :]
    return data


@settings(max_examples=3000, deadline=None)
@given(data=requests())
@example(
    b"MESSAGE sip:room@chat SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.9:5070;rport=5070;received=10.0.0.9;branch=z9hG4bKb\r\n"
    b"Record-Route: <sip:10.0.0.1;lr>, <sip:10.0.0.2;lr>\r\nMax-Forwards: 69\r\n"
    b"From: sipp <sip:u@10.0.0.9:5070>;tag=1\r\nTo: <sip:room@chat>\r\nCall-ID: c@h\r\n"
    b"CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabcdef"
)
def test_scan_request_agrees_with_the_parser(data: bytes) -> None:
    check_request_scan(data)


@settings(max_examples=300, deadline=None)
@given(
    via=st.sampled_from(["SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK1;rport", "SIP/2.0/TCP h"]),
    tag=tokens,
    extra=st.lists(st.sampled_from(["Max-Forwards: 70", "Record-Route: <sip:p;lr>"])),
)
def test_scan_request_takes_the_usual_requests(via: str, tag: str, extra: list[str]) -> None:
    data = (
        "\r\n".join(
            [
                "MESSAGE sip:room@chat SIP/2.0",
                f"Via: {via}",
                *extra,
                f"From: <sip:u@h>;tag={tag}",
                "To: <sip:room@chat>",
                "Call-ID: x@h",
                "CSeq: 1 MESSAGE",
                "Content-Length: 2",
            ]
        )
        + "\r\n\r\nhi"
    ).encode()
    assert scan_request(data) == parse_message(data)
