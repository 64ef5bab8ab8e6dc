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

from .delivery.pool import DeliveryPool
from .history.recorder import HistoryRecorder
from .history.records import FanoutTally
from .history.writer import HistoryWriter
from .imc.engine import EngineConfig, ImcEngine
from .imc.headers import header_block
from .imc.outcome import ChatRequest, InviteTicket, Outcome
from .overload import RETRY_AFTER, Admission
from .rpc.methods import build_registry
from .rpc.server import RpcServers
from .runtime import tune_gc
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
from .wakeup import Wakeup

__all__ = ["Sidecar"]

log = logging.getLogger("imc_sidecar")

# How long a stopping sidecar waits for its own outstanding MESSAGEs to be answered.
_STOP_GRACE = 5.0
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
        self.stats = Statistics(
            lambda: self.engine,
            self._pending,
            lambda: 0 if self.delivery is None else self.delivery.running,
            lambda: None if self.history is None else self.history.writer,
        )
        self.admission = Admission(settings.max_pending_deliveries)
        self.started_at = time.time()
        self.rpc = RpcServers(settings, build_registry(), self)
        self.transports = SipTransports(self._on_data, self._on_transport_error, self._flush)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: Wakeup | None = None
        self.delivery: DeliveryPool | None = None
        self.history: HistoryRecorder | None = None
        self._batch_now: float | None = None  # the time of the batch being read
        self._writes: set[asyncio.Task[None]] = set()
        self._resync: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = Wakeup(self._loop, self._on_timer, _TIMER_SLACK)
        # Workers start (import, bind) while the rooms load.
        workers = self._loop.create_task(self._start_delivery())
        try:
            await self._load()
            await self._open_history()
        finally:
            await workers
        # RPC first: once the SIP "listening on" lines are logged, everything is up.
        await self.rpc.start()
        await self.transports.start(self.settings.sip_listen)
        via: dict[str, tuple[str, int]] = {}
        for bound in self.transports.bound:
            via.setdefault(bound.transport, (bound.host, bound.port))
        self.endpoint = SipEndpoint(
            EndpointConfig(via_address=via, outbound_proxy=self.settings.outbound_proxy)
        )
        tune_gc()

    async def _start_delivery(self) -> None:
        count = self.settings.delivery_workers
        udp = [listen for listen in self.settings.sip_listen if listen.transport == "udp"]
        if not count or not udp:
            return
        pool = DeliveryPool(
            count, self._delivery_failed, self._delivery_result, self._delivery_restarted
        )
        await pool.start(
            udp[0].host, self.settings.delivery_port, self.settings.outbound_proxy,
            self.settings.event_loop, self.settings.log_level,
        )
        self.delivery = pool

    async def _load(self) -> None:
        if self.settings.db_mode == 2:
            self.store = await Store.open(
                self.settings.db_url, self.settings.rooms_table, self.settings.members_table
            )
            # A bulk load creates millions of objects and no garbage: collector passes
            # over them would cost seconds.  They are frozen (out of the collector's
            # sight) before it is switched back on, or its first pass would walk them all.
            gc.disable()
            try:
                rooms = await self.store.load()
                self.engine.load(rooms)
                count = len(rooms)
                del rooms  # the load records: freed now, not frozen
                gc.freeze()
            finally:
                gc.enable()
            log.info("loaded %d rooms from the database", count)

    async def _open_history(self) -> None:
        settings = self.settings
        url = settings.history_url
        if not settings.history:
            return
        if url is None:
            log.info("usage history off: db_mode 0 and no history_db_url")
            return
        writer = await HistoryWriter.open(
            url, settings.history_flush_interval, settings.history_queue,
            settings.history_retention_days, wait=False,
        )
        self.history = HistoryRecorder(writer, settings.history_bodies)

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
        while self._pending() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        abandoned = self._pending()
        if self.history is not None:
            self.history.abandon_open()
        if abandoned:
            # Sent, never answered: count them like any other unanswered MESSAGE.
            self.stats.failed_deliveries += abandoned
            log.warning(
                "%d MESSAGEs still unanswered after %.0f s: given up, counted as failed",
                abandoned, _STOP_GRACE,
            )
        if self._wakeup is not None:
            self._wakeup.cancel()
        if self.delivery is not None:
            await self.delivery.close()
        await self.transports.close()
        if self.history is not None:
            await self.history.writer.close()
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
            if event.status >= 300 or event.context is not None:
                self._delivery_ended(event.context, event.status, event.reason)

    def _delivery_restarted(self) -> None:
        self.stats.delivery_worker_restarts += 1

    def _delivery_ended(self, context: object, status: int, reason: str) -> None:
        """A MESSAGE this process sent ended with `status`.

        Called for every failure (>= 300) and for every end of a copy with a context.
        """
        if isinstance(context, FanoutTally):
            assert self.history is not None
            self.history.answered(context, status)
        if status < 300:
            return
        self.stats.failed_deliveries += 1
        if isinstance(context, InviteTicket):
            self._complete(self.engine.invite_failed(context, status, reason), None)

    def _delivery_failed(self, status: int, reason: str) -> None:
        """A copy a delivery worker sent without a context failed."""
        self.stats.failed_deliveries += 1

    def _delivery_result(
        self, context: object, delivered: int, failed: int, worst: int, reason: str,
        last: float,
    ) -> None:
        """Every copy of a share a delivery worker took with a context has ended."""
        self.stats.failed_deliveries += failed
        if isinstance(context, FanoutTally):
            assert self.history is not None
            self.history.answered_many(context, delivered, failed, worst, last)
        elif isinstance(context, InviteTicket) and failed:
            self._complete(self.engine.invite_failed(context, worst, reason), None)

    def _on_request(self, event: RequestReceived) -> None:
        request = event.request
        self.stats.received_messages += 1
        if self._resync is not None or self._stopping:
            # Nothing may act on state that is being replaced or is about to be closed.
            reason = "Shutting down" if self._stopping else "Reloading state, retry"
            assert self.endpoint is not None
            self.endpoint.reply(event.handle, 503, reason, self._now())
            return
        # The engine is a pure function: the backlog is the same before and after it.
        pending = self._pending()
        if self.admission.refusing(pending) and not self.engine.is_command(request.body):
            # Still overloaded: refuse a text before spending anything more on it.
            self.admission.refuse()
            self._refuse(event.handle)
            return
        call_id = request.call_id
        chat = ChatRequest(
            request.uri, request.from_uri, call_id, request.body, request.content_type
        )
        try:
            outcome = self.engine.handle(chat)
        except Exception:  # a bug must cost one request, never the server
            log.exception("engine failed on %s", call_id)
            outcome = Outcome(rc=-1, status=500, reason="Internal Server Error")
        messages = outcome.messages
        if messages and outcome.command is None:
            # A chat text: its copies go out only if the backlog allows (overload.py).
            copies = sum(len(out.recipients) for out in messages)
            if not self.admission.admit(pending, copies, self._now()):
                self._refuse(event.handle)
                return
        self.stats.count_command(outcome.command, outcome.rc)
        if self.history is not None and outcome.command is None and outcome.rc == 1:
            # An accepted text: its history row waits for every copy's final answer.
            tally = self.history.chat(outcome, request.body, request.content_type)
            self._emit(outcome, event.handle, tally)
            return
        self._complete(outcome, event.handle)

    def _refuse(self, handle: ServerHandle) -> None:
        self.stats.refused_messages += 1
        assert self.endpoint is not None
        self.endpoint.reply(
            handle, 503, "Service Unavailable", self._now(), [("Retry-After", str(RETRY_AFTER))]
        )

    def _pending(self) -> int:
        """MESSAGEs sent and not answered yet (the overload measure)."""
        pending = 0 if self.endpoint is None else self.endpoint.pending_requests
        if self.delivery is not None:
            pending += self.delivery.in_flight
        return pending

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
                rc=-1, status=500, reason="Database error", command=outcome.command,
                actor=outcome.actor, room=outcome.room,
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

    def _emit(
        self, outcome: Outcome, handle: ServerHandle | None, tally: FanoutTally | None = None
    ) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        now = self._now()
        extra = self.settings.extra_hdrs
        delivery = self.delivery
        for out in outcome.messages:
            self.stats.sent_messages += len(out.recipients)
            headers = header_block(out, extra)
            recipients: tuple[str, ...] | list[str] = out.recipients
            # What each copy's final answer is reported with: an invitation's ticket, or
            # the chat message's history tally.
            context: object = out.invite if tally is None else tally
            if delivery is not None:
                # Copies that leave over UDP go to the delivery workers; the rest (and any
                # a worker could not take) are sent from here.
                udp, other = endpoint.split_udp(recipients)
                other += delivery.submit(udp, out.from_uri, out.body, headers, context)
                recipients = other
            if recipients:
                endpoint.send_many(recipients, out.from_uri, out.body, headers, context, now)
        if handle is not None:
            endpoint.reply(handle, outcome.status, outcome.reason, now)
        if self.history is not None and outcome.command is not None:
            self.history.command(outcome)  # its changes are durable, its reply has left

    def _flush(self) -> None:
        """Send what the endpoint queued and make sure its timer will run in time."""
        self._batch_now = None
        endpoint = self.endpoint
        if endpoint is None:
            return
        transmits = endpoint.transmits()
        if transmits:
            self.transports.send_all(transmits)
        assert self._wakeup is not None
        self._wakeup.arm(endpoint.get_timer())
