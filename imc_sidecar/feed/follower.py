"""Following the change feed: the loop that keeps this sidecar's memory of every room
within `feed_interval` of the tables, whatever other sidecars change.

Each round reads the feed rows after the cursor, notes for each room the highest
version seen, and re-reads the rooms whose version is news (versions.py), except
while a write of ours to that room is in flight.  On PostgreSQL a LISTEN connection
wakes the loop as soon as a change commits; the interval is the bound everywhere.
Old rows are pruned now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from imc_sidecar.imc.changes import StoredRoom
from imc_sidecar.store.connect import StoreError
from imc_sidecar.store.feed import NOTIFY_CHANNEL
from imc_sidecar.store.repository import Store

from .cursor import FeedCursor

__all__ = ["FeedFollower"]

log = logging.getLogger("imc_sidecar.feed")

_PRUNE_EVERY = 60.0  # seconds between prunes, at most

Refresh = Callable[[str, StoredRoom | None], None]


class FeedFollower:
    def __init__(
        self, store: Store, refresh: Refresh, ready: Callable[[], bool], interval: float,
        retention: float,
    ) -> None:
        """`refresh(room_uri, stored)` puts a re-read room into memory; `ready()` says
        whether memory may be touched now (not while it is being reloaded)."""
        self.store = store
        self.refresh = refresh
        self.ready = ready
        self.interval = interval
        self.retention = retention
        self.cursor = FeedCursor(store.feed_start, gap_timeout=2 * store.statement_timeout)
        self.waiting: dict[str, int] = {}  # room -> newest version seen, not applied yet
        self.refreshed = 0  # rooms re-read and replaced (a statistic)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._next_prune = 0.0
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="imc-feed")

    async def close(self) -> None:
        """Stop after the round under way: cancelling a read in the middle would leave
        its connection to a pool about to be disposed, and the read waiting for ever."""
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            self.wake()
            with contextlib.suppress(TimeoutError):  # then wait_for has cancelled it
                await asyncio.wait_for(task, self.store.statement_timeout)
        await self._unlisten()

    def wake(self) -> None:
        """Read the feed now (a NOTIFY came, or a caller wants the latest)."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self._listen()
            except StoreError as exc:  # polling still bounds staleness without it
                log.debug("change feed: no LISTEN connection: %s", exc)
            try:
                await self.round()
            except StoreError as exc:
                # The writes notice an outage and recover; here, just try again later.
                log.debug("change feed not read: %s", exc)
                await self._unlisten()
            except Exception:  # a bug must not stop the following for good
                log.exception("change feed: a round failed")
            if self._closing:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def round(self) -> None:
        """One read of the feed and the re-reads it calls for."""
        store = self.store
        if not self.ready():
            return
        cursor = self.cursor
        rows = await store.read_feed(cursor.newest, cursor.missing())
        for row in cursor.take(rows, time.monotonic()):
            if row.version > self.waiting.get(row.room, 0):
                self.waiting[row.room] = row.version
        for room, version in list(self.waiting.items()):
            versions = store.versions
            if not versions.is_news(room, version):
                del self.waiting[room]
                continue
            if versions.busy(room):
                continue  # our write to it settles first (or conflicts, and memory reloads)
            found, stored = await store.read_room(room)
            # Memory may have moved on meanwhile: a reload, or a write of ours started.
            if store.versions is not versions or versions.busy(room) or not self.ready():
                continue
            if found < versions.known(room):
                continue
            self.refresh(room, stored)
            versions.read(room, found)
            self.refreshed += 1
            if not versions.is_news(room, version):
                del self.waiting[room]
        now = time.time()
        if now >= self._next_prune:
            self._next_prune = now + min(_PRUNE_EVERY, self.retention / 10)
            pruned = await store.prune_feed(now - self.retention)
            if pruned:
                log.debug("change feed: pruned %d rows", pruned)

    async def _listen(self) -> None:
        """On PostgreSQL, hold a connection that LISTENs, so commits wake the loop."""
        if self._listener is not None or self.store.dialect != "postgresql":
            return
        self._listener = await self.store.listen(NOTIFY_CHANNEL, self._notified)

    def _notified(self, _connection: object, _pid: int, _channel: str, origin: str) -> None:
        """A commit on PostgreSQL; our own need no read (they are in memory)."""
        if origin != self.store.origin:
            self.wake()

    async def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close()
