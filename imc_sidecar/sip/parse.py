"""Bytes to `Request`/`Response` (RFC 3261 §7, §20).

The parser is strict where a wrong guess would misroute a reply (start line, Via, CSeq,
Content-Length) and lenient where real user agents are sloppy (bare LF line ends, folded
headers, compact names).  It raises nothing but `ParseError`, which carries the status
and reason phrase to answer with.  scan.py reads the plainly written messages faster,
with this module's `parse_headers` and `build_message`.
"""

from __future__ import annotations

from .errors import ParseError
from .grammar import LIST_HEADERS, header_key, is_token, split_outside, token_match, written_name
from .headers import Headers
from .message import MAX_BODY_BYTES, MAX_HEAD_BYTES, ParseCache, Request, Response, too_large

__all__ = [
    "build_message",
    "content_length",
    "find_head_end",
    "parse_headers",
    "parse_message",
]


def find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Return (end of the header block, start of the body), or (-1, -1) if incomplete.

    The head ends at the first empty line; CRLF is the rule, a bare LF is tolerated.
    """
    crlf = data.find(b"\n\r\n", start)
    lf = data.find(b"\n\n", start)
    if crlf < 0 and lf < 0:
        return -1, -1
    if lf < 0 or 0 <= crlf < lf:
        end, body = crlf, crlf + 3
    else:
        end, body = lf, lf + 2
    # the block excludes the last header line's own line end
    if end > start and data[end - 1] == 13:
        end -= 1
    return end, body


def content_length(values: list[str]) -> int:
    lengths = set()
    for value in values:
        if not (value.isascii() and value.isdigit()):
            raise ParseError("Bad Content-Length")
        if len(value) > 9:
            raise too_large()
        lengths.add(int(value))
    if len(lengths) != 1:
        raise ParseError("Bad Content-Length")
    length = lengths.pop()
    if length > MAX_BODY_BYTES:
        raise too_large()
    return length


def _split_lines(head: str) -> list[str]:
    lines = head.split("\r\n")
    if head.count("\n") != len(lines) - 1:  # bare LF line ends somewhere (tolerated)
        lines = [line[:-1] if line.endswith("\r") else line for line in head.split("\n")]
    if "\n " in head or "\n\t" in head:
        # folded continuation lines (RFC 3261 §7.3.1) are joined with a single space
        folded: list[str] = []
        for line in lines:
            if line[:1] in (" ", "\t"):
                if len(folded) < 2:  # nothing but the start line to continue
                    raise ParseError("Malformed header folding")
                folded[-1] = folded[-1].rstrip(" \t") + " " + line.lstrip(" \t")
            else:
                folded.append(line)
        lines = folded
    return lines


def _header_name(name: str, cache: ParseCache | None) -> tuple[str, str]:
    """(lookup key, name to keep) of a header name not in the cache yet."""
    if token_match(name) is None:
        raise ParseError("Malformed header line")
    known = (header_key(name), written_name(name))
    if cache is not None:
        cache.keep_name(name, known)
    return known


def _header_pairs(lines: list[str]) -> list[tuple[str, str]]:
    """(name, value) of each header line, both as written around the colon."""
    pairs = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or "\r" in value:
            raise ParseError("Malformed header line")
        pairs.append((name.rstrip(" \t"), value))
    return pairs


def parse_headers(
    pairs: list[tuple[str, str]], cache: ParseCache | None = None
) -> tuple[Headers, list[str]]:
    """Return (headers without Content-Length, Content-Length values)."""
    items: list[tuple[str, str, str]] = []
    firsts: dict[str, tuple[str, str, str]] = {}
    lengths: list[str] = []
    names: dict[str, tuple[str, str]] = {} if cache is None else cache.names
    for name, value in pairs:
        known = names.get(name)
        key, name = _header_name(name, cache) if known is None else known
        value = value.strip(" \t")
        if "\x00" in value:  # Headers never hold a NUL (nor CR, LF: split away above)
            raise ParseError("Malformed header line")
        if key in _SPLIT_KEYS:
            if key == "content-length":
                lengths.append(value)
                continue
            if "," in value:
                for element in split_outside(value, ","):
                    element = element.strip(" \t")
                    if element:
                        item = (key, name, element)
                        items.append(item)
                        firsts.setdefault(key, item)
                continue
        item = (key, name, value)
        items.append(item)
        if key not in firsts:
            firsts[key] = item
    return Headers.trusted(tuple(items), firsts), lengths


# Keys `parse_headers` does more with than store one value.
_SPLIT_KEYS = LIST_HEADERS | {"content-length"}


def parse_message(data: bytes, cache: ParseCache | None = None) -> Request | Response:
    """Parse one complete message (a UDP datagram, or one message framed from a stream).

    With Content-Length, extra bytes are dropped (RFC 3261 §18.3) and missing ones are an
    error; without it the body is the rest of the data (datagrams only; the stream framer
    insists on Content-Length before it gets here).
    """
    start = 0
    n = len(data)
    while start < n and data[start] in (13, 10):  # leading CRLFs are ignored (§7.5)
        start += 1
    if start == n:
        raise ParseError("Empty message")
    head_end, body_start = find_head_end(data, start)
    if head_end < 0:
        if n - start > MAX_HEAD_BYTES:
            raise too_large()
        raise ParseError("Missing end of headers")
    if head_end - start > MAX_HEAD_BYTES:
        raise too_large()
    head = data[start:head_end].decode("utf-8", "surrogateescape")
    lines = _split_lines(head)
    first = lines[0]
    method: str | None = None
    status = 0
    reason = ""
    uri = ""
    if first.startswith("SIP/") or first[:4].upper() == "SIP/":
        version, _, rest = first.partition(" ")
        code, _, reason = rest.partition(" ")
        if version.upper() != "SIP/2.0":
            raise ParseError("Unsupported SIP version", 505)
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or code[0] not in "123456":
            raise ParseError("Malformed status line")
        status = int(code)
    else:
        parts = first.split()
        if len(parts) != 3 or not is_token(parts[0]):
            raise ParseError("Malformed request line")
        method, uri, version = parts
        if version.upper() != "SIP/2.0":
            if version[:4].upper() == "SIP/":
                raise ParseError("Unsupported SIP version", 505)
            raise ParseError("Malformed request line")
        if ":" not in uri or uri.startswith(":") or "\x00" in uri:
            # (no NUL: imc echoes the Request-URI into the From of a notice)
            raise ParseError("Malformed Request-URI")
    try:
        headers, lengths = parse_headers(_header_pairs(lines[1:]), cache)
    except ParseError as exc:
        exc.method = method
        raise
    try:
        return build_message(
            data, body_start, method, uri, status, reason, headers, lengths, cache
        )
    except ParseError as exc:
        exc.method = method
        exc.headers = headers
        raise


def build_message(
    data: bytes,
    body_start: int,
    method: str | None,
    uri: str,
    status: int,
    reason: str,
    headers: Headers,
    lengths: list[str],
    cache: ParseCache | None = None,
) -> Request | Response:
    """The message of a parsed start line and head: body framing and the checks."""
    body = data[body_start:]
    if lengths:
        length = content_length(lengths)
        if len(body) < length:
            raise ParseError("Bad Content-Length")
        body = body[:length]
    elif len(body) > MAX_BODY_BYTES:
        raise too_large()
    message: Request | Response
    if method is None:
        message = Response(status, reason, headers, body)
        # Only what matching needs is parsed now; From/To are parsed on first use.
        message.top_via  # noqa: B018
        message.cseq  # noqa: B018
        message.required("From")
        message.required("To")
        message.call_id  # noqa: B018
    else:
        # `Request(method, uri, headers, body)` without its constructor's work that is
        # not needed here: `parse_headers` keeps Content-Length out of the headers, and
        # `validate` sets every cached view (`_via`, `_from`, `_to`, `_cseq`).
        message = _new_request(Request)
        _set(message, "method", method)
        _set(message, "uri", uri)
        _set(message, "headers", headers)
        _set(message, "body", body)
        message.validate(cache)
        if message.cseq[1] != method:
            raise ParseError("CSeq method mismatch")
    return message


_new_request = object.__new__
_set = object.__setattr__
