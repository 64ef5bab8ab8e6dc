"""Scratch databases on the machine's real MariaDB and PostgreSQL servers (and SQLite)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

KINDS = ("sqlite", "mariadb", "postgres")

ScratchQuery = Callable[[str], list[tuple[str, ...]]]


def _mariadb(sql: str, database: str = "") -> str:
    cmd = ["mariadb", "-uroot", "-h127.0.0.1", "-P3306", "-N", "-B", "-e", sql]
    if database:
        cmd.insert(1, f"-D{database}")
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _postgres(sql: str, database: str = "postgres") -> str:
    cmd = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-At", "-F", "\t",
           "-v", "ON_ERROR_STOP=1", "-c", sql]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@contextmanager
def scratch_database(kind: str, tmp_path: Path) -> Iterator[tuple[str, ScratchQuery]]:
    """Yield a Kamailio-style db_url for a new empty database and a way to query it."""
    name = "imc_t_" + uuid.uuid4().hex[:10]
    if kind == "sqlite":
        path = tmp_path / f"{name}.sqlite"

        def query(sql: str) -> list[tuple[str, ...]]:
            out = subprocess.run(["python3", "-c", _SQLITE_QUERY, str(path), sql],
                                 check=True, capture_output=True, text=True).stdout
            return [tuple(line.split("\t")) for line in out.splitlines()]

        yield f"sqlite:///{path}", query
        return
    if kind == "mariadb":
        _mariadb(f"CREATE DATABASE {name}")
        try:
            yield f"mysql://root@127.0.0.1/{name}", lambda sql: _rows(_mariadb(sql, name))
        finally:
            _mariadb(f"DROP DATABASE IF EXISTS {name}")
        return
    if kind == "postgres":
        _postgres(f"CREATE DATABASE {name}")
        try:
            yield f"postgres://postgres@127.0.0.1/{name}", lambda sql: _rows(_postgres(sql, name))
        finally:
            _postgres(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    raise ValueError(kind)



def _rows(out: str) -> list[tuple[str, ...]]:
    return [tuple(line.split("\t")) for line in out.splitlines() if line]


_SQLITE_QUERY = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for row in db.execute(sys.argv[2]):
    print("\\t".join(str(v) for v in row))
"""
