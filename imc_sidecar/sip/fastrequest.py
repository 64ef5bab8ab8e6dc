"""A cheaper parse of the requests a chat server lives on.

Every chat text arrives as a MESSAGE written the plain way (CRLF line ends, no folding,
`Name: value` lines), usually relayed by Kamailio.  `parse_message` handles every
writing RFC 3261 allows, and finding the lines of such a request is a good part of its
cost.  `scan_request` finds them with two regular expressions, then builds the request
with the parser's own code (`_parse_headers`, `_build_message`), so whatever it returns
is what `parse_message` returns.  Anything unusual (leading CRLFs, a bare CR or LF,
folding, a space before a colon, a non-token name, an error anywhere) returns None:
"not sure", and the caller parses fully, which also gives the error to answer with.

Pure functions, no state.
"""

from __future__ import annotations

import re

from .errors import ParseError
from .fastpath import plain_head_end
from .message import Request, _build_message, _parse_headers

__all__ = ["scan_request"]

_TOKEN = rb"[A-Za-z0-9\-.!%*_+`'~]+"  # RFC 3261 token, as the full parser checks names
# Method, Request-URI (printable ASCII, so `split()` of the full parser agrees), version.
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([!-~]+) SIP/2\.0\r\n")
# A header line the full parser must read: not `token:` right after the line end.
_ODD_LINE = re.compile(rb"\n(?!" + _TOKEN + rb":)")
# Each header line of the head (every line ends in CRLF, checked first).
_HEADER_LINE = re.compile(r"([^:]*):([^\r]*)\r\n")


def scan_request(data: bytes) -> Request | None:
    """`parse_message(data)` for a plainly written request, or None to parse it fully.

    None says nothing either way: the request may still be valid, or not.
    """
    line = _REQUEST_LINE.match(data)
    if line is None:
        return None
    first = line.end() - 2  # the request line's CRLF: each header line follows a CRLF
    end = plain_head_end(data, first)
    if end is None or _ODD_LINE.search(data, first, end) is not None:
        return None
    method, uri = line.groups()
    if uri[:1] == b":" or b":" not in uri:
        return None
    head = data[line.end() : end + 2].decode("utf-8", "surrogateescape")
    try:
        headers, lengths = _parse_headers(_HEADER_LINE.findall(head))
        message = _build_message(
            data, end + 4, method.decode(), uri.decode(), 0, "", headers, lengths
        )
    except ParseError:
        return None
    assert isinstance(message, Request)
    return message
