"""Wiring and lifecycle: settings → store → policy → SIP endpoint → transports.

Everything here is I/O and lifecycle.  The rules live in the pure cores (`sip`, `imc`,
`policy`); one chat MESSAGE goes transport → driver (sip/driver.py) → endpoint →
`_on_request` → policy (engine, admission) → store (when its changes must be durable
first) → `_emit`: the reply, and the copies to the endpoint or the delivery workers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

from .delivery.pool import DeliveryPool
from .history.recorder import HistoryRecorder
from .history.records import FanoutTally
from .history.writer import HistoryWriter
from .imc.engine import EngineConfig, ImcEngine
from .imc.headers import header_block
from .imc.limits import RoomLimits
from .imc.outcome import InviteTicket, Outcome
from .policy import Admission, Decision, Lifecycle, RequestPolicy
from .policy.rates import SenderRates
from .policy.sources import TrustedSources
from .rpc.methods import build_registry
from .rpc.server import RpcServers
from .runtime import tune_gc
from .settings import Settings
from .sip.driver import Clock, EndpointDriver, EventLoopClock, Events, TransportsFactory
from .sip.endpoint import EndpointConfig, RequestReceived, ServerHandle, SipEndpoint
from .sip.transport import SipTransports
from .stats import Statistics
from .store.repository import Store
from .store.schema import check_fits

__all__ = ["Sidecar"]

log = logging.getLogger("imc_sidecar")

# How long a stopping sidecar waits for its own outstanding MESSAGEs to be answered.
_STOP_GRACE = 5.0


class Sidecar:
    def __init__(
        self,
        settings: Settings,
        *,
        transports: TransportsFactory = SipTransports,
        clock: Callable[[Callable[[], None]], Clock] = EventLoopClock,
    ) -> None:
        """`transports` and `clock` are the edges a wiring test replaces (an in-memory
        wire, a hand-driven clock)."""
        self.settings = settings
        engine = ImcEngine(
            EngineConfig(
                cmd_start_char=settings.imc_cmd_start_char,
                hash_size=settings.hash_size,
                create_on_join=settings.create_on_join,
                check_on_create=settings.check_on_create,
                admit=check_fits if settings.db_mode == 2 else None,
                limits=RoomLimits(
                    members_per_room=settings.max_members_per_room,
                    rooms_per_user=settings.max_rooms_per_user,
                    rooms=settings.max_rooms,
                ),
            )
        )
        self.policy = RequestPolicy(
            engine, Admission(settings.max_pending_deliveries), durable=settings.db_mode == 2,
            max_body=settings.max_body,
            rates=SenderRates(settings.sender_rate, settings.sender_burst),
        )
        self.store: Store | None = None
        # Read by the RPC methods (RpcContext); the getter follows engine replacement.
        self.stats = Statistics(
            lambda: self.engine,
            self._pending,
            lambda: 0 if self.delivery is None else self.delivery.running,
            lambda: None if self.history is None else self.history.writer,
            self._untrusted,
        )
        self.started_at = time.time()
        self.rpc = RpcServers(settings, build_registry(), self)
        self.driver = EndpointDriver(self._dispatch, transports=transports, clock=clock)
        self.delivery: DeliveryPool | None = None
        self.history: HistoryRecorder | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._resync: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def engine(self) -> ImcEngine:
        """The live engine (replaced after a reload)."""
        return self.policy.engine

    @property
    def endpoint(self) -> SipEndpoint | None:
        return self.driver.endpoint

    @property
    def lifecycle(self) -> Lifecycle:
        if self._stopping:
            return Lifecycle.STOPPING
        return Lifecycle.RUNNING if self._resync is None else Lifecycle.RELOADING

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        # Workers start (import, bind) while the rooms load.
        workers = asyncio.get_running_loop().create_task(self._start_delivery())
        try:
            await self._load()
            await self._open_history()
        finally:
            await workers
        # RPC first: once the SIP "listening on" lines are logged, everything is up.
        await self.rpc.start()
        proxy = self.settings.outbound_proxy
        trusted = TrustedSources(self.settings.trusted_sources)
        await self.driver.start(
            self.settings.sip_listen,
            lambda via: EndpointConfig(
                via_address=via, outbound_proxy=proxy, trusted=trusted.check
            ),
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
            ",".join(str(net) for net in self.settings.trusted_sources),
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
        if self.delivery is not None:
            await self.delivery.close()
        await self.driver.close()
        if self.history is not None:
            await self.history.writer.close()
        if self.store is not None:
            await self.store.close()
            self.store = None

    # -- inbound ---------------------------------------------------------------------

    def _now(self) -> float:
        return self.driver.now()

    def _dispatch(self, events: Events, now: float) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._on_request(event, now)
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
            self._carry_out(self.policy.delivery_failed(context, status, reason), None)

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
            self._carry_out(self.policy.delivery_failed(context, worst, reason), None)

    def _on_request(self, event: RequestReceived, now: float) -> None:
        self.stats.received_messages += 1
        decision = self.policy.decide(event.request, self._pending(), self.lifecycle, now)
        outcome = decision.outcome
        if decision.limited is not None:
            self.stats.count_limited(decision.limited)
        if outcome is None:  # refused before the engine: stopping, reloading, a limit
            if decision.refused:
                self.stats.refused_messages += 1
            assert self.endpoint is not None
            self.endpoint.reply(
                event.handle, decision.status, decision.reason, now, list(decision.headers) or None
            )
            return
        self.stats.count_command(outcome.command, outcome.rc)
        if decision.chat and self.history is not None:
            # An accepted text: its history row waits for every copy's final answer.
            tally = self.history.chat(outcome, event.request.body, event.request.content_type)
            self._emit(outcome, event.handle, tally)
            return
        self._carry_out(decision, event.handle)

    def _untrusted(self) -> tuple[int, int]:
        """Requests refused and responses ignored as untrusted, here and in the workers."""
        requests = responses = 0
        endpoint = self.endpoint
        if endpoint is not None:
            requests, responses = endpoint.untrusted_requests, endpoint.untrusted_responses
        if self.delivery is not None:
            requests += self.delivery.untrusted_requests
            responses += self.delivery.untrusted_responses
        return requests, responses

    def _pending(self) -> int:
        """MESSAGEs sent and not answered yet (the overload measure)."""
        pending = 0 if self.endpoint is None else self.endpoint.pending_requests
        if self.delivery is not None:
            pending += self.delivery.in_flight
        return pending

    # -- outbound ----------------------------------------------------------------------

    def _carry_out(self, decision: Decision, handle: ServerHandle | None) -> None:
        """Reply and send notices; when state changed, only after it is durable."""
        assert decision.outcome is not None
        if decision.durable_first and self.store is not None:
            task = asyncio.get_running_loop().create_task(self._commit(decision.outcome, handle))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
            return
        self._emit(decision.outcome, handle, reply_headers=decision.headers)

    async def _commit(self, outcome: Outcome, handle: ServerHandle | None) -> None:
        assert self.store is not None
        try:
            await self.store.apply(outcome.changes)
        except Exception as exc:
            log.error("could not store the changes of %s: %s", outcome.command, exc)
            outcome = self.policy.write_failed(outcome)
            if self._resync is None:  # Lifecycle.RELOADING until memory equals the database
                self._resync = asyncio.get_running_loop().create_task(self._reload())
        self._emit(outcome, handle)
        self.driver.flush()

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
            self.policy.reloaded(engine)
            gc.freeze()
            log.info("state reloaded from the database: %d rooms", len(rooms))
        finally:
            self._resync = None

    def _emit(
        self,
        outcome: Outcome,
        handle: ServerHandle | None,
        tally: FanoutTally | None = None,
        reply_headers: tuple[tuple[str, str], ...] = (),
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
            endpoint.reply(
                handle, outcome.status, outcome.reason, now, list(reply_headers) or None
            )
        if self.history is not None and outcome.command is not None:
            self.history.command(outcome)  # its changes are durable, its reply has left
