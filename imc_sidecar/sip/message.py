"""SIP messages: parse bytes into `Request`/`Response`, serialize them back (RFC 3261 §7, §20).

The parser is strict where a wrong guess would misroute a reply (start line, Via, CSeq,
Content-Length) and lenient where real user agents are sloppy (bare LF line ends, folded
headers, compact names).  It raises nothing but `ParseError`, which carries the status
and reason phrase to answer with.

Messages are frozen: `Headers` is immutable, so parsed views (top Via, CSeq, From/To)
are computed once and cached on the message.  Content-Length is framing, not content:
it is never stored in `Headers`; `to_bytes()` always writes the body's real length.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "Headers",
    "NameAddr",
    "ParseError",
    "Request",
    "Response",
    "SipError",
    "Via",
    "apply_received",
    "find_head_end",
    "make_response",
    "make_response_from_headers",
    "parse_message",
    "parse_name_addr",
    "parse_via",
    "reply_bytes",
    "reply_headers",
    "response_address",
    "response_bytes",
    "stamp_via",
]

from .errors import ParseError, SipError
from .headers import (
    _COMPACT,
    _COMPACT_KEY,
    _LIST_HEADERS,
    Headers,
    NameAddr,
    Via,
    _find_param,
    _has_space,
    _is_token,
    _parse_cseq,
    _split_outside,
    _token_match,
    parse_name_addr,
    parse_via,
)

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024


def _too_large() -> ParseError:
    return ParseError("Message Too Large", 513)


# --- messages --------------------------------------------------------------------------


class _Message:
    """Accessors shared by Request and Response (both frozen slots dataclasses)."""

    __slots__ = ()
    headers: Headers
    body: bytes
    _via: Via | None
    _cseq: tuple[int, str] | None
    _from: NameAddr | None
    _to: NameAddr | None

    def _required(self, name: str) -> str:
        return _required(self.headers, name)

    @property
    def call_id(self) -> str:
        value = self._required("Call-ID")
        if not value or _has_space(value):
            raise ParseError("Malformed Call-ID")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        if self._cseq is None:
            object.__setattr__(self, "_cseq", _parse_cseq(self._required("CSeq")))
        assert self._cseq is not None
        return self._cseq

    @property
    def top_via(self) -> Via:
        if self._via is None:
            object.__setattr__(self, "_via", parse_via(self._required("Via")))
        assert self._via is not None
        return self._via

    @property
    def from_addr(self) -> NameAddr:
        if self._from is None:
            object.__setattr__(self, "_from", parse_name_addr(self._required("From"), "From"))
        assert self._from is not None
        return self._from

    @property
    def to_addr(self) -> NameAddr:
        if self._to is None:
            object.__setattr__(self, "_to", parse_name_addr(self._required("To"), "To"))
        assert self._to is not None
        return self._to

    @property
    def from_uri(self) -> str:
        return self.from_addr.uri

    @property
    def from_tag(self) -> str | None:
        return self.from_addr.tag

    @property
    def to_uri(self) -> str:
        return self.to_addr.uri

    @property
    def to_tag(self) -> str | None:
        return self.to_addr.tag

    @property
    def content_type(self) -> str | None:
        return self.headers._first("content-type")

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()) or len(value) > 3 or int(value) > 255:
            raise ParseError("Malformed Max-Forwards")
        return int(value)

    def _validate(self) -> None:
        """Parse what every request must have; the first fault found is the error.

        The accessors' work in their order (Via, From, To, Call-ID, CSeq,
        Max-Forwards), written out: this runs for every request received."""
        first = self.headers._first
        cache = object.__setattr__
        value = first("via")
        if value is None:
            raise ParseError("Missing Via")
        cache(self, "_via", parse_via(value))
        value = first("from")
        if value is None:
            raise ParseError("Missing From")
        cache(self, "_from", parse_name_addr(value, "From"))
        value = first("to")
        if value is None:
            raise ParseError("Missing To")
        to = _TO_CACHE.get(value)  # a request's To seldom has a tag: values repeat
        if to is None:
            to = parse_name_addr(value, "To")
            if len(_TO_CACHE) >= _VALUE_CACHE_MAX:
                _TO_CACHE.clear()
            _TO_CACHE[value] = to
        cache(self, "_to", to)
        value = first("call-id")
        if value is None:
            raise ParseError("Missing Call-ID")
        if not value or _has_space(value):
            raise ParseError("Malformed Call-ID")
        value = first("cseq")
        if value is None:
            raise ParseError("Missing CSeq")
        cseq = _CSEQ_CACHE.get(value)
        if cseq is None:
            cseq = _parse_cseq(value)
            if len(_CSEQ_CACHE) >= _VALUE_CACHE_MAX:
                _CSEQ_CACHE.clear()
            _CSEQ_CACHE[value] = cseq
        cache(self, "_cseq", cseq)
        value = first("max-forwards")
        if value is not None and (
            not (value.isascii() and value.isdigit()) or len(value) > 3 or int(value) > 255
        ):
            raise ParseError("Malformed Max-Forwards")

    def _encode(self, start_line: str) -> bytes:
        lines = [start_line]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


# Header values that repeat from request to request, parsed once (both results are
# immutable; only successful parses are kept).  Bounded so hostile traffic cannot grow
# them.
_TO_CACHE: dict[str, NameAddr] = {}
_CSEQ_CACHE: dict[str, tuple[int, str]] = {}
_VALUE_CACHE_MAX = 4096


def _required(headers: Headers, name: str) -> str:
    value = headers._first(name.lower())
    if value is None:
        raise ParseError(f"Missing {name}")
    return value


def _strip_content_length(message: Request | Response) -> None:
    if message.headers._first_item("content-length") is not None:
        object.__setattr__(message, "headers", message.headers.without("Content-Length"))


@dataclass(frozen=True, slots=True)
class Request(_Message):
    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    _via: Via | None = field(default=None, init=False, repr=False, compare=False)
    _cseq: tuple[int, str] | None = field(default=None, init=False, repr=False, compare=False)
    _from: NameAddr | None = field(default=None, init=False, repr=False, compare=False)
    _to: NameAddr | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _strip_content_length(self)

    def to_bytes(self) -> bytes:
        return self._encode(f"{self.method} {self.uri} SIP/2.0")


@dataclass(frozen=True, slots=True)
class Response(_Message):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    _via: Via | None = field(default=None, init=False, repr=False, compare=False)
    _cseq: tuple[int, str] | None = field(default=None, init=False, repr=False, compare=False)
    _from: NameAddr | None = field(default=None, init=False, repr=False, compare=False)
    _to: NameAddr | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _strip_content_length(self)

    def to_bytes(self) -> bytes:
        return self._encode(f"SIP/2.0 {self.status} {self.reason}")


# --- parsing ---------------------------------------------------------------------------


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


def _content_length(values: list[str]) -> int:
    lengths = set()
    for value in values:
        if not (value.isascii() and value.isdigit()):
            raise ParseError("Bad Content-Length")
        if len(value) > 9:
            raise _too_large()
        lengths.add(int(value))
    if len(lengths) != 1:
        raise ParseError("Bad Content-Length")
    length = lengths.pop()
    if length > MAX_BODY_BYTES:
        raise _too_large()
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


# Header names seen before, already checked: name as written -> (lookup key, name to keep).
# Bounded so hostile traffic cannot grow it.
_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_MAX = 512


def _header_name(name: str) -> tuple[str, str]:
    known = _NAME_CACHE.get(name)
    if known is not None:
        return known
    if _token_match(name) is None:
        raise ParseError("Malformed header line")
    lower = name.lower()
    key = _COMPACT_KEY.get(lower, lower)
    known = (key, _COMPACT[lower] if key != lower else name)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = known
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


def _parse_headers(pairs: list[tuple[str, str]]) -> tuple[Headers, list[str]]:
    """Return (headers without Content-Length, Content-Length values)."""
    items: list[tuple[str, str, str]] = []
    firsts: dict[str, tuple[str, str, str]] = {}
    lengths: list[str] = []
    names = _NAME_CACHE
    for name, value in pairs:
        known = names.get(name)
        key, name = _header_name(name) if known is None else known
        value = value.strip(" \t")
        if key in _SPLIT_KEYS:
            if key == "content-length":
                lengths.append(value)
                continue
            if "," in value:
                for element in _split_outside(value, ","):
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
    return Headers._trusted(tuple(items), firsts), lengths


# Keys `_parse_headers` does more with than store one value.
_SPLIT_KEYS = _LIST_HEADERS | {"content-length"}


def parse_message(data: bytes) -> Request | Response:
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
            raise _too_large()
        raise ParseError("Missing end of headers")
    if head_end - start > MAX_HEAD_BYTES:
        raise _too_large()
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
        if len(parts) != 3 or not _is_token(parts[0]):
            raise ParseError("Malformed request line")
        method, uri, version = parts
        if version.upper() != "SIP/2.0":
            if version[:4].upper() == "SIP/":
                raise ParseError("Unsupported SIP version", 505)
            raise ParseError("Malformed request line")
        if ":" not in uri or uri.startswith(":"):
            raise ParseError("Malformed Request-URI")
    try:
        headers, lengths = _parse_headers(_header_pairs(lines[1:]))
    except ParseError as exc:
        exc.method = method
        raise
    try:
        return _build_message(data, body_start, method, uri, status, reason, headers, lengths)
    except ParseError as exc:
        exc.method = method
        exc.headers = headers
        raise


def _build_message(
    data: bytes,
    body_start: int,
    method: str | None,
    uri: str,
    status: int,
    reason: str,
    headers: Headers,
    lengths: list[str],
) -> Request | Response:
    """The message of a parsed start line and head: body framing and the checks."""
    body = data[body_start:]
    if lengths:
        length = _content_length(lengths)
        if len(body) < length:
            raise ParseError("Bad Content-Length")
        body = body[:length]
    elif len(body) > MAX_BODY_BYTES:
        raise _too_large()
    message: Request | Response
    if method is None:
        message = Response(status, reason, headers, body)
        # Only what matching needs is parsed now; From/To are parsed on first use.
        message.top_via  # noqa: B018
        message.cseq  # noqa: B018
        message._required("From")
        message._required("To")
        message.call_id  # noqa: B018
    else:
        # `Request(method, uri, headers, body)` without its constructor's work that is
        # not needed here: `_parse_headers` keeps Content-Length out of the headers, and
        # `_validate` sets every cached view (`_via`, `_from`, `_to`, `_cseq`).
        message = _new_request(Request)
        _set(message, "method", method)
        _set(message, "uri", uri)
        _set(message, "headers", headers)
        _set(message, "body", body)
        message._validate()
        if message.cseq[1] != method:
            raise ParseError("CSeq method mismatch")
    return message


_new_request = object.__new__
_set = object.__setattr__


# --- replies and the response path ---------------------------------------------------------


def _response_headers(
    headers: Headers,
    status: int,
    to_tag: str | None,
    extra: Iterable[tuple[str, str]],
    to_has_tag: bool | None = None,  # known already (the request's parsed To), or None
) -> Headers:
    items: list[tuple[str, str, str]] = [i for i in headers._items if i[0] == "via"]
    for key in ("from", "to", "call-id", "cseq"):
        for item in headers._items:
            if item[0] == key:
                if key == "to" and status > 100 and to_tag is not None:
                    has_tag = to_has_tag
                    if has_tag is None:
                        try:
                            has_tag = parse_name_addr(item[2], "To").tag is not None
                        except ParseError:
                            has_tag = True  # leave a To we cannot read as it is
                    if not has_tag:
                        item = (item[0], item[1], f"{item[2]};tag={to_tag}")
                items.append(item)
                break
    return Headers._trusted(tuple(items) + Headers(extra)._items)


def make_response(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response per RFC 3261 §8.2.6: copy every Via, From, To, Call-ID, CSeq.

    A To-tag is added when the request's To has none and the status is above 100
    (`to_tag`, or a random one).
    """
    tag = to_tag if to_tag is not None else secrets.token_hex(5)
    parsed_to = request._to  # the first To, parsed when the request was validated
    to_has_tag = None if parsed_to is None else parsed_to.tag is not None
    return Response(
        status, reason, _response_headers(request.headers, status, tag, headers, to_has_tag), body
    )


def response_bytes(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str,
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """`make_response(...).to_bytes()` without the objects in between (the reply to
    every chat text goes through here).  Same bytes, same checks of `headers`."""
    return reply_bytes(request, status, reason, to_tag, reply_headers(headers))


def reply_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str, str], ...]:
    """Extra headers of a reply, checked once for `reply_bytes`.  Content-Length is
    framing, written by `reply_bytes` (as by to_bytes)."""
    return tuple(item for item in Headers(headers)._items if item[0] != "content-length")


def reply_bytes(
    request: Request,
    status: int,
    reason: str,
    to_tag: str,
    extra: tuple[tuple[str, str, str], ...],
) -> bytes:
    """`response_bytes` with its extra headers already made by `reply_headers`."""
    request_headers = request.headers
    first = request_headers._first_item
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"{name}: {value}" for key, name, value in request_headers._items if key == "via"]
    item = first("from")
    if item is not None:
        lines.append(f"{item[1]}: {item[2]}")
    item = first("to")
    if item is not None:
        _, name, value = item
        if status > 100:
            parsed_to = request._to
            if parsed_to is None:
                try:
                    has_tag = parse_name_addr(value, "To").tag is not None
                except ParseError:
                    has_tag = True  # leave a To we cannot read as it is
            else:
                has_tag = parsed_to.tag is not None
            if not has_tag:
                value = f"{value};tag={to_tag}"
        lines.append(f"{name}: {value}")
    item = first("call-id")
    if item is not None:
        lines.append(f"{item[1]}: {item[2]}")
    item = first("cseq")
    if item is not None:
        lines.append(f"{item[1]}: {item[2]}")
    for _, name, value in extra:
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: 0\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


def make_response_from_headers(
    request_headers: Headers,
    status: int,
    reason: str,
    *,
    to_tag: str,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """Like `make_response`, from the headers of a request that did not parse fully."""
    return Response(status, reason, _response_headers(request_headers, status, to_tag, headers))


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def apply_received(request: Request, source: tuple[str, int]) -> Request:
    """Record where a request really came from in its top Via (RFC 3261 §18.2.1, RFC 3581).

    `received` is added when the sent-by host is not the source IP, and always when the
    client asked for rport; an empty `rport` gets the source port.
    """
    via = request.top_via
    new = stamp_via(via, source)
    if new is via:
        return request
    updated = Request(
        request.method, request.uri, request.headers.with_first("Via", str(new)), request.body
    )
    object.__setattr__(updated, "_via", new)
    for name in ("_cseq", "_from", "_to"):  # the rest of the parse stays valid
        object.__setattr__(updated, name, getattr(request, name))
    return updated


def stamp_via(via: Via, source: tuple[str, int]) -> Via:
    """`via` with received/rport filled in for a request that came from `source`."""
    host, port = source
    has_rport, rport = _find_param(via.params, "rport")
    new = via
    if has_rport and not rport:
        new = new.with_param("rport", str(port)).with_param("received", host)
    elif _bare_host(via.host) != host:
        new = new.with_param("received", host)
    return new


def response_address(via: Via) -> tuple[str, int]:
    """Where a response goes over UDP: received (else sent-by host), rport (else port)."""
    host = via.received or _bare_host(via.host)
    port = via.rport or via.port or 5060
    return host, port
