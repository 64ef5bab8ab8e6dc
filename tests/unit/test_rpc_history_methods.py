"""The `sidecar.*` methods: rooms and members from the engine, history pages from a real
history database (SQLite), and a clear fault for every request they cannot serve."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy
from rpc_support import ROOMS, Context

from imc_sidecar.history.query import EVENT_COLUMNS, MAX_PAGE, MESSAGE_COLUMNS, HistoryFilter
from imc_sidecar.history.recorder import HistoryRecorder
from imc_sidecar.history.records import EventRecord, MessageRecord
from imc_sidecar.history.tables import build_history_tables, ensure_history_schema
from imc_sidecar.history.writer import HistoryWriter
from imc_sidecar.rpc.history_methods import parse_page_request
from imc_sidecar.rpc.jsonrpc import answer_json
from imc_sidecar.rpc.methods import build_registry
from imc_sidecar.rpc.registry import RpcFault, RpcReply

REGISTRY = build_registry()
T0 = 1_764_000_000_000_000  # 2025-11-24, UTC microseconds
ROOM1, ROOM2 = "sip:chat-1@example.com", "sip:chat-2@example.com"
ALICE, BOB = "sip:alice@example.com", "sip:bob@example.com"

EVENTS = [
    EventRecord(T0, ROOM1, "created", ALICE, ALICE, "ok", None),
    EventRecord(T0 + 1, ROOM1, "joined", BOB, BOB, "ok", None),
    EventRecord(T0 + 2, ROOM2, "created", ALICE, ALICE, "ok", None),
    EventRecord(T0 + 3, ROOM1, "invited", ALICE, "sip:carol@example.com", "ok", None),
    EventRecord(T0 + 4, ROOM1, "destroyed", BOB, None, "Permission denied", None),
]
MESSAGES = [
    MessageRecord(T0 + 10 + n, ROOM1 if n % 2 else ROOM2, ALICE if n < 3 else BOB, 5,
                  "text/plain", 2, 2, 0, None, 1500 + n, None)
    for n in range(5)
]


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[HistoryRecorder]:
    path = tmp_path / "h.sqlite"
    # Tables made first: the writer's open and its first flush would both create them.
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        ensure_history_schema(conn, build_history_tables())
    engine.dispose()
    writer = await HistoryWriter.open(f"sqlite:///{path}", 0.01, 1000, 0)
    writer.add_events(EVENTS)
    for message in MESSAGES:
        writer.add_message(message)
    async with asyncio.timeout(5):
        while writer.counters.written < len(EVENTS) + len(MESSAGES):
            await asyncio.sleep(0.01)
    yield HistoryRecorder(writer, bodies=False)
    await writer.close()


async def _call(context: Context, method: str, *params: object) -> RpcReply:
    return await REGISTRY.call_async(context, method, params)


async def _fault(context: Context, method: str, *params: object) -> tuple[int, str]:
    with pytest.raises(RpcFault) as info:
        await _call(context, method, *params)
    return info.value.code, info.value.message


# -- rooms and members ------------------------------------------------------------------


async def test_rooms_in_engine_order_with_counts_and_owner() -> None:
    reply = await _call(Context(ROOMS), "sidecar.rooms")
    assert reply.array
    assert reply.values == [
        {"room": "sip:chat-2@example.com", "name": "chat-2", "domain": "example.com",
         "private": True, "members": 1, "active": 1, "invited": 0,
         "owner": "sip:dave@example.com"},
        {"room": ROOM1, "name": "chat-1", "domain": "example.com", "private": False,
         "members": 3, "active": 2, "invited": 1, "owner": ALICE},
        {"room": "sip:lonely@example.com", "name": "lonely", "domain": "example.com",
         "private": False, "members": 1, "active": 1, "invited": 0,
         "owner": "sip:erin@example.com"},
    ]
    assert (await _call(Context(), "sidecar.rooms")).values == []


async def test_members_of_every_room_or_one() -> None:
    context = Context(ROOMS)
    every = (await _call(context, "sidecar.members")).values
    assert len(every) == 5
    one = (await _call(context, "sidecar.members", "SIP:CHAT-1@example.com")).values
    assert sorted(one, key=lambda row: str(row)) == sorted([  # type: ignore[arg-type]
        {"room": ROOM1, "member": ALICE, "role": "owner", "pending": False},
        {"room": ROOM1, "member": BOB, "role": "member", "pending": False},
        {"room": ROOM1, "member": "sip:carol@example.com", "role": "member", "pending": True},
    ], key=str)
    assert (await _call(context, "sidecar.members", "sip:nope@example.com")).values == []
    assert (await _call(context, "sidecar.members", None)).values == every
    assert await _fault(context, "sidecar.members", 5) == (400, "room must be a SIP URI string")


# -- history pages ----------------------------------------------------------------------


async def test_history_off_is_a_clear_fault() -> None:
    for method in ("sidecar.events", "sidecar.messages"):
        assert await _fault(Context(ROOMS), method) == (500, "History is off")


async def test_events_page_by_page(history: HistoryRecorder) -> None:
    context = Context(ROOMS, history)
    reply = await _call(context, "sidecar.events", {"limit": 2})
    (page,) = reply.values
    assert isinstance(page, dict)
    assert page["columns"] == list(EVENT_COLUMNS)
    assert page["rows"] == [[1, *EVENTS[0]], [2, *EVENTS[1]]]
    assert page["next"] == 2
    seen = page["rows"]
    while page["next"] is not None:
        (page,) = (await _call(context, "sidecar.events",
                               {"after": page["next"], "limit": 2})).values
        assert isinstance(page, dict)
        seen += page["rows"]
    assert [row[0] for row in seen] == [1, 2, 3, 4, 5]  # type: ignore[index]


async def test_filters(history: HistoryRecorder) -> None:
    context = Context(ROOMS, history)

    async def ids(method: str, **where: object) -> list[object]:
        (page,) = (await _call(context, method, where)).values
        assert isinstance(page, dict) and page["next"] is None
        return [row[0] for row in page["rows"]]  # type: ignore[index, union-attr]

    assert await ids("sidecar.events", room=ROOM1) == [1, 2, 4, 5]
    assert await ids("sidecar.events", kind="created") == [1, 3]
    assert await ids("sidecar.events", since_us=T0 + 1, until_us=T0 + 3) == [2, 3]
    assert await ids("sidecar.messages", sender=BOB) == [4, 5]
    assert await ids("sidecar.messages", room=ROOM2, sender=ALICE) == [1, 3]
    assert await ids("sidecar.messages", since_us=float(T0 + 12)) == [3, 4, 5]
    assert await ids("sidecar.events", room="sip:nowhere@example.com") == []


async def test_pages_over_json_rpc(history: HistoryRecorder) -> None:
    context = Context(ROOMS, history)
    text = json.dumps({"jsonrpc": "2.0", "method": "sidecar.messages", "id": 1,
                       "params": [{"room": ROOM1, "limit": 1}]}).encode()
    status, _reason, body = await answer_json(text, REGISTRY, context)
    assert status == 200 and body is not None
    result = json.loads(body)["result"]
    assert result["columns"] == list(MESSAGE_COLUMNS)
    assert result["rows"] == [[2, *MESSAGES[1]]]  # big times survive srjson's printing
    assert result["next"] == 2


@pytest.mark.parametrize(("params", "message"), [
    (("x",), "sidecar.events takes one struct parameter (or none)"),
    (([1],), "sidecar.events takes one struct parameter (or none)"),
    (({"sender": ALICE},), "sidecar.events: unknown member 'sender' (use since_us, "
                           "until_us, room, kind, after, limit)"),
    (({"since_us": "yesterday"},), "since_us must be an integer (UTC microseconds since "
                                   "the epoch)"),
    (({"until_us": 1.5},), "until_us must be an integer (UTC microseconds since the epoch)"),
    (({"since_us": 2**63},), "since_us must be an integer (UTC microseconds since the epoch)"),
    (({"after": True},), "after must be an integer"),
    (({"after": -1},), "after must be a cursor (0 or the `next` of a page)"),
    (({"limit": 0},), "limit must be at least 1"),
    (({"room": 7},), "room must be a string"),
    (({"kind": "chatted"},), "kind must be one of created, destroyed, joined, invited, "
                             "accepted, rejected, invite_failed, role_changed, left, removed"),
])
async def test_bad_requests_are_clear_faults(
    history: HistoryRecorder, params: tuple[object, ...], message: str
) -> None:
    assert await _fault(Context(ROOMS, history), "sidecar.events", *params) == (400, message)


def test_page_request_defaults_and_cap() -> None:
    assert parse_page_request("messages", []) == (HistoryFilter(), 0, MAX_PAGE)
    assert parse_page_request("messages", [None]) == (HistoryFilter(), 0, MAX_PAGE)
    where, after, limit = parse_page_request(
        "messages", [{"sender": BOB, "after": 7, "limit": MAX_PAGE * 10}])
    assert (where, after, limit) == (HistoryFilter(sender=BOB), 7, MAX_PAGE)


async def test_database_trouble_is_a_fault(history: HistoryRecorder, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "h.sqlite") as conn:
        conn.execute("DROP TABLE imc_sidecar_messages")
    code, message = await _fault(Context(ROOMS, history), "sidecar.messages")
    assert code == 500 and message.startswith("History database error: ")
    assert "no such table" in message
