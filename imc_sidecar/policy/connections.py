"""Limits on stream connections (SIP over TCP, BINRPC), pure: which to accept, which to
close, and when.

Every connection holds a file descriptor and buffers in both directions, so without
limits one peer decides what the sidecar holds: thousands of connections, a request head
dribbled a byte at a time for hours, megabytes of replies it never reads.  The rules:

* accept: at most `max_total` inbound connections in all and `max_per_source` from one
  source address; one more is closed at once.  Connections we open ourselves (to an
  outbound proxy) are not counted: they follow the rooms' traffic, not a peer's wish;
* idle: a connection that made no progress for `idle_timeout` seconds is closed.
  Progress is a complete message or a keep-alive ping received, or data sent.  Bytes of a
  message that never completes are not progress, so a slowloris head is closed on time;
* write: a connection holding more than `max_write_buffer` unsent bytes (its peer does
  not read) is closed, and what was sent to it fails, rather than memory growing with
  what the peer ignores.

0 turns a limit off.  `ConnectionTable` applies the rules to the open connections; the
time is passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ConnectionCounts", "ConnectionLimits", "ConnectionTable"]

K = TypeVar("K", bound=Hashable)

TOO_MANY = "too many connections"
TOO_MANY_FROM_SOURCE = "too many connections from this address"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_total: int = 0
    max_per_source: int = 0
    idle_timeout: float = 0.0  # seconds
    max_write_buffer: int = 0  # bytes

    def refusal(self, total: int, from_source: int = 0) -> str | None:
        """Why a new inbound connection is refused while `total` are open, `from_source`
        of them from its address; None: it is accepted."""
        if self.max_total and total >= self.max_total:
            return TOO_MANY
        if self.max_per_source and from_source >= self.max_per_source:
            return TOO_MANY_FROM_SOURCE
        return None

    def over_buffer(self, unsent: int) -> bool:
        """Whether `unsent` bytes waiting for a peer are more than it may make us hold."""
        return 0 < self.max_write_buffer < unsent


@dataclass(slots=True)
class ConnectionCounts:
    """What the rules did, since start (the statistics read these)."""

    open: int = 0  # connections open now, inbound and outbound
    refused: int = 0  # inbound connections closed at once: over max_total / max_per_source
    idle_closed: int = 0  # closed after idle_timeout without progress
    overflow_closed: int = 0  # closed with more than max_write_buffer bytes unsent
    framing_closed: int = 0  # closed because the stream could not be cut into messages


class ConnectionTable(Generic[K]):
    """The open connections of one transport, keyed by any hashable handle."""

    __slots__ = ("_closing", "_last", "_per_source", "_sources", "counts", "limits")

    def __init__(self, limits: ConnectionLimits, counts: ConnectionCounts | None = None) -> None:
        self.limits = limits
        self.counts = ConnectionCounts() if counts is None else counts
        self._sources: dict[K, str] = {}  # inbound connection -> its source address
        self._per_source: dict[str, int] = {}
        # Every connection not yet being closed, least recently active first: the idle
        # ones are found from the front without looking at the others.
        self._last: OrderedDict[K, float] = OrderedDict()
        self._closing: set[K] = set()  # closed by a rule here, not yet gone

    @property
    def inbound(self) -> int:
        return len(self._sources)

    def from_source(self, source: str) -> int:
        return self._per_source.get(source, 0)

    def admit(self, key: K, source: str, now: float) -> str | None:
        """A peer opened `key` from `source`: None if it may stay (it is tracked from
        now), else why it must be closed at once (and it is counted as refused)."""
        refusal = self.limits.refusal(len(self._sources), self.from_source(source))
        if refusal is not None:
            self.counts.refused += 1
            return refusal
        self._sources[key] = source
        self._per_source[source] = self.from_source(source) + 1
        self.track(key, now)
        return None

    def track(self, key: K, now: float) -> None:
        """A connection we opened: idle and write rules only."""
        if key not in self._last and key not in self._closing:
            self.counts.open += 1
        self._last[key] = now
        self._last.move_to_end(key)

    def active(self, key: K, now: float) -> None:
        """`key` made progress at `now`."""
        last = self._last
        if key in last:
            last[key] = now
            last.move_to_end(key)

    def removed(self, key: K) -> None:
        """`key` is gone (closed by anyone); unknown keys are ignored."""
        if self._last.pop(key, None) is None:
            if key not in self._closing:
                return
            self._closing.discard(key)
        self.counts.open -= 1
        source = self._sources.pop(key, None)
        if source is not None:
            left = self._per_source[source] - 1
            if left:
                self._per_source[source] = left
            else:
                del self._per_source[source]

    def idle(self, now: float) -> list[K]:
        """The connections to close now for want of progress, oldest first; each is
        returned once."""
        timeout = self.limits.idle_timeout
        last = self._last
        expired: list[K] = []
        if not timeout:
            return expired
        while last:
            key, at = next(iter(last.items()))
            if now - at < timeout:
                break
            last.popitem(last=False)
            self._closing.add(key)
            expired.append(key)
        self.counts.idle_closed += len(expired)
        return expired

    def next_idle(self) -> float | None:
        """When the least recently active connection will be idle; None: none will."""
        timeout = self.limits.idle_timeout
        if not timeout or not self._last:
            return None
        return next(iter(self._last.values())) + timeout

    def overflowing(self, key: K | None, unsent: int) -> bool:
        """Whether `key` (None: one still connecting) must be closed for holding `unsent`
        bytes its peer did not take; if so it is counted and no longer tracked."""
        if not self.limits.over_buffer(unsent):
            return False
        self.counts.overflow_closed += 1
        if key is not None:
            self._closing_now(key)
        return True

    def malformed(self, key: K) -> None:
        """`key`'s stream cannot be read any further: it is being closed."""
        self.counts.framing_closed += 1
        self._closing_now(key)

    def _closing_now(self, key: K) -> None:
        if self._last.pop(key, None) is not None:
            self._closing.add(key)
