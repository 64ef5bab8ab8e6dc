"""The rooms and members as the analysts see them: one row per room, one per member.

The sidecar's RPC (`sidecar.rooms`, `sidecar.members`) builds these rows from its live
engine, and the offline client (`Client.from_db`) from an engine loaded from the
tables, so both give the same rows.  Plain dicts of plain values: JSON-RPC carries
them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..imc.model import MEMBER_INVITED, MEMBER_OWNER, Room
from .records import role_name

__all__ = ["MEMBER_FIELDS", "ROOM_FIELDS", "Row", "member_rows", "room_row"]

ROOM_FIELDS = ("room", "name", "domain", "private", "members", "active", "invited", "owner")
MEMBER_FIELDS = ("room", "member", "role", "pending")

Row = dict[str, str | int | bool | None]


def room_row(room: Room) -> Row:
    invited = sum(1 for member in room.members if member.flags & MEMBER_INVITED)
    # By flag, not list position (imc.list_rooms shows the list head): the head moves
    # with reloads, and #modify can make several owners; the first by URI is shown.
    owners = sorted(m.uri for m in room.members if m.flags & MEMBER_OWNER)
    return {
        "room": room.uri,
        "name": room.name,
        "domain": room.domain,
        "private": room.private,
        "members": len(room.members),
        "active": len(room.members) - invited,
        "invited": invited,
        "owner": owners[0] if owners else None,
    }


def member_rows(rooms: Iterable[Room]) -> list[Row]:
    return [
        {
            "room": room.uri,
            "member": member.uri,
            "role": role_name(member.flags),
            "pending": bool(member.flags & MEMBER_INVITED),
        }
        for room in rooms
        for member in room.members
    ]
