"""The fast response scan agrees with the full parser on everything it accepts."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sip_agreement import check_response_scan

from imc_sidecar.sip.message import Response
from imc_sidecar.sip.parse import parse_message
from imc_sidecar.sip.scan import scan_response

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
junk = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20
) | st.sampled_from(["", " ", "\t", "a b", "\x85", "\xa0", ",", ";", "\x1c", "é"])

hosts = st.sampled_from(["127.0.0.1", "10.0.0.9", "example.com", "[::1]", "h_1", "a..b"])
ports = st.sampled_from(["", ":5060", ":0", ":65535", ":65536", ":99999", ":05090", ": 5060"])
params = st.lists(
    st.tuples(
        st.sampled_from(["branch", "BRANCH", "rport", "received", "x", "", " branch"]),
        st.sampled_from([None, "", "z9hG4bKa1", "z9hG4bK-b2", "1.2.3.4", "5090", "a b", '"q"']),
    ),
    max_size=4,
)


@st.composite
def via_values(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(junk)
    transport = draw(st.sampled_from(["UDP", "TCP", "udp", "U D P", "X"]))
    version = draw(st.sampled_from(["SIP/2.0/", "SIP/2.0/", "SIP/2.1/", "sip/2.0/", "SIP / 2.0 /"]))
    head = f"{version}{transport} {draw(hosts)}{draw(ports)}"
    tail = "".join(f";{n}" if v is None else f";{n}={v}" for n, v in draw(params))
    extra = draw(st.sampled_from(["", "", ",SIP/2.0/UDP other:5060", " ", "\t"]))
    return head + tail + extra


cseq_values = st.sampled_from(
    ["10 MESSAGE", "1 OPTIONS", "10  MESSAGE", "x MESSAGE", "2147483648 MESSAGE",
     "2147483647 MESSAGE", "10", "10 MESSAGE extra", "010 MESSAGE", " 10 MESSAGE", "10 M@"]
) | st.builds(lambda n, m: f"{n} {m}", st.integers(0, 2**32), tokens)
call_ids = tokens | junk | st.sampled_from(["a@b", "c d", "x\x85y", "x\xa0", "z\x1f"])
lengths = st.sampled_from(["0", "00", "1", "5", "999999999", "1048577", "x", "", " 0", "-1"])

NAMES = {
    "via": ["Via", "Via", "v", "VIA", "via"],
    "cseq": ["CSeq", "CSeq", "cseq", "CSEQ"],
    "from": ["From", "From", "f", "FROM"],
    "to": ["To", "To", "t", "TO"],
    "call-id": ["Call-ID", "Call-ID", "i", "call-id", "Call-Id"],
    "content-length": ["Content-Length", "Content-Length", "l", "content-length"],
    "other": ["Server", "X-A", "User-Agent", "Bad Name", " Via", "Via ", "", "@x"],
}
VALUES = {
    "via": via_values(),
    "cseq": cseq_values,
    "from": st.sampled_from(["<sip:r@c>;tag=1", "", "junk"]),
    "to": st.sampled_from(["<sip:a@h>", "<sip:a@h>;tag=2", ""]),
    "call-id": call_ids,
    "content-length": lengths,
    "other": junk,
}


def _maybe(draw: st.DrawFn, usual: str, odd: st.SearchStrategy[str], chance: int = 8) -> str:
    """Mostly the usual spelling or value, now and then an odd one."""
    return draw(odd) if draw(st.integers(0, chance - 1)) == 0 else usual


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """Near-valid answers: the usual shape with now and then something odd in it."""
    status = _maybe(draw, "200", st.sampled_from(["100", "486", "699", "700", "099", "2000"]))
    reason = _maybe(draw, "OK", st.sampled_from(["", "Not Found", "x  y", "é", "\x00"]))
    start = _maybe(draw, "SIP/2.0 ", st.sampled_from(["sip/2.0 ", "SIP/2.1 ", "SIP/2.0  "]))
    first = f"{start}{status} {reason}" if draw(st.integers(0, 9)) else f"{start}{status}"
    usual = {
        "via": "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKab-1;rport",
        "cseq": "10 MESSAGE",
        "from": "<sip:r@c>;tag=ab-2",
        "to": "<sip:a@h>",
        "call-id": "ab-3@10.0.0.9",
        "content-length": "0",
        "other": "x",
    }
    kinds = list(draw(st.permutations(["via", "cseq", "from", "to", "call-id"])))
    kinds += draw(st.lists(st.sampled_from(list(NAMES)), max_size=3))
    if draw(st.integers(0, 5)) == 0:
        del kinds[draw(st.integers(0, len(kinds) - 1))]
    lines = [first]
    for kind in kinds:
        name = _maybe(draw, NAMES[kind][0], st.sampled_from(NAMES[kind]))
        colon = _maybe(draw, ": ", st.sampled_from([":", " : ", ":\t", ":  "]))
        value = _maybe(draw, usual[kind], VALUES[kind], 3)
        lines.append(f"{name}{colon}{value}")
    eol = _maybe(draw, "\r\n", st.sampled_from(["\n", "\r"]), 30)
    head = eol.join(lines)
    if draw(st.integers(0, 30)) == 0:
        head = head.replace("\r\n", "\n", 1)
    if draw(st.integers(0, 30)) == 0:
        head = head.replace("\r\n", "\r\n ", 1)  # folding
    lead = _maybe(draw, "", st.just("\r\n"), 30)
    body = draw(st.binary(max_size=8))
    data = (lead + head + eol + eol).encode("utf-8", "surrogateescape") + body
    if draw(st.integers(0, 9)) == 0:  # and now and then a random edit
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=3)) + data[at + draw(st.integers(0, 3)) :]
    return data


@settings(max_examples=3000, deadline=None)
@given(data=responses())
@example(
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKt-1;rport=5060;"
    b"received=1.2.3.4\r\nTo: <sip:a@h>;tag=x\r\nFrom: <sip:r@c>;tag=t-2\r\n"
    b"Call-ID: t-3@10.0.0.9\r\nCSeq: 10 MESSAGE\r\nContent-Length: 0\r\n\r\n"
)
@example(  # found by this test: an empty Call-ID
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKab-1;rport\r\n"
    b"Call-ID: \r\nFrom: <sip:r@c>;tag=ab-2\r\nTo: <sip:a@h>\r\nCSeq: 10 MESSAGE\r\n\r\n"
)
def test_scan_agrees_with_the_parser(data: bytes) -> None:
    check_response_scan(data)


@st.composite
def plain_responses(draw: st.DrawFn) -> tuple[bytes, str]:
    """Answers as user agents write them: any header order, extra headers, rport."""
    branch = "z9hG4bK" + draw(tokens)
    via = f"SIP/2.0/UDP 10.0.0.9:5060;branch={branch}" + draw(
        st.sampled_from(["", ";rport", ";rport=5090;received=127.0.0.1"])
    )
    headers = [
        f"Via: {via}",
        "From: <sip:room@chat>;tag=ab-2",
        "To: <sip:u@127.77.0.1>" + draw(st.sampled_from(["", ";tag=9"])),
        "Call-ID: " + draw(tokens) + "@10.0.0.9",
        "CSeq: 10 MESSAGE",
        *draw(st.lists(st.sampled_from(["Server: x", "User-Agent: y", "Allow: MESSAGE"]))),
    ]
    order = draw(st.permutations(headers))
    length = draw(st.sampled_from([[], ["Content-Length: 0"]]))
    status = draw(st.sampled_from(["200 OK", "202 Accepted", "404 Not Found", "100 Trying"]))
    return ("\r\n".join([f"SIP/2.0 {status}", *order, *length]) + "\r\n\r\n").encode(), branch


@settings(max_examples=500, deadline=None)
@given(case=plain_responses())
def test_scan_takes_the_usual_answers(case: tuple[bytes, str]) -> None:
    data, branch = case
    scanned = scan_response(data)
    assert scanned is not None and scanned[2] == branch and scanned[3] == "MESSAGE"
    message = parse_message(data)
    assert isinstance(message, Response) and message.status == scanned[0]
