"""Wiring and lifecycle: settings → store → engine → SIP endpoint → transports.

Everything here is glue.  The rules live in the pure cores (`sip`, `imc`); this module
moves bytes between them, makes state changes durable before a command is answered,
and drives the endpoint's single timer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterable

from .imc.engine import EngineConfig, ImcEngine
from .imc.headers import header_block
from .imc.outcome import ChatRequest, InviteTicket, Outcome
from .overload import RETRY_AFTER, Admission
from .rpc.methods import build_registry
from .rpc.server import RpcServers
from .settings import Settings
from .sip.endpoint import (
    EndpointConfig,
    Peer,
    RequestCompleted,
    RequestReceived,
    ServerHandle,
    SipEndpoint,
)
from .sip.transport import SipTransports
from .stats import Statistics
from .store.repository import Store
from .store.schema import check_fits

__all__ = ["Sidecar"]

log = logging.getLogger("imc_sidecar")

# How long a stopping sidecar waits for its own outstanding MESSAGEs to be answered.
_STOP_GRACE = 5.0
# Cyclic GC: young-generation passes over 10k objects take about a millisecond (100k:
# 25-35 ms, too long a pause for p99); older generations are visited rarely.
_GC_THRESHOLDS = (10_000, 20, 100)
# Transaction timers fire up to this late, so one wake-up serves many deadlines.
_TIMER_SLACK = 0.005


class Sidecar:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = ImcEngine(
            EngineConfig(
                cmd_start_char=settings.imc_cmd_start_char,
                hash_size=settings.hash_size,
                create_on_join=settings.create_on_join,
                check_on_create=settings.check_on_create,
                admit=check_fits if settings.db_mode == 2 else None,
            )
        )
        self.store: Store | None = None
        self.endpoint: SipEndpoint | None = None
        # Read by the RPC methods (RpcContext); the getter follows engine replacement.
        self.stats = Statistics(lambda: self.engine, self._pending)
        self.admission = Admission(settings.max_pending_deliveries)
        self.started_at = time.time()
        self.rpc = RpcServers(settings, build_registry(), self)
        self.transports = SipTransports(self._on_data, self._on_transport_error, self._flush)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._batch_now: float | None = None  # the time of the batch being read
        self._writes: set[asyncio.Task[None]] = set()
        self._resync: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.settings.db_mode == 2:
            self.store = await Store.open(
                self.settings.db_url, self.settings.rooms_table, self.settings.members_table
            )
            # A bulk load creates millions of objects and no garbage: collector passes
            # over them would cost seconds (_tune_gc then freezes them).
            gc.disable()
            try:
                rooms = await self.store.load()
                self.engine.load(rooms)
            finally:
                gc.enable()
            log.info("loaded %d rooms from the database", len(rooms))
        # RPC first: once the SIP "listening on" lines are logged, everything is up.
        await self.rpc.start()
        await self.transports.start(self.settings.sip_listen)
        via: dict[str, tuple[str, int]] = {}
        for bound in self.transports.bound:
            via.setdefault(bound.transport, (bound.host, bound.port))
        self.endpoint = SipEndpoint(
            EndpointConfig(via_address=via, outbound_proxy=self.settings.outbound_proxy)
        )
        _tune_gc()


    async def stop(self) -> None:
        """Finish durable writes, give outstanding MESSAGEs a moment, then close."""
        self._stopping = True
        await self.rpc.close()
        if self._resync is not None:
            self._resync.cancel()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STOP_GRACE
        while self.endpoint is not None and self.endpoint.pending_requests and (
            loop.time() < deadline
        ):
            await asyncio.sleep(0.05)
        if self._timer is not None:
            self._timer.cancel()
        await self.transports.close()
        if self.store is not None:
            await self.store.close()
            self.store = None

    # -- inbound -----------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_data(self, data: bytes, peer: Peer) -> None:
        """One datagram or framed message; the transport calls `_flush` after a batch
        (which also re-arms the timer)."""
        endpoint = self.endpoint
        if endpoint is None:
            return
        now = self._batch_now  # one clock reading serves a whole batch of datagrams
        if now is None:
            now = self._batch_now = self._now()
        events = endpoint.receive(data, peer, now)
        if events:
            self._dispatch(events)
            if isinstance(events[0], RequestReceived):
                # A request's copies (and reply) leave now, not at the end of the batch:
                # later datagrams in it must not hold up this fan-out's latency.
                transmits = endpoint.transmits()
                if transmits:
                    self.transports.send_all(transmits)

    def _on_transport_error(self, peer: Peer) -> None:
        if self.endpoint is None:
            return
        self._dispatch(self.endpoint.transport_error(peer, self._now()))
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.endpoint is None:
            return
        self._dispatch(self.endpoint.handle_timer(self._now()))
        self._flush()

    def _dispatch(self, events: Iterable[RequestReceived | RequestCompleted]) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._on_request(event)
                continue
            # Every completion is for a MESSAGE we sent (chat copy, notice or invitation).
            if event.status >= 300:
                self.stats.failed_deliveries += 1
                if isinstance(event.context, InviteTicket):
                    outcome = self.engine.invite_failed(
                        event.context, event.status, event.reason
                    )
                    self._complete(outcome, None)

    def _on_request(self, event: RequestReceived) -> None:
        request = event.request
        self.stats.received_messages += 1
        if self._resync is not None or self._stopping:
            # Nothing may act on state that is being replaced or is about to be closed.
            reason = "Shutting down" if self._stopping else "Reloading state, retry"
            assert self.endpoint is not None
            self.endpoint.reply(event.handle, 503, reason, self._now())
            return
        if self.admission.refusing(self._pending()) and not self.engine.is_command(request.body):
            # Still overloaded: refuse a text before spending anything more on it.
            self.admission.refuse()
            self._refuse(event.handle)
            return
        chat = ChatRequest(
            request_uri=request.uri,
            from_uri=request.from_uri,
            call_id=request.call_id,
            body=request.body,
            content_type=request.content_type,
        )
        try:
            outcome = self.engine.handle(chat)
        except Exception:  # a bug must cost one request, never the server
            log.exception("engine failed on %s", request.call_id)
            outcome = Outcome(rc=-1, status=500, reason="Internal Server Error")
        if outcome.command is None and outcome.messages:
            # A chat text: its copies go out only if the backlog allows (overload.py).
            copies = sum(len(out.recipients) for out in outcome.messages)
            if not self.admission.admit(self._pending(), copies, self._now()):
                self._refuse(event.handle)
                return
        self.stats.count_command(outcome.command, outcome.rc)
        self._complete(outcome, event.handle)

    def _refuse(self, handle: ServerHandle) -> None:
        self.stats.refused_messages += 1
        assert self.endpoint is not None
        self.endpoint.reply(
            handle, 503, "Service Unavailable", self._now(), [("Retry-After", str(RETRY_AFTER))]
        )

    def _pending(self) -> int:
        """MESSAGEs sent and not answered yet (the overload measure)."""
        return 0 if self.endpoint is None else self.endpoint.pending_requests

    # -- outbound ----------------------------------------------------------------------

    def _complete(self, outcome: Outcome, handle: ServerHandle | None) -> None:
        """Reply and send notices; when state changed, only after it is durable."""
        if outcome.changes and self.store is not None:
            task = asyncio.get_running_loop().create_task(self._commit(outcome, handle))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
            return
        self._emit(outcome, handle)

    async def _commit(self, outcome: Outcome, handle: ServerHandle | None) -> None:
        assert self.store is not None
        try:
            await self.store.apply(outcome.changes)
        except Exception as exc:
            log.error("could not store the changes of %s: %s", outcome.command, exc)
            # Nothing is acknowledged: the caller hears of the failure, no notice claims
            # a change the database does not hold, and memory is reloaded from it.
            outcome = Outcome(
                rc=-1, status=500, reason="Database error", command=outcome.command
            )
            if self._resync is None:
                self._resync = asyncio.get_running_loop().create_task(self._reload())
        self._emit(outcome, handle)
        self._flush()

    async def _reload(self) -> None:
        """Make memory equal the database again after a failed write.

        New requests are answered 503 meanwhile, so none can act on a state that is
        about to be replaced; writes already queued finish first.
        """
        assert self.store is not None
        gc.unfreeze()  # the rooms about to be replaced must be collectable again
        try:
            while True:
                try:
                    await self.store.apply([])  # wait for the queued writes
                    rooms = await self.store.load()
                    break
                except Exception as exc:
                    log.error("reloading state from the database failed: %s; retrying", exc)
                    await asyncio.sleep(1.0)
            engine = ImcEngine(self.engine.config)
            engine.load(rooms)
            self.engine = engine
            gc.freeze()
            log.info("state reloaded from the database: %d rooms", len(rooms))
        finally:
            self._resync = None

    def _emit(self, outcome: Outcome, handle: ServerHandle | None) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        now = self._now()
        extra = self.settings.extra_hdrs
        for out in outcome.messages:
            self.stats.sent_messages += len(out.recipients)
            headers = header_block(out, extra)
            endpoint.send_many(out.recipients, out.from_uri, out.body, headers, out.invite, now)
        if handle is not None:
            endpoint.reply(handle, outcome.status, outcome.reason, now)

    def _flush(self) -> None:
        """Send what the endpoint queued and make sure its timer will run in time.

        An armed timer that is due no later than needed is left alone, even when the next
        deadline moved away: it fires, finds little or nothing due and re-arms.  Timers
        run `_TIMER_SLACK` late so that one firing serves the many deadlines a fan-out
        sets within that span.
        """
        self._batch_now = None
        endpoint = self.endpoint
        if endpoint is None:
            return
        assert self._loop is not None
        transmits = endpoint.transmits()
        if transmits:
            self.transports.send_all(transmits)
        deadline = endpoint.get_timer()
        if deadline is None:
            return
        at = deadline + _TIMER_SLACK
        if self._timer is not None:
            assert self._timer_at is not None
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._on_timer)


def _tune_gc() -> None:
    """Fewer, larger cyclic garbage collections.

    The fan-out path allocates several small container objects per delivery, almost all
    dead within milliseconds, while rooms and transactions (up to 64*T1 seconds of them)
    live long: with the default thresholds (700, 10, 10) the collector ran hundreds of
    times a second and its older-generation passes took up to 170 ms.  The state loaded
    at start-up is moved out of the collector's sight (gc.freeze) so that full passes
    scale with the traffic, not with the number of rooms.
    """
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
