"""`imc-sidecar db check` on real SQLite, MariaDB and PostgreSQL databases: clean after
`db create`, every deliberate damage reported (exit 1), and one line with exit 2 when it
cannot look."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from imc_sidecar.store.repository import Store

from .databases import KINDS, scratch_database

pytestmark = pytest.mark.e2e

MATCH = "the tables match what the sidecar expects: "
NOTE = ("note: imc_members.note: not in the sidecar's schema "
        "(harmless: NULL or a default fills it)")


def sidecar_db(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imc_sidecar", "db", *args, "--log-level", "warning"],
        capture_output=True, text=True, timeout=60, check=False,
    )


def damage_sqlite(url: str, statements: list[str]) -> None:
    path = url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(";\n".join(statements))


# What each damage does, per database; then the lines `db check` must print for them.
COMMON = [
    "ALTER TABLE imc_rooms DROP COLUMN flag",
    "DROP TABLE imc_sidecar_messages",
    "DELETE FROM version WHERE table_name = 'imc_members'",
    "UPDATE version SET table_version = 2 WHERE table_name = 'imc_rooms'",
    "ALTER TABLE imc_members ADD COLUMN note VARCHAR(10)",
]
DAMAGE = {
    "sqlite": [*COMMON, "DROP INDEX imc_sidecar_events_time_idx"],
    "postgres": [
        *COMMON,
        "DROP INDEX imc_sidecar_events_time_idx",
        "ALTER TABLE imc_members ALTER COLUMN room TYPE VARCHAR(32)",
        "ALTER TABLE imc_sidecar_events ALTER COLUMN subject SET NOT NULL",
        "ALTER TABLE imc_rooms DROP CONSTRAINT imc_rooms_name_domain_idx",
    ],
    "mariadb": [
        *COMMON,
        "DROP INDEX imc_sidecar_events_time_idx ON imc_sidecar_events",
        "ALTER TABLE imc_members MODIFY room VARCHAR(32) NOT NULL",
        "ALTER TABLE imc_sidecar_events MODIFY subject VARCHAR(255) NOT NULL",
        "DROP INDEX name_domain_idx ON imc_rooms",
        "ALTER TABLE imc_rooms ENGINE=MyISAM",
    ],
}
REPORTED_COMMON = {
    "imc_sidecar_messages: missing table",
    "imc_sidecar_events: missing index imc_sidecar_events_time_idx on (time_us)",
    "version: imc_rooms is at table_version 2, expected 1 "
    "(Kamailio's imc will not start with it)",
    "version: no row for imc_members, expected table_version 1 "
    "(Kamailio's imc will not start without it)",
    NOTE,
}
SERVERS = {
    "imc_members.room: VARCHAR(32), expected VARCHAR(64) or longer: "
    "longer values would not fit",
    "imc_sidecar_events.subject: NOT NULL, expected NULL allowed: "
    "the sidecar's rows with no value there would be refused",
}
REPORTED = {
    "sqlite": {*REPORTED_COMMON,
               "imc_rooms.flag: missing column (expected INTEGER NOT NULL)"},
    "postgres": {*REPORTED_COMMON, *SERVERS,
                 "imc_rooms.flag: missing column (expected INTEGER NOT NULL)",
                 "imc_rooms: missing unique key imc_rooms_name_domain_idx on (name, domain)"},
    "mariadb": {*REPORTED_COMMON, *SERVERS,
                "imc_rooms.flag: missing column (expected INTEGER(11) NOT NULL)",
                "imc_rooms: missing unique key name_domain_idx on (name, domain)",
                "imc_rooms: storage engine MyISAM, expected InnoDB: without transactions a "
                "failed command may leave half its rows (ALTER TABLE imc_rooms ENGINE=InnoDB)"},
}


@pytest.mark.parametrize("kind", KINDS)
def test_check_after_create_and_after_damage(kind: str, tmp_path: Path) -> None:
    with scratch_database(kind, tmp_path) as (url, query):
        settings = ["--db-url", url, "--history", "1"]
        created = sidecar_db("create", *settings)
        assert created.returncode == 0, created.stderr

        clean = sidecar_db("check", *settings)
        assert (clean.returncode, clean.stderr) == (0, ""), clean.stdout + clean.stderr
        [line] = clean.stdout.splitlines()
        assert line.startswith(MATCH)
        assert "imc_rooms, imc_members, version" in line
        assert "imc_sidecar_events, imc_sidecar_messages in " in line

        if kind == "sqlite":
            damage_sqlite(url, DAMAGE[kind])
        else:
            for statement in DAMAGE[kind]:
                query(statement)
        damaged = sidecar_db("check", *settings)
        assert damaged.returncode == 1, damaged.stdout + damaged.stderr
        *lines, last = damaged.stdout.splitlines()
        assert set(lines) == REPORTED[kind]
        assert len(lines) == len(REPORTED[kind])
        failing = len(REPORTED[kind]) - 1
        assert last.startswith(f"{failing} differences (1 note) from what the sidecar expects")


@pytest.mark.parametrize("kind", KINDS)
def test_tables_made_by_the_sql_scripts_match(kind: str, tmp_path: Path) -> None:
    """Kamailio's DDL (sql/) as the database reflects it raises no false difference;
    `db create` adds only what is the sidecar's own."""
    folder = Path(__file__).parents[2] / "sql" / {"mariadb": "mysql"}.get(kind, kind)
    scripts = [(folder / f).read_text() for f in ("imc-create.sql", "imc-sidecar-history.sql")]
    with scratch_database(kind, tmp_path) as (url, query):
        for script in scripts:
            if kind == "sqlite":
                damage_sqlite(url, [script])
            else:
                query(script)
        settings = ["--db-url", url, "--history", "1"]
        assert sidecar_db("create", *settings).returncode == 0
        checked = sidecar_db("check", *settings)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith(MATCH)


def test_settings_choose_what_is_expected(tmp_path: Path) -> None:
    rooms = f"sqlite:///{tmp_path / 'rooms.sqlite'}"
    history = f"sqlite:///{tmp_path / 'history.sqlite'}"
    settings = ["--db-url", rooms, "--history-db-url", history,
                "--rooms-table", "chat_rooms", "--members-table", "chat_members"]
    assert sidecar_db("create", *settings).returncode == 0

    clean = sidecar_db("check", *settings)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.startswith(MATCH + "chat_rooms, chat_members, version")
    assert f"imc_sidecar_events, imc_sidecar_messages in {history}" in clean.stdout

    # The default table names are not there, and the history is elsewhere.
    other = sidecar_db("check", "--db-url", rooms, "--history", "1")
    assert other.returncode == 1
    assert "imc_rooms: missing table" in other.stdout.splitlines()
    assert "imc_sidecar_events: missing table" in other.stdout.splitlines()
    assert "version: no row for imc_rooms, expected table_version 1" in other.stdout

    # With the history off, its tables are not expected at all.
    damage_sqlite(rooms, ["CREATE TABLE imc_sidecar_events (x INTEGER)"])
    off = sidecar_db("check", *settings, "--history", "0")
    assert off.returncode == 0, off.stdout
    assert "imc_sidecar_events" not in off.stdout


@pytest.mark.parametrize(
    "url",
    ["mysql://root@127.0.0.1:1/none", "postgres://postgres@127.0.0.1:1/none",
     "sqlite:///{tmp}/absent.sqlite", "oracle://x@y/z"],
)
def test_cannot_look_is_one_line_and_exit_2(url: str, tmp_path: Path) -> None:
    url = url.format(tmp=tmp_path)
    result = sidecar_db("check", "--db-url", url)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("imc-sidecar: ")
    assert not (tmp_path / "absent.sqlite").exists()  # looking created nothing


async def test_the_sidecar_start_warns_of_a_table_off_innodb_by_the_same_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with scratch_database("mariadb", tmp_path) as (url, query):
        await (await Store.open(url)).close()
        query("ALTER TABLE imc_members ENGINE=MyISAM")
        with caplog.at_level(logging.WARNING):
            await (await Store.open(url)).close()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "store: imc_members: storage engine MyISAM, expected InnoDB: without transactions a "
        "failed command may leave half its rows (ALTER TABLE imc_members ENGINE=InnoDB)"
    ]
