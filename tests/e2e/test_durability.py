"""Nothing acknowledged is lost: kill -9 the sidecar mid-traffic, restart, check.

Runs on SQLite, and on the machine's real MariaDB and PostgreSQL servers.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest

from .databases import KINDS, scratch_database
from .harness.sipua import free_port
from .sidecar_process import SidecarProcess, sidecar_args
from .sip_answerer import Answerer
from .sip_probe import message

pytestmark = pytest.mark.e2e

DOMAIN = "durable.test"


def _operations(rooms: int) -> list[tuple[str, str, str, tuple[str, str, str, int] | None]]:
    """(from user, R-URI, body, member row it must leave) for a mixed command stream."""
    ops: list[tuple[str, str, str, tuple[str, str, str, int] | None]] = []
    for n in range(rooms):
        room = f"chat-{n}"
        uri = f"sip:{room}@{DOMAIN}"
        private = n % 3 == 0
        ops.append(("alice", uri, "#create private" if private else "#create",
                    ("alice", DOMAIN, uri, 1)))
        if private:
            ops.append(("alice", uri, "#invite carol", ("carol", DOMAIN, uri, 4)))
            ops.append(("alice", uri, "#add bob", ("bob", DOMAIN, uri, 0)))
        else:
            ops.append(("bob", uri, "#join", ("bob", DOMAIN, uri, 0)))
    return ops


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_loses_nothing_acknowledged(kind: str, tmp_path: Path) -> None:
    answerer = Answerer()
    port = free_port()
    with scratch_database(kind, tmp_path) as (db_url, query):
        args = sidecar_args(db_url, port, "--outbound-proxy", answerer.uri)
        sidecar = SidecarProcess(args).start()
        ops = _operations(rooms=60)
        acked: dict[str, tuple[str, str, str, int] | None] = {}
        sent: dict[str, tuple[str, str, str, int] | None] = {}
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        stop = threading.Event()

        def read_replies() -> None:
            while not stop.is_set():
                try:
                    data = sock.recv(65535)
                except (TimeoutError, OSError):
                    continue
                if data.startswith(b"SIP/2.0 200 "):
                    call_id = _header(data, b"Call-ID")
                    acked[call_id] = sent[call_id]

        reader = threading.Thread(target=read_replies, daemon=True)
        reader.start()
        target = ("127.0.0.1", port)
        for index, (user, ruri, body, row) in enumerate(ops):
            call_id = uuid.uuid4().hex
            sent[call_id] = row
            sock.sendto(message(ruri, body, from_uri=f"sip:{user}@{DOMAIN}", call_id=call_id,
                                via_host=f"127.0.0.1:{sock.getsockname()[1]}"), target)
            if index == len(ops) * 2 // 3:
                sidecar.kill()  # SIGKILL while later commands are still in flight
                break
            time.sleep(0.002)
        time.sleep(0.3)
        stop.set()
        reader.join(2)
        sock.close()
        assert len(acked) >= len(ops) // 3, "too few commands were answered before the kill"

        rows = {tuple(r) for r in query("SELECT username, domain, room, flag FROM imc_members")}
        rows = {(u, d, r, int(f)) for u, d, r, f in rows}
        for row in acked.values():
            assert row is not None and row in rows, f"acknowledged change lost: {row}"
        private_rooms = {r[0] for r in query("SELECT name FROM imc_rooms WHERE flag = 1")}
        for _user, ruri, body, _row in ops:
            if body == "#create private" and any(
                row == ("alice", DOMAIN, ruri, 1) for row in acked.values()
            ):
                assert ruri.split(":")[1].split("@")[0] in private_rooms

        assert ("alice", DOMAIN, f"sip:chat-0@{DOMAIN}", 1) in acked.values()
        # The restarted sidecar serves the same state: a private room still refuses #join.
        restarted = SidecarProcess(args).start()
        try:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", 0))
            probe.settimeout(3)
            before = len(answerer.received)
            probe.sendto(message(f"sip:chat-0@{DOMAIN}", "#join", from_uri=f"sip:dave@{DOMAIN}",
                                 via_host=f"127.0.0.1:{probe.getsockname()[1]}"), target)
            assert probe.recv(65535).startswith(b"SIP/2.0 200 ")
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and len(answerer.received) < before + 2:
                time.sleep(0.02)
            bodies = [m.split(b"\r\n\r\n", 1)[1] for m in answerer.received[before:]]
            assert b"*** Private rooms are by invitation only. Room owners have been notified." \
                in bodies
            probe.close()
        finally:
            restarted.terminate()
    answerer.close()


def _header(data: bytes, name: bytes) -> str:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError(f"no {name!r}")


def test_a_write_the_database_refuses_is_not_acknowledged(tmp_path: Path) -> None:
    answerer = Answerer()
    port = free_port()
    db_path = tmp_path / "imc.sqlite"
    sidecar = SidecarProcess(
        sidecar_args(f"sqlite:///{db_path}", port, "--outbound-proxy", answerer.uri)
    ).start()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    probe.settimeout(3)
    via = f"127.0.0.1:{probe.getsockname()[1]}"
    room = f"sip:chat-1@{DOMAIN}"

    def send(user: str, body: str) -> str:
        probe.sendto(message(room, body, from_uri=f"sip:{user}@{DOMAIN}", via_host=via),
                     ("127.0.0.1", port))
        return probe.recv(65535).split(b"\r\n", 1)[0].decode()

    try:
        assert send("alice", "#create") == "SIP/2.0 200 OK"
        with sqlite3.connect(db_path) as db:
            db.execute(
                "CREATE TRIGGER refuse_mallory BEFORE INSERT ON imc_members "
                "WHEN NEW.username = 'mallory' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        assert send("mallory", "#join") == "SIP/2.0 500 Database error"
        # Memory takes it back at once: mallory is not a member, even while memory is
        # reloaded from the database; then bob can join.
        assert send("mallory", "hello") == "SIP/2.0 500 Not a member of the room"
        sidecar.wait_for_line("state reloaded from the database: 1 rooms")
        assert send("mallory", "hello") == "SIP/2.0 500 Not a member of the room"
        assert send("bob", "#join") == "SIP/2.0 200 OK"
    finally:
        probe.close()
        sidecar.terminate()
        answerer.close()
    bodies = [m.split(b"\r\n\r\n", 1)[1] for m in answerer.received]
    assert b"*** [mallory] has joined the room" not in bodies
    assert b"*** [bob] has joined the room" in bodies
