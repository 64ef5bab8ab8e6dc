"""A cheaper reading of the messages a chat server lives on.

Chat texts arrive as MESSAGEs written the plain way (CRLF line ends, no folding,
`Name: value` lines), and every copy we send comes back as a `200 OK` whose only use is
to find its client transaction.  Parsing each one fully costs more than the rest of a
delivery, so the endpoint tries these scans first:

* `scan_request` finds the lines of a plain request with two regular expressions, then
  builds it with the parser's own `parse_headers` and `build_message`: whatever it
  returns is what `parse_message` returns.
* `scan_response` reads only what matching needs (status, reason, top Via branch, CSeq
  method) and checks everything `parse_message` would refuse.

Anything unusual (leading CRLFs, a bare CR or LF, folding, a space before a colon, a
comma in the Via line, a non-token name, an error anywhere) returns None: "not sure", and
the caller parses fully, which also gives the error to answer with.  Every pattern is
built from grammar.py; property tests hold both scans equal to the full parser.

Pure functions, no state.
"""

from __future__ import annotations

import re

from .errors import ParseError
from .grammar import (
    ASCII_SPACE_BYTES,
    COMPACT_FORMS,
    MAX_CSEQ,
    PLAIN_CSEQ_BYTES,
    TOKEN_BYTES,
    has_space,
    parse_cseq,
)
from .headers import parse_via
from .message import MAX_BODY_BYTES, MAX_HEAD_BYTES, ParseCache, Request
from .parse import build_message, content_length, parse_headers

__all__ = ["ScannedResponse", "scan_request", "scan_response"]

# (status, reason, top Via branch, CSeq method): a plain tuple, made for every response.
ScannedResponse = tuple[int, str, str | None, str]

# --- requests --------------------------------------------------------------------------

# Method, Request-URI (printable ASCII, so `split()` of the full parser agrees), version.
_REQUEST_LINE = re.compile(rb"(" + TOKEN_BYTES + rb") ([!-~]+) SIP/2\.0\r\n")
# A header line the full parser must read: not `token:` right after the line end.
_ODD_REQUEST_LINE = re.compile(rb"\n(?!" + TOKEN_BYTES + rb":)")
# Each header line of the head (every line ends in CRLF, checked first).
_HEADER_LINE = re.compile(r"([^:]*):([^\r]*)\r\n")

# --- responses -------------------------------------------------------------------------

_STATUS = re.compile(rb"SIP/2\.0 ([1-6][0-9][0-9]) ([^\r\n]*)\r\n")
# The headers matching needs, in their usual spelling.  Any other spelling of them (case,
# compact form) goes to the full parser, so the `find`s below never miss one.
_MATCHING = ("Via", "CSeq", "Call-ID", "From", "To", "Content-Length")
_MATCHING_SPELLINGS = b"|".join(
    re.escape(name.encode()).lower()
    for name in (*_MATCHING, *(s for s, full in COMPACT_FORMS.items() if full in _MATCHING))
)
# A header line that needs the full parser: one not `token:value`, or one of the
# matching headers spelled other than usual.  Looked at from their LF (bare LFs are
# refused before this runs).
_ODD_RESPONSE_LINE = re.compile(
    rb"\n(?!(?:" + b"|".join(re.escape(n.encode()) for n in _MATCHING) + rb"):)"
    rb"(?:(?i:" + _MATCHING_SPELLINGS + rb"):|(?!" + TOKEN_BYTES + rb":))"
)
# The Via we write (branch first), as answered with or without received/rport filled in.
_OUR_VIA = re.compile(
    rb"SIP/2\.0/[A-Z]{3} [0-9.]+(?::([0-9]{1,5}))?;branch=(" + TOKEN_BYTES + rb")"
    rb"(?:;[a-z]+(?:=[A-Za-z0-9.]+)?)*"
)
_PLAIN_CSEQ = re.compile(PLAIN_CSEQ_BYTES)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _plain_head(data: bytes, start_line: re.Match[bytes], odd: re.Pattern[bytes]) -> int:
    """Where the plainly written head after `start_line` ends: the index of the last
    header line's CRLF; -1 when the head is too long, has a bare CR or LF, a NUL after
    the start line, or a line `odd` finds (the full parser decides about those)."""
    first = start_line.end() - 2  # the start line's CRLF: each header line follows a CRLF
    end = data.find(b"\r\n\r\n", first)  # the last CRLF and the empty line
    if end <= first or end > MAX_HEAD_BYTES:
        return -1
    crlf = data.count(b"\r\n", 0, end)
    if data.count(b"\r", 0, end) != crlf or data.count(b"\n", 0, end) != crlf:
        return -1
    if data.find(b"\x00", first, end) >= 0:  # a NUL in a header: the parser refuses it
        return -1
    if odd.search(data, first, end) is not None:
        return -1
    return end


def scan_request(data: bytes, cache: ParseCache | None = None) -> Request | None:
    """`parse_message(data)` for a plainly written request, or None to parse it fully.

    None says nothing either way: the request may still be valid, or not.
    """
    line = _REQUEST_LINE.match(data)
    if line is None:
        return None
    end = _plain_head(data, line, _ODD_REQUEST_LINE)
    if end < 0:
        return None
    method, uri = line.groups()
    if uri[:1] == b":" or b":" not in uri:
        return None
    head = data[line.end() : end + 2].decode("utf-8", "surrogateescape")
    try:
        headers, lengths = parse_headers(_HEADER_LINE.findall(head), cache)
        message = build_message(
            data, end + 4, method.decode(), uri.decode(), 0, "", headers, lengths, cache
        )
    except ParseError:
        return None
    assert isinstance(message, Request)
    return message


def scan_response(data: bytes) -> ScannedResponse | None:
    """The matching fields of a plainly written response, or None to parse it fully.

    A result is exactly what `parse_message(data)` would give (status, reason, top Via
    branch, CSeq method); None says nothing either way.
    """
    status = _STATUS.match(data)
    if status is None:
        return None
    end = _plain_head(data, status, _ODD_RESPONSE_LINE)
    if end < 0:
        return None
    first = status.end() - 2
    at_via = data.find(b"\r\nVia:", first, end)
    at_cseq = data.find(b"\r\nCSeq:", first, end)
    at_call = data.find(b"\r\nCall-ID:", first, end)
    if at_via < 0 or at_cseq < 0 or at_call < 0:
        return None
    if data.find(b"\r\nFrom:", first, end) < 0 or data.find(b"\r\nTo:", first, end) < 0:
        return None
    via = data[at_via + 6 : data.find(b"\r\n", at_via + 6)].strip(b" \t")
    cseq = data[at_cseq + 7 : data.find(b"\r\n", at_cseq + 7)].strip(b" \t")
    call_id = data[at_call + 10 : data.find(b"\r\n", at_call + 10)].strip(b" \t")
    if b"," in via or not via:
        return None  # several Via values on one line: leave it to the parser
    at_length = data.find(b"\r\nContent-Length:", first, end)
    try:
        branch = _branch(via)
        method = _cseq_method(cseq)
        body_size = len(data) - end - 4
        if at_length < 0:
            if body_size > MAX_BODY_BYTES:
                return None
        else:
            at_length += 17
            if data.find(b"\r\nContent-Length:", at_length, end) >= 0:
                return None  # several: left to the parser
            length = data[at_length : data.find(b"\r\n", at_length)].strip(b" \t")
            if length != b"0" and body_size < content_length([_text(length)]):
                return None
    except ParseError:
        return None
    if not call_id:
        return None
    if not call_id.isascii() or len(call_id.translate(None, ASCII_SPACE_BYTES)) != len(call_id):
        call = _text(call_id)
        if not call or has_space(call):
            return None
    code, reason = status.groups()
    return int(code), _text(reason), branch, method


def _branch(via: bytes) -> str | None:
    """The branch of one Via value; ParseError when `parse_via` would refuse it."""
    plain = _OUR_VIA.fullmatch(via)
    if plain is None:
        return parse_via(_text(via)).branch
    port = plain.group(1)
    if port is not None and not 0 < int(port) < 65536:
        raise ParseError("Malformed Via")
    return plain.group(2).decode("ascii")


def _cseq_method(cseq: bytes) -> str:
    if cseq == b"10 MESSAGE":  # what we send
        return "MESSAGE"
    plain = _PLAIN_CSEQ.fullmatch(cseq)
    if plain is None or int(plain.group(1)) >= MAX_CSEQ:
        return parse_cseq(_text(cseq))[1]
    return plain.group(2).decode("ascii")
