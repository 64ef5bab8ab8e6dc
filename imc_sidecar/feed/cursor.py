"""Reading the change feed without missing a row.

Feed ids come from an auto-increment column.  They are handed out when a row is
inserted, not when its transaction commits, so a reader may see id 12 before id 11
commits, and a transaction that rolls back leaves its id unused for ever.  The cursor
therefore reads from the oldest id it has not accounted for (`low`), remembers the ids
it has seen above it, and gives up waiting for a missing id only once it has been
missing for `gap_timeout` seconds: longer than a write transaction may last (the
statement timeout), after which the id can only be a rollback's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_TRACKED_GAPS", "FeedCursor", "FeedRow"]

# Ids more than this far below the newest seen (a sequence jump, a huge rollback) are
# given up at once: a bound on memory and work, not a rule anyone should meet.
MAX_TRACKED_GAPS = 10_000


@dataclass(frozen=True, slots=True)
class FeedRow:
    id: int
    room: str  # the room's key: its URI in lower case
    version: int  # the room's version this change made
    origin: str  # the sidecar that wrote it (for logs and tests)


class FeedCursor:
    """Which feed rows are new; `after` is the id to read from (exclusive)."""

    def __init__(self, start: int, gap_timeout: float) -> None:
        self.after = start  # every id up to here was seen or given up
        self.gap_timeout = gap_timeout
        self._seen: set[int] = set()  # ids above `after` already returned
        self._missing: dict[int, float] = {}  # id above `after` -> when first missed

    @property
    def newest(self) -> int:
        """Where a read for new rows starts (exclusive): past every id seen, so that rows
        under a missing id are not read again and again."""
        return max(self.after, max(self._seen, default=self.after))

    def missing(self, most: int = 1000) -> list[int]:
        """The oldest ids still awaited, to ask for by id."""
        return sorted(self._missing)[:most]

    @property
    def waiting_for(self) -> int:
        """Ids below the newest seen that have not shown up yet."""
        return len(self._missing)

    def take(self, rows: Iterable[FeedRow], now: float) -> list[FeedRow]:
        """The rows of a read (`id > after`, any order) not returned before, in id order."""
        new = sorted(
            (row for row in rows if row.id > self.after and row.id not in self._seen),
            key=lambda row: row.id,
        )
        missing, seen = self._missing, self._seen
        if new:
            newest = new[-1].id
            start = max(self.after, max(seen, default=self.after)) + 1
            for row in new:
                seen.add(row.id)
                missing.pop(row.id, None)
            floor = newest - MAX_TRACKED_GAPS
            for gap in range(max(start, floor), newest):
                if gap not in seen:
                    missing.setdefault(gap, now)
            if floor > self.after:  # a jump: what lies below the window is given up
                for number in [n for n in missing if n <= floor]:
                    del missing[number]
                seen.difference_update([n for n in seen if n <= floor])
                self.after = floor
        self._advance(now)
        return new

    def _advance(self, now: float) -> None:
        missing, seen = self._missing, self._seen
        while True:
            following = self.after + 1
            if following in seen:
                seen.discard(following)
            elif following in missing and now - missing[following] >= self.gap_timeout:
                del missing[following]  # a rollback's id, or lost for good
            else:
                return
            self.after = following
