"""The whole sidecar in one process: real app, policy, engine, endpoint and store, with an
in-memory wire for the sockets and a hand-driven clock (sip/memory.py), as aioquic tests
its connection glue.  What these check is the wiring: which event leads where, in what
order, and what the app does with each decision."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from ipaddress import ip_network
from pathlib import Path

import pytest

from imc_sidecar.app import Sidecar
from imc_sidecar.settings import Listen, Settings
from imc_sidecar.sip.endpoint import Peer, Transmit
from imc_sidecar.sip.memory import ManualClock, MemoryWire
from imc_sidecar.sip.message import Request, Response
from imc_sidecar.sip.parse import parse_message
from imc_sidecar.sip.replies import response_bytes

ROOM = "sip:chat-1@chat.example"
SIDECAR = Listen("udp", "127.0.0.1", 5090)


def user(name: str) -> Peer:
    return Peer("udp", (f"192.0.2.{ord(name[0]) - 96}", 5060))


def message(name: str, body: str, n: int, uri: str = ROOM) -> tuple[bytes, Peer]:
    peer = user(name)
    host = peer.address[0]
    data = (
        f"MESSAGE {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:5060;branch=z9hG4bK-{name}-{n}\r\n"
        f"From: <sip:{name}@{host}>;tag={n}\r\nTo: <{uri}>\r\n"
        f"Call-ID: {name}-{n}\r\nCSeq: {n} MESSAGE\r\nMax-Forwards: 70\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}"
    ).encode()
    return data, peer


class Rig:
    """A started sidecar on the wire, and helpers to talk to it."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        wire = sidecar.driver.transports
        assert isinstance(wire, MemoryWire)
        self.wire = wire
        clock = sidecar.driver._clock
        assert isinstance(clock, ManualClock)
        self.clock = clock
        self.n = 0

    def send(self, name: str, body: str, uri: str = ROOM) -> None:
        self.n += 1
        self.wire.deliver(message(name, body, self.n, uri))

    def replies(self, sent: list[Transmit]) -> list[Response]:
        out = [parse_message(t.data) for t in sent if t.data.startswith(b"SIP/2.0")]
        return [r for r in out if isinstance(r, Response)]

    def requests(self, sent: list[Transmit]) -> list[Request]:
        out = [parse_message(t.data) for t in sent if t.data.startswith(b"MESSAGE")]
        return [r for r in out if isinstance(r, Request)]

    def answer(self, sent: list[Transmit], status: int = 200) -> None:
        """Every MESSAGE in `sent` answered by its recipient, in one batch."""
        answers = []
        for transmit in sent:
            request = parse_message(transmit.data)
            if isinstance(request, Request):
                answers.append((response_bytes(request, status, "X", to_tag="m"), transmit.peer))
        self.wire.deliver(*answers)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'imc.sqlite'}", sip_listen=(SIDECAR,),
        rpc_http=(), rpc_dgram=(), rpc_binrpc=(), history=False, max_pending_deliveries=4,
        trusted_sources=(ip_network("192.0.2.0/24"),), sender_rate=1.0, sender_burst=3,
        max_body=100,
    )
    sidecar = Sidecar(settings, transports=MemoryWire, clock=ManualClock)
    await sidecar.start()
    rig = Rig(sidecar)
    yield rig
    rig.clock.advance(64.0)  # every transaction still open times out: nothing to wait for
    await sidecar.stop()


async def _settle(rig: Rig) -> None:
    """Let the writes in flight finish, committed or not (the database is real)."""
    writes = list(rig.sidecar._writes)
    if writes:
        await asyncio.wait(writes)


async def _room(rig: Rig, owner: str, *members: str) -> None:
    """chat-1 created by `owner`, joined by `members`, every notice answered."""
    for name, body in [(owner, "#create"), *((m, "#join") for m in members)]:
        rig.send(name, body)
        await _settle(rig)
        rig.answer(rig.wire.take())


async def test_a_command_is_answered_only_once_its_change_is_durable(
    rig: Rig, tmp_path: Path
) -> None:
    rig.send("alice", "#create")
    assert rig.wire.take() == []  # nothing leaves before the room is stored
    await _settle(rig)
    sent = rig.wire.take()
    [reply] = rig.replies(sent)
    assert (reply.status, reply.reason) == (200, "OK")
    [notice] = rig.requests(sent)
    assert notice.body == b"*** Room was created" and notice.uri == "sip:alice@192.0.2.1"
    rooms = sqlite3.connect(tmp_path / "imc.sqlite").execute("SELECT name FROM imc_rooms")
    assert rooms.fetchall() == [("chat-1",)]


async def test_a_chat_text_fans_out_at_once_and_its_answers_end_the_transactions(
    rig: Rig,
) -> None:
    await _room(rig, "alice", "bob")
    assert rig.sidecar.endpoint is not None and rig.sidecar.endpoint.pending_requests == 0
    rig.send("alice", "hello")
    sent = rig.wire.take()  # no database write: the copies and the reply leave at once
    [reply] = rig.replies(sent)
    assert reply.status == 200
    [copy] = rig.requests(sent)
    assert (copy.uri, copy.body) == ("sip:bob@192.0.2.2", b"[alice]: hello")
    assert copy.headers.get("In-Reply-To") == "alice-3"  # the text's Call-ID
    assert rig.sidecar.endpoint.pending_requests == 1
    rig.answer(sent)
    assert rig.sidecar.endpoint.pending_requests == 0
    assert rig.sidecar.stats.failed_deliveries == 0


async def test_an_unanswered_copy_is_retransmitted_on_the_clock_then_counted_failed(
    rig: Rig,
) -> None:
    await _room(rig, "alice", "bob")
    rig.send("alice", "anyone?")
    [copy] = rig.requests(rig.wire.take())
    rig.clock.advance(0.5)  # Timer E: T1
    assert [t.data for t in rig.wire.take()] == [copy.to_bytes()]
    rig.clock.advance(32.0)  # Timer F
    assert rig.sidecar.stats.failed_deliveries == 1
    assert rig.sidecar.endpoint is not None and rig.sidecar.endpoint.pending_requests == 0


async def test_overload_refuses_chat_with_503_and_retry_after_but_never_commands(
    rig: Rig,
) -> None:
    await _room(rig, "alice", "bob", "carol", "dave")
    rig.send("alice", "one")  # 3 copies unanswered: under the limit of 4
    rig.wire.take()
    rig.send("alice", "two")  # 3 more would pass it
    [refusal] = rig.replies(rig.wire.take())
    assert (refusal.status, refusal.headers.get("Retry-After")) == (503, "1")
    rig.send("eve", "#join")  # a command is served while overloaded
    await _settle(rig)
    replies = rig.replies(rig.wire.take())
    assert [r.status for r in replies] == [200]
    assert rig.sidecar.stats.refused_messages == 1


async def test_a_stopping_sidecar_answers_503_shutting_down(rig: Rig) -> None:
    rig.sidecar._stopping = True
    rig.send("alice", "#create")
    [reply] = rig.replies(rig.wire.take())
    assert (reply.status, reply.reason) == (503, "Shutting down")
    rig.sidecar._stopping = False


async def test_untrusted_sources_get_403_and_cannot_forge_a_delivery(rig: Rig) -> None:
    await _room(rig, "alice", "bob")
    stranger = Peer("udp", ("198.51.100.7", 5060))  # outside trusted_sources
    data, _ = message("mallory", "#destroy", 99)
    rig.wire.deliver((data.replace(b"sip:mallory@192.0.2.13", b"sip:alice@192.0.2.1"), stranger))
    [refusal] = rig.replies(rig.wire.take())
    assert (refusal.status, refusal.reason) == (403, "Forbidden")
    assert rig.sidecar.engine.find_room(ROOM) is not None  # nothing changed
    rig.send("alice", "hello")
    [copy] = rig.requests(rig.wire.take())
    forged = response_bytes(copy, 200, "OK", to_tag="f")
    rig.wire.deliver((forged, stranger))  # a 200 from the wrong place
    assert rig.sidecar.endpoint is not None and rig.sidecar.endpoint.pending_requests == 1
    rig.answer([Transmit(copy.to_bytes(), user("bob"))])  # bob's own answer counts
    assert rig.sidecar.endpoint.pending_requests == 0
    untrusted = {s.name: s.value for s in rig.sidecar.stats if s.name.startswith("untrusted")}
    assert untrusted == {"untrusted_requests": 1, "untrusted_responses": 1}


async def test_a_flooding_sender_is_refused_and_told_once_while_others_are_served(
    rig: Rig,
) -> None:
    await _room(rig, "alice", "bob")
    for n in range(3):  # the burst
        rig.send("alice", f"text {n}")
        rig.answer(rig.wire.take())
    rig.send("alice", "one too many")
    sent = rig.wire.take()
    [refusal] = rig.replies(sent)
    assert (refusal.status, refusal.reason) == (503, "Too Many Messages")
    assert refusal.headers.get("Retry-After") == "1"
    [notice] = rig.requests(sent)
    assert notice.uri == "sip:alice@192.0.2.1" and notice.body.startswith(b"*** You are")
    rig.answer(sent)
    rig.send("alice", "and another")
    assert [r.status for r in rig.replies(rig.wire.take())] == [503]  # no second notice
    rig.send("bob", "I can still talk")
    sent = rig.wire.take()
    assert [r.status for r in rig.replies(sent)] == [200]
    rig.answer(sent)
    rig.clock.advance(1.0)  # a token back
    rig.send("alice", "slower now")
    sent = rig.wire.take()
    assert [r.status for r in rig.replies(sent)] == [200]
    rig.answer(sent)
    rig.send("bob", "x" * 101)  # over max_body
    assert [r.status for r in rig.replies(rig.wire.take())] == [413]
    counts = {s.name: s.value for s in rig.sidecar.stats}
    assert (counts["rate_limited_messages"], counts["oversized_messages"]) == (2, 1)


async def test_a_transport_error_fails_the_copies_to_that_peer_at_once(rig: Rig) -> None:
    await _room(rig, "alice", "bob")
    rig.send("alice", "are you there?")
    rig.wire.take()
    assert rig.sidecar.endpoint is not None and rig.sidecar.endpoint.pending_requests == 1
    rig.wire.fail(user("bob"))  # e.g. ICMP port unreachable for bob's address
    assert rig.sidecar.endpoint.pending_requests == 0
    assert rig.sidecar.stats.failed_deliveries == 1


async def test_a_database_that_stops_answering_refuses_changes_and_comes_back(
    rig: Rig, tmp_path: Path
) -> None:
    """Commands in flight when the database stops answering are all refused and taken
    back, newest first; chat goes on; the sidecar finds the database again by itself."""
    await _room(rig, "alice", "bob")
    sidecar, store = rig.sidecar, rig.sidecar.store
    assert store is not None
    store.statement_timeout = 0.2  # the database will hold its lock for longer
    lock = sqlite3.connect(tmp_path / "imc.sqlite", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # nobody else can write: like a database that hangs
    try:
        rig.send("carol", "#join")  # its write starts, and waits
        await asyncio.sleep(0)
        rig.send("dave", "#join")  # queued behind it: changes on top of carol's
        rig.send("carol", "#create chat-2")  # a second room, by a member not yet stored
        assert rig.wire.take() == []
        await _settle(rig)
        sent = rig.wire.take()
        assert [(r.status, r.reason) for r in rig.replies(sent)] == [
            (503, "Database Unavailable")
        ] * 3
        notices = {(n.uri, n.body[:40]) for n in rig.requests(sent)}
        assert notices == {
            ("sip:carol@192.0.2.3", b"*** The room database is not reachable, "),
            ("sip:dave@192.0.2.4", b"*** The room database is not reachable, "),
        }
        rig.answer(sent)
        room = sidecar.engine.find_room(ROOM)
        assert room is not None and [m.user for m in room.members] == ["alice", "bob"]
        assert sidecar.engine.find_room("sip:chat-2@chat.example") is None
        assert sidecar.database_status()["reachable"] == 0
        # Changing commands are refused at once now; chat and #members are served.
        rig.send("eve", "#join")
        rig.send("alice", "still talking")
        rig.send("bob", "#members")
        sent = rig.wire.take()
        assert [r.status for r in rig.replies(sent)] == [503, 200, 200]
        assert {r.uri for r in rig.requests(sent)} >= {"sip:bob@192.0.2.2"}
        rig.answer(sent)
    finally:
        lock.rollback()
        lock.close()
    assert sidecar._recovery is not None
    await sidecar._recovery  # probes until the database answers
    assert sidecar._resync is not None
    await sidecar._resync  # then reloads memory from it
    assert sidecar.database_status()["reachable"] == 1
    rig.send("carol", "#join")
    await _settle(rig)
    assert [r.status for r in rig.replies(rig.wire.take())] == [200]
    counts = {s.name: s.value for s in sidecar.stats if s.name.startswith("db_")}
    assert counts == {"db_reachable": 1, "db_outages": 1, "db_refused_commands": 4}
