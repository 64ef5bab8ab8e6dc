"""The command-line parser (Kamailio's imc_parse_cmd(), reference §3)."""

from __future__ import annotations

import pytest

from imc_sidecar.imc.commands import ParsedCommand, parse_command


def parse(body: bytes, start: bytes = b"#") -> ParsedCommand | None:
    return parse_command(body, start)


@pytest.mark.parametrize(
    ("name", "command"),
    [
        (b"create", "create"),
        (b"join", "join"),
        (b"invite", "invite"),
        (b"add", "add"),
        (b"accept", "accept"),
        (b"reject", "reject"),
        (b"deny", "reject"),
        (b"remove", "remove"),
        (b"leave", "leave"),
        (b"exit", "leave"),
        (b"members", "members"),
        (b"list", "members"),
        (b"rooms", "rooms"),
        (b"destroy", "destroy"),
        (b"modify", "modify"),
        (b"help", "help"),
    ],
)
def test_names_and_aliases(name: bytes, command: str) -> None:
    assert parse(b"#" + name) == ParsedCommand(command, name.decode())


def test_names_are_case_insensitive_and_keep_their_spelling() -> None:
    assert parse(b"#CREATE") == ParsedCommand("create", "CREATE")
    assert parse(b"#Join x") == ParsedCommand("join", "Join", ("x",))


def test_name_must_match_exactly() -> None:
    assert parse(b"#creat") == ParsedCommand("unknown", "creat")
    assert parse(b"#createx") == ParsedCommand("unknown", "createx")
    assert parse(b"#joins room") == ParsedCommand("unknown", "joins")


def test_undecodable_name_round_trips() -> None:
    parsed = parse(b"#j\xf6in x")
    assert parsed is not None
    assert parsed.command == "unknown"
    assert parsed.name.encode("utf-8", "surrogateescape") == b"j\xf6in"


@pytest.mark.parametrize("body", [b"#", b"# create", b"#\tjoin", b"#\r\n", b"#\ncreate", b"#\x00x"])
def test_empty_name_is_a_syntax_error(body: bytes) -> None:
    assert parse(body) is None


def test_parameters_split_on_runs_of_blanks() -> None:
    assert parse(b"#invite \t bob   chat-1\t") == ParsedCommand(
        "invite", "invite", ("bob", "chat-1")
    )


def test_at_most_five_parameters() -> None:
    parsed = parse(b"#create a b c d e f g")
    assert parsed is not None
    assert parsed.params == ("a", "b", "c", "d", "e")


def test_first_line_only() -> None:
    assert parse(b"#invite\tcarol\r\n#garbage more") == ParsedCommand(
        "invite", "invite", ("carol",)
    )
    assert parse(b"#join\nroom") == ParsedCommand("join", "join", ())
    assert parse(b"#join room\rx") == ParsedCommand("join", "join", ("room",))


def test_nul_ends_the_command() -> None:
    assert parse(b"#join\x00room") == ParsedCommand("join", "join", ())
    assert parse(b"#invite bob\x00 carol") == ParsedCommand("invite", "invite", ("bob",))


def test_help_and_unknown_read_no_parameters() -> None:
    assert parse(b"#help me please") == ParsedCommand("help", "help")
    assert parse(b"#foo bar") == ParsedCommand("unknown", "foo")


def test_parameters_keep_case_and_bytes() -> None:
    parsed = parse(b"#invite Bob@Example.COM \xff")
    assert parsed is not None
    assert parsed.params[0] == "Bob@Example.COM"
    # Bytes that are not UTF-8 survive a round trip.
    assert parsed.params[1].encode("utf-8", "surrogateescape") == b"\xff"


def test_other_start_strings() -> None:
    assert parse(b"!join x", b"!") == ParsedCommand("join", "join", ("x",))
    assert parse("§rooms".encode(), "§".encode()) == ParsedCommand("rooms", "rooms")
