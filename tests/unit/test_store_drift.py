"""store/drift.compare: each kind of difference between the expected and the live tables,
judged without a database (tests/e2e/test_db_check.py reads real ones)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest
from sqlalchemy import Table, UniqueConstraint
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import (
    BIGINT,
    DOUBLE_PRECISION,
    INTEGER,
    REAL,
    SMALLINT,
    TEXT,
    VARCHAR,
    TypeEngine,
)

from imc_sidecar.db_check import Checked, summary
from imc_sidecar.history.tables import build_history_tables
from imc_sidecar.store.drift import (
    Difference,
    LiveColumn,
    LiveSchema,
    LiveTable,
    compare,
    storage_engine_problem,
)
from imc_sidecar.store.schema import build_tables

DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.dialect(),
    "mysql": mysql.dialect(),
    "postgresql": postgresql.dialect(),
}


def expected(kind: str) -> list[Table]:
    imc = build_tables(kind).metadata.tables.values()
    return [*imc, *build_history_tables().metadata.tables.values()]


def as_live(tables: Iterable[Table], dialect: Dialect) -> dict[str, LiveTable]:
    """What an inspector reports for tables created from `tables`: the baseline that
    each test then damages."""
    live = {}
    for table in tables:
        columns = tuple(
            LiveColumn(c.name, c.type.dialect_impl(dialect), c.nullable,
                       c is table.autoincrement_column or c.server_default is not None)
            for c in table.columns
        )
        unique = [tuple(c.name for c in k.columns) for k in table.constraints
                  if isinstance(k, UniqueConstraint)]
        indexes = [tuple(c.name for c in i.columns) for i in table.indexes]
        unique += [tuple(c.name for c in i.columns) for i in table.indexes if i.unique]
        live[table.name] = LiveTable(
            table.name, columns, tuple(c.name for c in table.primary_key.columns),
            tuple(unique), tuple(indexes),
            "InnoDB" if dialect.name == "mysql" else None,
        )
    return live


def check(kind: str, **damage: LiveTable | None) -> list[Difference]:
    """compare() after replacing (or, with None, dropping) the named live tables."""
    dialect = DIALECTS[kind]
    tables = expected(kind)
    live = as_live(tables, dialect)
    for name, table in damage.items():
        if table is None:
            del live[name]
        else:
            live[name] = table
    imc = build_tables(kind)
    return compare(tables, imc.versions(), LiveSchema(live, imc.versions()), dialect)


def baseline(kind: str, name: str) -> LiveTable:
    return as_live(expected(kind), DIALECTS[kind])[name]


def with_column(table: LiveTable, column: str, **changes: object) -> LiveTable:
    columns = tuple(
        dataclasses.replace(c, **changes) if c.name == column else c  # type: ignore[arg-type]
        for c in table.columns
    )
    return dataclasses.replace(table, columns=columns)


def texts(found: list[Difference]) -> list[tuple[str, bool]]:
    return [(d.text, d.fails) for d in found]


@pytest.mark.parametrize("kind", DIALECTS)
def test_tables_as_created_match(kind: str) -> None:
    assert check(kind) == []


def test_tables_with_other_names_match_with_their_version_rows() -> None:
    imc = build_tables("postgresql", "rooms_b", "members_b")
    tables = list(imc.metadata.tables.values())
    live = LiveSchema(as_live(tables, DIALECTS["postgresql"]), {"rooms_b": 1, "members_b": 1})
    assert compare(tables, imc.versions(), live, DIALECTS["postgresql"]) == []
    found = compare(tables, build_tables("postgresql").versions(), live, DIALECTS["postgresql"])
    assert [d.text for d in found] == [
        "version: no row for imc_rooms, expected table_version 1 "
        "(Kamailio's imc will not start without it)",
        "version: no row for imc_members, expected table_version 1 "
        "(Kamailio's imc will not start without it)",
    ]


def test_missing_table() -> None:
    assert texts(check("sqlite", imc_sidecar_messages=None)) == [
        ("imc_sidecar_messages: missing table", True)
    ]


@pytest.mark.parametrize(
    ("kind", "shown"),
    [("mysql", "INTEGER(11) NOT NULL"), ("postgresql", "INTEGER NOT NULL"),
     ("sqlite", "INTEGER NOT NULL")],
)
def test_missing_column_shows_what_was_expected(kind: str, shown: str) -> None:
    rooms = baseline(kind, "imc_rooms")
    damaged = dataclasses.replace(
        rooms, columns=tuple(c for c in rooms.columns if c.name != "flag")
    )
    assert texts(check(kind, imc_rooms=damaged)) == [
        (f"imc_rooms.flag: missing column (expected {shown})", True)
    ]


def test_column_names_are_matched_without_case() -> None:
    rooms = baseline("mysql", "imc_rooms")
    assert check("mysql", imc_rooms=with_column(rooms, "flag", name="FLAG")) == []


@pytest.mark.parametrize("kind", ["mysql", "postgresql"])
def test_a_shorter_varchar_is_a_difference_and_a_longer_one_is_not(kind: str) -> None:
    members = baseline(kind, "imc_members")
    assert texts(check(kind, imc_members=with_column(members, "room", type=VARCHAR(32)))) == [
        ("imc_members.room: VARCHAR(32), expected VARCHAR(64) or longer: "
         "longer values would not fit", True)
    ]
    assert check(kind, imc_members=with_column(members, "room", type=VARCHAR(255))) == []
    assert check(kind, imc_members=with_column(members, "room", type=TEXT())) == []


def test_sqlite_does_not_enforce_lengths_so_a_shorter_one_is_a_note() -> None:
    members = baseline("sqlite", "imc_members")
    found = check("sqlite", imc_members=with_column(members, "room", type=VARCHAR(32)))
    assert texts(found) == [
        ("imc_members.room: VARCHAR(32), expected VARCHAR(64); "
         "SQLite does not enforce lengths, so nothing is cut", False)
    ]
    assert str(found[0]).startswith("note: imc_members.room")


def test_mysql_text_sizes_count() -> None:
    messages = baseline("mysql", "imc_sidecar_messages")
    found = check("mysql", imc_sidecar_messages=with_column(messages, "body", type=mysql.TEXT()))
    assert texts(found) == [
        ("imc_sidecar_messages.body: TEXT, expected MEDIUMTEXT or longer: "
         "longer values would not fit", True)
    ]
    longer = with_column(messages, "body", type=mysql.LONGTEXT())
    assert check("mysql", imc_sidecar_messages=longer) == []


@pytest.mark.parametrize(
    ("kind", "live_type", "fails"),
    [
        ("mysql", mysql.INTEGER(display_width=11, unsigned=True), True),  # no negatives
        ("mysql", mysql.SMALLINT(), True),
        ("mysql", mysql.MEDIUMINT(), True),
        ("mysql", mysql.INTEGER(), False),  # display width is cosmetic
        ("mysql", mysql.BIGINT(), False),
        ("postgresql", SMALLINT(), True),
        ("postgresql", BIGINT(), False),
        ("sqlite", SMALLINT(), False),  # every SQLite integer is 64-bit
    ],
)
def test_an_integer_must_hold_every_value(kind: str, live_type: TypeEngine[int],
                                          fails: bool) -> None:
    rooms = baseline(kind, "imc_rooms")
    found = check(kind, imc_rooms=with_column(rooms, "flag", type=live_type))
    assert bool(found) == fails
    if fails:
        assert found[0].text.endswith("or wider: not every value the sidecar stores would fit")


def test_signed_id_where_kamailio_has_unsigned_is_narrower() -> None:
    rooms = baseline("mysql", "imc_rooms")
    found = check("mysql", imc_rooms=with_column(rooms, "id", type=mysql.INTEGER()))
    assert texts(found) == [
        ("imc_rooms.id: INTEGER, expected INTEGER(10) UNSIGNED or wider: "
         "not every value the sidecar stores would fit", True)
    ]


@pytest.mark.parametrize(
    ("kind", "live_type", "fails"),
    [("postgresql", REAL(), True), ("postgresql", DOUBLE_PRECISION(), False),
     ("mysql", mysql.DOUBLE(), False), ("sqlite", REAL(), False)],
)
def test_a_float_must_be_as_precise(kind: str, live_type: TypeEngine[float],
                                    fails: bool) -> None:
    changes = baseline(kind, "imc_sidecar_changes")
    found = check(kind, imc_sidecar_changes=with_column(changes, "changed_at", type=live_type))
    assert [d.fails for d in found] == ([True] if fails else [])


@pytest.mark.parametrize("kind", DIALECTS)
def test_another_kind_of_type_is_a_difference(kind: str) -> None:
    rooms = baseline(kind, "imc_rooms")
    found = check(kind, imc_rooms=with_column(rooms, "flag", type=VARCHAR(64)))
    assert len(found) == 1 and found[0].fails
    assert found[0].text.startswith("imc_rooms.flag: VARCHAR(64), expected INTEGER")
    found = check(kind, imc_rooms=with_column(rooms, "name", type=INTEGER()))
    assert texts(found) == [("imc_rooms.name: INTEGER, expected VARCHAR(64)", True)]


def test_not_null_where_the_sidecar_writes_null_fails() -> None:
    events = baseline("postgresql", "imc_sidecar_events")
    found = check("postgresql", imc_sidecar_events=with_column(events, "subject", nullable=False))
    assert texts(found) == [
        ("imc_sidecar_events.subject: NOT NULL, expected NULL allowed: "
         "the sidecar's rows with no value there would be refused", True)
    ]
    # ...unless the database fills it in
    filled = with_column(events, "subject", nullable=False, filled=True)
    assert check("postgresql", imc_sidecar_events=filled) == []


def test_null_allowed_where_the_sidecar_never_writes_null_is_a_note() -> None:
    rooms = baseline("postgresql", "imc_rooms")
    found = check("postgresql", imc_rooms=with_column(rooms, "name", nullable=True))
    assert texts(found) == [
        ("imc_rooms.name: NULL allowed, expected NOT NULL "
         "(the sidecar never writes NULL there)", False)
    ]
    # A primary key never holds NULL, whatever an inspector says of it.
    assert check("sqlite", imc_rooms=with_column(baseline("sqlite", "imc_rooms"), "id",
                                                 nullable=True)) == []


def test_an_id_the_database_does_not_number_fails() -> None:
    rooms = baseline("mysql", "imc_rooms")
    assert texts(check("mysql", imc_rooms=with_column(rooms, "id", filled=False))) == [
        ("imc_rooms.id: not numbered by the database, expected auto-increment: "
         "the sidecar's inserts would be refused", True)
    ]


def test_an_extra_column_fails_only_when_inserts_must_give_it() -> None:
    rooms = baseline("postgresql", "imc_rooms")
    extra = LiveColumn("owner", VARCHAR(64), nullable=False, filled=False)
    damaged = dataclasses.replace(rooms, columns=(*rooms.columns, extra))
    assert texts(check("postgresql", imc_rooms=damaged)) == [
        ("imc_rooms.owner: not in the sidecar's schema, and NOT NULL with no default: "
         "the sidecar's inserts would be refused", True)
    ]
    for harmless in (dataclasses.replace(extra, nullable=True),
                     dataclasses.replace(extra, filled=True)):
        damaged = dataclasses.replace(rooms, columns=(*rooms.columns, harmless))
        assert texts(check("postgresql", imc_rooms=damaged)) == [
            ("imc_rooms.owner: not in the sidecar's schema (harmless: NULL or a default "
             "fills it)", False)
        ]


def test_another_primary_key() -> None:
    rooms = baseline("sqlite", "imc_rooms")
    found = check("sqlite", imc_rooms=dataclasses.replace(rooms, primary_key=("name",)))
    assert texts(found) == [("imc_rooms: primary key (name), expected (id)", True)]
    found = check("sqlite", imc_rooms=dataclasses.replace(rooms, primary_key=()))
    assert texts(found) == [("imc_rooms: no primary key, expected (id)", True)]


@pytest.mark.parametrize(
    ("kind", "name"),
    [("mysql", "name_domain_idx"), ("postgresql", "imc_rooms_name_domain_idx")],
)
def test_missing_unique_key_is_named_as_kamailio_names_it(kind: str, name: str) -> None:
    rooms = baseline(kind, "imc_rooms")
    found = check(kind, imc_rooms=dataclasses.replace(rooms, unique_keys=()))
    assert texts(found) == [(f"imc_rooms: missing unique key {name} on (name, domain)", True)]
    # The same columns in another order make the same key.
    swapped = dataclasses.replace(rooms, unique_keys=(("DOMAIN", "name"),))
    assert check(kind, imc_rooms=swapped) == []


def test_missing_index_and_what_serves_instead() -> None:
    events = baseline("postgresql", "imc_sidecar_events")
    no_time = tuple(i for i in events.indexes if i != ("time_us",))
    found = check("postgresql", imc_sidecar_events=dataclasses.replace(events, indexes=no_time))
    assert texts(found) == [
        ("imc_sidecar_events: missing index imc_sidecar_events_time_idx on (time_us)", True)
    ]
    # An index starting with the same columns serves the same lookups; one where they
    # come later does not.
    longer = dataclasses.replace(events, indexes=(*no_time, ("time_us", "kind")))
    assert check("postgresql", imc_sidecar_events=longer) == []
    later = dataclasses.replace(events, indexes=(*no_time, ("kind", "time_us")))
    assert len(check("postgresql", imc_sidecar_events=later)) == 1


def test_a_stricter_unique_key_of_the_database_fails_and_a_looser_one_does_not() -> None:
    members = baseline("postgresql", "imc_members")
    stricter = dataclasses.replace(members, unique_keys=(*members.unique_keys, ("room",)))
    assert texts(check("postgresql", imc_members=stricter)) == [
        ("imc_members: unique key on (room) that the sidecar does not have: "
         "it may refuse rows the sidecar writes", True)
    ]
    looser = ("username", "domain", "room", "flag")
    wider = dataclasses.replace(members, unique_keys=(*members.unique_keys, looser))
    assert check("postgresql", imc_members=wider) == []


def test_mysql_storage_engine() -> None:
    rooms = baseline("mysql", "imc_rooms")
    assert texts(check("mysql", imc_rooms=dataclasses.replace(rooms, engine="MyISAM"))) == [
        ("imc_rooms: storage engine MyISAM, expected InnoDB: without transactions a failed "
         "command may leave half its rows (ALTER TABLE imc_rooms ENGINE=InnoDB)", True)
    ]
    assert check("mysql", imc_rooms=dataclasses.replace(rooms, engine="innodb")) == []
    table = build_tables("mysql").rooms
    assert storage_engine_problem(table, "InnoDB") is None
    assert storage_engine_problem(table, "Aria") is not None


def test_version_rows() -> None:
    tables = expected("postgresql")
    live = as_live(tables, DIALECTS["postgresql"])
    want = build_tables("postgresql").versions()
    assert want == {"imc_rooms": 1, "imc_members": 1}
    found = compare(tables, want, LiveSchema(live, {"imc_rooms": 2, "version": 1}),
                    DIALECTS["postgresql"])
    assert texts(found) == [
        ("version: imc_rooms is at table_version 2, expected 1 "
         "(Kamailio's imc will not start with it)", True),
        ("version: no row for imc_members, expected table_version 1 "
         "(Kamailio's imc will not start without it)", True),
    ]
    # Unreadable rows (the table or a column is missing) are reported as such, once.
    assert compare(tables, want, LiveSchema(live, None), DIALECTS["postgresql"]) == []


def test_summary_lines() -> None:
    note = Difference("imc_rooms.x: not in the sidecar's schema", fails=False)
    bad = Difference("imc_rooms: missing table")
    one = Checked("sqlite:///a.db", ("imc_rooms", "imc_members"), ())
    assert summary([one]) == (
        "the tables match what the sidecar expects: imc_rooms, imc_members in sqlite:///a.db"
    )
    two = Checked("postgres://u:***@h/d", ("imc_sidecar_events",), (note, bad, bad))
    assert summary([one, two]) == (
        "2 differences (1 note) from what the sidecar expects: imc_rooms, imc_members in "
        "sqlite:///a.db and imc_sidecar_events in postgres://u:***@h/d"
    )
    assert summary([Checked("x", ("t",), (note,))]) == (
        "the tables match what the sidecar expects (1 note): t in x"
    )
