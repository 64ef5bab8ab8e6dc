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

    __slots__ = ("_firsts", "_items")

    _items: tuple[tuple[str, str, str], ...]  # (lookup key, name as written, value)
    # The first item of each key, when the maker had it at hand (the parser does):
    # lookups of the headers every request needs then cost a dict access, not a scan.
    _firsts: dict[str, tuple[str, str, str]] | None

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
        self._firsts = None

    @classmethod
    def _trusted(
        cls,
        items: tuple[tuple[str, str, str], ...],
        firsts: dict[str, tuple[str, str, str]] | None = None,
    ) -> Headers:
        """Headers from checked items; `firsts`, when given, must be their first item
        per key (see `_first_item`)."""
        headers = cls.__new__(cls)
        headers._items = items
        headers._firsts = firsts
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._first(_key(name))
        return default if value is None else value

    def _first(self, key: str) -> str | None:
        """`get` for an already lower-cased full name (the parsed-message fast path)."""
        item = self._first_item(key)
        return None if item is None else item[2]

    def _first_item(self, key: str) -> tuple[str, str, str] | None:
        """The first (key, name, value) of an already lower-cased full name."""
        firsts = self._firsts
        if firsts is not None:
            return firsts.get(key)
        for item in self._items:
            if item[0] == key:
                return item
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
                items[i] = item = (k, written, value)
                firsts = self._firsts
                if firsts is not None:
                    firsts = {**firsts, key: item}
                return Headers._trusted(tuple(items), firsts)
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
    """`name` in lower case; parameter names are matched in any case."""
    for pname, value in params:
        if pname == name or pname.lower() == name:
            return True, value
    return False, None


# The plain writing of `;name=value` parameters: token names, values of URI-ish
# characters (no spaces, quotes, '<', ',' or ';'), no empty pieces.  For these the
# general rules (`_split_outside` + `_parse_params`) give just what `_PLAIN_PARAM` reads.
_PARAM_VALUE = r"[A-Za-z0-9\-.!%*_+`'~:\[\]/@?&$=]"
_PLAIN_PARAMS = rf"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:={_PARAM_VALUE}*)?)*"
_PLAIN_PARAM = re.compile(rf"""(?x)
    ;([A-Za-z0-9\-.!%*_+`'~]+)  # name
    (={_PARAM_VALUE}*)?          # '=' and value (no '=': a flag, value None)
""")


def _plain_params(text: str) -> Params:
    """Parameters of a `_PLAIN_PARAMS` match."""
    if not text:
        return ()
    if text.count(";") == 1:  # one parameter (the usual branch or tag): no regex needed
        name, eq, value = text[1:].partition("=")  # names hold no '='
        return ((name, value if eq else None),)
    found = _PLAIN_PARAM.findall(text)
    return tuple([(name, value[1:] if value else None) for name, value in found])


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


# A Via as user agents write it: `SIP/2.0/UDP host[:port];params`, single spaces only.
_PLAIN_VIA = re.compile(
    r"SIP/2\.0/([A-Z]+) (\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)(?::([0-9]{1,5}))?"
    rf"({_PLAIN_PARAMS})"
)


def parse_via(value: str) -> Via:
    """Parse one Via value (already split from its neighbours)."""
    plain = _PLAIN_VIA.fullmatch(value)
    if plain is not None:  # the usual writing, read in one match
        transport, host, port_text, params = plain.groups()
        port = None if port_text is None else int(port_text)
        if port is None or 0 < port < 65536:
            return Via(transport, host, port, _plain_params(params))
    return _parse_via_full(value)


def _parse_via_full(value: str) -> Via:
    """`parse_via` by the general rules: any spacing, quoted parameters, errors."""
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


# `<uri>;params` with an optional display name: quoted without escapes, or words of
# token characters; single spaces only.  The URI holds no spaces, quotes or angles.
_PLAIN_NAME_ADDR = re.compile(
    r'("[^"\\]*"|[A-Za-z0-9\-.!%*_+`\'~]+(?: [A-Za-z0-9\-.!%*_+`\'~]+)*)? ?'
    r'<([^\s<>"]+)>'
    rf"({_PLAIN_PARAMS})"
)


def parse_name_addr(value: str, what: str = "address") -> NameAddr:
    """Parse `"Name" <uri>;p=v`, `Name <uri>;p=v`, `<uri>;p=v` or bare `uri;p=v`.

    In the bare form every ';' after the URI starts a header parameter (RFC 3261 §20.10),
    so `sip:a@b;tag=x` is the URI `sip:a@b` with tag `x`.
    """
    plain = _PLAIN_NAME_ADDR.fullmatch(value)
    if plain is not None:  # the usual writing, read in one match
        display, uri, params = plain.groups()
        colon = uri.find(":")
        if colon > 0:
            return NameAddr(display, uri, _plain_params(params))
    return _parse_name_addr_full(value, what)


def _parse_name_addr_full(value: str, what: str) -> NameAddr:
    """`parse_name_addr` by the general rules: any spacing and quoting, errors."""
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
