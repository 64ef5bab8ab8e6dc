"""The history writer on a real SQLite file: batches, the bounded queue, bad rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from imc_sidecar.history.records import EventRecord, MessageRecord
from imc_sidecar.history.writer import HistoryWriter


def _message(n: int, room: str = "sip:r@d") -> MessageRecord:
    return MessageRecord(n, room, "sip:a@d", 5, "text/plain", 2, 2, 0, None, 1000, None)


def _event(n: int, actor: str | None = "sip:a@d") -> EventRecord:
    return EventRecord(n, "sip:r@d", "joined", actor, actor, "ok", None)  # type: ignore[arg-type]


async def _open(path: Path, capacity: int = 1000) -> HistoryWriter:
    return await HistoryWriter.open(f"sqlite:///{path}", 0.01, capacity, 0)


def _rows(path: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


async def test_close_writes_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    writer = await _open(path)
    for n in range(250):
        writer.add_message(_message(n))
    writer.add_events([_event(1), _event(2)])
    await writer.close()
    assert writer.counters.written == 252 and writer.counters.dropped == 0
    assert [row[1] for row in _rows(path, "imc_sidecar_messages")] == list(range(250))
    assert len(_rows(path, "imc_sidecar_events")) == 2


async def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    writer = await _open(path, capacity=100)
    for n in range(150):  # no await in between: the background task cannot run
        writer.add_message(_message(n))
    assert writer.queued == 100 and writer.counters.dropped == 50
    await writer.close()
    assert len(_rows(path, "imc_sidecar_messages")) == 100


async def test_a_row_the_database_refuses_costs_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    writer = await _open(path)
    writer.add_events([_event(1), _event(2, actor=None), _event(3)])  # actor is NOT NULL
    writer.add_message(_message(4))
    await writer.close()
    assert [row[1] for row in _rows(path, "imc_sidecar_events")] == [1, 3]
    assert len(_rows(path, "imc_sidecar_messages")) == 1
    assert writer.counters.dropped == 1 and writer.counters.written == 3


async def test_undecodable_header_bytes_are_stored_replaced(tmp_path: Path) -> None:
    """Header values keep bytes that are not UTF-8 as surrogates; no driver takes those."""
    path = tmp_path / "h.sqlite"
    writer = await _open(path)
    odd = b"text/plain;charset=\xff".decode("utf-8", "surrogateescape")
    writer.add_message(_message(1)._replace(content_type=odd))
    await writer.close()
    assert writer.counters.written == 1
    assert _rows(path, "imc_sidecar_messages")[0][5] == "text/plain;charset=\ufffd"
