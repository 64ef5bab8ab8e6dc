"""SIP header grammar: names (compact forms), the `Headers` multi-map, Via, From/To.

Everything here parses one header value; framing and the start line live in message.py.
Errors are `ParseError`, carrying the reply to give.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import ParseError
from .grammar import (
    PLAIN_NAME_ADDR,
    PLAIN_VIA,
    Params,
    closing_quote,
    find_param,
    format_params,
    has_space,
    header_key,
    is_token,
    parse_params,
    plain_params,
    port_number,
    split_hostport,
    split_outside,
    written_name,
)

__all__ = ["Headers", "NameAddr", "Params", "Via", "parse_name_addr", "parse_via"]

_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")


class Headers:
    """Ordered, multi-valued, immutable; names are case-insensitive, compact forms expanded.

    Names keep the spelling they were written with (a compact name becomes its full
    name).  Each element of a list-valued header is one entry.  Methods that "change"
    the headers return a new object.
    """

    __slots__ = ("_firsts", "entries")

    entries: tuple[tuple[str, str, str], ...]  # (lookup key, name as written, value)
    # The first item of each key, when the maker had it at hand (the parser does):
    # lookups of the headers every request needs then cost a dict access, not a scan.
    _firsts: dict[str, tuple[str, str, str]] | None

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        built = []
        for name, value in items:
            if not is_token(name):
                raise ValueError(f"bad header name {name!r}")
            if _BAD_VALUE_RE.search(value):
                raise ValueError(f"bad characters in the value of {name}")
            built.append((header_key(name), written_name(name), value))
        self.entries = tuple(built)
        self._firsts = None

    @classmethod
    def trusted(
        cls,
        items: tuple[tuple[str, str, str], ...],
        firsts: dict[str, tuple[str, str, str]] | None = None,
    ) -> Headers:
        """Headers from checked items; `firsts`, when given, must be their first item
        per key (see `first_item`)."""
        headers = cls.__new__(cls)
        headers.entries = items
        headers._firsts = firsts
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.first(header_key(name))
        return default if value is None else value

    def first(self, key: str) -> str | None:
        """`get` for an already lower-cased full name (the parsed-message fast path)."""
        item = self.first_item(key)
        return None if item is None else item[2]

    def first_item(self, key: str) -> tuple[str, str, str] | None:
        """The first (key, name, value) of an already lower-cased full name."""
        firsts = self._firsts
        if firsts is not None:
            return firsts.get(key)
        for item in self.entries:
            if item[0] == key:
                return item
        return None

    def get_all(self, name: str) -> list[str]:
        key = header_key(name)
        return [value for k, _, value in self.entries if k == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return self.first(header_key(name)) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self.entries:
            yield name, value

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self.entries] == [(k, v) for k, _, v in other.entries]

    def __hash__(self) -> int:
        return hash(tuple((k, v) for k, _, v in self.entries))

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def with_header(self, name: str, value: str) -> Headers:
        """Append one value."""
        return Headers.trusted(self.entries + Headers([(name, value)]).entries)

    def with_first(self, name: str, value: str) -> Headers:
        """Replace the first value of `name` (append when absent); later values stay."""
        key = header_key(name)
        items = list(self.entries)
        for i, (k, written, _) in enumerate(items):
            if k == key:
                Headers([(name, value)])  # validates
                items[i] = item = (k, written, value)
                firsts = self._firsts
                if firsts is not None:
                    firsts = {**firsts, key: item}
                return Headers.trusted(tuple(items), firsts)
        return self.with_header(name, value)

    def without(self, name: str) -> Headers:
        key = header_key(name)
        return Headers.trusted(tuple(item for item in self.entries if item[0] != key))


# --- Via --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42): `SIP/2.0/<transport> host[:port];params`."""

    transport: str  # upper case, e.g. "UDP"
    host: str  # as written; IPv6 keeps its brackets
    port: int | None
    params: Params = ()

    def param(self, name: str) -> str | None:
        return find_param(self.params, name.lower())[1]

    def has_param(self, name: str) -> bool:
        return find_param(self.params, name.lower())[0]

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport(self) -> int | None:
        """The rport value, when one was filled in (RFC 3581) and is a port number."""
        value = self.param("rport")
        return port_number(value) if value else None

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
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


# A Via as user agents write it: `SIP/2.0/UDP host[:port];params`, single spaces only.
_PLAIN_VIA = re.compile(PLAIN_VIA)


def parse_via(value: str) -> Via:
    """Parse one Via value (already split from its neighbours)."""
    plain = _PLAIN_VIA.fullmatch(value)
    if plain is not None:  # the usual writing, read in one match
        transport, host, port_text, params = plain.groups()
        port = None if port_text is None else int(port_text)
        if port is None or 0 < port < 65536:
            return Via(transport, host, port, plain_params(params))
    return _parse_via_full(value)


def _parse_via_full(value: str) -> Via:
    """`parse_via` by the general rules: any spacing, quoted parameters, errors."""
    parts = value.split("/", 2)
    if len(parts) != 3 or parts[0].strip().upper() != "SIP" or parts[1].strip() != "2.0":
        raise ParseError("Malformed Via")
    words = parts[2].split(None, 1)
    if len(words) != 2 or not is_token(words[0]):
        raise ParseError("Malformed Via")
    pieces = split_outside(words[1], ";")
    sent_by = pieces[0].strip()
    if has_space(sent_by):
        # LWS is allowed around the port's colon only (RFC 3261 §25.1 COLON = SWS ":" SWS)
        before, colon, after = sent_by.rpartition(":")
        if colon:
            sent_by = before.rstrip() + colon + after.lstrip()
    host, port = split_hostport(sent_by, "Via")
    params = parse_params(pieces[1:], "Via")
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
        return find_param(self.params, "tag")[1]


_PLAIN_NAME_ADDR = re.compile(PLAIN_NAME_ADDR)


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
            return _tag_checked(NameAddr(display, uri, plain_params(params)), what)
    return _parse_name_addr_full(value, what)


def _tag_checked(addr: NameAddr, what: str) -> NameAddr:
    """`addr`, unless it has a `tag` without a value (RFC 3261: tag=token): such a tag
    would hide the one a reply adds."""
    present, tag = find_param(addr.params, "tag")
    if present and not tag:
        raise ParseError(f"Malformed {what}")
    return addr


def _parse_name_addr_full(value: str, what: str) -> NameAddr:
    """`parse_name_addr` by the general rules: any spacing and quoting, errors."""
    text = value.strip()
    display: str | None = None
    rest = text
    if text.startswith('"'):
        end = closing_quote(text, 0)
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
        pieces = split_outside(tail, ";")[1:] if tail else []
    else:
        pieces = split_outside(rest, ";")
        uri = pieces.pop(0).strip()
    if ":" not in uri or uri.startswith(":") or has_space(uri) or '"' in uri:
        raise ParseError(f"Malformed {what}")
    return _tag_checked(NameAddr(display, uri, parse_params(pieces, what)), what)
