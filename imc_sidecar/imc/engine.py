"""The chat engine: Kamailio's imc_manager() as a pure function of state and request.

`handle()` takes one MESSAGE and returns an Outcome: the rc imc_manager() would return,
the SIP reply to give, the state changes to make durable first, and the MESSAGEs to
send.  No sockets, no database, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..sip.uri import SipUri, UriError, parse_uri
from . import texts
from .changes import Admit, MemberRemoved, StoredRoom, room_of
from .commands import ERROR_CODES, CommandRunner, Context, Reason, Refused, parse_command
from .limits import NO_LIMITS, RoomLimits
from .model import MEMBER_INVITED, Room
from .outcome import ChatRequest, InviteTicket, Outcome, Outgoing
from .rooms import RoomTable, room_key

__all__ = ["MAX_CHAT_BODY", "EngineConfig", "ImcEngine"]

# Kamailio formats chat copies into a 32768-byte buffer; a copy that would fill it is dropped.
MAX_CHAT_BODY = 32767

_URI_CACHE_MAX = 65536
RC_OK = 1
RC_BAD_REQUEST = -1
RC_BAD_SYNTAX = -20
RC_CHAT_FAILED = -200


@dataclass(frozen=True)
class EngineConfig:
    # Kamailio's imc_cmd_start_char: only [0] is matched, the whole string is echoed.
    cmd_start_char: str = "#"
    hash_size: int = 4  # exponent: 2**hash_size buckets
    create_on_join: bool = True
    check_on_create: bool = False
    admit: Admit | None = None  # the store's limits, checked before anything changes
    limits: RoomLimits = NO_LIMITS  # members per room, rooms per user, rooms


def _ok(command: str | None, ctx: Context | None = None) -> Outcome:
    if ctx is None:
        return Outcome(RC_OK, 200, "OK", command=command)
    return Outcome(RC_OK, 200, "OK", ctx.changes, ctx.messages, command)


def _failed(rc: int, reason: str, command: str | None) -> Outcome:
    return Outcome(rc, 500, reason, command=command)


def _chat_refused(reason: str, dst: SipUri) -> Outcome:
    """A refused text, naming the room it was for (memory of it may be stale: app.py)."""
    outcome = _failed(RC_CHAT_FAILED, reason, None)
    if dst.user:
        outcome.room = f"sip:{dst.user}@{dst.host}"
    return outcome


def _is_text(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower().startswith("text/")


class ImcEngine:
    def __init__(self, config: EngineConfig) -> None:
        if not config.cmd_start_char:
            raise ValueError("cmd_start_char must not be empty")
        self.config = config
        self._start = config.cmd_start_char[0].encode("utf-8", "surrogateescape")
        self._table = RoomTable(config.hash_size)
        self._uris: dict[str, SipUri] = {}  # parsed URIs by text (SipUri is immutable)
        self._commands = CommandRunner(
            self._table,
            config.cmd_start_char,
            config.create_on_join,
            config.check_on_create,
            config.admit,
            config.limits,
        )

    # -- state -------------------------------------------------------------------------

    def load(self, rooms: Iterable[StoredRoom]) -> None:
        """Add rooms as loaded from the database, in load order."""
        self._table.load(rooms)

    def refresh(self, room_uri: str, stored: StoredRoom | None) -> None:
        """Replace one room (`sip:name@domain`, any case) with the database's copy;
        None removes it.  For changes another sidecar made (feed/)."""
        name, _, domain = room_uri.removeprefix("sip:").rpartition("@")
        self._table.replace(room_key(name, domain), stored)

    def rooms(self) -> Iterator[Room]:
        """Every room in Kamailio order (hash bucket, then newest first)."""
        return iter(self._table)

    def find_room(self, uri: str) -> Room | None:
        """The room for a full SIP URI such as `sip:chat-1@example.com`, any case."""
        try:
            parsed = parse_uri(uri)
        except UriError:
            return None
        return self._table.get(parsed.user, parsed.host) if parsed.user else None

    # -- requests ----------------------------------------------------------------------

    def is_command(self, body: bytes) -> bool:
        """Whether `handle` would take this body for a command rather than a chat text."""
        return body.startswith(self._start)

    def handle(self, request: ChatRequest) -> Outcome:
        if not request.body:
            return _failed(RC_BAD_REQUEST, Reason.EMPTY_BODY, None)
        try:
            dst = self._parse_uri(request.request_uri)
        except UriError:
            return _failed(RC_BAD_REQUEST, Reason.BAD_REQUEST_URI, None)
        try:
            src = self._parse_uri(request.from_uri)
        except UriError:
            return _failed(RC_BAD_REQUEST, Reason.BAD_FROM, None)
        if not src.user:  # Kamailio cannot store a member without a user part either
            return _failed(RC_BAD_REQUEST, Reason.BAD_FROM, None)
        if request.body.startswith(self._start):
            return self._command(request, src, dst)
        return self._chat(request, src, dst)

    def room_key(self, request_uri: str) -> str | None:
        """The room a Request-URI names, as `sip:user@host` in lower case (None if it
        names none): the key of the change feed and of the rooms' versions."""
        try:
            dst = self._parse_uri(request_uri)
        except UriError:
            return None
        return f"sip:{dst.user}@{dst.host}".lower() if dst.user else None

    def _parse_uri(self, text: str) -> SipUri:
        """`parse_uri`, remembered: rooms and senders repeat (a bounded cache)."""
        uri = self._uris.get(text)
        if uri is None:
            uri = parse_uri(text)
            if len(self._uris) >= _URI_CACHE_MAX:
                self._uris.clear()
            self._uris[text] = uri
        return uri

    def _command(self, request: ChatRequest, src: SipUri, dst: SipUri) -> Outcome:
        parsed = parse_command(request.body, self._start)
        if parsed is None:
            return _failed(RC_BAD_SYNTAX, Reason.BAD_SYNTAX, None)
        ctx = Context(request, src, dst, parsed.params, parsed.name)
        journal = self._table.begin()
        try:
            self._commands.run(ctx, parsed.command)
        except Refused as refused:
            # Commands check before they change anything, so a refusal leaves no trace.
            outcome = _failed(ERROR_CODES[parsed.command], refused.reason, parsed.command)
            outcome.limit = refused.limit
        else:
            outcome = _ok(parsed.command, ctx)
            if journal:
                outcome.undo = journal
        finally:
            self._table.end()
        outcome.actor = f"sip:{src.user}@{src.host}"
        outcome.room = f"sip:{dst.user}@{dst.host}"
        if ctx.changes:  # the room changed, which a command may name in its arguments
            outcome.room = room_of(ctx.changes[0])
        return outcome

    def _chat(self, request: ChatRequest, src: SipUri, dst: SipUri) -> Outcome:
        """Fan a text out to every active member but the sender: the hot path."""
        room = self._table.get(dst.user, dst.host) if dst.user else None
        if room is None:
            return _chat_refused(Reason.ROOM_NOT_FOUND, dst)
        sender = self._table.get_member(room, src.user, src.host)
        if sender is None:
            return _chat_refused(Reason.NOT_MEMBER, dst)
        if sender.flags & MEMBER_INVITED:
            return _chat_refused(Reason.NOT_ACCEPTED, dst)
        content_type = request.content_type or "text/plain"
        if _is_text(content_type):
            # Kamailio prints the body with %.*s, which stops at the first NUL.
            text = request.body
            nul = text.find(b"\x00")
            body = texts.chat_prefix(sender.user) + (text if nul < 0 else text[:nul])
        else:
            # B6: a prefix would corrupt a non-text payload; it is forwarded untouched.
            body = request.body
        if len(body) > MAX_CHAT_BODY:
            return _failed(RC_CHAT_FAILED, Reason.TOO_LONG, None)
        recipients = self._table.broadcast_uris(room, skip=sender)
        outcome = Outcome(RC_OK, 200, "OK", actor=sender.uri, room=room.uri)
        if recipients:
            outcome.messages.append(
                Outgoing(recipients, room.uri, body, content_type, request.call_id)
            )
        return outcome

    def undo(self, outcome: Outcome) -> None:
        """Take back the changes `outcome` made in memory, which the database could not
        store.  Outcomes still to be taken back must go newest first."""
        if outcome.undo is not None:
            self._table.undo(outcome.undo)
            outcome.undo = None

    # -- invitation delivery -----------------------------------------------------------

    def invite_failed(self, ticket: InviteTicket, status: int, reason: str) -> Outcome:
        """An invitation got a final reply >= 300 (or timed out): drop the invitee.

        The notice goes to the inviter (Kamailio sends it to the unreachable invitee:
        B11), carries only extra_hdrs, and the removal is a persisted change (B10).
        Nothing happens when the invitee has meanwhile accepted, left or been removed.
        """
        if status < 300:
            return _ok("invite-failed")
        outcome = _ok("invite-failed")
        room = self.find_room(ticket.room_uri)
        invitee = parse_uri(ticket.invitee_uri)
        member = self._table.get_member(room, invitee.user, invitee.host) if room else None
        if room is None or member is None or not member.flags & MEMBER_INVITED:
            return outcome
        outcome.undo = self._table.begin()
        try:
            self._table.remove_member(room, member)
        finally:
            self._table.end()
        outcome.changes.append(MemberRemoved(room.uri, member.user, member.domain))
        # For the usage history: what the delivery ended with, and who invited.
        outcome.detail = f"{status} {reason}".strip()
        outcome.actor = ticket.inviter_uri
        outcome.room = room.uri
        outcome.messages.append(
            Outgoing(
                recipients=(ticket.inviter_uri,),
                from_uri=room.uri,
                body=texts.invite_failed(member.uri),
                imc_headers=False,
            )
        )
        return outcome
