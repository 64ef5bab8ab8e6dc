"""The room table: Kamailio's hash buckets for ordering, dicts for O(1) lookups.

Kamailio keeps rooms in 2**hash_size buckets (new rooms at the head of their bucket) and
walks bucket 0..N-1, head to tail, for `#rooms` and `imc.list_rooms`; members sit in a
list whose first member stays at the head while later ones are inserted right after it.
Both orders are observable, so they are reproduced here, while lookups go through
case-insensitive dict indexes instead of list walks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .changes import StoredMember, StoredRoom
from .hashing import bucket_index
from .model import MEMBER_DELETED, MEMBER_INVITED, MEMBER_SKIP, Member, Room

__all__ = ["Journal", "RoomTable", "room_key"]

# How to take back what the table did while it was recording: one step per change, each
# to be run newest first (`RoomTable.undo`).
Journal = list[Callable[[], None]]

# Members with any of these bits get no broadcast (imc_room_broadcast()).
_SILENT = MEMBER_INVITED | MEMBER_DELETED | MEMBER_SKIP


def room_key(name: str, domain: str) -> tuple[str, str]:
    return (name.lower(), domain.lower())


class _Entry:
    """A room plus its member index and the cached broadcast audience."""

    __slots__ = ("active", "active_uris", "bucket", "members", "room")

    def __init__(self, room: Room, bucket: int) -> None:
        self.room = room
        self.bucket = bucket
        self.members: dict[tuple[str, str], Member] = {}
        # Rebuilt lazily after a membership change, so chat fan-out costs one tuple.
        self.active: tuple[Member, ...] | None = None
        self.active_uris: tuple[str, ...] = ()


class RoomTable:
    def __init__(self, hash_size: int) -> None:
        if not 1 <= hash_size <= 30:
            raise ValueError(f"hash_size is an exponent between 1 and 30, not {hash_size}")
        self.hash_size = hash_size
        self._index: dict[tuple[str, str], _Entry] = {}
        # bucket -> rooms by key, oldest first; iterated reversed to get head-first order.
        self._buckets: dict[int, dict[tuple[str, str], Room]] = {}
        # (user, domain) lower case -> rooms that user is in; built on first use (only
        # the rooms-per-user limit asks), so loading and chat never pay for it.
        self._memberships: dict[tuple[str, str], int] | None = None
        self._journal: Journal | None = None  # recording, while a command runs

    # -- taking changes back -----------------------------------------------------------

    def begin(self) -> Journal:
        """Record from now on how to undo each change, until `end()`.

        Commands change memory before the database has their changes; when it cannot
        take them, `undo` puts memory back exactly, list orders included, so nothing
        the database does not hold stays applied.
        """
        journal: Journal = []
        self._journal = journal
        return journal

    def end(self) -> None:
        self._journal = None

    def undo(self, journal: Journal) -> None:
        """Take back what `journal` recorded, newest first (later journals first too)."""
        recording, self._journal = self._journal, None
        try:
            while journal:
                journal.pop()()
        finally:
            self._journal = recording

    # -- rooms -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[Room]:
        """Kamailio order: bucket 0..N-1, newest room first within a bucket."""
        for bucket in sorted(self._buckets):
            yield from reversed(self._buckets[bucket].values())

    def get(self, name: str, domain: str) -> Room | None:
        entry = self._index.get(room_key(name, domain))
        return entry.room if entry is not None else None

    def add(self, name: str, domain: str, flags: int) -> Room:
        key = room_key(name, domain)
        if key in self._index:
            raise KeyError(f"room sip:{name}@{domain} exists")
        room = Room(name, domain, flags)
        bucket = bucket_index(name, domain, self.hash_size)
        self._index[key] = _Entry(room, bucket)
        self._buckets.setdefault(bucket, {})[key] = room
        if self._journal is not None:
            self._journal.append(lambda: self.remove(room))
        return room

    def remove(self, room: Room) -> None:
        entry = self._index.pop(room.key)
        for key in entry.members:
            self._count_membership(key, -1)
        rooms = self._buckets[entry.bucket]
        if self._journal is not None:
            position = list(rooms).index(room.key)
            self._journal.append(lambda: self._restore(entry, position))
        del rooms[room.key]
        if not rooms:
            del self._buckets[entry.bucket]

    def _restore(self, entry: _Entry, position: int) -> None:
        """Put a removed room back where it was in its bucket, members and all."""
        room = entry.room
        self._index[room.key] = entry
        for key in entry.members:
            self._count_membership(key, 1)
        rooms = list(self._buckets.get(entry.bucket, {}).items())
        rooms.insert(position, (room.key, room))
        self._buckets[entry.bucket] = dict(rooms)

    def load(self, stored: Iterable[StoredRoom]) -> None:
        """Build what Kamailio builds from the tables, minus its stop at an empty room (B12).

        Rooms are inserted in load order and members in row order, with the result of
        `add` and `add_member` but without their per-call checks (0.85 s instead of
        2.2 s for 100,000 rooms of 10 members).  A second row for a room already
        loaded (possible where the unique index is case-sensitive) adds its missing
        members to the first instead of shadowing it.  Domains repeat, so each
        spelling and its lower case are kept once and shared by every room and member
        that uses it.
        """
        index = self._index
        self._memberships = None  # rebuilt when next asked
        domains: dict[str, tuple[str, str]] = {}  # as stored -> (shared copy, lower case)
        for name, domain, flags, stored_members in stored:
            shared = domains.get(domain)
            if shared is None:
                shared = domains[domain] = (domain, _lower(domain))
            key = (_lower(name), shared[1])
            entry = index.get(key)
            if entry is None:
                room = Room(name, shared[0], flags)
                bucket = bucket_index(name, domain, self.hash_size)
                entry = index[key] = _Entry(room, bucket)
                self._buckets.setdefault(bucket, {})[key] = room
            if stored_members:
                _load_members(entry, stored_members, domains)

    def replace(self, key: tuple[str, str], stored: StoredRoom | None) -> None:
        """Make one room what the database holds (None: it does not exist), as another
        sidecar left it.  A room kept keeps its place in Kamailio's order and its Room
        object; its members are rebuilt in row order, as a load builds them."""
        entry = self._index.get(key)
        if stored is None:
            if entry is not None:
                self.remove(entry.room)
            return
        if entry is not None and (entry.room.name, entry.room.domain) != stored[:2]:
            self.remove(entry.room)  # destroyed and made again, spelled otherwise
            entry = None
        if entry is None:
            counts = self._memberships  # kept up to date, not rebuilt (load drops it)
            self.load((stored,))
            self._memberships = counts
            for member_key in self._index[room_key(stored.name, stored.domain)].members:
                self._count_membership(member_key, 1)
            return
        for member_key in entry.members:
            self._count_membership(member_key, -1)
        entry.members.clear()
        entry.room.members.clear()
        entry.room.flags = stored.flags
        entry.active = None
        if stored.members:
            _load_members(entry, stored.members, {})
            for member_key in entry.members:
                self._count_membership(member_key, 1)

    # -- members -----------------------------------------------------------------------

    def get_member(self, room: Room, user: str, domain: str) -> Member | None:
        return self._entry(room).members.get((user.lower(), domain.lower()))

    def add_member(self, room: Room, user: str, domain: str, flags: int) -> Member:
        entry = self._entry(room)
        member = Member(user, domain, flags)
        if member.key in entry.members:
            raise KeyError(f"{member.uri} is already in {room.uri}")
        entry.members[member.key] = member
        self._count_membership(member.key, 1)
        # The first member is the head; each later one goes right after it.
        room.members.insert(1 if room.members else 0, member)
        entry.active = None
        if self._journal is not None:
            self._journal.append(lambda: self.remove_member(room, member))
        return member

    def remove_member(self, room: Room, member: Member) -> None:
        entry = self._entry(room)
        del entry.members[member.key]
        self._count_membership(member.key, -1)
        position = next(i for i, m in enumerate(room.members) if m is member)
        del room.members[position]
        entry.active = None
        if self._journal is not None:
            self._journal.append(lambda: self._readmit(room, member, position))

    def _readmit(self, room: Room, member: Member, position: int) -> None:
        """Put a removed member back at its place in the list."""
        entry = self._entry(room)
        entry.members[member.key] = member
        self._count_membership(member.key, 1)
        room.members.insert(position, member)
        entry.active = None

    def member_count(self, room: Room) -> int:
        """Members of `room`, invitees included."""
        return len(self._entry(room).members)

    def rooms_of(self, user: str, domain: str) -> int:
        """Rooms `user@domain` is a member of or invited to, any case."""
        if self._memberships is None:
            counts: dict[tuple[str, str], int] = {}
            for entry in self._index.values():
                for key in entry.members:
                    counts[key] = counts.get(key, 0) + 1
            self._memberships = counts
        return self._memberships.get((user.lower(), domain.lower()), 0)

    def _count_membership(self, key: tuple[str, str], step: int) -> None:
        counts = self._memberships
        if counts is None:
            return
        total = counts.get(key, 0) + step
        if total:
            counts[key] = total
        else:
            del counts[key]

    def set_flags(self, room: Room, member: Member, flags: int) -> None:
        if self._journal is not None:
            before = member.flags
            self._journal.append(lambda: self.set_flags(room, member, before))
        member.flags = flags
        self._entry(room).active = None

    def active_members(self, room: Room) -> tuple[Member, ...]:
        """Members a broadcast reaches, in list order."""
        return self._audience(room)[0]

    def broadcast_uris(self, room: Room, skip: Member | None = None) -> tuple[str, ...]:
        """URIs a broadcast goes to, in list order, optionally without one member."""
        members, uris = self._audience(room)
        if skip is None:
            return uris
        try:
            i = members.index(skip)
        except ValueError:
            return uris
        return uris[:i] + uris[i + 1 :]

    def _audience(self, room: Room) -> tuple[tuple[Member, ...], tuple[str, ...]]:
        entry = self._entry(room)
        if entry.active is None:
            entry.active = tuple(m for m in room.members if not m.flags & _SILENT)
            entry.active_uris = tuple(m.uri for m in entry.active)
        return entry.active, entry.active_uris

    def _entry(self, room: Room) -> _Entry:
        entry = self._index.get(room.key)
        if entry is None or entry.room is not room:
            raise KeyError(f"{room.uri} is not in this table")
        return entry


def _lower(text: str) -> str:
    """`text.lower()`, but `text` itself when that is already lower case (saves a copy)."""
    lowered = text.lower()
    return text if lowered == text else lowered


def _load_members(
    entry: _Entry, stored: Iterable[StoredMember], domains: dict[str, tuple[str, str]]
) -> None:
    """Add loaded members to a room as `add_member` would, skipping ones already in it."""
    index = entry.members
    added: list[Member] = []
    for user, domain, flags in stored:
        shared = domains.get(domain)
        if shared is None:
            shared = domains[domain] = (domain, _lower(domain))
        lowered = user.lower()  # _lower, inlined: this runs for every member
        if lowered == user:
            lowered = user
        member = Member(user, shared[0], flags)
        # The first spelling of a member wins, as in add_member.
        if index.setdefault((lowered, shared[1]), member) is member:
            added.append(member)
    if not added:
        return
    entry.active = None
    # add_member's order in one go: the first member ever added stays the head and
    # each later one goes right after it, so they follow it newest first.
    current = entry.room.members
    if current:
        current[1:1] = reversed(added)
    else:
        current.append(added[0])
        current.extend(reversed(added[1:]))
