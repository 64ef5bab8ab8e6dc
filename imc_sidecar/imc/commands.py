"""Parsing a command line (imc_parse_cmd()) and running each command.

Each command is one small method, found by name (`do_<name>`) as in aiosmtpd.  A method
returns normally for rc 1 (refusals answered in-band included) and raises `Refused` for
a negative rc; the dispatcher turns that into the command's own code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..sip.uri import SipUri, UriError, parse_uri
from . import texts
from .changes import (
    Admit,
    Change,
    MemberAdded,
    MemberFlagsChanged,
    MemberRemoved,
    RoomCreated,
    RoomDestroyed,
)
from .limits import NO_LIMITS, LimitReached, RoomLimits, member_limit, room_limit
from .model import MEMBER_ADMIN, MEMBER_INVITED, MEMBER_OWNER, ROOM_PRIVATE, Member, Room
from .outcome import ChatRequest, InviteTicket, Outgoing
from .rooms import RoomTable

__all__ = [
    "ERROR_CODES",
    "MAX_LIST_BODY",
    "CommandRunner",
    "Context",
    "ParsedCommand",
    "Reason",
    "Refused",
    "parse_command",
]

MAX_PARAMS = 5  # IMC_CMD_MAX_PARAM
# Longest #members / #rooms body Kamailio's 32 KB buffer holds (last newline dropped).
MAX_LIST_BODY = 32765

_NAME_END = b" \t\r\n\x00"
_BLANK = b" \t"
_LINE_END = b"\r\n\x00"

# Canonical command per name, aliases included; matched case-insensitively, exactly.
_COMMANDS = {
    b"create": "create",
    b"join": "join",
    b"invite": "invite",
    b"add": "add",
    b"accept": "accept",
    b"reject": "reject",
    b"deny": "reject",
    b"remove": "remove",
    b"leave": "leave",
    b"exit": "leave",
    b"members": "members",
    b"list": "members",
    b"rooms": "rooms",
    b"destroy": "destroy",
    b"modify": "modify",
    b"help": "help",
}

# The rc each command returns when it fails (ki_imc_manager()).
ERROR_CODES = {
    "create": -30,
    "join": -40,
    "invite": -50,
    "add": -50,
    "accept": -60,
    "reject": -70,
    "remove": -80,
    "leave": -90,
    "members": -100,
    "rooms": -100,
    "destroy": -110,
    "modify": -120,
    "help": -120,
    "unknown": -130,
}

_ROLES = {"owner": MEMBER_OWNER, "admin": MEMBER_ADMIN, "member": 0}


class Reason:
    """SIP reason phrases for negative outcomes: one per cause, short, for the user."""

    EMPTY_BODY = "Empty body"
    BAD_REQUEST_URI = "Invalid Request-URI"
    BAD_FROM = "Invalid From URI"
    BAD_SYNTAX = "Invalid command syntax"
    MISSING_ARGUMENT = "Missing argument"
    BAD_ARGUMENT = "Invalid argument"
    BAD_ROLE = "Invalid role"
    ROOM_NOT_FOUND = "Room not found"
    NOT_MEMBER = "Not a member of the room"
    NOT_ACCEPTED = "Invitation not accepted yet"
    PERMISSION = "Permission denied"
    ALREADY_PRESENT = "User is already in the room"
    TARGET_NOT_MEMBER = "User is not a member of the room"
    TARGET_IS_OWNER = "Cannot remove the room owner"
    NOT_INVITED = "Not invited to the room"
    TOO_LONG = "Message too long"


class Refused(Exception):
    """The command failed: rc is the command's error code, `reason` the SIP phrase,
    `limit` the kind of room limit reached (limits.py), if that was why."""

    def __init__(self, reason: str, limit: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    command: str  # canonical name, or "unknown"
    name: str  # as typed, for the unknown-command notice
    params: tuple[str, ...] = ()


def _role_mark(flags: int) -> str:
    """`*` for an owner, `~` for an admin (the owner mark wins), nothing otherwise."""
    if flags & MEMBER_OWNER:
        return "*"
    return "~" if flags & MEMBER_ADMIN else ""


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def parse_command(body: bytes, start: bytes) -> ParsedCommand | None:
    """Parse a body that begins with `start`; None when it names no command (rc -20).

    The name runs to the first SP, TAB, CR, LF or NUL.  Up to five parameters follow,
    split on runs of SP/TAB; parsing stops at the end of the first line or a NUL.
    """
    pos = len(start)
    end = pos
    while end < len(body) and body[end] not in _NAME_END:
        end += 1
    if end == pos:
        return None
    raw_name = body[pos:end]
    name = _decode(raw_name)
    command = _COMMANDS.get(raw_name.lower(), "unknown")  # bytes.lower(): ASCII only
    if command in ("help", "unknown"):
        return ParsedCommand(command, name)
    params: list[str] = []
    pos = end
    while len(params) < MAX_PARAMS:
        while pos < len(body) and body[pos] in _BLANK:
            pos += 1
        if pos >= len(body) or body[pos] in _LINE_END:
            break
        end = pos
        while end < len(body) and body[end] not in _NAME_END:
            end += 1
        params.append(_decode(body[pos:end]))
        pos = end
    return ParsedCommand(command, name, tuple(params))


@dataclass(slots=True)
class Context:
    """One request being handled: its parsed URIs and what it has produced so far."""

    request: ChatRequest
    src: SipUri  # From URI
    dst: SipUri  # Request-URI
    params: tuple[str, ...] = ()
    name: str = ""
    changes: list[Change] = field(default_factory=list)
    messages: list[Outgoing] = field(default_factory=list)

    def param(self, index: int) -> str | None:
        return self.params[index] if index < len(self.params) else None


class CommandRunner:
    def __init__(
        self,
        table: RoomTable,
        start: str,
        create_on_join: bool,
        check_on_create: bool,
        admit: Admit | None = None,
        limits: RoomLimits = NO_LIMITS,
    ) -> None:
        self.table = table
        self.start = start  # the whole configured string, echoed in notices
        self.create_on_join = create_on_join
        self.check_on_create = check_on_create
        self.admit = admit
        self.limits = limits

    def run(self, ctx: Context, command: str) -> None:
        """Run one command; raises Refused when it fails."""
        handler: Callable[[Context], None] = getattr(self, f"do_{command}")
        handler(ctx)

    # -- commands ----------------------------------------------------------------------

    def do_create(self, ctx: Context) -> None:
        room_arg, private_arg = None, None
        if len(ctx.params) == 1:
            if ctx.params[0].lower() == "private":
                private_arg = ctx.params[0]
            else:
                room_arg = ctx.params[0]
        elif len(ctx.params) >= 2:
            room_arg, private_arg = ctx.params[0], ctx.params[1]
        target = self._room_uri(ctx, room_arg)
        if private_arg is not None and private_arg.lower() != "private":
            raise Refused(Reason.BAD_ARGUMENT)
        room = self.table.get(target.user, target.host)
        if room is None:
            flags = ROOM_PRIVATE if private_arg is not None else 0
            self._create_room(ctx, target, flags)
            return
        if self.check_on_create:
            self._echo(ctx, texts.ROOM_EXISTS)
        elif room.private:
            self._echo(ctx, texts.ROOM_EXISTS_PRIVATE)
        elif self._sender(room, ctx) is not None:
            self._echo(ctx, texts.ROOM_EXISTS_MEMBER)
        else:
            member = self._add_member(ctx, room, ctx.src.user, ctx.src.host, 0)
            self._broadcast(ctx, room, texts.member_joined(member.user))

    def do_join(self, ctx: Context) -> None:
        target = self._room_uri(ctx, ctx.param(0))
        room = self.table.get(target.user, target.host)
        if room is None:
            if self.create_on_join:
                self._create_room(ctx, target, 0)
            else:
                self._echo(ctx, texts.ROOM_NOT_FOUND)
            return
        member = self._sender(room, ctx)
        if member is not None:
            if member.flags & MEMBER_INVITED:
                # B16: an invitee's #join is taken as #accept, announced and persisted,
                # instead of 5.6's silent, unsaved promotion.
                self._set_flags(ctx, room, member, member.flags & ~MEMBER_INVITED)
                self._broadcast(ctx, room, texts.member_joined(member.user))
            else:
                self._notify(ctx, room, member.uri, texts.ALREADY_IN_ROOM)
            return
        if not room.private:
            self._add_member(ctx, room, ctx.src.user, ctx.src.host, 0)
            self._broadcast(ctx, room, texts.member_joined(ctx.src.user))
            return
        # Private: tell the sender at their raw From URI, then every active member (B17).
        self._notify(ctx, room, ctx.request.from_uri, texts.JOIN_PRIVATE_REFUSED)
        self._broadcast(ctx, room, texts.join_attempt(ctx.src.user))

    def do_invite(self, ctx: Context) -> None:
        user_arg = self._required(ctx, 0)
        invitee = self._expand(ctx, user_arg)
        room = self._existing_room(ctx, ctx.param(1))
        self._privileged_sender(ctx, room)
        if self.table.get_member(room, invitee.user, invitee.host) is not None:
            raise Refused(Reason.ALREADY_PRESENT)
        member = self._add_member(ctx, room, invitee.user, invitee.host, MEMBER_INVITED)
        inviter = self._sender(room, ctx)
        assert inviter is not None
        ticket = InviteTicket(room_uri=room.uri, invitee_uri=member.uri, inviter_uri=inviter.uri)
        # The inviter is named as spelled in this request's From, as Kamailio does.
        body = texts.invitation(ctx.src.user, self.start)
        ctx.messages.append(
            Outgoing(
                recipients=(member.uri,),
                from_uri=room.uri,
                body=body,
                in_reply_to=ctx.request.call_id,
                invite=ticket,
            )
        )

    def do_add(self, ctx: Context) -> None:
        user_arg = self._required(ctx, 0)
        target = self._expand(ctx, user_arg)
        room = self._existing_room(ctx, ctx.param(1))
        sender = self._member_sender(ctx, room)
        if not sender.flags & (MEMBER_OWNER | MEMBER_ADMIN):
            self._notify(ctx, room, sender.uri, texts.ADD_REFUSED)
            return
        if self.table.get_member(room, target.user, target.host) is not None:
            raise Refused(Reason.ALREADY_PRESENT)
        member = self._add_member(ctx, room, target.user, target.host, 0)
        self._broadcast(ctx, room, texts.member_joined(member.user))

    def do_accept(self, ctx: Context) -> None:
        room = self._existing_room(ctx, ctx.param(0))
        member = self._invited_sender(ctx, room)
        self._set_flags(ctx, room, member, member.flags & ~MEMBER_INVITED)
        self._broadcast(ctx, room, texts.member_joined(member.user))

    def do_reject(self, ctx: Context) -> None:
        room = self._existing_room(ctx, ctx.param(0))
        member = self._invited_sender(ctx, room)
        self._remove_member(ctx, room, member)

    def do_remove(self, ctx: Context) -> None:
        user_arg = self._required(ctx, 0)
        target_uri = self._expand(ctx, user_arg)
        room = self._existing_room(ctx, ctx.param(1))
        self._privileged_sender(ctx, room)
        target = self.table.get_member(room, target_uri.user, target_uri.host)
        if target is None:
            raise Refused(Reason.TARGET_NOT_MEMBER)
        if target.flags & MEMBER_OWNER:
            raise Refused(Reason.TARGET_IS_OWNER)
        self._notify(ctx, room, target.uri, texts.REMOVED_FROM_ROOM)
        self._remove_member(ctx, room, target)
        self._broadcast(ctx, room, texts.member_left(target.user))

    def do_leave(self, ctx: Context) -> None:
        room = self._existing_room(ctx, ctx.param(0))
        member = self._member_sender(ctx, room)
        if member.flags & MEMBER_OWNER:
            self._notify(ctx, room, member.uri, texts.LEAVE_OWNER_REFUSED)
            return
        # The leaver hears the broadcast too (when active), then goes.
        self._broadcast(ctx, room, texts.member_left(member.user))
        self._remove_member(ctx, room, member)

    def do_destroy(self, ctx: Context) -> None:
        room = self._existing_room(ctx, ctx.param(0))
        member = self._member_sender(ctx, room)
        if not member.flags & MEMBER_OWNER:
            raise Refused(Reason.PERMISSION)
        self._broadcast(ctx, room, texts.ROOM_DESTROYED)
        self.table.remove(room)
        ctx.changes.append(RoomDestroyed(room.name, room.domain))

    def do_members(self, ctx: Context) -> None:
        room = self._existing_room(ctx, ctx.param(0))
        member = self._member_sender(ctx, room)
        lines = []
        for active in self.table.active_members(room):
            lines.append(texts.encode(_role_mark(active.flags) + texts.tag(active.user)))
        body = texts.MEMBERS_HEADER + b"\n".join(lines) if lines else texts.MEMBERS_HEADER[:-1]
        if len(body) > MAX_LIST_BODY:
            raise Refused(Reason.TOO_LONG)
        self._notify(ctx, room, member.uri, body)

    def do_rooms(self, ctx: Context) -> None:
        names = [texts.encode(texts.tag(room.name)) for room in self.table]
        body = texts.ROOMS_HEADER + b"\n".join(names) if names else texts.ROOMS_HEADER[:-1]
        if len(body) > MAX_LIST_BODY:
            raise Refused(Reason.TOO_LONG)
        self._echo(ctx, body)

    def do_modify(self, ctx: Context) -> None:
        user_arg = self._required(ctx, 0)
        role = self._required(ctx, 1)
        flags = _ROLES.get(role.lower())
        if flags is None:
            raise Refused(Reason.BAD_ROLE)
        # The room is the 3rd token, as documented (master reads the 4th: B3).
        room = self._existing_room(ctx, ctx.param(2))
        target_uri = self._expand(ctx, user_arg)
        sender = self._member_sender(ctx, room)
        if not sender.flags & (MEMBER_OWNER | MEMBER_ADMIN):
            self._notify(ctx, room, sender.uri, texts.MODIFY_REFUSED)
            return
        target = self.table.get_member(room, target_uri.user, target_uri.host)
        if target is None:  # master crashes here (B2)
            raise Refused(Reason.TARGET_NOT_MEMBER)
        self._set_flags(ctx, room, target, flags)
        self._broadcast(ctx, room, texts.member_modified(target.uri, role))

    def do_help(self, ctx: Context) -> None:
        self._echo(ctx, texts.HELP)

    def do_unknown(self, ctx: Context) -> None:
        self._echo(ctx, texts.invalid_command(ctx.name, self.start))

    # -- arguments ---------------------------------------------------------------------

    def _expand(self, ctx: Context, token: str) -> SipUri:
        """`bob` -> `sip:bob@<R-URI host>` (build_uri()): add what the token lacks."""
        text = token if ":" in token else "sip:" + token
        if "@" not in token:
            text += "@" + ctx.dst.host
        try:
            return parse_uri(text)
        except UriError:
            raise Refused(Reason.BAD_ARGUMENT) from None

    def _room_uri(self, ctx: Context, token: str | None) -> SipUri:
        if token is not None:
            return self._expand(ctx, token)
        if not ctx.dst.user:
            raise Refused(Reason.BAD_REQUEST_URI)
        return self._expand(ctx, ctx.dst.user)

    @staticmethod
    def _required(ctx: Context, index: int) -> str:
        value = ctx.param(index)
        if value is None:
            raise Refused(Reason.MISSING_ARGUMENT)
        return value

    def _existing_room(self, ctx: Context, token: str | None) -> Room:
        target = self._room_uri(ctx, token)
        room = self.table.get(target.user, target.host)
        if room is None:
            raise Refused(Reason.ROOM_NOT_FOUND)
        return room

    def _sender(self, room: Room, ctx: Context) -> Member | None:
        return self.table.get_member(room, ctx.src.user, ctx.src.host)

    def _member_sender(self, ctx: Context, room: Room) -> Member:
        member = self._sender(room, ctx)
        if member is None:
            raise Refused(Reason.NOT_MEMBER)
        return member

    def _privileged_sender(self, ctx: Context, room: Room) -> Member:
        member = self._member_sender(ctx, room)
        if not member.flags & (MEMBER_OWNER | MEMBER_ADMIN):
            raise Refused(Reason.PERMISSION)
        return member

    def _invited_sender(self, ctx: Context, room: Room) -> Member:
        member = self._sender(room, ctx)
        if member is None or not member.flags & MEMBER_INVITED:
            raise Refused(Reason.NOT_INVITED)
        return member

    # -- state changes, each recorded for the store --------------------------------------

    def _check(self, *changes: Change) -> None:
        """Refuse, before anything changes, what the store could not keep."""
        if self.admit is None:
            return
        for change in changes:
            problem = self.admit(change)
            if problem is not None:
                raise Refused(problem)

    def _create_room(self, ctx: Context, target: SipUri, flags: int) -> None:
        uri = f"sip:{target.user}@{target.host}"
        _refuse_at(room_limit(self.limits, self.table))
        _refuse_at(member_limit(self.limits, self.table, None, ctx.src.user, ctx.src.host))
        self._check(
            RoomCreated(target.user, target.host, flags),
            MemberAdded(uri, ctx.src.user, ctx.src.host, MEMBER_OWNER),
        )
        room = self.table.add(target.user, target.host, flags)
        # The real flags are recorded, private bit included (master stores 0: B9).
        ctx.changes.append(RoomCreated(room.name, room.domain, room.flags))
        owner = self._add_member(ctx, room, ctx.src.user, ctx.src.host, MEMBER_OWNER)
        self._notify(ctx, room, owner.uri, texts.ROOM_CREATED)

    def _add_member(self, ctx: Context, room: Room, user: str, domain: str, flags: int) -> Member:
        _refuse_at(member_limit(self.limits, self.table, room, user, domain))
        self._check(MemberAdded(room.uri, user, domain, flags))
        member = self.table.add_member(room, user, domain, flags)
        ctx.changes.append(MemberAdded(room.uri, member.user, member.domain, flags))
        return member

    def _set_flags(self, ctx: Context, room: Room, member: Member, flags: int) -> None:
        if flags == member.flags:
            return
        self.table.set_flags(room, member, flags)
        ctx.changes.append(MemberFlagsChanged(room.uri, member.user, member.domain, flags))

    def _remove_member(self, ctx: Context, room: Room, member: Member) -> None:
        self.table.remove_member(room, member)
        ctx.changes.append(MemberRemoved(room.uri, member.user, member.domain))

    # -- notices -----------------------------------------------------------------------

    def _notify(self, ctx: Context, room: Room, to_uri: str, body: bytes) -> None:
        """Room style: From the room's URI, to one member."""
        ctx.messages.append(Outgoing((to_uri,), room.uri, body, in_reply_to=ctx.request.call_id))

    def _echo(self, ctx: Context, body: bytes) -> None:
        """Echo style: From the R-URI as received, to the From URI as received."""
        request = ctx.request
        ctx.messages.append(
            Outgoing((request.from_uri,), request.request_uri, body, in_reply_to=request.call_id)
        )

    def _broadcast(self, ctx: Context, room: Room, body: bytes) -> None:
        recipients = self.table.broadcast_uris(room)
        if recipients:
            ctx.messages.append(
                Outgoing(recipients, room.uri, body, in_reply_to=ctx.request.call_id)
            )


def _refuse_at(reached: LimitReached | None) -> None:
    if reached is not None:
        raise Refused(reached.reason, reached.kind)
