"""One sans-I/O `SipEndpoint` driven on the event loop: the protocol glue, written once.

The sidecar's main process and each delivery worker run an endpoint the same way (as
aioquic's `QuicConnectionProtocol` runs a `QuicConnection`):

* bytes from the transports go to `endpoint.receive` with one clock reading per batch
  of datagrams;
* the endpoint's events go to the owner's `on_events(events, now)`;
* a new request's reply and copies leave at once, not at the end of the batch (latency);
* at the end of each batch, after a timer and after a transport error, `flush` sends what
  the endpoint queued, runs the owner's `after_flush`, and re-arms the one timer.

Time and the transports are injected: `EventLoopClock` and `SipTransports` for real,
an in-memory wire and a hand-driven clock in the wiring tests (tests/unit/test_wiring.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from ..wakeup import Wakeup
from .endpoint import EndpointConfig, Peer, RequestCompleted, RequestReceived, SipEndpoint
from .transaction import Transmit
from .transport import ErrorSink, Listen, ListenAddress, Sink, SipTransports

__all__ = [
    "Clock",
    "EndpointDriver",
    "EventLoopClock",
    "Events",
    "Transports",
    "TransportsFactory",
]

Events = Sequence[RequestReceived | RequestCompleted]

# Transaction timers fire up to this late, so one wake-up serves many deadlines.
TIMER_SLACK = 0.005


class Transports(Protocol):
    """What the driver needs of the sockets (SipTransports, or a test's wire)."""

    @property
    def bound(self) -> list[Listen]: ...

    async def start(self, listens: Iterable[ListenAddress], *, announce: bool = True) -> None: ...

    def send_all(self, transmits: list[Transmit]) -> None: ...

    async def close(self) -> None: ...


# (on_data, on_transport_error, on_batch_end) -> transports
TransportsFactory = Callable[[Sink, ErrorSink, Callable[[], None]], Transports]


class Clock(Protocol):
    """The time and the one wake-up timer."""

    def now(self) -> float: ...

    def arm(self, deadline: float | None) -> None:
        """Make sure `on_timer` runs at `deadline` (None: nothing due)."""

    def cancel(self) -> None: ...


class EventLoopClock:
    """The running event loop's clock, and a `Wakeup` on it."""

    def __init__(self, on_timer: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time
        self._wakeup = Wakeup(loop, on_timer, TIMER_SLACK)
        self.arm = self._wakeup.arm
        self.cancel = self._wakeup.cancel


class EndpointDriver:
    def __init__(
        self,
        on_events: Callable[[Events, float], None],
        *,
        after_flush: Callable[[], None] | None = None,
        transports: TransportsFactory = SipTransports,
        clock: Callable[[Callable[[], None]], Clock] = EventLoopClock,
    ) -> None:
        self._on_events = on_events
        self._after_flush = after_flush
        self.transports = transports(self.on_data, self.on_transport_error, self.flush)
        self._make_clock = clock
        self._clock: Clock | None = None
        self.endpoint: SipEndpoint | None = None
        self._batch_now: float | None = None  # the time of the batch being read

    async def start(
        self,
        listens: Sequence[ListenAddress],
        config: Callable[[dict[str, tuple[str, int]]], EndpointConfig],
        *,
        announce: bool = True,
    ) -> SipEndpoint:
        """Open the transports, then make the endpoint with `config(via_addresses)`: per
        transport, the first address actually bound (ports 0 get theirs here)."""
        self._clock = self._make_clock(self.on_timer)
        await self.transports.start(listens, announce=announce)
        via: dict[str, tuple[str, int]] = {}
        for bound in self.transports.bound:
            via.setdefault(bound.transport, (bound.host, bound.port))
        self.endpoint = SipEndpoint(config(via))
        return self.endpoint

    async def close(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
        await self.transports.close()

    def now(self) -> float:
        assert self._clock is not None
        return self._clock.now()

    # -- in: the transports and the timer call these ---------------------------------------

    def on_data(self, data: bytes, peer: Peer) -> None:
        """One datagram or framed message; the transports call `flush` after a batch."""
        endpoint = self.endpoint
        if endpoint is None:
            return
        now = self._batch_now  # one clock reading serves a whole batch of datagrams
        if now is None:
            assert self._clock is not None
            now = self._batch_now = self._clock.now()
        events = endpoint.receive(data, peer, now)
        if events:
            self._on_events(events, now)
            if isinstance(events[0], RequestReceived):
                # A request's copies (and reply) leave now, not at the end of the batch:
                # later datagrams in it must not hold up this fan-out's latency.
                self.send_queued()

    def on_transport_error(self, peer: Peer) -> None:
        endpoint = self.endpoint
        if endpoint is not None:
            now = self.now()
            self._on_events(endpoint.transport_error(peer, now), now)
            self.flush()

    def on_timer(self) -> None:
        endpoint = self.endpoint
        if endpoint is not None:
            now = self.now()
            self._on_events(endpoint.handle_timer(now), now)
            self.flush()

    # -- out ---------------------------------------------------------------------------------

    def send_queued(self) -> None:
        """Send what the endpoint queued, now."""
        assert self.endpoint is not None
        transmits = self.endpoint.transmits()
        if transmits:
            self.transports.send_all(transmits)

    def flush(self) -> None:
        """End of a batch: send what is queued, let the owner report, re-arm the timer."""
        self._batch_now = None
        endpoint = self.endpoint
        if endpoint is None:
            return
        transmits = endpoint.transmits()
        if transmits:
            self.transports.send_all(transmits)
        if self._after_flush is not None:
            self._after_flush()
        assert self._clock is not None
        self._clock.arm(endpoint.get_timer())
