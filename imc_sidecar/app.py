"""Wiring and lifecycle: settings → store → policy → SIP endpoint → transports.

Everything here is I/O and lifecycle.  The rules live in the pure cores (`sip`, `imc`,
`policy`); one chat MESSAGE goes transport → driver (sip/driver.py) → endpoint →
`_on_request` → policy (engine, admission) → store (when its changes must be durable
first) → `_emit`: the reply, and the copies to the endpoint or the delivery workers.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Literal

from .delivery.pool import DeliveryPool
from .feed.follower import FeedFollower
from .feed.versions import rooms_touched
from .history.recorder import HistoryRecorder
from .history.records import FanoutTally
from .history.writer import HistoryWriter
from .imc.changes import StoredRoom
from .imc.commands import Reason
from .imc.engine import EngineConfig, ImcEngine
from .imc.headers import header_block
from .imc.limits import RoomLimits
from .imc.outcome import InviteTicket, Outcome
from .policy import Admission, Decision, Lifecycle, RequestPolicy
from .policy.connections import ConnectionCounts, ConnectionLimits
from .policy.database import DatabaseHealth
from .policy.rates import SenderRates
from .policy.sources import TrustedSources
from .rpc.methods import build_registry
from .rpc.server import RpcServers
from .runtime import raise_open_files, tune_gc
from .settings import Settings
from .sip.driver import Clock, EndpointDriver, EventLoopClock, Events, TransportsFactory
from .sip.endpoint import EndpointConfig, RequestReceived, ServerHandle, SipEndpoint
from .sip.transport import SipTransports
from .stats import Statistics
from .store.repository import Store, StoreError, StoreUnavailable, VersionConflict
from .store.schema import check_fits

__all__ = ["Sidecar"]

log = logging.getLogger("imc_sidecar")

# How long a stopping sidecar waits for its own outstanding MESSAGEs to be answered.
_STOP_GRACE = 5.0
# Refusals that memory of a room another sidecar just changed could cause: the room
# is read from the database and the request run again.
_MAYBE_STALE = frozenset(
    {Reason.ROOM_NOT_FOUND, Reason.NOT_MEMBER, Reason.NOT_ACCEPTED, Reason.NOT_INVITED}
)
_MAX_LOOKED_UP = 10_000
_MAX_LOOKUPS = 4  # rooms read for requests at once
# Requests that wait for a reload, or for rooms to be read again after a lost race;
# past this many they are refused (503).
_MAX_AFTER_RELOAD = 1000
# Why a request runs once more, or later: after losing a race with another sidecar,
# after waiting for a reload, after its room was read from the database, after waiting
# behind that read.
Again = Literal["rerun", "held", "looked_up", "queued"] | None
# A request that may run again if its command loses a race, and how many it has lost.
Attempt = tuple[RequestReceived, int]
# Races one command may lose before it is refused (503 Room Changed Elsewhere).
_MAX_LOSSES = 5
# Descriptors kept beside the SIP TCP connections: database pools, RPC sockets, delivery
# workers' channels, logs.
_FILES_BESIDE_TCP = 256


class Sidecar:
    def __init__(
        self,
        settings: Settings,
        *,
        transports: TransportsFactory | None = None,
        clock: Callable[[Callable[[], None]], Clock] = EventLoopClock,
    ) -> None:
        """`transports` and `clock` are the edges a wiring test replaces (an in-memory
        wire, a hand-driven clock); by default the real sockets, TCP held to the
        settings' sip_tcp_* limits."""
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
            database=DatabaseHealth(),
        )
        self.store: Store | None = None
        self.tcp_counts = ConnectionCounts()  # what the SIP TCP limits did
        # Read by the RPC methods (RpcContext); the getter follows engine replacement.
        self.stats = Statistics(
            lambda: self.engine,
            self._pending,
            lambda: 0 if self.delivery is None else self.delivery.running,
            lambda: None if self.history is None else self.history.writer,
            self._untrusted,
            self.tcp_counts,
            lambda: self.database if self.store is not None else None,
            lambda: 0 if self.feed is None else self.feed.refreshed,
        )
        self.started_at = time.time()
        self.rpc = RpcServers(settings, build_registry(), self)
        if transports is None:
            transports = functools.partial(
                SipTransports, tcp_limits=_tcp_limits(settings), tcp_counts=self.tcp_counts
            )
        self.driver = EndpointDriver(self._dispatch, transports=transports, clock=clock)
        self.delivery: DeliveryPool | None = None
        self.history: HistoryRecorder | None = None
        # Commands whose changes are in memory and not yet committed, oldest first: what
        # is taken back, newest first, when the database stops answering.
        self._in_flight: dict[int, Outcome] = {}
        self._writes: set[asyncio.Future[None]] = set()
        self.feed: FeedFollower | None = None  # follows what other sidecars change
        # Changing commands that came during a reload, to run once it is done; and,
        # when the database went away meanwhile, commands that lost a race.
        self._after_reload: list[tuple[RequestReceived, Again, int]] = []
        # Rooms that lost a race with another sidecar, to be read again; the commands
        # that lost, to run again then (`_lost_race`).
        self._stale_rooms: set[str] = set()
        self._after_refresh: list[Attempt] = []
        self._refreshing: asyncio.Task[None] | None = None
        # Rooms read from the database for a request, and when (`_worth_looking_up`).
        self._looked_up: dict[str, float] = {}
        self._lookups: set[asyncio.Task[None]] = set()
        # Rooms being read for a request, and the requests to them that came meanwhile.
        self._reading: dict[str, list[RequestReceived]] = {}
        self._resync: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
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
        _open_files_for_tcp(self.settings)
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
                self.settings.db_url, self.settings.rooms_table, self.settings.members_table,
                connect_timeout=self.settings.db_connect_timeout,
                statement_timeout=self.settings.db_statement_timeout,
                origin=_origin(self.settings),
            )
            self.store.on_commit = self.stats.db_write_seconds.observe
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
            self.feed = FeedFollower(
                self.store, self.engine_refresh,
                lambda: self.lifecycle is Lifecycle.RUNNING and self.database.reachable,
                self.settings.feed_interval, self.settings.feed_retention,
            )
            self.feed.start()

    def engine_refresh(self, room_uri: str, stored: StoredRoom | None) -> None:
        """Another sidecar changed a room: memory takes the database's copy."""
        self.engine.refresh(room_uri, stored)

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
        self.history = HistoryRecorder(
            writer, settings.history_bodies, fanout_done=self.stats.fanout_seconds.observe
        )

    async def stop(self) -> None:
        """Finish durable writes, give outstanding MESSAGEs a moment, then close."""
        self._stopping = True
        await self.rpc.close()
        for task in (self._resync, self._recovery):
            if task is not None:
                task.cancel()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        # Reads of rooms under way finish (a read cancelled halfway could hang on the
        # connection the store is about to close); what they run again is refused.
        reads = [task for task in (self._refreshing, *self._lookups) if task is not None]
        if reads:
            await asyncio.wait(reads, timeout=self.settings.db_statement_timeout)
            for task in reads:
                task.cancel()
        if self.feed is not None:
            await self.feed.close()
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
            self._invite_failed(context, status, reason)

    def _invite_failed(self, ticket: InviteTicket, status: int, reason: str) -> None:
        self._carry_out(self.policy.delivery_failed(ticket, status, reason, self.lifecycle), None)

    def _delivery_failed(self, status: int, reason: str) -> None:
        """A copy a delivery worker sent failed (each one, as it ends)."""
        self.stats.failed_deliveries += 1

    def _delivery_result(
        self, context: object, delivered: int, failed: int, worst: int, reason: str,
        last: float,
    ) -> None:
        """Every copy of a share a delivery worker took with a context has ended (each
        failed one was counted as it ended, by `_delivery_failed`)."""
        if isinstance(context, FanoutTally):
            assert self.history is not None
            self.history.answered_many(context, delivered, failed, worst, last)
        elif isinstance(context, InviteTicket) and failed:
            self._invite_failed(context, worst, reason)

    def _on_request(
        self, event: RequestReceived, now: float, again: Again = None, losses: int = 0
    ) -> None:
        """`again`: why the request runs once more (None: it just came in); `losses`:
        races with other sidecars its command lost so far."""
        if again is None:
            self.stats.received_messages += 1
            if (self._reading or self._stale_rooms) and self._wait_for_read(event, losses):
                return
        decision = self.policy.decide(event.request, self._pending(), self.lifecycle, now)
        if decision.after_reload and len(self._after_reload) < _MAX_AFTER_RELOAD:
            self._after_reload.append((event, "held" if again is None else again, losses))
            return
        outcome = decision.outcome
        if (
            outcome is not None and outcome.reason in _MAYBE_STALE and again != "looked_up"
            and outcome.room and self.feed is not None
            and self._worth_looking_up(outcome.room, now)
        ):
            # Refused on what memory holds of the room (nothing changed), but another
            # sidecar may have made the room or member within the feed's interval.
            self._look_up(event, outcome.room, losses)
            return
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
        self._carry_out(decision, event.handle, (event, losses))

    def _worth_looking_up(self, room: str, now: float) -> bool:
        """Whether to read `room` for a request: only while memory and the database are
        in service, with few reads under way (chat to the room waits for one), and not
        if it was read within the feed's interval (after that, the feed has brought
        any change): a bound on what texts to made-up rooms cost."""
        if (
            len(self._lookups) >= _MAX_LOOKUPS or self.lifecycle is not Lifecycle.RUNNING
            or not self.database.reachable
        ):
            return False
        looked = self._looked_up
        if now - looked.get(room, -1e9) < self.settings.feed_interval:
            return False
        if len(looked) >= _MAX_LOOKED_UP:
            looked.clear()
        looked[room] = now
        return True

    def _wait_for_read(self, event: RequestReceived, losses: int) -> bool:
        """Queue `event` behind a read of its room under way: requests to one room run
        in the order they came (a connection's stream order, for a start).  A room
        that lost a race waits to be read again; what it gets meanwhile runs after."""
        key = self.engine.room_key(event.request.uri)
        if key is None:
            return False
        queue = self._reading.get(key)
        if queue is not None:
            queue.append(event)
            return True
        if key in self._stale_rooms and len(self._after_refresh) < _MAX_AFTER_RELOAD:
            self._after_refresh.append((event, losses))
            return True
        return False

    def _look_up(self, event: RequestReceived, room: str, losses: int) -> None:
        """Read `room` from the database into memory, then run `event` again, then the
        requests to the same room that came meanwhile."""
        key = room.lower()
        self._reading.setdefault(key, [])

        async def look_up() -> None:
            store, feed = self.store, self.feed
            assert store is not None and feed is not None
            versions = store.versions
            try:
                version, stored = await store.read_room(key)
            except StoreError as exc:
                log.debug("could not read %s: %s", room, exc)
            else:
                if (
                    store.versions is versions and not versions.busy(key)
                    and versions.is_news(key, version)
                    and self.lifecycle is Lifecycle.RUNNING
                ):
                    self.engine.refresh(room, stored)
                    versions.read(key, version)
                    feed.refreshed += 1
            now = self._now()
            try:
                self._on_request(event, now, "looked_up", losses)
            finally:  # whatever happens, the room's queue is let go
                for waiting in self._reading.pop(key, ()):
                    self._on_request(waiting, now, "queued")
                self.driver.flush()

        task = asyncio.get_running_loop().create_task(look_up())
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

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

    @property
    def database(self) -> DatabaseHealth:
        """Whether the database answers (what the RPC and the statistics show)."""
        return self.policy.database

    def database_status(self) -> dict[str, int | float | str]:
        """For the RPC (`sidecar.database`): the rooms' database and whether it answers."""
        if self.store is None:  # db_mode 0: rooms live in memory only
            return {"database": "", "reachable": 1, "seconds": 0, "outages": 0, "error": ""}
        return {"database": self.store.label, **self.database.status(self._now())}

    def _carry_out(
        self, decision: Decision, handle: ServerHandle | None,
        request: Attempt | None = None,
    ) -> None:
        """Reply and send notices; when state changed, only after it is durable.
        `request`: what to run again if another sidecar changed the room first."""
        outcome = decision.outcome
        assert outcome is not None
        if decision.durable_first and self.store is not None:
            self._write(outcome, handle, request)
            return
        self._emit(outcome, handle, reply_headers=decision.headers)

    def _write(
        self, outcome: Outcome, handle: ServerHandle | None, request: Attempt | None
    ) -> None:
        """Queue `outcome`'s changes; its reply and notices leave once they are committed.

        The store settles its futures in commit order and their callbacks run in that
        order, so when a write fails every command still in `_in_flight` is newer.
        """
        assert self.store is not None
        try:
            done = self.store.submit(outcome.changes)
        except StoreError as exc:  # too long for a column, or the database is down
            self._write_failed(outcome, handle, exc, request)
            return
        key = id(outcome)
        self._in_flight[key] = outcome
        self._writes.add(done)
        done.add_done_callback(self._writes.discard)
        done.add_done_callback(lambda _: self._written(key, outcome, handle, done, request))

    def _written(
        self, key: int, outcome: Outcome, handle: ServerHandle | None,
        done: asyncio.Future[None], request: Attempt | None,
    ) -> None:
        self._in_flight.pop(key, None)
        error = StoreError("write cancelled") if done.cancelled() else done.exception()
        if error is None:
            outcome.undo = None  # durable: nothing to take back any more
            self._emit(outcome, handle)
        else:
            self._write_failed(outcome, handle, error, request)
        self.driver.flush()

    def _write_failed(
        self, outcome: Outcome, handle: ServerHandle | None, error: BaseException,
        request: Attempt | None = None,
    ) -> None:
        unavailable = isinstance(error, StoreUnavailable)
        conflict = isinstance(error, VersionConflict)
        if unavailable:
            self._database_lost(str(error), outcome)
        elif conflict:
            self.stats.version_conflicts += 1
            log.info("%s lost a race with another sidecar: %s", outcome.command, error)
            self._lost_race(outcome)
            if (
                request is not None and request[1] + 1 < _MAX_LOSSES
                and len(self._after_refresh) < _MAX_AFTER_RELOAD
            ):
                # Answered when run again on the re-read room.
                self._after_refresh.append((request[0], request[1] + 1))
                return
        else:
            # The database refused it (a constraint, a trigger): memory takes it back at
            # once, then is reloaded, since commands after it may have been written.
            log.error("could not store the changes of %s: %s", outcome.command, error)
            self._take_back(outcome)
            if self._resync is None:  # Lifecycle.RELOADING until memory equals the database
                self._resync = asyncio.get_running_loop().create_task(self._reload())
        decision = self.policy.write_failed(outcome, unavailable, conflict)
        assert decision.outcome is not None
        if decision.limited is not None:
            self.stats.count_limited(decision.limited)
        self._emit(decision.outcome, handle, reply_headers=decision.headers)

    def _lost_race(self, outcome: Outcome) -> None:
        """Another sidecar changed a room `outcome` was computed on.  Take it back, with
        every command in flight on the same rooms (newest first: they were computed on
        it, and the store refuses them too), then read those rooms again; the commands
        run again once they are (`_after_refresh`).  Other rooms are left alone."""
        assert self.store is not None
        rooms = set(rooms_touched(outcome.changes))
        in_flight = list(self._in_flight.values())
        taken: list[Outcome] = []
        grown = True
        while grown:  # a command on two rooms brings the other one's commands in too
            grown = False
            for other in in_flight:
                touched = rooms_touched(other.changes)
                if other not in taken and rooms.intersection(touched):
                    taken.append(other)
                    rooms.update(touched)
                    grown = True
        for other in sorted(taken, key=in_flight.index, reverse=True):
            self.engine.undo(other)
        self.engine.undo(outcome)
        self.store.refuse_rooms(rooms)
        self._stale_rooms.update(rooms)
        if self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        """Read the rooms that lost a race again, once no write of ours to them is in
        flight, put them in memory, then run the commands that lost again."""
        store = self.store
        assert store is not None
        try:
            while self._stale_rooms:
                rooms = set(self._stale_rooms)
                if any(store.versions.busy(room) for room in rooms):
                    # They fail (the store refuses them), then the rooms are read.
                    if self._writes:
                        await asyncio.wait(list(self._writes))
                    else:
                        await asyncio.sleep(0.01)
                    continue
                versions = store.versions
                fresh = {room: await store.read_room(room) for room in rooms}
                if store.versions is not versions:
                    self._stale_rooms -= rooms  # memory was reloaded meanwhile: fresh
                    continue
                if any(versions.busy(room) for room in rooms):
                    continue  # a command computed on the old room came meanwhile
                for room, (version, stored) in fresh.items():
                    self.engine.refresh(room, stored)
                    store.versions.read(room, version)
                    store.accept_rooms((room,))
                self._stale_rooms -= rooms
        except StoreError as exc:
            # The database went away: the outage path takes everything back and reloads
            # memory when it answers again.  The waiting requests run now: chat on the
            # memory there is, changing commands refused until then.
            self._stale_rooms.clear()
            self._database_lost(str(exc))
        finally:
            self._refreshing = None
        waiting, self._after_refresh = self._after_refresh, []
        now = self._now()
        for request, losses in waiting:
            self._on_request(request, now, "rerun", losses)
        if waiting:
            self.driver.flush()

    def _take_back(self, failed: Outcome | None) -> None:
        """Take every change the database may not hold out of memory, newest first: the
        commands still in flight, then `failed`, which is older than all of them."""
        for outcome in reversed(self._in_flight.values()):
            self.engine.undo(outcome)
        self._in_flight.clear()
        if failed is not None:
            self.engine.undo(failed)

    def _database_lost(self, error: str, failed: Outcome | None = None) -> None:
        """The database stopped answering: take back what it may not hold (`failed`, the
        oldest write that failed, and everything newer) and probe it until it answers."""
        self._take_back(failed)
        if self.database.reachable:
            log.error("database unreachable (%s): chat goes on; changing commands are "
                      "refused until it answers", error)
        self.database.lost(self._now(), error)
        if self._recovery is None:
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        """Probe the database until it answers, then reload memory from it: a write that
        failed mid-commit may have been committed after all, and only the database
        knows."""
        assert self.store is not None
        try:
            while True:
                await asyncio.sleep(self.database.retry_in())
                try:
                    await self.store.probe()
                except StoreError as exc:
                    self.database.error = str(exc)
                    continue
                break
            self.store.resume()
            self._resync = asyncio.get_running_loop().create_task(self._reload())
        finally:
            self._recovery = None

    async def _reload(self) -> None:
        """Make memory equal the database again.

        Meanwhile chat and reading commands are served from the old memory, and
        commands that would change it are refused (`RequestPolicy.can_change`): a
        change made there would be lost with it.  Writes already queued finish first.
        If the database does not answer, memory stays as it is and the sidecar goes on
        without it (`_database_lost`) until it does.
        """
        assert self.store is not None
        gc.unfreeze()  # the rooms about to be replaced must be collectable again
        try:
            try:
                rooms = await self.store.load()
            except StoreError as exc:
                self._database_lost(str(exc))
                return
            engine = ImcEngine(self.engine.config)
            engine.load(rooms)
            self.policy.reloaded(engine)
            gc.freeze()
            if not self.database.reachable:
                log.info("database answers again: %d rooms reloaded", len(rooms))
            else:
                log.info("state reloaded from the database: %d rooms", len(rooms))
            self.database.restored(self._now())
        finally:
            self._resync = None
            waiting, self._after_reload = self._after_reload, []
            now = self._now()
            for request, again, losses in waiting:
                self._on_request(request, now, again, losses)
            if waiting:
                self.driver.flush()

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


def _origin(settings: Settings) -> str:
    """This sidecar's name in the change feed: host, first SIP address, process."""
    first = settings.sip_listen[0] if settings.sip_listen else None
    where = f"{first.host}:{first.port}" if first is not None else "-"
    return f"{socket.gethostname()}/{where}/{os.getpid()}"[:64]


def _tcp_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        max_total=settings.sip_tcp_max_connections,
        max_per_source=settings.sip_tcp_max_per_source,
        idle_timeout=settings.sip_tcp_idle_timeout,
        max_write_buffer=settings.sip_tcp_max_buffer,
    )


def _open_files_for_tcp(settings: Settings) -> None:
    """Make sip_tcp_max_connections reachable: a process out of descriptors cannot even
    accept a connection to refuse it, nor open anything else."""
    limit = settings.sip_tcp_max_connections
    if not limit or all(listen.transport != "tcp" for listen in settings.sip_listen):
        return
    wanted = limit + _FILES_BESIDE_TCP
    allowed = raise_open_files(wanted)
    if allowed < wanted:
        log.warning(
            "sip_tcp_max_connections %d needs about %d open files, the limit is %d (ulimit "
            "-n): raise it, or lower the setting", limit, wanted, allowed,
        )
