"""SIP header grammar: names (compact forms), the `Headers` multi-map, Via, From/To.

Everything here parses one header value; framing and the start line live in message.py.
Errors are `ParseError`, carrying the reply to give.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import ParseError

__all__ = ["Headers", "NameAddr", "Params", "Via", "parse_name_addr", "parse_via"]

Params = tuple[tuple[str, str | None], ...]

# --- header names ------------------------------------------------------------------

_COMPACT = {
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "v": "Via",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "y": "Identity",
}
_COMPACT_KEY = {short: full.lower() for short, full in _COMPACT.items()}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1); only these are split.
_LIST_HEADERS = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "allow-events",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "content-language",
    }
)

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_token_match = _TOKEN_RE.fullmatch
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")
_has_space = re.compile(r"\s").search


def _key(name: str) -> str:
    lower = name.lower()
    return _COMPACT_KEY.get(lower, lower)


def _is_token(text: str) -> bool:
    return _token_match(text) is not None


class Headers:
    """Ordered, multi-valued, immutable; names are case-insensitive, compact forms expanded.

    Names keep the spelling they were written with (a compact name becomes its full
    name).  Each element of a list-valued header is one entry.  Methods that "change"
    the headers return a new object.
    """

    __slots__ = ("_items",)

    _items: tuple[tuple[str, str, str], ...]  # (lookup key, name as written, value)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        built = []
        for name, value in items:
            if not _is_token(name):
                raise ValueError(f"bad header name {name!r}")
            if _BAD_VALUE_RE.search(value):
                raise ValueError(f"bad characters in the value of {name}")
            key = _key(name)
            built.append((key, _COMPACT[name.lower()] if key != name.lower() else name, value))
        self._items = tuple(built)

    @classmethod
    def _trusted(cls, items: tuple[tuple[str, str, str], ...]) -> Headers:
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _key(name)
        for k, _, value in self._items:
            if k == key:
                return value
        return default

    def _first(self, key: str) -> str | None:
        """`get` for an already lower-cased full name (the parsed-message fast path)."""
        for k, _, value in self._items:
            if k == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        key = _key(name)
        return [value for k, _, value in self._items if k == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return self._first(_key(name)) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __hash__(self) -> int:
        return hash(tuple((k, v) for k, _, v in self._items))

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def with_header(self, name: str, value: str) -> Headers:
        """Append one value."""
        return Headers._trusted(self._items + Headers([(name, value)])._items)

    def with_first(self, name: str, value: str) -> Headers:
        """Replace the first value of `name` (append when absent); later values stay."""
        key = _key(name)
        items = list(self._items)
        for i, (k, written, _) in enumerate(items):
            if k == key:
                Headers([(name, value)])  # validates
                items[i] = (k, written, value)
                return Headers._trusted(tuple(items))
        return self.with_header(name, value)

    def without(self, name: str) -> Headers:
        key = _key(name)
        return Headers._trusted(tuple(item for item in self._items if item[0] != key))


# --- small grammar helpers ------------------------------------------------------------


def _split_outside(text: str, sep: str) -> list[str]:
    """Split on `sep` except inside quoted strings and <...> (a URI may hold ';' or ',')."""
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    quoted = False
    angle = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == sep and not angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _parse_params(pieces: Iterable[str], what: str) -> Params:
    params: list[tuple[str, str | None]] = []
    for piece in pieces:
        name, eq, value = piece.partition("=")
        name = name.strip()
        if not name:
            if not eq and not value.strip():
                continue  # tolerate ";;" and a trailing ';'
            raise ParseError(f"Malformed {what}")
        if not _is_token(name):
            raise ParseError(f"Malformed {what}")
        params.append((name, value.strip() if eq else None))
    return tuple(params)


def _find_param(params: Params, name: str) -> tuple[bool, str | None]:
    for pname, value in params:
        if pname.lower() == name:
            return True, value
    return False, None


def _format_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+")


def _split_hostport(text: str, what: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        host, tail = (text, "") if end < 0 else (text[: end + 1], text[end + 1 :])
    else:
        host, colon, port_text = text.partition(":")
        tail = colon + port_text
    if not _HOST_RE.fullmatch(host):
        raise ParseError(f"Malformed {what}")
    if not tail:
        return host, None
    port_text = tail[1:]
    if tail[0] != ":" or not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise ParseError(f"Malformed {what}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ParseError(f"Malformed {what}")
    return host, port


# --- Via --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42): `SIP/2.0/<transport> host[:port];params`."""

    transport: str  # upper case, e.g. "UDP"
    host: str  # as written; IPv6 keeps its brackets
    port: int | None
    params: Params = ()

    def param(self, name: str) -> str | None:
        return _find_param(self.params, name.lower())[1]

    def has_param(self, name: str) -> bool:
        return _find_param(self.params, name.lower())[0]

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport(self) -> int | None:
        """The rport value, when one was filled in (RFC 3581)."""
        value = self.param("rport")
        return int(value) if value and value.isascii() and value.isdigit() else None

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_param(self, name: str, value: str | None) -> Via:
        """Set a parameter, keeping its place when it already exists."""
        lower = name.lower()
        params = list(self.params)
        for i, (pname, _) in enumerate(params):
            if pname.lower() == lower:
                params[i] = (pname, value)
                break
        else:
            params.append((name, value))
        return Via(self.transport, self.host, self.port, tuple(params))

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{_format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parse one Via value (already split from its neighbours)."""
    parts = value.split("/", 2)
    if len(parts) != 3 or parts[0].strip().upper() != "SIP" or parts[1].strip() != "2.0":
        raise ParseError("Malformed Via")
    words = parts[2].split(None, 1)
    if len(words) != 2 or not _is_token(words[0]):
        raise ParseError("Malformed Via")
    pieces = _split_outside(words[1], ";")
    sent_by = pieces[0].strip()
    if _has_space(sent_by):
        # LWS is allowed around the port's colon only (RFC 3261 §25.1 COLON = SWS ":" SWS)
        before, colon, after = sent_by.rpartition(":")
        if colon:
            sent_by = before.rstrip() + colon + after.lstrip()
    host, port = _split_hostport(sent_by, "Via")
    params = _parse_params(pieces[1:], "Via")
    return Via(words[0].upper(), host, port, params)


# --- From / To ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From/To/Contact-style value: optional display name, URI, header parameters."""

    display: str | None  # as written, quotes included
    uri: str
    params: Params = ()

    @property
    def tag(self) -> str | None:
        return _find_param(self.params, "tag")[1]


def _closing_quote(text: str, start: int) -> int:
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    return -1


def parse_name_addr(value: str, what: str = "address") -> NameAddr:
    """Parse `"Name" <uri>;p=v`, `Name <uri>;p=v`, `<uri>;p=v` or bare `uri;p=v`.

    In the bare form every ';' after the URI starts a header parameter (RFC 3261 §20.10),
    so `sip:a@b;tag=x` is the URI `sip:a@b` with tag `x`.
    """
    text = value.strip()
    display: str | None = None
    rest = text
    if text.startswith('"'):
        end = _closing_quote(text, 0)
        if end < 0:
            raise ParseError(f"Malformed {what}")
        display = text[: end + 1]
        rest = text[end + 1 :]
        if not rest.lstrip().startswith("<"):
            raise ParseError(f"Malformed {what}")
    lt = rest.find("<")
    if lt >= 0:
        if display is None:
            display = rest[:lt].strip() or None
        gt = rest.find(">", lt)
        if gt < 0:
            raise ParseError(f"Malformed {what}")
        uri = rest[lt + 1 : gt].strip()
        tail = rest[gt + 1 :].strip()
        if tail and not tail.startswith(";"):
            raise ParseError(f"Malformed {what}")
        pieces = _split_outside(tail, ";")[1:] if tail else []
    else:
        pieces = _split_outside(rest, ";")
        uri = pieces.pop(0).strip()
    if ":" not in uri or uri.startswith(":") or _has_space(uri):
        raise ParseError(f"Malformed {what}")
    return NameAddr(display, uri, _parse_params(pieces, what))


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2:
        raise ParseError("Malformed CSeq")
    number, method = parts
    if not (number.isascii() and number.isdigit()) or len(number) > 10 or not _is_token(method):
        raise ParseError("Malformed CSeq")
    seq = int(number)
    if seq >= 2**31:
        raise ParseError("Malformed CSeq")
    return seq, method
