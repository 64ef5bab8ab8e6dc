"""Two whole sidecars in one process on one SQLite database, each on its own in-memory
wire (test_wiring.py's rig): what one changes reaches the other through the change
feed, and a command computed on a stale room loses the version check, is taken back
and is run again on the reloaded room.  The feed is read by hand (`round()`) instead of
by the followers' timers, so each step happens exactly when the test says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from ipaddress import ip_network
from pathlib import Path

import pytest
from test_wiring import ROOM, SIDECAR, Rig

from imc_sidecar.app import Sidecar
from imc_sidecar.feed.follower import FeedFollower
from imc_sidecar.settings import Settings
from imc_sidecar.sip.memory import ManualClock, MemoryWire


class FeedRig(Rig):
    @property
    def feed(self) -> FeedFollower:
        assert self.sidecar.feed is not None
        return self.sidecar.feed

    async def settle(self) -> None:
        """Writes in flight done, and a re-read of rooms that lost a race, or a reload,
        finished with the commands it runs again."""
        sidecar = self.sidecar
        while True:
            for task in (sidecar._resync, sidecar._refreshing):
                if task is not None:
                    await task
            writes = list(sidecar._writes)
            if not writes and sidecar._resync is None and sidecar._refreshing is None:
                return
            for write in writes:
                with contextlib.suppress(Exception):  # a failed write: settled all the same
                    await write

    async def command(self, name: str, body: str) -> tuple[int, str]:
        self.send(name, body)
        await self.settle()
        sent = self.wire.take()
        self.answer(sent)
        [reply] = self.replies(sent)
        return reply.status, reply.reason

    def members(self) -> list[tuple[str, int]]:
        room = self.sidecar.engine.find_room(ROOM)
        return [] if room is None else [(m.user, m.flags) for m in room.members]


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[FeedRig, FeedRig]]:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'imc.sqlite'}", sip_listen=(SIDECAR,),
        rpc_http=(), rpc_dgram=(), rpc_binrpc=(), history=False,
        trusted_sources=(ip_network("192.0.2.0/24"),),
    )
    rigs = []
    for _ in range(2):
        sidecar = Sidecar(settings, transports=MemoryWire, clock=ManualClock)
        await sidecar.start()
        rig = FeedRig(sidecar)
        await rig.feed.close()  # no timer: the test reads the feed itself
        rigs.append(rig)
    yield rigs[0], rigs[1]
    for rig in rigs:
        rig.clock.advance(64.0)
        await rig.sidecar.stop()


async def test_a_change_made_through_one_reaches_the_other(
    pair: tuple[FeedRig, FeedRig],
) -> None:
    a, b = pair
    assert await a.command("alice", "#create") == (200, "OK")
    assert await a.command("bob", "#join") == (200, "OK")
    assert b.members() == []
    await b.feed.round()
    assert b.members() == a.members() == [("alice", 1), ("bob", 0)]
    assert b.feed.refreshed == 1  # one room re-read, for two feed rows
    await a.feed.round()
    assert a.feed.refreshed == 0  # its own rows are not news

    # Chat through b now reaches bob.
    b.send("alice", "hello")
    sent = b.wire.take()
    assert [r.uri for r in b.requests(sent)] == ["sip:bob@192.0.2.2"]

    assert await a.command("alice", "#destroy") == (200, "OK")
    await b.feed.round()
    assert b.sidecar.engine.find_room(ROOM) is None


async def test_a_command_on_a_stale_room_loses_the_race_and_runs_again(
    pair: tuple[FeedRig, FeedRig],
) -> None:
    a, b = pair
    assert await a.command("alice", "#create") == (200, "OK")
    await b.feed.round()
    assert await a.command("carol", "#join") == (200, "OK")  # b has not seen it
    assert await b.command("dave", "#join") == (200, "OK")  # lost, reloaded, run again
    assert b.sidecar.stats.version_conflicts == 1
    assert b.members() == [("alice", 1), ("dave", 0), ("carol", 0)]
    await a.feed.round()
    assert a.members() == b.members()


async def test_a_command_for_a_room_made_elsewhere_is_not_lost(
    pair: tuple[FeedRig, FeedRig],
) -> None:
    """b never heard of the room: its #create would make a second one; the version
    check refuses that, and the re-run on the reloaded room answers as imc does for
    an existing room."""
    a, b = pair
    assert await a.command("alice", "#create") == (200, "OK")
    assert await a.command("bob", "#join") == (200, "OK")
    # check_on_create is 0: #create of an existing public room joins it.
    assert await b.command("carol", "#create") == (200, "OK")
    assert b.sidecar.stats.version_conflicts == 1
    assert b.members() == [("alice", 1), ("carol", 0), ("bob", 0)]
    await a.feed.round()
    assert a.members() == b.members()


async def test_a_text_for_a_room_memory_lacks_loads_it_from_the_database(
    pair: tuple[FeedRig, FeedRig],
) -> None:
    """Made through a within the feed's interval: b reads the room when a text for it
    comes, then fans it out; a second text needs no read."""
    a, b = pair
    assert await a.command("alice", "#create") == (200, "OK")
    assert await a.command("bob", "#join") == (200, "OK")
    b.send("alice", "hello")
    assert b.wire.take() == []  # nothing yet: the room is being read
    await asyncio.gather(*b.sidecar._lookups)
    sent = b.wire.take()
    assert [(r.status, r.reason) for r in b.replies(sent)] == [(200, "OK")]
    assert [r.uri for r in b.requests(sent)] == ["sip:bob@192.0.2.2"]
    assert b.feed.refreshed == 1
    b.answer(sent)
    b.send("alice", "again")
    assert not b.sidecar._lookups
    assert [r.uri for r in b.requests(b.wire.take())] == ["sip:bob@192.0.2.2"]


async def test_a_text_for_a_room_that_does_not_exist_is_read_once_per_interval(
    pair: tuple[FeedRig, FeedRig],
) -> None:
    _, b = pair
    b.send("alice", "anyone?")
    await asyncio.gather(*b.sidecar._lookups)
    [reply] = b.replies(b.wire.take())
    assert (reply.status, reply.reason) == (500, "Room not found")
    b.send("alice", "anyone?")  # the same clock reading: answered from memory at once
    assert not b.sidecar._lookups
    [reply] = b.replies(b.wire.take())
    assert reply.reason == "Room not found"
