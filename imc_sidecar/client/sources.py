"""Where the client's rows come from: the sidecar's HTTP RPC, or the database itself.

Both give the same plain rows (history/snapshot.py for rooms and members,
history/query.py pages for the history), so one frame builder serves both.
The database source loads Kamailio's tables into an engine exactly as a starting
sidecar does and reads the history through the same `read_page`, so its rows are
the ones the RPC of a sidecar on that database would give.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy
from sqlalchemy import Connection, Engine, event, inspect

from ..history.query import EVENT_COLUMNS, MESSAGE_COLUMNS, HistoryFilter, Page, read_page
from ..history.snapshot import Row, member_rows, room_row
from ..history.tables import build_history_tables
from ..imc.engine import EngineConfig, ImcEngine
from ..stats import Statistics
from ..store.repository import read_rooms
from ..store.schema import build_tables
from ..store.urls import redact, to_sync_url

__all__ = ["DB_STATS", "DbSource", "RpcError", "RpcSource", "Source"]

DB_STATS = ("active_rooms", "members")  # the gauges a database alone can give


class RpcError(Exception):
    """A fault the sidecar answered (code and message as it sent them)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class Source(Protocol):
    def rooms(self) -> list[Row]: ...

    def members(self, room: str | None) -> list[Row]: ...

    def stats(self) -> dict[str, int]: ...

    def page(self, which: str, where: HistoryFilter, after: int, limit: int) -> Page: ...

    def close(self) -> None: ...


class RpcSource:
    """The sidecar's JSON-RPC over HTTP (`POST /RPC`), one request per call."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._id = 0

    def call(self, method: str, params: Sequence[object] = ()) -> Any:
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params),
                           "id": self._id}).encode()
        request = urllib.request.Request(self.url, body, self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a fault comes with its code as the status
            text = exc.read()
            try:
                reply = json.loads(text)
            except ValueError:
                raise RpcError(exc.code, text.decode(errors="replace").strip()
                               or str(exc.reason)) from None
        if "error" in reply:
            error = reply["error"]
            raise RpcError(int(error.get("code", 500)), str(error.get("message", "")))
        return reply.get("result")

    def rooms(self) -> list[Row]:
        rows: list[Row] = self.call("sidecar.rooms")
        return rows

    def members(self, room: str | None) -> list[Row]:
        rows: list[Row] = self.call("sidecar.members", [] if room is None else [room])
        return rows

    def stats(self) -> dict[str, int]:
        result = self.call("stats.fetchn", ["imc:"])
        return {name.partition(".")[2]: int(value) for name, value in result.items()}

    def page(self, which: str, where: HistoryFilter, after: int, limit: int) -> Page:
        request: dict[str, object] = {"after": after, "limit": limit}
        for name in ("since_us", "until_us", "room", "kind" if which == "events" else "sender"):
            value = getattr(where, name)
            if value is not None:
                request[name] = value
        result = self.call(f"sidecar.{which}", [request])
        rows = [tuple(row) for row in result["rows"]]
        return Page(tuple(result["columns"]), rows, result["next"])

    def close(self) -> None:
        pass


class DbSource:
    """Kamailio's tables and our history tables, read with a synchronous engine.

    Only reads: safe beside a running sidecar (SQLite in WAL mode lets readers and
    the writer go on together) and on a database only Kamailio ever wrote (no history
    tables: empty history).
    """

    def __init__(
        self, db_url: str, rooms_table: str, members_table: str,
        history_db_url: str | None = None,
    ) -> None:
        self.label = redact(db_url)
        self.engine = _sync_engine(db_url)
        # The sidecar's history_db_url setting may put the history elsewhere.
        self.history_engine = (
            self.engine if history_db_url is None else _sync_engine(history_db_url)
        )
        self._tables = build_tables(self.engine.dialect.name, rooms_table, members_table)
        self._history = build_history_tables()

    def _engine_now(self) -> ImcEngine:
        """The rooms as a sidecar starting on this database would hold them."""
        rooms_t, members_t = self._tables.rooms, self._tables.members
        with self.engine.connect() as conn:
            for table in (rooms_t, members_t):
                if not _has_table(conn, table.name):
                    raise LookupError(f"{self.label} has no table {table.name}")
            rooms = read_rooms(conn, self._tables)
        engine = ImcEngine(EngineConfig())
        engine.load(rooms)
        return engine

    def rooms(self) -> list[Row]:
        return [room_row(room) for room in self._engine_now().rooms()]

    def members(self, room: str | None) -> list[Row]:
        engine = self._engine_now()
        if room is None:
            return member_rows(engine.rooms())
        found = engine.find_room(room)  # the lookup sidecar.members makes
        return member_rows([found] if found is not None else [])

    def stats(self) -> dict[str, int]:
        engine = self._engine_now()
        stats = Statistics(lambda: engine)
        found = (stats.find(name) for name in DB_STATS)
        return {stat.name: stat.value for stat in found if stat is not None}

    def page(self, which: str, where: HistoryFilter, after: int, limit: int) -> Page:
        table = self._history.events if which == "events" else self._history.messages
        with self.history_engine.connect() as conn:
            if not _has_table(conn, table.name):  # a database only Kamailio wrote
                columns = EVENT_COLUMNS if which == "events" else MESSAGE_COLUMNS
                return Page(columns, [], None)
            return read_page(conn, self._history, which, where, after, limit)

    def close(self) -> None:
        self.engine.dispose()
        self.history_engine.dispose()


def _sync_engine(db_url: str) -> Engine:
    """An engine whose transactions read one snapshot, so rooms and members read one
    after the other agree (a room created or destroyed meanwhile is seen whole or not at
    all); MySQL's InnoDB does that by default, the others are told to."""
    url = to_sync_url(db_url)
    options: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = Path(url.database or "")
        if not path.is_file():  # connecting would create an empty database
            raise FileNotFoundError(f"no SQLite database at {path.resolve()}")
        options["connect_args"] = {"timeout": 5.0}  # wait out the writer's lock
    elif backend == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    elif "charset" not in url.query:  # MySQL, MariaDB
        url = url.update_query_dict({"charset": "utf8mb4"})
    engine = sqlalchemy.create_engine(url, **options)
    if backend == "sqlite":
        # pysqlite opens no transaction for a SELECT; SQLAlchemy's recipe: let it do
        # nothing, and begin (deferred: the first read fixes the snapshot) ourselves.
        event.listen(engine, "connect", _sqlite_autocommit)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_autocommit(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def _has_table(conn: Connection, name: str) -> bool:
    return bool(inspect(conn).has_table(name))
