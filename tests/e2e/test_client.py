"""The analysts' client against a real sidecar: over its HTTP RPC and straight from its
database (SQLite, and MariaDB and PostgreSQL through the synchronous drivers), which
must give the same frames; and on a database only Kamailio's tables are in."""

from __future__ import annotations

import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from imc_sidecar.client import Client, RpcError
from imc_sidecar.client.schema import FRAMES
from imc_sidecar.client.sources import RpcSource

from .databases import scratch_database
from .harness.sipua import free_port
from .sidecar_process import SidecarProcess, sidecar_args
from .sip_answerer import Answerer
from .sip_probe import message

pytestmark = pytest.mark.e2e

DOMAIN = "client.test"
TOKEN = "analyst-token-0123456789"
SQL = Path(__file__).resolve().parents[2] / "sql" / "sqlite" / "imc-create.sql"


def _uri(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


class Phone:
    """Sends MESSAGEs as any user over one UDP socket and returns each final status."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.target = ("127.0.0.1", port)
        self.via = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def send(self, user: str, room: str, body: str) -> int:
        call_id = uuid.uuid4().hex
        self.sock.sendto(message(_uri(room), body, from_uri=_uri(user), call_id=call_id,
                                 via_host=self.via), self.target)
        while True:
            reply = self.sock.recv(65535)
            if call_id.encode() in reply and not reply.startswith(b"SIP/2.0 1"):
                return int(reply.split(b" ", 2)[1])


@dataclass
class Running:
    url: str  # the HTTP RPC
    db_url: str
    db_path: Path


def _stats(client: Client) -> dict[str, int]:
    frame = client.stats()
    return dict(zip(frame["name"], (int(v) for v in frame["value"]), strict=True))


@contextmanager
def _serving(db_url: str, chat: int = 8) -> Iterator[str]:
    """A sidecar on `db_url` after some rooms and chat, its history written; its RPC URL."""
    answerer = Answerer()
    port, rpc_port = free_port(), free_port()
    sidecar = SidecarProcess(
        sidecar_args(db_url, port, "--outbound-proxy", answerer.uri,
                     "--rpc-http", f"127.0.0.1:{rpc_port}",
                     "--history-flush-interval", "0.05"),
        env={"IMC_RPC_TOKEN": TOKEN},
    ).start()
    phone = Phone(port)
    url = f"http://127.0.0.1:{rpc_port}/RPC"
    try:
        ok = phone.send
        assert ok("alice", "chat-1", "#create") == 200
        assert ok("bob", "chat-1", "#join") == 200
        assert ok("alice", "chat-1", "#invite carol") == 200
        assert ok("carol", "chat-1", "#accept") == 200
        assert ok("alice", "chat-1", "#invite dave") == 200  # stays pending
        assert ok("alice", "chat-1", "#invite frank") == 200
        assert ok("frank", "chat-1", "#reject") == 200
        assert ok("erin", "chat-2", "#create private") == 200
        assert ok("erin", "chat-2", "#add bob") == 200
        assert ok("mallory", "chat-1", "#destroy") == 500  # a refusal row
        for n in range(chat):
            assert ok(("alice", "bob", "carol")[n % 3], "chat-1", f"hello {n}") == 200
        for n in range(5):
            assert ok(("erin", "bob")[n % 2], "chat-2", f"psst {n}") == 200
        with Client(url, token=TOKEN) as client:
            deadline = time.monotonic() + 20
            while True:
                stats = _stats(client)
                if stats["pending_deliveries"] == 0 and stats["history_queued"] == 0:
                    break
                assert time.monotonic() < deadline, f"history did not settle: {stats}"
                time.sleep(0.05)
        yield url
    finally:
        phone.sock.close()
        if sidecar.process is not None and sidecar.process.poll() is None:
            sidecar.terminate()
        answerer.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    db_path = tmp_path_factory.mktemp("client") / "imc.sqlite"
    db_url = f"sqlite:///{db_path}"
    with _serving(db_url) as url:
        yield Running(url, db_url, db_path)


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(count)


def test_rooms_and_members_agree_with_kamailios_methods(running: Running) -> None:
    kamailio_style = RpcSource(running.url, TOKEN, 5.0)
    with Client(running.url, token=TOKEN) as client:
        listed = kamailio_style.call("imc.list_rooms")
        rooms = client.rooms()
        assert set(rooms["room"]) == {r["room"] for r in listed} == {
            _uri("chat-1"), _uri("chat-2")
        }
        by_room = rooms.set_index("room")
        for entry in listed:
            row = by_room.loc[entry["room"]]
            assert row["members"] == entry["members"]
            assert row["owner"] == entry["owner"]
            members = client.members(entry["room"])
            listed_members = kamailio_style.call("imc.list_members", [entry["room"]])
            assert set(members["member"]) == set(listed_members["members"])
            assert len(members) == row["members"] == row["active"] + row["invited"]
        assert by_room.loc[_uri("chat-2"), "private"]
        assert by_room.loc[_uri("chat-1"), "invited"] == 1
        pending = client.members()
        pending = pending[pending["pending"].astype(bool)]
        assert pending[["room", "member", "role"]].astype(object).values.tolist() == [
            [_uri("chat-1"), _uri("dave"), "member"]
        ]


def test_rpc_and_database_give_the_same_frames(running: Running) -> None:
    with Client(running.url, token=TOKEN) as rpc, Client.from_db(running.db_url) as db:
        for name in ("rooms", "members", "events", "messages"):
            over_rpc = getattr(rpc, name)()
            from_db = getattr(db, name)()
            assert len(over_rpc) > 0, name
            pd.testing.assert_frame_equal(over_rpc, from_db)
            assert [(c, str(t)) for c, t in from_db.dtypes.items()] == list(
                FRAMES[name].items())
        pd.testing.assert_frame_equal(rpc.members(_uri("chat-2")), db.members(_uri("chat-2")))
        pd.testing.assert_frame_equal(rpc.messages(room=_uri("chat-2"), sender=_uri("bob")),
                                      db.messages(room=_uri("chat-2"), sender=_uri("bob")))
        for name in ("delivery_report", "invite_funnel", "top_senders", "activity"):
            pd.testing.assert_frame_equal(getattr(rpc, name)(), getattr(db, name)())
        over_rpc_stats, db_stats = _stats(rpc), _stats(db)
        assert db_stats == {name: over_rpc_stats[name] for name in db_stats}
        assert db_stats == {"active_rooms": 2, "members": 6}


@pytest.mark.parametrize("kind", ["mariadb", "postgres"])
def test_rpc_and_database_agree_on_server_databases(kind: str, tmp_path: Path) -> None:
    """from_db through PyMySQL and psycopg, beside a sidecar on aiomysql and asyncpg."""
    with scratch_database(kind, tmp_path) as (db_url, _query), _serving(db_url, chat=3) as url, \
            Client(url, token=TOKEN, page_size=3, progress=False) as rpc, \
            Client.from_db(db_url, page_size=4, progress=False) as db:
        for name in ("rooms", "members", "events", "messages", "invite_funnel",
                     "delivery_report"):
            over_rpc = getattr(rpc, name)()
            assert len(over_rpc) > 0, name
            pd.testing.assert_frame_equal(over_rpc, getattr(db, name)())
        assert len(db.messages()) == 8


def test_history_content(running: Running) -> None:
    with Client.from_db(running.db_url) as client:
        messages = client.messages()
        assert len(messages) == 13
        assert (messages["delivered"] == messages["recipients"]).all()
        report = client.delivery_report().set_index("room")
        assert report.loc[_uri("chat-1"), "messages"] == 8
        assert report.loc[_uri("chat-1"), "failure_rate"] == 0
        funnel = client.invite_funnel().set_index("room")
        assert funnel.loc[_uri("chat-1"), ["invited", "accepted", "rejected", "pending"]
                          ].tolist() == [3, 1, 1, 1]
        refused = client.events(kind="destroyed")
        assert refused["result"].tolist() == ["Not a member of the room"]
        assert 1 <= len(client.activity(by=None)) <= 200


def test_pages_of_two_return_every_row_once(running: Running) -> None:
    with Client(running.url, token=TOKEN, page_size=2, progress=False) as rpc, \
            Client.from_db(running.db_url, page_size=2, progress=False) as db:
        for which, table in (("events", "imc_sidecar_events"),
                             ("messages", "imc_sidecar_messages")):
            count = _count(running.db_path, table)
            assert count > 4  # several pages
            for client in (rpc, db):
                frame = getattr(client, which)()
                assert frame["id"].is_unique and len(frame) == count
            pd.testing.assert_frame_equal(getattr(rpc, which)(), getattr(db, which)())


def test_token_and_faults(running: Running) -> None:
    with Client(running.url) as anonymous, pytest.raises(RpcError) as info:
        anonymous.rooms()
    assert info.value.code == 401
    with pytest.raises(RpcError) as info:
        RpcSource(running.url, TOKEN, 5.0).call("sidecar.events", ["not a struct"])
    assert (info.value.code, info.value.message) == (
        400, "sidecar.events takes one struct parameter (or none)")


def test_a_database_only_kamailio_wrote(tmp_path: Path) -> None:
    path = tmp_path / "kamailio.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(SQL.read_text())
        conn.executemany("INSERT INTO imc_rooms (name, domain, flag) VALUES (?, ?, ?)",
                         [("lobby", DOMAIN, 0), ("secret", DOMAIN, 1)])
        conn.executemany(
            "INSERT INTO imc_members (username, domain, room, flag) VALUES (?, ?, ?, ?)",
            [("alice", DOMAIN, _uri("lobby"), 1), ("bob", DOMAIN, _uri("lobby"), 4),
             ("carol", DOMAIN, _uri("secret"), 1)])
    with Client.from_db(f"sqlite:///{path}") as client:
        rooms = client.rooms()
        assert rooms[["room", "private", "members", "invited", "owner"]].astype(
            object).values.tolist() == [
            [_uri("lobby"), False, 2, 1, _uri("alice")],
            [_uri("secret"), True, 1, 0, _uri("carol")],
        ]
        assert client.members()["pending"].tolist() == [False, True, False]
        for name in ("events", "messages"):
            frame = getattr(client, name)()
            assert len(frame) == 0
            assert [(c, str(t)) for c, t in frame.dtypes.items()] == list(FRAMES[name].items())
        assert len(client.invite_funnel()) == 1  # bob's invitation, from before any history
