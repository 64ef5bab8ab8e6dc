"""Give Kamailio (db_text) and the sidecar (SQLite) the same rooms before they start.

Both load their tables at start-up, so identical rows in the same order give identical
state: the same hash order of rooms and the same member lists.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .kamailio import prepare_dbtext

RoomRow = tuple[str, str, int]  # name, domain, flag
MemberRow = tuple[str, str, str, int]  # username, domain, room URI, flag


def _dbtext_field(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def write_dbtext(directory: Path, rooms: Sequence[RoomRow], members: Sequence[MemberRow]) -> None:
    prepare_dbtext(directory)
    for table, rows in (("imc_rooms", rooms), ("imc_members", members)):
        with (directory / table).open("a") as out:
            for number, row in enumerate(rows, 1):
                out.write(":".join(map(_dbtext_field, (number, *row))) + "\n")


def write_sqlite(
    url: str, path: Path, rooms: Sequence[RoomRow], members: Sequence[MemberRow]
) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "imc_sidecar", "db", "create", "--db-url", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO imc_rooms (name, domain, flag) VALUES (?, ?, ?)", rooms)
        db.executemany(
            "INSERT INTO imc_members (username, domain, room, flag) VALUES (?, ?, ?, ?)", members
        )
