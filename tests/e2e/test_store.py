"""The store against real databases: SQLite (a temp file), MariaDB and PostgreSQL.

Each test gets a scratch database `imc_t_<hex>` that is dropped afterwards.  MariaDB
(root, 127.0.0.1:3306) and PostgreSQL (postgres, 127.0.0.1:5432) must be running: a
test fails, not skips, when they are down (CI starts them; scripts/start-databases).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg
import pytest

from imc_sidecar.history.records import EventRecord, MessageRecord
from imc_sidecar.history.tables import EVENTS_TABLE, MESSAGES_TABLE
from imc_sidecar.history.writer import HistoryWriter
from imc_sidecar.imc.changes import (
    Change,
    MemberAdded,
    MemberFlagsChanged,
    MemberRemoved,
    RoomCreated,
    RoomDestroyed,
    StoredMember,
    StoredRoom,
)
from imc_sidecar.store.repository import DoesNotFit, Store, StoreError

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KINDS = ("sqlite", "mariadb", "postgres")
MYSQL_HOST = os.environ.get("IMC_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("IMC_TEST_MYSQL_PORT", "3306"))
PG_HOST = os.environ.get("IMC_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("IMC_TEST_PG_PORT", "5432"))
D = "chat.test"


# --- scratch databases ----------------------------------------------------------------


@dataclass
class Scratch:
    kind: str
    name: str
    url: str  # Kamailio-style db_url for the store
    sqlite_path: Path | None = None

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of our own; return its rows."""
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            with sqlite3.connect(self.sqlite_path) as db:
                return [tuple(r) for r in db.execute(sql.replace("%s", "?"), params)]
        if self.kind == "mariadb":
            conn = await aiomysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root",
                                          db=self.name, autocommit=True)
            try:
                async with conn.cursor() as cur:
                    await cur.execute(sql, params or None)
                    return [tuple(r) for r in await cur.fetchall()]
            finally:
                conn.close()
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres",
                                     database=self.name)
        try:
            index = iter(range(1, 100))
            pg_sql = re.sub("%s", lambda _: f"${next(index)}", sql)
            return [tuple(r) for r in await conn.fetch(pg_sql, *params)]
        finally:
            await conn.close()

    async def run_script(self, path: Path) -> None:
        """Load one of our sql/<db>/imc-create.sql scripts, statement by statement."""
        body = "\n".join(line for line in path.read_text().splitlines()
                         if not line.lstrip().startswith("--"))
        for statement in (s.strip() for s in body.split(";")):
            if statement:
                await self.query(statement)


@pytest.fixture(params=KINDS)
async def scratch(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Scratch]:
    kind: str = request.param
    name = "imc_t_" + uuid.uuid4().hex[:12]
    if kind == "sqlite":
        path = tmp_path / f"{name}.sqlite"
        yield Scratch(kind, name, f"sqlite:///{path}", path)  # absolute: four slashes
    elif kind == "mariadb":
        admin = await aiomysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root",
                                       autocommit=True)
        async with admin.cursor() as cur:
            await cur.execute(f"CREATE DATABASE {name}")
        try:
            yield Scratch(kind, name, f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{name}")
        finally:
            async with admin.cursor() as cur:
                await cur.execute(f"DROP DATABASE IF EXISTS {name}")
            admin.close()
    else:
        admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres",
                                      database="postgres")
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield Scratch(kind, name, f"postgres://postgres@{PG_HOST}:{PG_PORT}/{name}")
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.close()


def script_for(kind: str) -> Path:
    folder = {"sqlite": "sqlite", "mariadb": "mysql", "postgres": "postgres"}[kind]
    return REPO / "sql" / folder / "imc-create.sql"


# --- what a table looks like, per database -----------------------------------------------


async def describe(db: Scratch, table: str) -> dict[str, Any]:
    """Columns (name, type, NOT NULL, default, auto-increment) and unique constraints."""
    if db.kind == "sqlite":
        columns = [(name, ctype.upper(), bool(notnull), default, bool(pk))
                   for _, name, ctype, notnull, default, pk
                   in await db.query(f"PRAGMA table_info({table})")]
        (sql,), = await db.query("SELECT sql FROM sqlite_master WHERE name = %s", table)
        unique = {m[0]: tuple(c.strip() for c in m[1].split(","))
                  for m in re.findall(r"CONSTRAINT\s+(\w+)\s+UNIQUE\s*\(([^)]*)\)", sql)}
        return {"columns": columns, "unique": unique}
    if db.kind == "mariadb":
        columns = list(await db.query(
            "SELECT column_name, column_type, is_nullable, column_default, extra "
            "FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND table_name = %s ORDER BY ordinal_position", table))
        keys = await db.query(
            "SELECT k.constraint_name, k.column_name FROM information_schema.key_column_usage k "
            "JOIN information_schema.table_constraints c USING (constraint_schema, "
            "constraint_name, table_name) WHERE k.table_schema = DATABASE() "
            "AND k.table_name = %s AND c.constraint_type = 'UNIQUE' "
            "ORDER BY k.constraint_name, k.ordinal_position", table)
        primary = await db.query(
            "SELECT column_name FROM information_schema.key_column_usage WHERE "
            "table_schema = DATABASE() AND table_name = %s AND constraint_name = 'PRIMARY'",
            table)
        return {"columns": columns, "unique": _group(keys), "primary": primary}
    columns = list(await db.query(
        "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
        table))
    constraints = await db.query(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass ORDER BY conname", table)
    return {"columns": columns, "constraints": constraints}


def _group(rows: list[tuple[Any, ...]]) -> dict[str, tuple[str, ...]]:
    grouped: dict[str, tuple[str, ...]] = {}
    for name, column in rows:
        grouped[name] = (*grouped.get(name, ()), column)
    return grouped


# Kamailio's DDL (utils/kamctl/<db>/imc-create.sql, standard-create.sql) as each
# database reports it back.
def golden(kind: str, table: str) -> dict[str, Any]:
    names = {"imc_rooms": ["name", "domain"], "imc_members": ["username", "domain", "room"],
             "version": ["table_name"]}[table]
    unique_suffix = {"imc_rooms": "name_domain_idx", "imc_members": "account_room_idx",
                     "version": "table_name_idx"}[table]
    cols: list[tuple[Any, ...]]
    if kind == "sqlite":
        if table == "version":
            cols = [("id", "INTEGER", True, None, True),
                    ("table_name", "VARCHAR(32)", True, None, False),
                    ("table_version", "INTEGER", True, "0", False)]
        else:
            cols = [("id", "INTEGER", True, None, True),
                    *[(n, "VARCHAR(64)", True, None, False) for n in names],
                    ("flag", "INTEGER", True, None, False)]
        return {"columns": cols, "unique": {f"{table}_{unique_suffix}": tuple(names)}}
    if kind == "mariadb":
        id_col = ("id", "int(10) unsigned", "NO", None, "auto_increment")
        if table == "version":
            cols = [id_col, ("table_name", "varchar(32)", "NO", None, ""),
                    ("table_version", "int(10) unsigned", "NO", "0", "")]
        else:
            cols = [id_col, *[(n, "varchar(64)", "NO", None, "") for n in names],
                    ("flag", "int(11)", "NO", None, "")]
        return {"columns": cols, "unique": {unique_suffix: tuple(names)}, "primary": [("id",)]}
    serial = f"nextval('{table}_id_seq'::regclass)"
    if table == "version":
        cols = [("id", "integer", None, "NO", serial),
                ("table_name", "character varying", 32, "NO", None),
                ("table_version", "integer", None, "NO", "0")]
    else:
        cols = [("id", "integer", None, "NO", serial),
                *[(n, "character varying", 64, "NO", None) for n in names],
                ("flag", "integer", None, "NO", None)]
    constraints = sorted([(f"{table}_pkey", "PRIMARY KEY (id)"),
                          (f"{table}_{unique_suffix}", f"UNIQUE ({', '.join(names)})")])
    return {"columns": cols, "constraints": constraints}


async def version_rows(db: Scratch) -> dict[str, int]:
    rows = await db.query("SELECT table_name, table_version FROM version")
    return {name: int(v) for name, v in rows}


# --- schema -------------------------------------------------------------------------------


async def test_creates_kamailio_tables(scratch: Scratch) -> None:
    store = await Store.open(scratch.url)
    await store.close()
    for table in ("imc_rooms", "imc_members", "version"):
        assert await describe(scratch, table) == golden(scratch.kind, table), table
    assert await version_rows(scratch) == {"version": 1, "imc_rooms": 1, "imc_members": 1}


async def test_sql_script_matches_kamailio_and_store_leaves_it_alone(scratch: Scratch) -> None:
    await scratch.run_script(script_for(scratch.kind))
    tables = ("imc_rooms", "imc_members", "version")
    before = {t: await describe(scratch, t) for t in tables}
    for table in tables:
        assert before[table] == golden(scratch.kind, table), table
    versions = await version_rows(scratch)
    assert versions == {"version": 1, "imc_rooms": 1, "imc_members": 1}

    store = await Store.open(scratch.url)
    await store.apply([RoomCreated("lobby", D, 1), MemberAdded(f"sip:lobby@{D}", "alice", D, 1)])
    assert await store.load() == [
        StoredRoom("lobby", D, 1, (StoredMember("alice", D, 1),))]
    await store.close()
    assert {t: await describe(scratch, t) for t in tables} == before
    assert await version_rows(scratch) == versions


async def test_kamailio_tables_without_imc_version_rows(scratch: Scratch) -> None:
    # A Kamailio database made by hand: the version table has only its own row.
    await scratch.run_script(script_for(scratch.kind))
    await scratch.query("DELETE FROM version WHERE table_name <> 'version'")
    await scratch.query("INSERT INTO imc_rooms (name, domain, flag) VALUES ('old', %s, 0)", D)
    store = await Store.open(scratch.url)
    assert await store.load() == [StoredRoom("old", D, 0, ())]
    await store.close()
    assert await version_rows(scratch) == {"version": 1, "imc_rooms": 1, "imc_members": 1}


async def test_existing_version_table_keeps_its_rows(scratch: Scratch) -> None:
    # Only Kamailio's standard table exists; our tables are added next to it.
    create = {
        "sqlite": "CREATE TABLE version (id INTEGER PRIMARY KEY NOT NULL, table_name "
                  "VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL, "
                  "CONSTRAINT version_table_name_idx UNIQUE (table_name))",
        "mariadb": "CREATE TABLE version (id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT "
                   "NULL, table_name VARCHAR(32) NOT NULL, table_version INT UNSIGNED DEFAULT 0 "
                   "NOT NULL, CONSTRAINT table_name_idx UNIQUE (table_name))",
        "postgres": "CREATE TABLE version (id SERIAL PRIMARY KEY NOT NULL, table_name "
                    "VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL, "
                    "CONSTRAINT version_table_name_idx UNIQUE (table_name))",
    }[scratch.kind]
    await scratch.query(create)
    await scratch.query("INSERT INTO version (table_name, table_version) VALUES ('acc', 5)")
    store = await Store.open(scratch.url)
    await store.close()
    assert await version_rows(scratch) == {"acc": 5, "imc_rooms": 1, "imc_members": 1}


async def test_reopening_adds_nothing(scratch: Scratch) -> None:
    for _ in range(3):
        store = await Store.open(scratch.url)
        await store.close()
    assert len(await scratch.query("SELECT * FROM version")) == 3


async def test_custom_table_names(scratch: Scratch) -> None:
    store = await Store.open(scratch.url, rooms_table="chat_rooms", members_table="chat_people")
    await store.apply([RoomCreated("r", D, 0), MemberAdded(f"sip:r@{D}", "u", D, 1)])
    assert await store.load() == [StoredRoom("r", D, 0, (StoredMember("u", D, 1),))]
    await store.close()
    assert await version_rows(scratch) == {"version": 1, "chat_rooms": 1, "chat_people": 1}
    rooms = await describe(scratch, "chat_rooms")
    if scratch.kind == "mariadb":
        assert rooms["unique"] == {"name_domain_idx": ("name", "domain")}
    elif scratch.kind == "postgres":
        assert ("chat_rooms_name_domain_idx", "UNIQUE (name, domain)") in rooms["constraints"]
    else:
        assert rooms["unique"] == {"chat_rooms_name_domain_idx": ("name", "domain")}


async def test_table_missing_a_column_is_refused(scratch: Scratch) -> None:
    await scratch.query(
        "CREATE TABLE imc_rooms (id INTEGER PRIMARY KEY, name VARCHAR(64), domain VARCHAR(64))")
    with pytest.raises(StoreError, match="existing table imc_rooms has no column"):
        await Store.open(scratch.url)


# --- changes and loading ----------------------------------------------------------------


async def test_every_change_round_trips(scratch: Scratch) -> None:
    room = f"sip:chat@{D}"
    store = await Store.open(scratch.url)
    await store.apply([RoomCreated("chat", D, 1), MemberAdded(room, "alice", D, 1)])
    await store.apply([MemberAdded(room, "bob", D, 0)])
    await store.apply([MemberAdded(room, "carol", "other.test", 4)])
    await store.apply([MemberFlagsChanged(room, "carol", "other.test", 0)])
    await store.apply([MemberFlagsChanged(room, "bob", D, 2)])
    await store.apply([MemberAdded(room, "dave", D, 0), MemberRemoved(room, "dave", D)])
    await store.apply([RoomCreated("gone", D, 0), MemberAdded(f"sip:gone@{D}", "alice", D, 1)])
    await store.apply([RoomDestroyed("gone", D)])
    expected = [StoredRoom("chat", D, 1, (
        StoredMember("alice", D, 1), StoredMember("bob", D, 2),
        StoredMember("carol", "other.test", 0)))]
    assert await store.load() == expected
    await store.close()
    store = await Store.open(scratch.url)  # and again from a fresh process' view
    assert await store.load() == expected
    await store.close()
    rows = await scratch.query("SELECT username, domain, room, flag FROM imc_members ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("alice", D, room, 1), ("bob", D, room, 2), ("carol", "other.test", room, 0)]
    assert await scratch.query("SELECT name, domain, flag FROM imc_rooms") == [("chat", D, 1)]


async def test_load_order_is_insertion_order(scratch: Scratch) -> None:
    store = await Store.open(scratch.url)
    names = ["zeta", "alpha", "mid", "beta"]
    for name in names:
        await store.apply([RoomCreated(name, D, 0)])
    users = ["u9", "u1", "u5", "u3", "u7"]
    for user in users:
        await store.apply([MemberAdded(f"sip:mid@{D}", user, D, 0)])
    # An update keeps a row in place (it does not re-insert it).
    await store.apply([MemberFlagsChanged(f"sip:mid@{D}", "u9", D, 2)])
    loaded = await store.load()
    await store.close()
    assert [r.name for r in loaded] == names
    assert [m.user for m in loaded[2].members] == users
    assert [r.members for r in loaded if r.name != "mid"] == [(), (), ()]


async def test_destroy_touches_only_that_room(scratch: Scratch) -> None:
    store = await Store.open(scratch.url)
    for name in ("a", "b"):
        await store.apply([RoomCreated(name, D, 0), MemberAdded(f"sip:{name}@{D}", "x", D, 1)])
    await store.apply([RoomDestroyed("a", D)])
    assert await store.load() == [StoredRoom("b", D, 0, (StoredMember("x", D, 1),))]
    await store.close()


async def test_rows_written_with_other_case_are_found(scratch: Scratch) -> None:
    # imc compares names case-insensitively; rows another writer spelled differently
    # are still updated and deleted.
    store = await Store.open(scratch.url)
    await scratch.query(
        "INSERT INTO imc_rooms (name, domain, flag) VALUES ('Chat', 'Chat.Test', 0)")
    await scratch.query(
        "INSERT INTO imc_members (username, domain, room, flag) VALUES "
        "('Alice', 'Chat.Test', 'sip:Chat@Chat.Test', 1), ('Bob', 'chat.test', "
        "'sip:Chat@Chat.Test', 0)")
    await store.apply([MemberFlagsChanged("sip:chat@chat.test", "alice", "chat.test", 2)])
    await store.apply([MemberRemoved("sip:CHAT@chat.test", "BOB", "chat.test")])
    assert await store.load() == [
        StoredRoom("Chat", "Chat.Test", 0, (StoredMember("Alice", "Chat.Test", 2),))]
    await store.apply([RoomDestroyed("chat", "chat.test")])
    assert await store.load() == []
    await store.close()


async def test_too_long_is_refused_before_anything_is_written(scratch: Scratch) -> None:
    store = await Store.open(scratch.url)
    name = "r" * 50  # fits name VARCHAR(64), but its room URI does not
    with pytest.raises(DoesNotFit, match=r"^room URI is 72 characters long"):
        await store.apply([RoomCreated(name, "chat.test.example", 0),
                           MemberAdded(f"sip:{name}@chat.test.example", "a", D, 1)])
    long_user = "u" * 65
    with pytest.raises(DoesNotFit, match="member user is 65 characters long"):
        await store.apply([RoomCreated("ok", D, 0), MemberAdded(f"sip:ok@{D}", long_user, D, 1)])
    edge = "e" * (64 - len(f"sip:@{D}"))  # exactly 64: fits
    await store.apply([RoomCreated(edge, D, 0), MemberAdded(f"sip:{edge}@{D}", "u" * 64, D, 1)])
    loaded = await store.load()
    await store.close()
    assert loaded == [StoredRoom(edge, D, 0, (StoredMember("u" * 64, D, 1),))]


async def test_failing_command_does_not_fail_its_batch_neighbours(scratch: Scratch) -> None:
    store = await Store.open(scratch.url)
    await store.apply([RoomCreated("taken", D, 0)])
    futures = [store.submit([RoomCreated(f"n{i}", D, 0)]) for i in range(5)]
    bad = store.submit([RoomCreated("x1", D, 0), RoomCreated("taken", D, 0)])  # duplicate
    futures += [store.submit([RoomCreated(f"m{i}", D, 0)]) for i in range(5)]
    await asyncio.gather(*futures)
    with pytest.raises(StoreError, match="database refused the change"):
        await bad
    names = [r.name for r in await store.load()]
    await store.close()
    assert names == ["taken", *[f"n{i}" for i in range(5)], *[f"m{i}" for i in range(5)]]


async def test_concurrent_commands_apply_in_order(scratch: Scratch) -> None:
    store = await Store.open(scratch.url)
    room = f"sip:busy@{D}"
    script: list[list[Change]] = [[RoomCreated("busy", D, 0), MemberAdded(room, "o", D, 1)]]
    for i in range(40):
        script.append([MemberAdded(room, f"u{i}", D, 4)])
        script.append([MemberFlagsChanged(room, f"u{i}", D, 0)])
        if i % 3 == 0:
            script.append([MemberRemoved(room, f"u{i}", D)])
    tasks = [asyncio.create_task(store.apply(changes)) for changes in script]
    await asyncio.gather(*tasks)
    loaded = await store.load()
    await store.close()
    expected = [StoredMember("o", D, 1)] + [
        StoredMember(f"u{i}", D, 0) for i in range(40) if i % 3]
    assert loaded == [StoredRoom("busy", D, 0, tuple(expected))]


async def test_empty_apply_is_a_barrier(scratch: Scratch) -> None:
    store = await Store.open(scratch.url)
    pending = store.submit([RoomCreated("r", D, 0)])
    await store.apply([])
    assert pending.done()
    await store.close()


async def test_closed_store_refuses_work(scratch: Scratch) -> None:
    store = await Store.open(scratch.url)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.apply([RoomCreated("r", D, 0)])


# --- durability: kill -9 right after apply() returned ---------------------------------

CHILD = """
import asyncio, sys
from imc_sidecar.imc.changes import MemberAdded, RoomCreated
from imc_sidecar.store.repository import Store

async def main() -> None:
    store = await Store.open(sys.argv[1])
    print("ready", flush=True)
    slots = asyncio.Semaphore(8)  # several commands in flight: batches get committed

    async def command(i: int) -> None:
        try:
            await store.apply([RoomCreated(f"k{i}", "kill.test", 0),
                               MemberAdded(f"sip:k{i}@kill.test", "owner", "kill.test", 1)])
            print(f"ok {i}", flush=True)
        finally:
            slots.release()

    i = 0
    while True:
        await slots.acquire()
        asyncio.get_running_loop().create_task(command(i))
        i += 1

asyncio.run(main())
"""


async def test_kill_9_loses_nothing_acknowledged(scratch: Scratch) -> None:
    kill_after = random.randint(20, 300)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Plain Popen with blocking reads: nothing else runs on this loop meanwhile.
    child = subprocess.Popen([sys.executable, "-c", CHILD, scratch.url],
                             stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None
    acked: set[int] = set()
    try:
        assert child.stdout.readline().strip() == b"ready"
        while len(acked) < kill_after:
            line = child.stdout.readline()
            assert line.startswith(b"ok "), line
            acked.add(int(line.split()[1]))
        child.send_signal(signal.SIGKILL)
        # Lines already written before the kill count as acknowledged too.
        for line in child.stdout.read().split(b"\n"):
            if line.startswith(b"ok ") and line[3:].isdigit():
                acked.add(int(line[3:]))
    finally:
        child.kill()
        child.wait(30)
    assert child.returncode == -signal.SIGKILL

    store = await Store.open(scratch.url)
    loaded = {room.name: room for room in await store.load()}
    await store.close()
    missing = sorted(i for i in acked if f"k{i}" not in loaded)
    assert not missing, f"acknowledged but lost after kill -9 at {kill_after}: {missing}"
    for room in loaded.values():  # each command committed whole or not at all
        assert room.members == (StoredMember("owner", "kill.test", 1),), room


# --- opening failures ---------------------------------------------------------------------


async def test_unreachable_server_is_one_clear_line() -> None:
    with pytest.raises(StoreError) as info:
        await Store.open("mysql://kamailio:s3cret@127.0.0.1:1/kamailio")
    message = str(info.value)
    assert message.startswith("cannot open database mysql://kamailio:***@127.0.0.1:1/kamailio:")
    assert "s3cret" not in message and "\n" not in message


async def test_bad_db_url_and_missing_sqlite_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported database scheme 'text'"):
        await Store.open("text:///etc/kamailio/dbtext")
    with pytest.raises(StoreError, match="directory does not exist"):
        await Store.open(f"sqlite:///{tmp_path}/no/such/dir/imc.sqlite")


async def test_sqlite_is_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "imc.sqlite"
    store = await Store.open(f"sqlite:///{path}")
    async with store._engine.connect() as conn:  # the store's own connection settings
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
    await store.close()
    assert (mode, sync) == ("wal", 2)  # 2 = FULL


# --- usage history -----------------------------------------------------------------------


async def _indexes(db: Scratch, table: str) -> set[tuple[str, tuple[str, ...]]]:
    if db.kind == "sqlite":
        names = [r[1] for r in await db.query(f"PRAGMA index_list({table})")
                 if not str(r[1]).startswith("sqlite_autoindex")]
        return {(n, tuple(r[2] for r in await db.query(f"PRAGMA index_info({n})")))
                for n in names}
    if db.kind == "mariadb":
        rows = await db.query(
            "SELECT index_name, column_name FROM information_schema.statistics WHERE "
            "table_schema = DATABASE() AND table_name = %s AND index_name <> 'PRIMARY' "
            "ORDER BY index_name, seq_in_index", table)
        return set(_group(list(rows)).items())
    rows = await db.query(
        "SELECT i.relname, a.attname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey) "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
        "ORDER BY i.relname, array_position(x.indkey::int[], a.attnum::int)", table)
    return set(_group(list(rows)).items())


async def test_history_script_matches_the_tables_the_sidecar_creates(
    scratch: Scratch, tmp_path: Path
) -> None:
    """sql/<db>/imc-sidecar-history.sql and the sidecar's own DDL give the same tables,
    and the sidecar then writes into the scripted ones without changing them."""
    tables = (EVENTS_TABLE, MESSAGES_TABLE)
    writer = await HistoryWriter.open(scratch.url, 0.05, 1000, 0)
    made = {t: (await describe(scratch, t), await _indexes(scratch, t)) for t in tables}
    await writer.close()
    for table in tables:
        await scratch.query(f"DROP TABLE {table}")
    folder = {"sqlite": "sqlite", "mariadb": "mysql", "postgres": "postgres"}[scratch.kind]
    await scratch.run_script(REPO / "sql" / folder / "imc-sidecar-history.sql")
    scripted = {t: (await describe(scratch, t), await _indexes(scratch, t)) for t in tables}
    assert scripted == made
    assert made[EVENTS_TABLE][1] == {
        (f"{EVENTS_TABLE}_room_time_idx", ("room", "time_us")),
        (f"{EVENTS_TABLE}_time_idx", ("time_us",)),
    }
    writer = await HistoryWriter.open(scratch.url, 0.05, 1000, 0)
    writer.add_message(MessageRecord(1, "sip:r@d", "sip:a@d", 3, "text/plain", 2, 2, 0,
                                     None, 1500, None))
    writer.add_events([EventRecord(1, "sip:r@d", "created", "sip:a@d", "sip:a@d", "ok", None)])
    await writer.close()
    assert writer.counters.written == 2
    assert await scratch.query(f"SELECT room, latency_us FROM {MESSAGES_TABLE}") == [
        ("sip:r@d", 1500)
    ]
