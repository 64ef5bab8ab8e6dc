"""Room limits: members in a room, rooms a user is in, rooms in all.

Kamailio's imc has none, so any user can grow the server's memory, or one room's
fan-out, without bound.  Each limit is checked where a room or a member is about to be
added, before anything changes, so a refused command leaves no trace.  Rooms and
members loaded from the database are never dropped for being over a limit: the limits
only refuse growth.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Room
from .rooms import RoomTable

__all__ = ["NO_LIMITS", "LimitReached", "RoomLimits", "member_limit", "room_limit"]

# Kinds of refusal, for the statistics.
ROOM_MEMBERS = "room_members"
USER_ROOMS = "user_rooms"
ROOMS = "rooms"


@dataclass(frozen=True, slots=True)
class RoomLimits:
    """Each limit is a count; 0 means none."""

    members_per_room: int = 0  # members of one room, invitees included
    rooms_per_user: int = 0  # rooms one user belongs to or is invited to
    rooms: int = 0  # rooms on this server


NO_LIMITS = RoomLimits()


@dataclass(frozen=True, slots=True)
class LimitReached:
    kind: str  # ROOM_MEMBERS, USER_ROOMS or ROOMS
    reason: str  # the SIP reason phrase


def room_limit(limits: RoomLimits, table: RoomTable) -> LimitReached | None:
    """Why one more room may not be created, or None."""
    if limits.rooms and len(table) >= limits.rooms:
        return LimitReached(ROOMS, f"Too many rooms on this server (limit {limits.rooms})")
    return None


def member_limit(
    limits: RoomLimits, table: RoomTable, room: Room | None, user: str, domain: str
) -> LimitReached | None:
    """Why `user@domain` may not be added to `room` (None: a room being created), or None."""
    full = limits.members_per_room
    if full and room is not None and table.member_count(room) >= full:
        return LimitReached(ROOM_MEMBERS, f"Room is full (limit {full} members)")
    if limits.rooms_per_user and table.rooms_of(user, domain) >= limits.rooms_per_user:
        return LimitReached(
            USER_ROOMS, f"User is in too many rooms (limit {limits.rooms_per_user})"
        )
    return None
