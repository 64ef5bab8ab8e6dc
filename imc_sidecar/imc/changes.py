"""State changes the engine asks the store to make durable, and what the store loads.

The engine emits these in the order they happened; the store applies one command's
changes in one transaction before the command's reply and notices leave.  Names are
spelled as the engine stores them (first-seen case); `room_uri` is `sip:<name>@<domain>`,
the value Kamailio keeps in `imc_members.room`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "Admit",
    "Change",
    "MemberAdded",
    "MemberFlagsChanged",
    "MemberRemoved",
    "RoomCreated",
    "RoomDestroyed",
    "StoredMember",
    "StoredRoom",
    "room_of",
]


@dataclass(frozen=True, slots=True)
class RoomCreated:
    name: str
    domain: str
    flags: int


@dataclass(frozen=True, slots=True)
class RoomDestroyed:
    """The room row and every member row whose `room` is this room's URI go."""

    name: str
    domain: str


@dataclass(frozen=True, slots=True)
class MemberAdded:
    room_uri: str
    user: str
    domain: str
    flags: int


@dataclass(frozen=True, slots=True)
class MemberFlagsChanged:
    room_uri: str
    user: str
    domain: str
    flags: int


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    room_uri: str
    user: str
    domain: str


Change = RoomCreated | RoomDestroyed | MemberAdded | MemberFlagsChanged | MemberRemoved

def room_of(change: Change) -> str:
    """The URI of the room a change is about."""
    if isinstance(change, RoomCreated | RoomDestroyed):
        return f"sip:{change.name}@{change.domain}"
    return change.room_uri


# Asked before a change is made: why the store could not keep it, or None.  The store
# owns the rule (column sizes); the engine refuses the command before anything changes.
Admit = Callable[[Change], str | None]


# What the store loads are NamedTuples: a million members are made at start, and a
# tuple is the cheapest immutable record to build and to unpack.
class StoredMember(NamedTuple):
    user: str
    domain: str
    flags: int


class StoredRoom(NamedTuple):
    """A room as loaded at start; members in the order the database returned them."""

    name: str
    domain: str
    flags: int
    members: tuple[StoredMember, ...]
