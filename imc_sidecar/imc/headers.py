"""The header lines imc adds to each MESSAGE it sends, and the check of `extra_hdrs`.

Order as in Kamailio 5.6 (build_headers() and all_hdrs): Content-Type, Supported,
extra_hdrs, In-Reply-To.  The invite-failure notice carries extra_hdrs only.
"""

from __future__ import annotations

from ..sip.grammar import is_token
from .outcome import Outgoing

__all__ = ["MAX_HEADER_BLOCK", "header_block", "validate_extra_hdrs"]

CRLF = b"\r\n"
SUPPORTED = b"Supported: kamailio/imc\r\n"
# Kamailio builds the block in a 1024-byte buffer; extra_hdrs plus the fixed lines must fit.
MAX_HEADER_BLOCK = 1024
_FIXED_LINES = b"Content-Type: text/plain\r\n" + SUPPORTED

# Headers the transaction layer or imc itself writes; a second copy would break the
# message or contradict it.  Compact forms included (RFC 3261 §7.3.3).
_RESERVED = frozenset(
    {
        "via", "v",
        "from", "f",
        "to", "t",
        "call-id", "i",
        "cseq",
        "max-forwards",
        "content-length", "l",
        "content-type", "c",
        "content-encoding", "e",
        "in-reply-to",
    }
)  # fmt: skip


def header_block(out: Outgoing, extra_hdrs: str) -> bytes:
    """Header lines for one outgoing MESSAGE, each ended by CRLF.

    Unlike Kamailio, an extra_hdrs without its final CRLF gets one, rather than having
    In-Reply-To glued onto its last line.
    """
    extra = extra_hdrs.encode()
    if extra and not extra.endswith(CRLF):
        extra += CRLF
    if not out.imc_headers:
        return extra
    block = b"Content-Type: " + out.content_type.encode() + CRLF + SUPPORTED + extra
    if out.in_reply_to is not None:
        block += b"In-Reply-To: " + out.in_reply_to.encode() + CRLF
    return block


def validate_extra_hdrs(text: str) -> str:
    """Check the extra_hdrs setting and return it ending in CRLF (or empty).

    The one rule for that setting (the settings call it after decoding escapes).  Each
    line must be `Name: value` with a SIP token as its name, lines are separated by CRLF,
    and the lines together with imc's own must stay under 1024 bytes.  Raises ValueError
    saying what is wrong, without naming the setting (the caller does).
    """
    if not text:
        return ""
    body = text[:-2] if text.endswith("\r\n") else text
    for number, line in enumerate(body.split("\r\n"), start=1):
        _check_line(number, line)
    normalized = body + "\r\n"
    size = len(_FIXED_LINES) + len(normalized.encode())
    if size >= MAX_HEADER_BLOCK:
        raise ValueError(
            f"too long: with imc's own headers it takes {size} bytes, "
            f"the limit is {MAX_HEADER_BLOCK - 1}"
        )
    return normalized


def _check_line(number: int, line: str) -> None:
    where = f"line {number} ({line[:40]!r})"
    if "\r" in line or "\n" in line:
        raise ValueError(f"{where}: lines must be separated by CRLF, not a bare CR or LF")
    if any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in line):
        raise ValueError(f"{where}: control characters are not allowed")
    name, colon, _value = line.partition(":")
    name = name.rstrip(" \t")
    if not colon or not name:
        raise ValueError(f"{where}: each line must be 'Name: value'")
    if not is_token(name):
        raise ValueError(f"{where}: '{name}' is not a valid SIP header name (RFC 3261 token)")
    if name.lower() in _RESERVED:
        raise ValueError(f"{where}: {name} is written by the server itself and cannot be set here")
