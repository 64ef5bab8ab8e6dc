"""Every text imc sends, spelled exactly as Kamailio 5.6.3 sends it.

Typos ("permmission", "members is a conference room") and the hard-coded `#` in the help
text and the owner-leave notice (B20) are part of the observable protocol and are kept.
Bodies are bytes; user-supplied parts are encoded with surrogateescape so that bytes
which were not UTF-8 come back out unchanged.
"""

from __future__ import annotations

__all__ = [
    "ADD_REFUSED",
    "ALREADY_IN_ROOM",
    "HELP",
    "JOIN_PRIVATE_REFUSED",
    "LEAVE_OWNER_REFUSED",
    "MEMBERS_HEADER",
    "MODIFY_REFUSED",
    "REMOVED_FROM_ROOM",
    "ROOMS_HEADER",
    "ROOM_CREATED",
    "ROOM_DESTROYED",
    "ROOM_EXISTS",
    "ROOM_EXISTS_MEMBER",
    "ROOM_EXISTS_PRIVATE",
    "ROOM_NOT_FOUND",
    "chat_prefix",
    "encode",
    "invalid_command",
    "invitation",
    "invite_failed",
    "join_attempt",
    "member_joined",
    "member_left",
    "member_modified",
    "tag",
]

_PREFIX = "*** "


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


ROOM_CREATED = encode(_PREFIX + "Room was created")
ROOM_DESTROYED = encode(_PREFIX + "Room has been destroyed")
ROOM_NOT_FOUND = encode(_PREFIX + "Room not found")
ROOM_EXISTS = encode(_PREFIX + "Room already exists")
ROOM_EXISTS_PRIVATE = encode(_PREFIX + "A private room with the same name already exists")
ROOM_EXISTS_MEMBER = encode(_PREFIX + "Room already exists and you are a member")
ALREADY_IN_ROOM = encode(_PREFIX + "You are in the room already")
LEAVE_OWNER_REFUSED = encode(
    _PREFIX + "You are the room's owner and cannot leave. "
    "Use #destroy if you wish to destroy the room."
)
JOIN_PRIVATE_REFUSED = encode(
    _PREFIX + "Private rooms are by invitation only. Room owners have been notified."
)
ADD_REFUSED = encode(_PREFIX + "You don't have the permmission to add members to this room")
MODIFY_REFUSED = encode(_PREFIX + "You don't have the permmission to modify members in this room")
REMOVED_FROM_ROOM = encode(_PREFIX + "You have been removed from the room")

MEMBERS_HEADER = b"Members:\n"
ROOMS_HEADER = b"Rooms:\n"

# 5.6.3's IMC_HELP_MSG plus master's #modify line (we implement #modify).
HELP = (
    b"\r\n"
    b"#create <room_name> - create new conference room\r\n"
    b"#join [<room_name>] - join the conference room\r\n"
    b"#invite <user_name> [<room_name>] - invite a user to join a conference room\r\n"
    b"#add <user_name> [<room_name>] - add a user to a conference room\r\n"
    b"#modify <user_name> <role> [<room_name>] - modify user role in a conference room\r\n"
    b"#accept - accept invitation to join a conference room\r\n"
    b"#reject - reject invitation to join a conference room\r\n"
    b"#remove <user_name> [<room_name>] - remove a user from the conference room\r\n"
    b"#members - list members is a conference room\r\n"
    b"#rooms - list existing conference rooms\r\n"
    b"#leave [<room_name>] - leave from a conference room\r\n"
    b"#destroy [<room_name>] - destroy conference room\r\n"
)


def tag(user: str) -> str:
    """How imc names a member or room in notices: `[user]`, the domain never shown."""
    return f"[{user}]"


def chat_prefix(user: str) -> bytes:
    """What goes before every chat copy: `[user]: `."""
    return encode(f"[{user}]: ")


def member_joined(user: str) -> bytes:
    return encode(f"{_PREFIX}[{user}] has joined the room")


def member_left(user: str) -> bytes:
    return encode(f"{_PREFIX}[{user}] has left the room")


def join_attempt(user: str) -> bytes:
    return encode(f"{_PREFIX}[{user}] attempted to join the room")


def invitation(inviter: str, start: str) -> bytes:
    return encode(
        f"{_PREFIX}[{inviter}] invites you to join the room "
        f"(send '{start}accept' or '{start}reject')"
    )


def member_modified(member_uri: str, role_as_typed: str) -> bytes:
    # Master prints the full stored URI here, not `[user]`.
    return encode(f"{_PREFIX}{member_uri} is now {role_as_typed}")


def invalid_command(name_as_typed: str, start: str) -> bytes:
    return encode(f"{_PREFIX}Invalid command '{name_as_typed}' (send '{start}help' for help)")


def invite_failed(invitee_uri: str) -> bytes:
    """`user@host is not registered. ` (one trailing space), from the invitee's sip: URI."""
    without_scheme = invitee_uri[4:] if invitee_uri.startswith("sip:") else invitee_uri
    return encode(f"{without_scheme} is not registered. ")
