"""Target `framer`: the TCP framer (sip/framing.py StreamFramer) on any byte stream.

The first two bytes seed the chunking; the rest is the stream.  Holds:

* `feed` raises only ParseError;
* the chunking changes nothing: fed in one piece or in random chunks (down to single
  bytes), the stream gives the same messages, pongs and leftover, or the same error;
* the framer and the parser cut the same body: a framed message the parser accepts has
  as its body exactly the bytes after its head (no byte dropped, none missing);
* a broken stream stays broken and keeps nothing more: a later `feed` raises again and
  the buffer does not grow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common import chunks

from imc_sidecar.sip.errors import ParseError
from imc_sidecar.sip.framing import StreamFramer
from imc_sidecar.sip.parse import find_head_end, parse_message


@dataclass
class _Framed:
    messages: list[bytes] = field(default_factory=list)
    pongs: int = 0
    error: tuple[int, str] | None = None
    leftover: int = 0


def _frame(pieces: list[bytes]) -> _Framed:
    framer = StreamFramer()
    framed = _Framed()
    for chunk in pieces:
        try:
            messages, pongs = framer.feed(chunk)
        except ParseError as exc:
            framed.error = (exc.status, exc.reason)
            _check_stays_broken(framer)
            return framed
        framed.messages += messages
        framed.pongs += pongs
    framed.leftover = framer.buffered
    return framed


def _check_stays_broken(framer: StreamFramer) -> None:
    before = framer.buffered
    try:
        framer.feed(b"MESSAGE sip:x SIP/2.0\r\n")
    except ParseError:
        pass
    else:
        raise AssertionError("a failed stream took more data")
    assert framer.buffered == before


def _check_same_cut(message: bytes) -> None:
    try:
        parsed = parse_message(message)
    except ParseError:
        return
    _head_end, body_start = find_head_end(message)
    assert parsed.body == message[body_start:], "the parser and the framer cut differently"


def one_input(data: bytes) -> None:
    seed, stream = data[:2], data[2:]
    whole = _frame([stream])
    # 1..most bytes a chunk, single bytes too; byte by byte only through short streams,
    # where it costs little (a marker straddles a cut as well in 300 bytes as in 4,000)
    sizes = (3, 17, 200, 2000) if len(stream) <= 512 else (17, 200, 2000)
    chunked = _frame(chunks(seed, stream, sizes))
    assert chunked.error == whole.error
    if whole.error is None:
        # (after an error, one feed loses the messages it had found before it)
        assert chunked.messages == whole.messages
        assert (chunked.pongs, chunked.leftover) == (whole.pongs, whole.leftover)
    for message in chunked.messages:
        _check_same_cut(message)
