"""Usage history, end to end: the real sidecar, real SIP traffic, the real databases.

What is checked here is the server side (the rows in `imc_sidecar_events` and
`imc_sidecar_messages`); the analysts' client has its own tests.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from imc_sidecar.history.tables import EVENTS_TABLE, MESSAGES_TABLE

from .databases import KINDS, ScratchQuery, scratch_database
from .harness.sipua import free_port
from .sidecar_process import SidecarProcess, sidecar_args
from .sip_answerer import Answerer
from .sip_probe import message

pytestmark = pytest.mark.e2e

DOMAIN = "history.test"
FLUSH = "0.05"


class Phone:
    """One UDP socket that sends MESSAGEs as any user and reads each final reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.target = ("127.0.0.1", port)
        self.via = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def send(self, user: str, room: str, body: str) -> str:
        """The status line of the reply, e.g. `SIP/2.0 200 OK`."""
        call_id = uuid.uuid4().hex
        self.sock.sendto(
            message(f"sip:{room}@{DOMAIN}", body, from_uri=f"sip:{user}@{DOMAIN}",
                    call_id=call_id, via_host=self.via),
            self.target,
        )
        while True:
            reply = self.sock.recv(65535)
            if call_id.encode() in reply and not reply.startswith(b"SIP/2.0 1"):
                return reply.split(b"\r\n", 1)[0].decode()

    def close(self) -> None:
        self.sock.close()


def _rpc(port: int, method: str, *params: object) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(f"http://127.0.0.1:{port}/RPC", body.encode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]


def _stats(rpc_port: int) -> dict[str, int]:
    result = _rpc(rpc_port, "stats.fetchn", "imc:")
    assert isinstance(result, dict)
    return {name.split(".", 1)[1]: int(value) for name, value in result.items()}


def _settle(rpc_port: int, timeout: float = 20.0) -> dict[str, int]:
    """Wait until every MESSAGE sent has its answer and every history row is written."""
    deadline = time.monotonic() + timeout
    while True:
        stats = _stats(rpc_port)
        if stats["pending_deliveries"] == 0 and stats["history_queued"] == 0:
            return stats
        assert time.monotonic() < deadline, f"history did not settle: {stats}"
        time.sleep(0.05)


@contextmanager
def _running(
    db_url: str, answerer: Answerer, *extra: str
) -> Iterator[tuple[Phone, int, SidecarProcess]]:
    """A sidecar and a phone for it; at the end the sidecar stops and the answerer closes."""
    sidecar, port, rpc_port = _start(db_url, answerer, *extra)
    phone = Phone(port)
    try:
        yield phone, rpc_port, sidecar
    finally:
        phone.close()
        if sidecar.process is not None and sidecar.process.poll() is None:
            sidecar.terminate()
        answerer.close()


def _start(db_url: str, answerer: Answerer, *extra: str) -> tuple[SidecarProcess, int, int]:
    port, rpc_port = free_port(), free_port()
    args = sidecar_args(db_url, port, "--outbound-proxy", answerer.uri,
                        "--rpc-http", f"127.0.0.1:{rpc_port}",
                        "--history-flush-interval", FLUSH, *extra)
    return SidecarProcess(args).start(), port, rpc_port


@pytest.mark.parametrize("kind", KINDS)
def test_events_and_messages_record_what_happened(kind: str, tmp_path: Path) -> None:
    """Every command's events and every accepted text's delivery results, per room and
    sender, and nothing for refused or failed texts."""
    # erin's phone rejects everything; ghost never answers within the test.
    def policy(user: str) -> tuple[str | None, float]:
        if user == "erin":
            return "486 Busy Here", 0.0
        if user == "ghost":
            return "480 Temporarily Unavailable", 0.3
        return "200 OK", 0.0

    answerer = Answerer(policy=policy)
    with scratch_database(kind, tmp_path) as (db_url, query):
        with _running(db_url, answerer) as (phone, rpc_port, _):
            ok = phone.send
            assert ok("alice", "chat-1", "#create") == "SIP/2.0 200 OK"
            assert ok("bob", "chat-1", "#join") == "SIP/2.0 200 OK"
            assert ok("alice", "chat-1", "#invite carol") == "SIP/2.0 200 OK"
            assert ok("carol", "chat-1", "#accept") == "SIP/2.0 200 OK"
            assert ok("alice", "chat-1", "#invite dave") == "SIP/2.0 200 OK"
            assert ok("dave", "chat-1", "#reject") == "SIP/2.0 200 OK"
            assert ok("alice", "chat-1", "#invite frank") == "SIP/2.0 200 OK"  # stays pending
            assert ok("alice", "chat-1", "#modify bob admin") == "SIP/2.0 200 OK"
            assert ok("alice", "chat-2", "#create private") == "SIP/2.0 200 OK"
            assert ok("alice", "chat-2", "#add erin") == "SIP/2.0 200 OK"
            assert ok("alice", "chat-2", "#add ghost") == "SIP/2.0 200 OK"
            assert ok("mallory", "chat-1", "#destroy") == "SIP/2.0 500 Not a member of the room"

            sent: Counter[tuple[str, str]] = Counter()
            for n in range(6):
                assert ok("alice", "chat-1", f"hello {n}") == "SIP/2.0 200 OK"
                sent["chat-1", "alice"] += 1
            for n in range(3):
                assert ok("bob", "chat-1", f"hi {n}") == "SIP/2.0 200 OK"
                sent["chat-1", "bob"] += 1
            for n in range(4):
                assert ok("alice", "chat-2", f"psst {n}") == "SIP/2.0 200 OK"
                sent["chat-2", "alice"] += 1
            # Refused texts leave no message row.
            assert ok("mallory", "chat-1", "let me in").startswith("SIP/2.0 500")
            assert ok("frank", "chat-1", "not yet").startswith("SIP/2.0 500")
            assert ok("bob", "chat-9", "nowhere").startswith("SIP/2.0 500")
            assert ok("bob", "chat-1", "#leave") == "SIP/2.0 200 OK"
            assert ok("alice", "chat-2", "#remove erin") == "SIP/2.0 200 OK"
            stats = _settle(rpc_port)

        assert stats["history_dropped"] == 0 and stats["history_errors"] == 0
        rows = query("SELECT room, sender, recipients, delivered, failed, worst_status, "
                     "latency_us, body_size, content_type, body FROM imc_sidecar_messages")
        per_key = Counter((r[0].split(":")[1].split("@")[0], r[1].split(":")[1].split("@")[0])
                          for r in rows)
        assert per_key == sent
        assert len(rows) == stats["chat_messages"]
        by_body: dict[tuple[str, str], list[tuple[str, ...]]] = {}
        for row in rows:
            by_body.setdefault((row[0], row[1]), []).append(row)
        for row in by_body[f"sip:chat-1@{DOMAIN}", f"sip:alice@{DOMAIN}"]:
            # bob and carol (frank is only invited): both answer 200.
            assert row[2:6] == ("2", "2", "0", _null(kind))
            assert int(row[6]) >= 0
            assert row[7] == "7" and row[8] == "text/plain" and row[9] == _null(kind)
        for row in by_body[f"sip:chat-2@{DOMAIN}", f"sip:alice@{DOMAIN}"]:
            # erin answers 486 at once, ghost 480 after 0.3 s: the latency shows it.
            assert row[2:6] == ("2", "0", "2", "486")
            assert int(row[6]) >= 250_000

        events = query("SELECT kind, room, actor, subject, result, detail FROM "
                       "imc_sidecar_events ORDER BY id")
        short = [(e[0], _user(e[2]), _user(e[3]), e[4], e[5]) for e in events]
        n = _null(kind)
        assert short == [
            ("created", "alice", "alice", "ok", n),
            ("joined", "bob", "bob", "ok", n),
            ("invited", "alice", "carol", "ok", n),
            ("accepted", "carol", "carol", "ok", n),
            ("invited", "alice", "dave", "ok", n),
            ("rejected", "dave", "dave", "ok", n),
            ("invited", "alice", "frank", "ok", n),
            ("role_changed", "alice", "bob", "ok", "admin"),
            ("created", "alice", "alice", "ok", n),
            ("joined", "alice", "erin", "ok", n),
            ("joined", "alice", "ghost", "ok", n),
            ("destroyed", "mallory", n, "Not a member of the room", n),
            ("left", "bob", "bob", "ok", n),
            ("removed", "alice", "erin", "ok", n),
        ]
        assert {e[1] for e in events} == {f"sip:chat-1@{DOMAIN}", f"sip:chat-2@{DOMAIN}"}


def _null(kind: str) -> str:
    """How the scratch query prints SQL NULL on `kind`."""
    return {"sqlite": "None", "mariadb": "NULL", "postgres": ""}[kind]


def _user(uri: str) -> str:
    return uri.split(":", 1)[1].split("@", 1)[0] if ":" in uri else uri


def test_an_invitation_that_fails_is_recorded(tmp_path: Path) -> None:
    answerer = Answerer(policy=lambda user: ("404 Not Found", 0.0) if user == "zed"
                        else ("200 OK", 0.0))
    db = tmp_path / "imc.sqlite"
    with _running(f"sqlite:///{db}", answerer) as (phone, rpc_port, _):
        assert phone.send("alice", "chat-1", "#create") == "SIP/2.0 200 OK"
        assert phone.send("alice", "chat-1", "#invite zed") == "SIP/2.0 200 OK"
        _settle(rpc_port)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, actor, subject, detail FROM imc_sidecar_events "
                            "ORDER BY id").fetchall()
    assert rows[-2:] == [
        ("invited", f"sip:alice@{DOMAIN}", f"sip:zed@{DOMAIN}", None),
        ("invite_failed", f"sip:alice@{DOMAIN}", f"sip:zed@{DOMAIN}", "404 Not Found"),
    ]


def test_overload_refusals_leave_no_message_row(tmp_path: Path) -> None:
    """Texts answered 503 (overload) are not in the history; those answered 200 are."""
    answerer = Answerer(policy=lambda user: ("200 OK", 0.4 if user == "slow" else 0.0))
    db = tmp_path / "imc.sqlite"
    replies: Counter[str] = Counter()
    overload = ("--max-pending-deliveries", "3")
    with _running(f"sqlite:///{db}", answerer, *overload) as (phone, rpc_port, _):
        assert phone.send("alice", "chat-1", "#create") == "SIP/2.0 200 OK"
        assert phone.send("slow", "chat-1", "#join") == "SIP/2.0 200 OK"
        _settle(rpc_port)
        for n in range(12):
            replies[phone.send("alice", "chat-1", f"text {n}").split(" ", 2)[1]] += 1
        stats = _settle(rpc_port)
    assert replies["503"] > 0 and replies["200"] > 0, replies
    assert stats["refused_messages"] == replies["503"]
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM imc_sidecar_messages").fetchone()
    assert count == replies["200"]


@pytest.mark.parametrize("kind", KINDS)
def test_history_survives_kill_9_up_to_the_last_flushed_batch(
    kind: str, tmp_path: Path
) -> None:
    answerer = Answerer()
    with scratch_database(kind, tmp_path) as (db_url, query):
        with _running(db_url, answerer) as (phone, rpc_port, sidecar):
            assert phone.send("alice", "chat-1", "#create") == "SIP/2.0 200 OK"
            assert phone.send("bob", "chat-1", "#join") == "SIP/2.0 200 OK"
            for n in range(40):
                assert phone.send("alice", "chat-1", f"m{n}") == "SIP/2.0 200 OK"
            written = _settle(rpc_port)["history_written"]
            sidecar.kill()  # SIGKILL: no clean stop, no final flush
        assert written == 42  # 2 events + 40 messages, all reported written
        assert _count(query, "imc_sidecar_messages") == 40
        assert _count(query, "imc_sidecar_events") == 2
        # A restarted sidecar appends to the same history.
        answerer = Answerer()
        with _running(db_url, answerer) as (phone, rpc_port, _):
            assert phone.send("alice", "chat-1", "after") == "SIP/2.0 200 OK"
            _settle(rpc_port)
        assert _count(query, "imc_sidecar_messages") == 41


def _count(query: ScratchQuery, table: str) -> int:
    return int(query(f"SELECT COUNT(*) FROM {table}")[0][0])


def test_a_failing_history_database_never_stops_chat_or_commands(tmp_path: Path) -> None:
    """The history tables vanish under the sidecar: its writes fail, rows queue up to
    the limit and the rest are counted as dropped, while every command and text is
    still served and the durable state still written."""
    answerer = Answerer()
    history_db = tmp_path / "history.sqlite"
    db = tmp_path / "imc.sqlite"
    extra = ("--history-db-url", f"sqlite:///{history_db}", "--history-queue", "100")
    with _running(f"sqlite:///{db}", answerer, *extra) as (phone, rpc_port, sidecar):
        assert phone.send("alice", "chat-1", "#create") == "SIP/2.0 200 OK"
        _settle(rpc_port)
        with sqlite3.connect(history_db) as conn:
            conn.execute("DROP TABLE imc_sidecar_messages")
            conn.execute("DROP TABLE imc_sidecar_events")
        assert phone.send("bob", "chat-1", "#join") == "SIP/2.0 200 OK"
        for n in range(150):
            assert phone.send("alice", "chat-1", f"m{n}") == "SIP/2.0 200 OK"
        assert phone.send("carol", "chat-1", "#join") == "SIP/2.0 200 OK"
        deadline = time.monotonic() + 10
        while (stats := _stats(rpc_port))["pending_deliveries"] or not stats["history_errors"]:
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)
        assert stats["history_queued"] == 100
        assert stats["history_dropped"] == 152 - 100  # 1 event + 150 messages + 1 event
        assert stats["chat_messages"] == 150
        members = _rpc(rpc_port, "imc.list_members", f"sip:chat-1@{DOMAIN}")
        assert isinstance(members, dict) and members["count"] == 3
    with sqlite3.connect(db) as conn:
        users = {r[0] for r in conn.execute("SELECT username FROM imc_members")}
    assert users == {"alice", "bob", "carol"}
    lines = "\n".join(sidecar.lines)
    assert "history queue full (100 rows)" in lines
    assert "cannot write" in lines


def test_bodies_are_stored_only_when_asked(tmp_path: Path) -> None:
    answerer = Answerer()
    db = tmp_path / "imc.sqlite"
    bodies = ("--history-bodies", "1")
    with _running(f"sqlite:///{db}", answerer, *bodies) as (phone, rpc_port, _):
        assert phone.send("alice", "chat-1", "#create") == "SIP/2.0 200 OK"
        assert phone.send("bob", "chat-1", "#join") == "SIP/2.0 200 OK"
        assert phone.send("bob", "chat-1", "grüß dich") == "SIP/2.0 200 OK"
        _settle(rpc_port)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT body, body_size FROM imc_sidecar_messages").fetchall() == [
            ("grüß dich", len("grüß dich".encode()))
        ]


def test_history_off_writes_no_history_tables(tmp_path: Path) -> None:
    answerer = Answerer()
    db = tmp_path / "imc.sqlite"
    with _running(f"sqlite:///{db}", answerer, "--history", "0") as (phone, _, _):
        assert phone.send("alice", "chat-1", "#create") == "SIP/2.0 200 OK"
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    # The rooms' own tables of the sidecar (versions, change feed) are there; no history.
    assert tables.isdisjoint({EVENTS_TABLE, MESSAGES_TABLE})
    assert {"imc_sidecar_room_versions", "imc_sidecar_changes"} <= tables




def test_delivery_workers_report_each_copy_to_the_history(tmp_path: Path) -> None:
    """Copies sent by two delivery workers: each message's row still counts every copy,
    the failed ones with their status, once all of them have ended."""
    answerer = Answerer(policy=lambda user: ("603 Decline", 0.0) if user.startswith("no")
                        else ("200 OK", 0.0))
    db = tmp_path / "imc.sqlite"
    users = [f"u{n}" for n in range(8)] + ["no1", "no2", "no3"]
    workers = ("--delivery-workers", "2", "--delivery-port", "0")
    with _running(f"sqlite:///{db}", answerer, *workers) as (phone, rpc_port, _):
        assert phone.send("alice", "chat-1", "#create") == "SIP/2.0 200 OK"
        for user in users:
            assert phone.send(user, "chat-1", "#join") == "SIP/2.0 200 OK"
        for n in range(20):
            assert phone.send("alice", "chat-1", f"m{n}") == "SIP/2.0 200 OK"
        _settle(rpc_port)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT recipients, delivered, failed, worst_status "
                            "FROM imc_sidecar_messages").fetchall()
    assert rows == [(11, 8, 3, 603)] * 20


def test_an_unreachable_history_database_does_not_keep_the_sidecar_from_serving(
    tmp_path: Path,
) -> None:
    """Nothing listens where the history database should be: the sidecar starts, serves
    commands and chat, and keeps the rows queued while it retries."""
    answerer = Answerer()
    db = tmp_path / "imc.sqlite"
    nowhere = f"postgres://postgres@127.0.0.1:{free_port()}/history"
    with _running(f"sqlite:///{db}", answerer, "--history-db-url", nowhere) as (
        phone, rpc_port, sidecar,
    ):
        assert phone.send("alice", "chat-1", "#create") == "SIP/2.0 200 OK"
        assert phone.send("bob", "chat-1", "#join") == "SIP/2.0 200 OK"
        assert phone.send("bob", "chat-1", "hello") == "SIP/2.0 200 OK"
        deadline = time.monotonic() + 10
        while (stats := _stats(rpc_port))["history_queued"] < 3 or not stats["history_errors"]:
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)
        assert stats["history_written"] == 0
        sidecar.wait_for_line("cannot create the history tables")
