"""Rooms, members and their flag bits, as Kamailio's imc keeps them (imc_mng.h)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "MEMBER_ADMIN",
    "MEMBER_DELETED",
    "MEMBER_INVITED",
    "MEMBER_OWNER",
    "MEMBER_SKIP",
    "ROOM_DELETED",
    "ROOM_PRIVATE",
    "Member",
    "Room",
]

# Member flag bits (the values stored in imc_members.flag).
MEMBER_OWNER = 1
MEMBER_ADMIN = 2
MEMBER_INVITED = 4
MEMBER_DELETED = 8  # transient in Kamailio; never stored
MEMBER_SKIP = 16  # transient in Kamailio; never stored

# Room flag bits (the values stored in imc_rooms.flag).
ROOM_PRIVATE = 1
ROOM_DELETED = 2  # transient in Kamailio; never stored


@dataclass(slots=True)
class Member:
    user: str  # spelled as first seen
    domain: str
    flags: int = 0

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.user.lower(), self.domain.lower())


@dataclass(slots=True)
class Room:
    name: str  # spelled as first seen
    domain: str
    flags: int = 0
    # Kamailio's list order: the first member stays at the head, later ones are
    # inserted right after it.  Lookups go through the engine's index, not this list.
    members: list[Member] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@{self.domain}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.name.lower(), self.domain.lower())

    @property
    def private(self) -> bool:
        return bool(self.flags & ROOM_PRIVATE)
