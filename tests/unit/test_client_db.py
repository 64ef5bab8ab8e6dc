"""`Client.from_db` on SQLite files made here: Kamailio's tables with or without ours,
paging, the progress bar; and the server never importing pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy

from imc_sidecar.client import DB_STATS, Client
from imc_sidecar.client.schema import FRAMES
from imc_sidecar.history.records import EventRecord, MessageRecord
from imc_sidecar.history.tables import (
    build_history_tables,
    ensure_history_schema,
    event_row,
    message_row,
)
from imc_sidecar.imc.model import MEMBER_INVITED, MEMBER_OWNER, ROOM_PRIVATE
from imc_sidecar.store.schema import build_tables, ensure_schema

T0 = 1_764_000_000_000_000
DOMAIN = "db.test"


def _uri(user: str) -> str:
    return f"sip:{user}@{DOMAIN}"


def _make(path: Path, history_rows: int | None) -> str:
    """A database as Kamailio (history_rows None) or the sidecar would leave it."""
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    tables = build_tables("sqlite")
    with engine.begin() as conn:
        ensure_schema(conn, tables)
        conn.execute(tables.rooms.insert(), [
            {"name": "chat-1", "domain": DOMAIN, "flag": 0},
            {"name": "chat-2", "domain": DOMAIN, "flag": ROOM_PRIVATE},
        ])
        conn.execute(tables.members.insert(), [
            {"username": "alice", "domain": DOMAIN, "room": _uri("chat-1"), "flag": MEMBER_OWNER},
            {"username": "bob", "domain": DOMAIN, "room": _uri("chat-1"), "flag": 0},
            {"username": "carol", "domain": DOMAIN, "room": _uri("CHAT-1"),
             "flag": MEMBER_INVITED},
            {"username": "dave", "domain": DOMAIN, "room": _uri("chat-2"), "flag": MEMBER_OWNER},
            {"username": "ghost", "domain": DOMAIN, "room": _uri("gone"), "flag": 0},
        ])
        if history_rows is not None:
            history = build_history_tables()
            ensure_history_schema(conn, history)
            conn.execute(history.events.insert(), [event_row(EventRecord(
                T0, _uri("chat-1"), "created", _uri("alice"), _uri("alice"), "ok", None))])
            conn.execute(history.messages.insert(), [
                message_row(MessageRecord(T0 + n, _uri("chat-1"), _uri("alice"), n,
                                          "text/plain", 2, 2, 0, None, 1000 + n, None))
                for n in range(history_rows)
            ])
    engine.dispose()
    return f"sqlite:///{path}"


def test_rooms_members_and_stats(tmp_path: Path) -> None:
    with Client.from_db(_make(tmp_path / "k.sqlite", None)) as client:
        rooms = client.rooms()
        assert rooms.astype(object).values.tolist() == [
            [_uri("chat-1"), "chat-1", DOMAIN, False, 3, 2, 1, _uri("alice")],
            [_uri("chat-2"), "chat-2", DOMAIN, True, 1, 1, 0, _uri("dave")],
        ]
        members = client.members()
        assert members.astype(object).values.tolist() == [
            [_uri("chat-1"), _uri("alice"), "owner", False],
            [_uri("chat-1"), _uri("bob"), "member", False],
            [_uri("chat-1"), _uri("carol"), "member", True],  # its room spelled in capitals
            [_uri("chat-2"), _uri("dave"), "owner", False],
        ]  # ghost's room does not exist: not loaded, as the sidecar would not
        assert len(client.members("sip:Chat-2@db.test")) == 1
        assert len(client.members("sip:nope@db.test")) == 0
        stats = client.stats()
        assert dict(zip(stats["name"], stats["value"], strict=True)) == {
            "active_rooms": 2, "members": 4
        }
        assert set(stats["name"]) == set(DB_STATS)


def test_a_database_only_kamailio_wrote_has_empty_typed_history(tmp_path: Path) -> None:
    with Client.from_db(_make(tmp_path / "k.sqlite", None)) as client:
        for name, frame in (("events", client.events()), ("messages", client.messages()),
                            ("delivery_report", client.delivery_report()),
                            ("activity_by_room", client.activity())):
            assert len(frame) == 0
            assert [(c, str(t)) for c, t in frame.dtypes.items()] == list(FRAMES[name].items())


def test_paging_returns_every_row_once_with_a_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _make(tmp_path / "s.sqlite", 9)
    with Client.from_db(url, page_size=2) as client:
        messages = client.messages()
        assert messages["id"].tolist() == list(range(1, 10))
        assert "messages" in capsys.readouterr().err  # more than one page: a bar
        assert len(client.events()) == 1
        assert "events" not in capsys.readouterr().err  # one page: no bar
    with Client.from_db(url) as whole:
        pd.testing.assert_frame_equal(whole.messages(), messages)
        since = pd.Timestamp(T0 + 3, unit="us", tz="UTC")
        assert whole.messages(since=since, until=since + pd.Timedelta(2, "us"))[
            "id"].tolist() == [4, 5]
        assert len(whole.messages(sender=_uri("bob"))) == 0
        assert len(whole.events(kind="created", room=_uri("chat-1"))) == 1


def test_bad_databases_and_settings(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Client.from_db(f"sqlite:///{tmp_path / 'absent.sqlite'}")
    assert not (tmp_path / "absent.sqlite").exists()
    empty = tmp_path / "empty.sqlite"
    sqlalchemy.create_engine(f"sqlite:///{empty}").connect().close()
    with Client.from_db(f"sqlite:///{empty}") as client, pytest.raises(
        LookupError, match="no table imc_rooms"
    ):
        client.rooms()
    with pytest.raises(ValueError, match="page_size"):
        Client(page_size=0)


@pytest.mark.parametrize(
    ("imports", "absent"),
    [
        ("imc_sidecar.cli, imc_sidecar.app, imc_sidecar.rpc.methods",
         ("pandas", "tqdm", "imc_sidecar.client")),
        # The package's public API loads the client and the app only when asked for.
        ("imc_sidecar", ("pandas", "imc_sidecar.client", "imc_sidecar.app")),
    ],
)
def test_the_server_never_imports_pandas(imports: str, absent: tuple[str, ...]) -> None:
    code = (f"import sys, {imports}; "
            f"sys.exit(sorted(m for m in {absent!r} if m in sys.modules) or 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_history_in_a_database_of_its_own(tmp_path: Path) -> None:
    kamailio = _make(tmp_path / "k.sqlite", None)
    history = _make(tmp_path / "h.sqlite", 3)  # its imc tables are not read
    with Client.from_db(kamailio, history_db_url=history) as client:
        assert len(client.messages()) == 3 and len(client.events()) == 1
        assert len(client.rooms()) == 2
