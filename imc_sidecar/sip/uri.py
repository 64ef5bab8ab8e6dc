"""SIP URIs: the one parser every layer uses (RFC 3261 §19.1, Kamailio's leniency).

Only what a chat server needs: scheme, user, host, port, parameters.  The text of a
URI is kept as received, because imc echoes some URIs back exactly as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .grammar import HOST, USERINFO_CHARS, port_number

__all__ = ["SipUri", "UriError", "parse_uri"]


class UriError(ValueError):
    """Raised for text that is not a SIP URI; the message says what is wrong."""


_SCHEMES = ("sip", "sips")
_USER_RE = re.compile(f"^[{USERINFO_CHARS}]*$")
_HOST_RE = re.compile(f"^({HOST})$")


@dataclass(frozen=True, slots=True)
class SipUri:
    scheme: str
    user: str
    host: str
    port: int | None
    params: tuple[tuple[str, str | None], ...]
    text: str

    @property
    def transport(self) -> str | None:
        for name, value in self.params:
            if name.lower() == "transport":
                return value.lower() if value else None
        return None

    @property
    def aor(self) -> str:
        """`sip:user@host`: the form imc stores for rooms and members."""
        return f"sip:{self.user}@{self.host}" if self.user else f"sip:{self.host}"

    def __str__(self) -> str:
        return self.text


def parse_uri(text: str) -> SipUri:
    """Parse `sip:[user[:password]@]host[:port][;params][?headers]`."""
    colon = text.find(":")
    if colon <= 0:
        raise UriError("no scheme")
    scheme = text[:colon].lower()
    if scheme not in _SCHEMES:
        raise UriError(f"unsupported scheme '{text[:colon]}'")
    rest = text[colon + 1 :]
    # ';' and '?' may appear in the user part while '@' may not appear unescaped in
    # parameters or headers (RFC 3261 §25.1), so the user ends at the last '@'.
    at = rest.rfind("@")
    user = ""
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user = userinfo.split(":", 1)[0]
        if not user or not _USER_RE.match(userinfo):
            raise UriError("bad user part")
    rest = rest.split("?", 1)[0]
    hostport, _, paramtext = rest.partition(";")
    host, port = _split_hostport(hostport)
    params: list[tuple[str, str | None]] = []
    if paramtext:
        for item in paramtext.split(";"):
            if not item:
                continue
            name, eq, value = item.partition("=")
            if not name:
                raise UriError("bad parameter")
            params.append((name, value if eq else None))
    return SipUri(scheme, user, host, port, tuple(params), text)


def _split_hostport(hostport: str) -> tuple[str, int | None]:
    if not hostport:
        raise UriError("empty host")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise UriError("unterminated IPv6 reference")
        host, tail = hostport[: end + 1], hostport[end + 1 :]
    else:
        host, sep, port_text = hostport.partition(":")
        tail = sep + port_text
    if not _HOST_RE.match(host):
        raise UriError("bad host")
    if not tail:
        return host, None
    if not tail.startswith(":") or not (tail[1:].isascii() and tail[1:].isdigit()):
        raise UriError("bad port")
    port = port_number(tail[1:])
    if port is None:
        raise UriError("port out of range")
    return host, port
