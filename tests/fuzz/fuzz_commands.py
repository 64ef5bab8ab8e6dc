"""Target `commands`: the chat command parser (imc/commands.py parse_command) and the
engine behind it, fed through the SIP parser as a real MESSAGE would be.

Input: byte 0 picks the command prefix, the sender and the room; the rest is
`From value LF Request-URI LF body` (a missing part is empty).  The sender and the room
are either members and rooms of a loaded table (so that privileged commands run) or the
fuzzed text.  Holds:

* `parse_command` never raises; it finds a command exactly when a name follows the
  prefix, the name holds no separator, and there are at most five parameters, none
  empty, none with a blank, CR, LF or NUL, all from the first line;
* the engine never raises on a request the SIP parser accepted (UriError included:
  what it cannot read, it refuses);
* a refused request leaves no trace: no change, no message, the table as it was;
* nothing the engine sends carries a line break into a header (a room, user or URI with
  CR/LF injected through `#invite` arguments, From or the Request-URI): every outgoing
  URI is a SIP URI without CR, LF or NUL, and every header line imc adds is one line.
"""

from __future__ import annotations

from common import rooms_state
from rpc_support import ROOMS

from imc_sidecar.imc.commands import MAX_PARAMS, parse_command
from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.headers import header_block
from imc_sidecar.imc.outcome import ChatRequest, Outgoing
from imc_sidecar.sip.errors import ParseError
from imc_sidecar.sip.message import Request
from imc_sidecar.sip.parse import parse_message
from imc_sidecar.sip.uri import parse_uri

STARTS = ("#", "!", "é", "€")  # imc_cmd_start_char: only its first character counts
SENDERS = ("alice", "bob", "carol", "dave", "zed", None, None, None)  # None: fuzzed From
ROOM_NAMES = ("chat-1", "chat-2", "nowhere", None)  # None: fuzzed Request-URI
DOMAIN = "example.com"
_SEPARATORS = b" \t\r\n\x00"
_BREAKS = ("\r", "\n", "\x00")

def _check_parsed(body: bytes, start: bytes) -> None:
    parsed = parse_command(body, start)
    rest = body[len(start) :]
    if parsed is None:
        assert not rest or rest[0] in _SEPARATORS
        return
    first_line = rest.split(b"\r")[0].split(b"\n")[0].split(b"\x00")[0]
    name = parsed.name.encode("utf-8", "surrogateescape")
    assert name and rest.startswith(name) and not any(c in _SEPARATORS for c in name)
    assert len(parsed.params) <= MAX_PARAMS
    for param in parsed.params:
        raw = param.encode("utf-8", "surrogateescape")
        assert raw and not any(c in _SEPARATORS for c in raw) and raw in first_line


def _message(sender: str | None, room: str | None, fields: list[bytes]) -> bytes:
    from_value = (
        fields[0] if sender is None else f"<sip:{sender}@{DOMAIN}>;tag=f1".encode()
    )
    uri = fields[1] if room is None else f"sip:{room}@{DOMAIN}".encode()
    body = fields[2]
    return (
        b"MESSAGE " + uri + b" SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKfz\r\n"
        b"From: " + from_value + b"\r\n"
        b"To: <sip:chat-1@example.com>\r\nCall-ID: fz@192.0.2.7\r\nCSeq: 1 MESSAGE\r\n"
        b"Content-Type: text/plain\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        + body
    )


def _check_sent(out: Outgoing) -> None:
    for uri in (*out.recipients, out.from_uri):
        assert not any(c in uri for c in _BREAKS), uri
        parse_uri(uri)
    block = header_block(out, "")
    for line in block.split(b"\r\n")[:-1]:
        assert b"\r" not in line and b"\n" not in line and b": " in line, block


def one_input(data: bytes) -> None:
    choice = data[0] if data else 0
    start = STARTS[choice & 3]
    sender = SENDERS[(choice >> 2) & 7]
    room = ROOM_NAMES[(choice >> 5) & 3]
    fields = ([*data[1:].split(b"\n", 2), b"", b""])[:3]
    prefix = start.encode()
    _check_parsed(prefix + fields[2], prefix)
    _check_parsed(fields[2], prefix)  # a body that may not start with the prefix at all
    try:
        request = parse_message(_message(sender, room, fields))
    except ParseError:
        return  # never reaches the engine
    assert isinstance(request, Request)
    engine = ImcEngine(EngineConfig(cmd_start_char=start))
    engine.load(ROOMS)
    before = rooms_state(engine)
    chat = ChatRequest(
        request.uri, request.from_uri, request.call_id, request.body, request.content_type
    )
    outcome = engine.handle(chat)
    assert outcome.status in (200, 500), outcome
    if outcome.status != 200:
        assert not outcome.changes and not outcome.messages, outcome
        assert rooms_state(engine) == before
    for out in outcome.messages:
        _check_sent(out)
    for uri, _flags, members in rooms_state(engine):
        parse_uri(uri)
        for member_uri, _ in members:
            parse_uri(member_uri)
