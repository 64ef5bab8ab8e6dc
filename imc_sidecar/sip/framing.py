"""Cut a SIP byte stream (TCP) into messages (RFC 3261 §18.3, RFC 5626 §4.4.1).

On a stream, Content-Length is the only way to find the end of a body, so a message
without it is fatal for the connection.  Between messages a peer may send CRLFs: a
double CRLF is a keep-alive ping that is owed a single CRLF pong; a lone CRLF (a pong,
or RFC 3261 §7.5 padding) is skipped.
"""

from __future__ import annotations

from .message import MAX_BODY_BYTES, MAX_HEAD_BYTES, ParseError
from .parse import find_head_end

__all__ = ["StreamFramer"]

_PING = b"\r\n\r\n"


class StreamFramer:
    """Feed stream chunks in, get complete messages out.

    After `feed` raised ParseError the stream cannot be resynchronised: close it.
    """

    __slots__ = ("_broken", "_buffer", "_scanned", "_total")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # how far the header-end search has already looked
        self._total = 0  # length of the message at the buffer's start, once known
        self._broken = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """Return (complete messages, number of CRLF pongs to send back)."""
        if self._broken:
            raise ParseError("Stream already failed")
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        pongs = 0
        try:
            while buffer:
                if self._scanned == 0 and buffer[0] in (13, 10):
                    skipped, pinged = self._skip_keepalives()
                    pongs += pinged
                    if not skipped:
                        break  # a partial CRLF sequence: wait for more
                    continue
                message = self._next_message()
                if message is None:
                    break
                messages.append(message)
        except ParseError:
            self._broken = True
            raise
        return messages, pongs

    def _skip_keepalives(self) -> tuple[bool, int]:
        buffer = self._buffer
        if buffer.startswith(_PING):
            del buffer[:4]
            return True, 1
        if _PING.startswith(bytes(buffer[:4])):
            return False, 0  # maybe the start of a ping
        if buffer.startswith(b"\r\n"):
            del buffer[:2]
        elif buffer[0] == 10:  # a bare LF: tolerated like the parser does
            del buffer[:1]
        else:
            raise ParseError("Malformed keep-alive")
        return True, 0

    def _next_message(self) -> bytes | None:
        buffer = self._buffer
        if not self._total:
            # Resume the search a little before where it stopped: the marker may straddle.
            head_end, body_start = find_head_end(buffer, max(0, self._scanned - 3))
            if head_end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise ParseError("Message Too Large", 513)
                self._scanned = len(buffer)
                return None
            if head_end > MAX_HEAD_BYTES:
                raise ParseError("Message Too Large", 513)
            self._total = body_start + _content_length(bytes(buffer[:head_end]))
        total = self._total
        if len(buffer) < total:
            self._scanned = max(self._scanned, 1)  # mid-message: no keep-alive skipping
            return None
        message = bytes(buffer[:total])
        del buffer[:total]
        self._scanned = 0
        self._total = 0
        return message


def _content_length(head: bytes) -> int:
    values: list[bytes] = []
    for line in head.split(b"\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            values.append(value.strip())
    if not values:
        raise ParseError("Missing Content-Length")
    if any(v != values[0] for v in values) or not values[0].isdigit():
        raise ParseError("Bad Content-Length")
    if len(values[0]) > 9 or int(values[0]) > MAX_BODY_BYTES:
        raise ParseError("Message Too Large", 513)
    return int(values[0])
