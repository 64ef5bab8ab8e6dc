"""Answering requests: the one response builder (RFC 3261 §8.2.6).

A reply copies every Via and the first From, To, Call-ID and CSeq of the request, adds a
To-tag when the status is above 100 and the To has none, then the extra headers.  The
same builder answers a parsed request and, from its headers alone, one that failed to
parse.  Tags come from the caller (the endpoint's id source): nothing here is random.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ParseError
from .headers import Headers, parse_name_addr
from .message import Request

__all__ = ["reply_bytes", "reply_headers", "response_bytes", "to_has_tag"]

ReplyHeaders = tuple[tuple[str, str, str], ...]


def reply_headers(headers: Iterable[tuple[str, str]]) -> ReplyHeaders:
    """Extra headers of a reply, checked once for `reply_bytes`.  Content-Length is
    framing, always written by `reply_bytes` itself."""
    return tuple(item for item in Headers(headers).entries if item[0] != "content-length")


def reply_bytes(
    request_headers: Headers,
    status: int,
    reason: str,
    to_tag: str,
    extra: ReplyHeaders,
    to_has_tag: bool | None = None,
) -> bytes:
    """The response to a request with these headers, as bytes on the wire.

    `to_has_tag` is whether the request's To already has a tag, when the caller knows
    (a parsed request does); None makes the builder read the To itself.
    """
    first = request_headers.first_item
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"{name}: {value}" for key, name, value in request_headers.entries if key == "via"]
    item = first("from")
    if item is not None:
        lines.append(f"{item[1]}: {item[2]}")
    item = first("to")
    if item is not None:
        _, name, value = item
        if status > 100:
            if to_has_tag is None:
                try:
                    to_has_tag = parse_name_addr(value, "To").tag is not None
                except ParseError:
                    to_has_tag = True  # leave a To we cannot read as it is
            if not to_has_tag:
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


def response_bytes(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str,
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """`reply_bytes` for a request, with its extra headers checked here."""
    return reply_bytes(
        request.headers, status, reason, to_tag, reply_headers(headers), to_has_tag(request)
    )


def to_has_tag(request: Request) -> bool | None:
    """Whether the request's To has a tag, when the To was parsed already (else None)."""
    parsed_to = request.parsed_to
    return None if parsed_to is None else parsed_to.tag is not None
