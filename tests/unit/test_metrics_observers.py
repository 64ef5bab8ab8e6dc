"""Where the two histograms are fed: once per finished fan-out (the history recorder) and
once per committed write transaction (the store), each on a real SQLite database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imc_sidecar.history.recorder import HistoryRecorder
from imc_sidecar.history.writer import HistoryWriter
from imc_sidecar.imc.changes import MemberAdded, RoomCreated
from imc_sidecar.imc.outcome import Outcome, Outgoing
from imc_sidecar.store.repository import Store, StoreError

ROOM = "sip:chat@example.com"


def _chat(*recipients: str) -> Outcome:
    return Outcome(1, 200, "OK", messages=[Outgoing(recipients, ROOM, b"[alice]: hi")],
                   actor="sip:alice@example.com", room=ROOM)


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[HistoryWriter]:
    writer = await HistoryWriter.open(f"sqlite:///{tmp_path / 'h.sqlite'}", 0.01, 1000, 0)
    yield writer
    await writer.close()


async def test_a_fanout_is_timed_once_when_its_last_copy_is_answered(
    writer: HistoryWriter,
) -> None:
    now = [100.0]
    seconds: list[float] = []
    recorder = HistoryRecorder(writer, False, monotonic=lambda: now[0],
                               fanout_done=seconds.append)
    tally = recorder.chat(_chat("sip:bob@x", "sip:carol@x", "sip:dave@x"), b"hi", None)
    assert tally is not None
    now[0] = 100.25
    recorder.answered(tally, 200)
    assert seconds == []  # two copies still out
    recorder.answered_many(tally, 1, 1, 408, 101.5)  # a worker's share, the last at 101.5
    assert seconds == [1.5]
    recorder.answered(tally, 200)  # a stray answer after the end times nothing
    assert seconds == [1.5]
    assert recorder.chat(_chat(), b"alone", None) is None  # no copies: no fan-out
    assert seconds == [1.5]


async def test_failed_copies_count_as_answers(writer: HistoryWriter) -> None:
    now = [5.0]
    seconds: list[float] = []
    recorder = HistoryRecorder(writer, False, monotonic=lambda: now[0],
                               fanout_done=seconds.append)
    tally = recorder.chat(_chat("sip:bob@x"), b"hi", None)
    assert tally is not None
    now[0] = 37.0  # Timer F
    recorder.answered(tally, 408)
    assert seconds == [32.0]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite:///{tmp_path / 'imc.sqlite'}")
    yield store
    await store.close()


def _room(name: str) -> list[RoomCreated | MemberAdded]:
    return [RoomCreated(name, "example.com", 0),
            MemberAdded(f"sip:{name}@example.com", "alice", "example.com", 1)]


async def test_each_committed_transaction_is_timed_once(store: Store) -> None:
    seconds: list[float] = []
    store.on_commit = seconds.append
    await store.apply(_room("one"))
    assert len(seconds) == 1 and seconds[0] > 0
    # Submitted together: one batch, one transaction.
    await asyncio.gather(*(store.submit(_room(name)) for name in ("a", "b", "c")))
    assert len(seconds) == 2
    await store.apply(())  # a barrier writes nothing
    assert len(seconds) == 2


async def test_a_refused_change_is_not_timed_and_its_neighbours_are(store: Store) -> None:
    seconds: list[float] = []
    await store.apply(_room("taken"))
    store.on_commit = seconds.append
    # One batch with a duplicate room: it fails, then each command is tried on its own.
    good, bad = store.submit(_room("free")), store.submit(_room("taken"))
    await good
    with pytest.raises(StoreError, match="refused"):
        await bad
    assert len(seconds) == 1  # only "free" committed
