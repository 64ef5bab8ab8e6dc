"""In-memory edges for an `EndpointDriver`: a wire instead of sockets, a hand-driven clock.

With them the whole sidecar runs in one process without a socket or a real timer: the
wiring tests (tests/unit/test_wiring.py) and the in-process profile
(bench/profile/inproc.py) hand it datagrams, read what it sent, and move time on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .endpoint import Peer, Transmit
from .transport import ErrorSink, Listen, ListenAddress, Sink

__all__ = ["ManualClock", "MemoryWire"]


class MemoryWire:
    """Transports that keep what is sent in `sent` and take input from `deliver`."""

    def __init__(self, sink: Sink, on_error: ErrorSink, batch_done: Callable[[], None]) -> None:
        self._sink = sink
        self._on_error = on_error
        self._batch_done = batch_done
        self.sent: list[Transmit] = []
        self.bound: list[Listen] = []

    async def start(self, listens: Iterable[ListenAddress], *, announce: bool = True) -> None:
        self.bound = [Listen(x.transport, x.host, x.port) for x in listens]

    def send_all(self, transmits: list[Transmit]) -> None:
        self.sent.extend(transmits)

    async def close(self) -> None:
        self.bound = []

    def deliver(self, *datagrams: tuple[bytes, Peer]) -> None:
        """One batch of input, as a socket read delivers it."""
        for data, peer in datagrams:
            self._sink(data, peer)
        self._batch_done()

    def fail(self, peer: Peer) -> None:
        """Sending to `peer` failed (ICMP unreachable, a refused TCP connection)."""
        self._on_error(peer)

    def take(self) -> list[Transmit]:
        """What was sent since the last call."""
        sent, self.sent = self.sent, []
        return sent


class ManualClock:
    """Time that moves only when told: `advance` fires the timer when it falls due."""

    def __init__(self, on_timer: Callable[[], None], start: float = 1000.0) -> None:
        self._on_timer = on_timer
        self.time = start
        self.deadline: float | None = None

    def now(self) -> float:
        return self.time

    def arm(self, deadline: float | None) -> None:
        if deadline is not None and (self.deadline is None or deadline < self.deadline):
            self.deadline = deadline

    def cancel(self) -> None:
        self.deadline = None

    def advance(self, seconds: float) -> None:
        """Move time on, firing the timer at each deadline passed on the way."""
        end = self.time + seconds
        while self.deadline is not None and self.deadline <= end:
            self.time = max(self.time, self.deadline)
            self.deadline = None
            self._on_timer()  # re-arms through the driver's flush
        self.time = end
