"""SIP messages: the `Request` and `Response` types and their parsed views (RFC 3261 §7).

Messages are frozen: `Headers` is immutable, so parsed views (top Via, CSeq, From/To)
are computed once and cached on the message.  Content-Length is framing, not content:
it is never stored in `Headers`; `to_bytes()` always writes the body's real length.
Reading bytes into messages is parse.py's job; answering them is replies.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ParseError, SipError
from .grammar import has_space, parse_cseq, parse_max_forwards
from .headers import Headers, NameAddr, Via, parse_name_addr, parse_via

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "Headers",
    "NameAddr",
    "ParseCache",
    "ParseError",
    "Request",
    "Response",
    "SipError",
    "Via",
    "too_large",
]

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024


def too_large() -> ParseError:
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

    def required(self, name: str) -> str:
        """The first value of a header every message must have; ParseError when missing."""
        return _required(self.headers, name)

    @property
    def call_id(self) -> str:
        value = self.required("Call-ID")
        if not value or has_space(value):
            raise ParseError("Malformed Call-ID")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        if self._cseq is None:
            object.__setattr__(self, "_cseq", parse_cseq(self.required("CSeq")))
        assert self._cseq is not None
        return self._cseq

    @property
    def top_via(self) -> Via:
        if self._via is None:
            object.__setattr__(self, "_via", parse_via(self.required("Via")))
        assert self._via is not None
        return self._via

    @property
    def from_addr(self) -> NameAddr:
        if self._from is None:
            object.__setattr__(self, "_from", parse_name_addr(self.required("From"), "From"))
        assert self._from is not None
        return self._from

    @property
    def to_addr(self) -> NameAddr:
        if self._to is None:
            object.__setattr__(self, "_to", parse_name_addr(self.required("To"), "To"))
        assert self._to is not None
        return self._to

    @property
    def parsed_to(self) -> NameAddr | None:
        """The first To, when it has been parsed already (validated requests have it)."""
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
        return self.headers.first("content-type")

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.first("max-forwards")
        return None if value is None else parse_max_forwards(value)

    def validate(self, seen: ParseCache | None = None) -> None:
        """Parse what every request must have; the first fault found is the error.

        The accessors' work in their order (Via, From, To, Call-ID, CSeq,
        Max-Forwards), written out: this runs for every request received."""
        first = self.headers.first
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
        # A request's To seldom has a tag, and CSeq values repeat: parsed once per value.
        to = None if seen is None else seen.to.get(value)
        if to is None:
            to = parse_name_addr(value, "To")
            if seen is not None:
                seen.keep_to(value, to)
        cache(self, "_to", to)
        value = first("call-id")
        if value is None:
            raise ParseError("Missing Call-ID")
        if not value or has_space(value):
            raise ParseError("Malformed Call-ID")
        value = first("cseq")
        if value is None:
            raise ParseError("Missing CSeq")
        cseq = None if seen is None else seen.cseq.get(value)
        if cseq is None:
            cseq = parse_cseq(value)
            if seen is not None:
                seen.keep_cseq(value, cseq)
        cache(self, "_cseq", cseq)
        value = first("max-forwards")
        if value is not None:
            parse_max_forwards(value)

    def _encode(self, start_line: str) -> bytes:
        lines = [start_line]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


class ParseCache:
    """What repeats from message to message, read once: header names as written, and the
    To and CSeq values of requests.  The results are immutable and only successful reads
    are kept.  Bounded, so hostile traffic cannot grow it.  Owned by whoever parses a
    stream of messages (the endpoint); without one, nothing is cached."""

    __slots__ = ("cseq", "names", "to")

    NAMES_MAX = 512
    VALUES_MAX = 4096

    def __init__(self) -> None:
        self.names: dict[str, tuple[str, str]] = {}  # as written -> (key, name to keep)
        self.to: dict[str, NameAddr] = {}
        self.cseq: dict[str, tuple[int, str]] = {}

    def keep_name(self, name: str, known: tuple[str, str]) -> None:
        if len(self.names) < self.NAMES_MAX:
            self.names[name] = known

    def keep_to(self, value: str, to: NameAddr) -> None:
        if len(self.to) >= self.VALUES_MAX:
            self.to.clear()
        self.to[value] = to

    def keep_cseq(self, value: str, cseq: tuple[int, str]) -> None:
        if len(self.cseq) >= self.VALUES_MAX:
            self.cseq.clear()
        self.cseq[value] = cseq


def _required(headers: Headers, name: str) -> str:
    value = headers.first(name.lower())
    if value is None:
        raise ParseError(f"Missing {name}")
    return value


def _strip_content_length(message: Request | Response) -> None:
    if message.headers.first_item("content-length") is not None:
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

    def with_top_via(self, via: Via) -> Request:
        """This request with its first Via replaced; the rest of the parse stays valid."""
        headers = self.headers.with_first("Via", str(via))
        updated = Request(self.method, self.uri, headers, self.body)
        object.__setattr__(updated, "_via", via)
        for name in ("_cseq", "_from", "_to"):
            object.__setattr__(updated, name, getattr(self, name))
        return updated


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
