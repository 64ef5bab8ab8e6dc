"""`imc-sidecar demo` against a real sidecar: what it says it did is what the sidecar has.

The users live on a loopback /16 between 127.80 and 127.99 found free when the module
starts (the demo's default 127.77/16 is left to people running it by hand, bench uses
127.1/16, the notebook test 127.79/16), so that a run beside another one on the same
machine does not fight over port 5060.  The first test waits for two ghost invitations
to time out (the sidecar's Timer F, 32 s), so it takes about 40 s.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from imc_sidecar.demo.agent import T1, Phone

from .harness.sipua import free_port
from .sidecar_process import SidecarProcess, rpc_result, sidecar_args, sqlite_url

pytestmark = pytest.mark.e2e



def _free_net() -> str:
    for second in random.sample(range(80, 100), 20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((f"127.{second}.0.1", 5060))
            except OSError:
                continue
        return f"127.{second}.0.0/16"
    raise RuntimeError("no free loopback /16 between 127.80 and 127.99")


NET = _free_net()
PREFIX = NET.rsplit(".", 2)[0]  # "127.N"


def _demo(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imc_sidecar", "demo", "--no-progress", "--net", NET, *args],
        capture_output=True, text=True, timeout=timeout,
    )


def _rpc(port: int, method: str, *params: object) -> Any:
    return cast(Any, rpc_result(port, method, list(params)))


@pytest.mark.timeout(90)
def test_the_summary_agrees_with_the_sidecar(tmp_path: Path) -> None:
    sip_port, rpc_port = free_port(), free_port()
    db_url = sqlite_url(tmp_path)
    sidecar = SidecarProcess(
        sidecar_args(db_url, sip_port, "--rpc-http", f"127.0.0.1:{rpc_port}")
    ).start()
    summary_file = tmp_path / "demo.json"
    try:
        done = _demo(
            "--sip", f"udp:127.0.0.1:{sip_port}", "--rpc", f"http://127.0.0.1:{rpc_port}/RPC",
            "--duration", "8", "--users", "12", "--ghosts", "2", "--rooms", "4",
            "--seed", "7", "--summary", str(summary_file), timeout=75,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(summary_file.read_text())
        rooms = _rpc(rpc_port, "imc.list_rooms")
        stats = _rpc(rpc_port, "stats.fetchn", "imc:")
    finally:
        sidecar.terminate()

    assert "summary written to" in done.stdout and "invitations" in done.stdout
    assert summary["settled"] is True and summary["interrupted"] is False
    assert summary["mismatch_count"] == 0, summary["mismatches"]
    assert summary["started_sidecar"] is False and summary["db_url"] is None
    assert summary["sip"] == f"udp:127.0.0.1:{sip_port}"
    assert summary["users"] == 12 and summary["ghosts"] == 2
    assert summary["started_at"] < summary["traffic_ended_at"] <= summary["ended_at"]

    # Rooms: the ones it says are left, with their member counts (invited included) and
    # owners, are exactly what the sidecar lists.
    listed = {r["room"]: (r["members"], r["owner"]) for r in rooms}
    claimed = {uri: (r["members"], r["owner"]) for uri, r in summary["rooms"].items()}
    assert listed == claimed
    created, destroyed = summary["rooms_created"], summary["rooms_destroyed"]
    assert created["total"] == 4 and created["private"] >= 1
    assert sorted(created["uris"]) == sorted([*listed, *destroyed["uris"]])
    assert all(uri.startswith("sip:chat-") and uri.endswith("@demo.test")
               for uri in created["uris"])
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as db:
        stored = {f"sip:{name}@{domain}": flag for name, domain, flag in
                  db.execute("SELECT name, domain, flag FROM imc_rooms")}
    assert stored == {uri: int(r["private"]) for uri, r in summary["rooms"].items()}

    # Texts, commands and deliveries, against the sidecar's own counters.
    assert summary["chat_ok"] > 0
    assert stats["imc.chat_messages"] == summary["chat_ok"]
    assert sum(summary["chat_ok_by_room"].values()) == summary["chat_ok"]
    assert sum(summary["chat_ok_by_sender"].values()) == summary["chat_ok"]
    assert all(f"@{PREFIX}." in uri for uri in summary["chat_ok_by_sender"])
    assert stats["imc.received_messages"] == summary["requests"]["sent"]
    assert summary["requests"]["unanswered"] == 0
    for name, count in summary["commands_sent"].items():
        assert stats[f"imc.cmd_{name}"] == count, name
    invitations = summary["invitations"]
    assert invitations["unanswered"] == invitations["expired"] == 2
    assert invitations["open"] == 0
    assert stats["imc.pending_deliveries"] == 0
    assert stats["imc.failed_deliveries"] == invitations["unanswered"]
    # Every MESSAGE the sidecar sent reached a user who answered it, but the ghosts'.
    received = summary["received"]
    assert stats["imc.sent_messages"] == received["messages"] + invitations["unanswered"]
    assert received["not_registered"] == 2 and received["ghost_datagrams"] >= 2


@pytest.mark.timeout(60)
def test_start_runs_its_own_sidecar_and_stops_it(tmp_path: Path) -> None:
    db = tmp_path / "scratch.sqlite"
    summary_file = tmp_path / "demo.json"
    done = _demo("--start", "--db", str(db), "--duration", "3", "--users", "6", "--ghosts",
                 "0", "--rooms", "2", "--summary", str(summary_file), timeout=50)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["started_sidecar"] is True and summary["sidecar_left_running"] is False
    assert summary["db_url"] == f"sqlite:///{db.resolve()}"
    assert f"IMC_DB_URL={summary['db_url']}" in done.stderr
    assert "sidecar stopped" in done.stderr
    assert summary["settled"] is True and summary["mismatch_count"] == 0
    with sqlite3.connect(db) as conn:
        stored = {f"sip:{name}@{domain}" for name, domain in
                  conn.execute("SELECT name, domain FROM imc_rooms")}
    assert stored == set(summary["rooms"]) and stored
    assert db.with_name(db.name + ".log").read_text().count("listening on udp:") == 1


def test_without_a_sidecar_it_says_how_to_get_one() -> None:
    port = free_port()
    done = _demo("--sip", f"udp:127.0.0.1:{port}", "--rpc", f"http://127.0.0.1:{port}/RPC",
                 "--duration", "1", timeout=30)
    assert done.returncode == 2
    assert "--start" in done.stderr


# -- the users' SIP, on its own -------------------------------------------------------------


class _Server(asyncio.DatagramProtocol):
    """Drops the first `drop` copies of each request, then answers 200."""

    def __init__(self, drop: int) -> None:
        self.drop = drop
        self.seen: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen.append(data)
        if len(self.seen) <= self.drop:
            return
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        keep = [line for line in head if line.split(b":", 1)[0].lower()
                in (b"via", b"from", b"to", b"call-id", b"cseq")]
        reply = b"\r\n".join([b"SIP/2.0 200 OK", *keep, b"Content-Length: 0", b"", b""])
        assert self.transport is not None
        self.transport.sendto(reply, addr)


async def test_a_user_retransmits_until_answered() -> None:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: _Server(drop=2), local_addr=("127.0.0.1", 0))
    target = transport.get_extra_info("sockname")[:2]
    _, phone = await loop.create_datagram_endpoint(
        lambda: Phone(f"sip:ann@{PREFIX}.250.1", f"{PREFIX}.250.1"),
        local_addr=(f"{PREFIX}.250.1", 5060))
    try:
        reply = await phone.send(target, "sip:chat-1@demo.test", "héllo")
    finally:
        phone.close()
        transport.close()
    assert (reply.status, reply.reason, reply.retransmissions) == (200, "OK", 2)
    assert 3 * T1 <= reply.seconds < 3 * T1 + 0.5  # Timer E: T1, then 2*T1
    assert server.seen[0] == server.seen[1] == server.seen[2]  # the same request again
    request = server.seen[0].decode()
    head, body = request.split("\r\n\r\n")
    assert head.startswith("MESSAGE sip:chat-1@demo.test SIP/2.0\r\n")
    assert f"Via: SIP/2.0/UDP {PREFIX}.250.1:5060;branch=z9hG4bK" in head
    assert "\r\nMax-Forwards: 70\r\n" in head and "\r\nTo: <sip:chat-1@demo.test>\r\n" in head
    assert f"\r\nFrom: <sip:ann@{PREFIX}.250.1>;tag=" in head
    assert "\r\nContent-Type: text/plain\r\n" in head
    assert f"\r\nContent-Length: {len(body.encode())}" in head and body == "héllo"


async def test_a_user_answers_every_message_with_a_proper_200() -> None:
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    host = f"{PREFIX}.250.2"
    _, phone = await loop.create_datagram_endpoint(
        lambda: Phone(f"sip:bo@{host}", host, lambda _phone, request: got.append(request.body)),
        local_addr=(host, 5060))
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    receiver, _ = await loop.create_datagram_endpoint(lambda: _Collector(replies),
                                                      local_addr=("127.0.0.1", 0))
    port = receiver.get_extra_info("sockname")[1]
    request = (
        f"MESSAGE sip:bo@{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKone\r\n"
        "Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKtwo\r\n"
        f"From: <sip:chat-1@demo.test>;tag=abc\r\nTo: <sip:bo@{host}>\r\n"
        "Call-ID: c1\r\nCSeq: 7 MESSAGE\r\nContent-Length: 4\r\n\r\n[a]:"
    ).encode()
    try:
        for _ in range(2):  # the second is a retransmission: same 200, reported once
            receiver.sendto(request, (host, 5060))
        first = await asyncio.wait_for(replies.get(), 2)
        second = await asyncio.wait_for(replies.get(), 2)
    finally:
        phone.close()
        receiver.close()
    assert first == second and got == [b"[a]:"]
    lines = first.decode().split("\r\n")
    assert lines[0] == "SIP/2.0 200 OK"
    assert lines[1:3] == [f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKone",
                          "Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKtwo"]
    assert "From: <sip:chat-1@demo.test>;tag=abc" in lines
    assert any(line.startswith(f"To: <sip:bo@{host}>;tag=") for line in lines)
    assert "Call-ID: c1" in lines and "CSeq: 7 MESSAGE" in lines
    assert first.endswith(b"Content-Length: 0\r\n\r\n")


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)
