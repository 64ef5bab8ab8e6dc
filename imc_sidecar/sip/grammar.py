"""The SIP grammar (RFC 3261 §25), written once.

Every module that reads or checks SIP text takes its character classes, patterns and
small rules from here: the full parser (headers.py, message.py), the fast scans
(scan.py, which need bytes patterns), the extra_hdrs check (imc/headers.py) and the
settings.  Patterns come as regex source strings, so a caller can embed them in a larger
expression; `*_BYTES` forms are the same text encoded for the scans over raw datagrams.

Pure functions and constants, no state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import ParseError

__all__ = [
    "ASCII_SPACE_BYTES",
    "COMPACT_FORMS",
    "HOST",
    "LIST_HEADERS",
    "MAX_CSEQ",
    "PARAM_VALUE",
    "PLAIN_CSEQ_BYTES",
    "PLAIN_NAME_ADDR",
    "PLAIN_PARAM",
    "PLAIN_PARAMS",
    "PLAIN_VIA",
    "TOKEN",
    "TOKEN_BYTES",
    "TOKEN_CHARS",
    "USERINFO_CHARS",
    "Params",
    "closing_quote",
    "find_param",
    "format_params",
    "has_space",
    "header_key",
    "is_token",
    "parse_cseq",
    "parse_max_forwards",
    "parse_params",
    "plain_params",
    "port_number",
    "split_hostport",
    "split_outside",
    "token_match",
    "written_name",
]

Params = tuple[tuple[str, str | None], ...]

# --- token (RFC 3261 §25.1): alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"  # the inside of a [...] class
TOKEN = f"[{TOKEN_CHARS}]+"
TOKEN_BYTES = TOKEN.encode()
token_match = re.compile(TOKEN).fullmatch


def is_token(text: str) -> bool:
    """Whether `text` is one RFC 3261 token (a method, a header or parameter name)."""
    return token_match(text) is not None


# --- whitespace -----------------------------------------------------------------------
# Where the grammar allows no whitespace (Call-ID, sent-by, a URI), any character Python's
# `\s` matches is refused.  The byte scans use its ASCII part, derived here, not retyped.

has_space = re.compile(r"\s").search
ASCII_SPACE_BYTES = bytes(c for c in range(128) if chr(c).isspace())

# --- header names (RFC 3261 §7.3.3 compact forms, and list-valued headers §7.3.1) -----

COMPACT_FORMS = {
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
_COMPACT_KEY = {short: full.lower() for short, full in COMPACT_FORMS.items()}

# Headers whose grammar is a comma-separated list; only these are split into elements.
LIST_HEADERS = frozenset(
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


def header_key(name: str) -> str:
    """The lookup key of a header name: lower case, compact forms expanded."""
    lower = name.lower()
    return _COMPACT_KEY.get(lower, lower)


def written_name(name: str) -> str:
    """The name a header keeps: as written, except that a compact form becomes its full name."""
    return COMPACT_FORMS.get(name.lower(), name) if len(name) == 1 else name


# --- quoted strings and separators ------------------------------------------------------


def closing_quote(text: str, start: int) -> int:
    """Index of the quote that closes the quoted-string opened at `start`, or -1."""
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


def split_outside(text: str, sep: str) -> list[str]:
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


# --- parameters (`;name=value`) ---------------------------------------------------------


def parse_params(pieces: Iterable[str], what: str) -> Params:
    """Parameters from the pieces between ';' (the general rule: any spacing, quoting)."""
    params: list[tuple[str, str | None]] = []
    for piece in pieces:
        name, eq, value = piece.partition("=")
        name = name.strip()
        if not name:
            if not eq and not value.strip():
                continue  # tolerate ";;" and a trailing ';'
            raise ParseError(f"Malformed {what}")
        if not is_token(name):
            raise ParseError(f"Malformed {what}")
        value = value.strip()
        if '"' in value and not (value[0] == '"' and closing_quote(value, 0) == len(value) - 1):
            # a quote only as one whole quoted-string: a stray one would swallow what
            # follows it (a To-tag we add, say) when the value is read again
            raise ParseError(f"Malformed {what}")
        params.append((name, value if eq else None))
    return tuple(params)


def find_param(params: Params, name: str) -> tuple[bool, str | None]:
    """(present, value) of `name`, given in lower case; names match in any case."""
    for pname, value in params:
        if pname == name or pname.lower() == name:
            return True, value
    return False, None


def format_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


# The plain writing of parameters: token names, values of URI-ish characters (no spaces,
# quotes, '<', ',' or ';'), no empty pieces.  For these, `split_outside` + `parse_params`
# give just what `plain_params` reads (a property test holds the two equal).
PARAM_VALUE = r"[A-Za-z0-9\-.!%*_+`'~:\[\]/@?&$=]"
PLAIN_PARAMS = rf"(?:;{TOKEN}(?:={PARAM_VALUE}*)?)*"
PLAIN_PARAM = re.compile(rf"""(?x)
    ;({TOKEN})            # name
    (={PARAM_VALUE}*)?    # '=' and value (no '=': a flag, value None)
""")


def plain_params(text: str) -> Params:
    """Parameters of a `PLAIN_PARAMS` match."""
    if not text:
        return ()
    if text.count(";") == 1:  # one parameter (the usual branch or tag): no regex needed
        name, eq, value = text[1:].partition("=")  # names hold no '='
        return ((name, value if eq else None),)
    found = PLAIN_PARAM.findall(text)
    return tuple([(name, value[1:] if value else None) for name, value in found])


# --- host and port ------------------------------------------------------------------------

HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+"
# userinfo of a SIP URI: unreserved / escaped / user-unreserved (RFC 3261 §25.1), plus ':'
# for a password (the inside of a [...] class).
USERINFO_CHARS = r"A-Za-z0-9\-_.!~*'()%&=+$,;?/:"
_host_match = re.compile(HOST).fullmatch


def port_number(text: str) -> int | None:
    """The port `text` writes (ASCII digits, leading zeros allowed, 1-65535), else None.

    The length is checked before `int()`, which refuses more than 4,300 digits."""
    digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit()) or len(digits) > 5:
        return None
    port = int(digits or "0")
    return port if 0 < port < 65536 else None


def split_hostport(text: str, what: str) -> tuple[str, int | None]:
    """`host[:port]` (IPv6 in brackets); ParseError naming `what` when malformed."""
    if text.startswith("["):
        end = text.find("]")
        host, tail = (text, "") if end < 0 else (text[: end + 1], text[end + 1 :])
    else:
        host, colon, port_text = text.partition(":")
        tail = colon + port_text
    if not _host_match(host):
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


# --- Via and name-addr, as user agents write them ------------------------------------------

# `SIP/2.0/UDP host[:port];params`, single spaces only; the general rules are parse_via's.
PLAIN_VIA = rf"SIP/2\.0/([A-Z]+) ({HOST})(?::([0-9]{{1,5}}))?({PLAIN_PARAMS})"

# `<uri>;params` with an optional display name: quoted without escapes, or words of
# token characters; single spaces only.  The URI holds no spaces, quotes or angles.
PLAIN_NAME_ADDR = rf'("[^"\\]*"|{TOKEN}(?: {TOKEN})*)? ?<([^\s<>"]+)>({PLAIN_PARAMS})'

# --- Max-Forwards (RFC 3261 §20.22): 1*DIGIT; Kamailio refuses more than 255 ------------


def parse_max_forwards(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 3 or int(value) > 255:
        raise ParseError("Malformed Max-Forwards")
    return int(value)


# --- CSeq (RFC 3261 §20.16) -------------------------------------------------------------

MAX_CSEQ = 2**31  # the sequence number is below this
PLAIN_CSEQ_BYTES = rb"([0-9]{1,10}) (" + TOKEN_BYTES + rb")"


def parse_cseq(value: str) -> tuple[int, str]:
    """(sequence number, method) of a CSeq value."""
    parts = value.split()
    if len(parts) != 2:
        raise ParseError("Malformed CSeq")
    number, method = parts
    if not (number.isascii() and number.isdigit()) or len(number) > 10 or not is_token(method):
        raise ParseError("Malformed CSeq")
    seq = int(number)
    if seq >= MAX_CSEQ:
        raise ParseError("Malformed CSeq")
    return seq, method
