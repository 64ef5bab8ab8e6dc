"""A cheap reading of the responses that dominate a chat server's input.

Every chat copy we send comes back as a `200 OK` whose only use is to find its client
transaction: the top Via branch, the CSeq method, the status and the reason.  Parsing
each one fully (every header split, decoded and validated) costs more than the rest of a
delivery.  `scan_response` reads just those fields from a response written in the
plain form every user agent uses (CRLF line ends, no folding, one header a line) and
checks everything `parse_message` would refuse, so it never accepts what the full
parser rejects and never disagrees with it on the fields.  Anything unusual (a bare LF,
folding, a comma in the Via line, leading CRLFs, a space before a colon) returns None:
"not sure", and the caller parses fully.

Pure functions, no state.
"""

from __future__ import annotations

import re

from .errors import ParseError
from .headers import _has_space, _parse_cseq, parse_via
from .message import MAX_BODY_BYTES, MAX_HEAD_BYTES, _content_length

__all__ = ["ScannedResponse", "scan_response"]

_TOKEN = rb"[A-Za-z0-9\-.!%*_+`'~]+"  # RFC 3261 token, as the full parser checks names
_STATUS = re.compile(rb"SIP/2\.0 ([1-6][0-9][0-9]) ([^\r\n]*)\r\n")
# A header line that needs the full parser: one not `token:value` (folding, a space
# before the colon, ...) or one of the header names that matter spelled other than
# usual (case, compact form).  Lines are looked at from their LF (bare LFs are refused
# before this runs).
_ODD_LINE = re.compile(
    rb"\n(?!(?:Via|CSeq|Call-ID|From|To|Content-Length):)"
    rb"(?:(?i:via|v|cseq|call-id|i|from|f|to|t|content-length|l):|(?!" + _TOKEN + rb":))"
)
# The Via we write (branch first), as answered with or without received/rport filled in.
_PLAIN_VIA = re.compile(
    rb"SIP/2\.0/[A-Z]{3} [0-9.]+(?::([0-9]{1,5}))?;branch=(" + _TOKEN + rb")"
    rb"(?:;[a-z]+(?:=[A-Za-z0-9.]+)?)*"
)
_PLAIN_CSEQ = re.compile(rb"([0-9]{1,10}) (" + _TOKEN + rb")")
# Bytes that are whitespace to the \s of the full parser (its ASCII part).
_SPACES = b" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


# (status, reason, top Via branch, CSeq method): a plain tuple, made for every response.
ScannedResponse = tuple[int, str, str | None, str]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def plain_head_end(data: bytes, first: int) -> int | None:
    """Where the head that starts line by line at `first` (a CRLF) ends: the index of the
    last header line's CRLF; None when it is too long or has a bare CR or LF (the full
    parser decides about those)."""
    end = data.find(b"\r\n\r\n", first)  # the last CRLF and the empty line
    if end <= first or end > MAX_HEAD_BYTES:
        return None
    crlf = data.count(b"\r\n", 0, end)
    if data.count(b"\r", 0, end) != crlf or data.count(b"\n", 0, end) != crlf:
        return None
    return end


def scan_response(data: bytes) -> ScannedResponse | None:
    """The matching fields of a plainly written response, or None to parse it fully.

    A result is exactly what `parse_message(data)` would give (status, reason, top Via
    branch, CSeq method); None says nothing either way.
    """
    status = _STATUS.match(data)
    if status is None:
        return None
    first = status.end() - 2  # the status line's CRLF: each header line follows a CRLF
    end = plain_head_end(data, first)
    # No folding, every line `token:value`, and the headers that matter spelled the
    # usual way.
    if end is None or _ODD_LINE.search(data, first, end) is not None:
        return None
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
            if length != b"0" and body_size < _content_length([_text(length)]):
                return None
    except ParseError:
        return None
    if not call_id:
        return None
    if not call_id.isascii() or len(call_id.translate(None, _SPACES)) != len(call_id):
        call = _text(call_id)
        if not call or _has_space(call):
            return None
    code, reason = status.groups()
    return int(code), _text(reason), branch, method


def _branch(via: bytes) -> str | None:
    """The branch of one Via value; ParseError when `parse_via` would refuse it."""
    plain = _PLAIN_VIA.fullmatch(via)
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
    if plain is None or int(plain.group(1)) >= 2**31:
        return _parse_cseq(_text(cseq))[1]
    return plain.group(2).decode("ascii")
