"""Room versions: what a write claims and when a feed row calls for a re-read.

A room's version counts the commits that changed it.  A command's write claims, for
each room it touches, the version it believes current and the one after it; the
transaction moves the room's row from one to the other or fails (`VersionConflict`),
so of two sidecars that changed one room from the same version only one commits.
Claims are made when the command runs, in memory order, so commands queued behind
each other on one room claim consecutive versions.

A feed row is news only if its version is above the one this sidecar knows, and only
once none of its own writes to that room is still in flight: memory holds those
changes already, and the database will either take them (the row was older) or refuse
them (memory is then reloaded anyway).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from imc_sidecar.imc.changes import Change, room_of

__all__ = ["Claim", "RoomVersions", "rooms_touched"]

Claim = tuple[str, int]  # (room key, the version the write expects to find)


def rooms_touched(changes: Sequence[Change]) -> list[str]:
    """The keys (URIs in lower case) of the rooms `changes` touch, first touch first."""
    keys: dict[str, None] = {}
    for change in changes:
        keys.setdefault(room_of(change).lower(), None)
    return list(keys)


class RoomVersions:
    def __init__(self, known: dict[str, int] | None = None) -> None:
        self._known: dict[str, int] = dict(known or {})  # versions claimed or read
        self._in_flight: dict[str, int] = {}  # room -> own writes not settled yet

    def known(self, room: str) -> int:
        return self._known.get(room, 0)

    def claim(self, changes: Sequence[Change]) -> tuple[Claim, ...]:
        """The versions a command's write expects; from now on memory counts them."""
        claims = []
        for room in rooms_touched(changes):
            current = self._known.get(room, 0)
            claims.append((room, current))
            self._known[room] = current + 1
            self._in_flight[room] = self._in_flight.get(room, 0) + 1
        return tuple(claims)

    def settled(self, claims: Iterable[Claim]) -> None:
        """A write ended, committed or not (a failed one is followed by a reload)."""
        for room, _ in claims:
            # A write claimed before a reload settles against the reloaded versions,
            # which never counted it.
            left = self._in_flight.get(room, 0) - 1
            if left > 0:
                self._in_flight[room] = left
            else:
                self._in_flight.pop(room, None)

    def busy(self, room: str) -> bool:
        """Whether a write of ours to `room` is still in flight."""
        return room in self._in_flight

    def is_news(self, room: str, version: int) -> bool:
        """Whether a feed row with this version says more than memory holds."""
        return version > self._known.get(room, 0)

    def read(self, room: str, version: int) -> None:
        """Memory now holds `room` as of `version` (re-read from the tables)."""
        if version > self._known.get(room, 0) or room not in self._in_flight:
            self._known[room] = version
