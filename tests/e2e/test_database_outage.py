"""A database outage on a real PostgreSQL server of the test's own, during traffic.

While the server is down (stopped, or frozen so that nothing answers): chat in the
loaded rooms keeps flowing, reading commands keep working, a command that would change
state is refused with a reason and a notice and leaves nothing behind, and the RPC and
the statistics say the database is unreachable.  Once the server is back the sidecar
reconnects by itself and commands work again, without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

from .conftest import StartSidecar
from .harness.sipua import free_port
from .private_postgres import PrivatePostgres
from .sidecar_process import rpc_result, sidecar_args
from .sip_answerer import Answerer
from .sip_probe import UdpProbe, message, status_line

pytestmark = pytest.mark.e2e

DOMAIN = "outage.test"
ROOM = f"sip:chat-1@{DOMAIN}"
OK = "SIP/2.0 200 OK"
DOWN = "SIP/2.0 503 Database Unavailable"


class Rig(NamedTuple):
    database: PrivatePostgres
    target: tuple[str, int]
    rpc_port: int
    answerer: Answerer
    command: Callable[[str, str], bytes]  # (user, body) -> the reply, to ROOM


@pytest.fixture
def rig(start_sidecar: StartSidecar) -> Iterator[Rig]:
    database = PrivatePostgres()
    database.start()
    answerer, probe = Answerer(), UdpProbe()
    lock = threading.Lock()
    try:
        rpc_port = free_port()
        sidecar = start_sidecar(sidecar_args(
            database.url, free_port(), "--outbound-proxy", answerer.uri,
            "--rpc-http", f"127.0.0.1:{rpc_port}",
            "--db-connect-timeout", "1", "--db-statement-timeout", "2",
        ))
        target = sidecar.addresses["udp"]

        def command(user: str, body: str) -> bytes:
            with lock:
                return probe.exchange(
                    message(ROOM, body, from_uri=f"sip:{user}@{DOMAIN}"), target, timeout=10
                )

        yield Rig(database, target, rpc_port, answerer, command)
    finally:
        probe.close()
        answerer.close()
        database.close()


def _database(rig: Rig) -> dict[str, Any]:
    status: dict[str, Any] = rpc_result(rig.rpc_port, "sidecar.database", [])
    return status


def _wait_reachable(rig: Rig, reachable: int, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = _database(rig)
        if status["reachable"] == reachable or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def _notices_to(rig: Rig, user: str, text: bytes) -> list[bytes]:
    return [m for m in list(rig.answerer.received)
            if f"To: <sip:{user}@{DOMAIN}>".encode() in m and text in m]


def _members(rig: Rig) -> list[str]:
    listed: list[str] = rpc_result(rig.rpc_port, "imc.list_members", [ROOM])["members"]  # type: ignore[assignment]
    return sorted(listed)


class ChatStream:
    """alice says something every 20 ms in a thread of its own: every reply is kept."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.statuses: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            self.statuses.append(status_line(self.rig.command("alice", f"tick {n}")))
            n += 1
            time.sleep(0.02)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(15)
        return self.statuses


def _outage(rig: Rig, go_down: Callable[[], None], come_back: Callable[[], None]) -> None:
    assert status_line(rig.command("alice", "#create")) == OK
    assert status_line(rig.command("bob", "#join")) == OK
    assert _database(rig)["reachable"] == 1
    chat = ChatStream(rig)
    try:
        go_down()
        # The first changing command finds out (within the statement timeout) ...
        started = time.monotonic()
        reply = rig.command("carol", "#join")
        assert status_line(reply) == DOWN
        assert time.monotonic() - started < 6  # 2 s statement timeout, and some slack
        assert b"Retry-After: 5" in reply
        # ... and later ones are refused at once, each with a notice.
        assert status_line(rig.command("dave", "#join")) == DOWN
        assert status_line(rig.command("alice", "#invite erin")) == DOWN
        status = _database(rig)
        assert status["reachable"] == 0 and status["error"]
        stats = rpc_result(rig.rpc_port, "stats.fetchn", ["imc:"])
        assert (stats["imc.db_reachable"], stats["imc.db_refused_commands"]) == (0, 3)
        # Nothing of the refused commands is in memory.
        assert _members(rig) == [f"sip:alice@{DOMAIN}", f"sip:bob@{DOMAIN}"]
        # Reading commands work, and so does chat (the stream, and bob too).
        assert status_line(rig.command("bob", "#members")) == OK
        assert status_line(rig.command("bob", "#rooms")) == OK
        assert status_line(rig.command("bob", "#help")) == OK
        assert status_line(rig.command("bob", "still here")) == OK
        deadline = time.monotonic() + 5
        while not (_notices_to(rig, "carol", b"not carried out")
                   and _notices_to(rig, "bob", b"Members:\n")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_notices_to(rig, "carol", b"#join was not carried out")) == 1
        assert len(_notices_to(rig, "alice", b"#invite was not carried out")) == 1
        assert _notices_to(rig, "bob", b"Members:\n")
        come_back()
        status = _wait_reachable(rig, 1)
        assert status["reachable"] == 1 and status["outages"] == 1, status
        # Commands work again, without a restart, and reach the database.
        assert status_line(rig.command("carol", "#join")) == OK
        assert status_line(rig.command("carol", "back")) == OK
    finally:
        statuses = chat.stop()
    # Chat never stopped: every text of the stream was accepted.
    assert len(statuses) > 20 and set(statuses) == {OK}, set(statuses)
    rows = rig.database.query("SELECT username FROM imc_members ORDER BY username")
    assert rows == [("alice",), ("bob",), ("carol",)]


def test_a_stopped_database_stops_only_changing_commands(rig: Rig) -> None:
    _outage(rig, rig.database.stop, rig.database.start)


def test_a_database_that_stops_answering_costs_one_statement_timeout(rig: Rig) -> None:
    _outage(rig, rig.database.freeze, rig.database.thaw)
