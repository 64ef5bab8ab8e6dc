"""`imc-sidecar rpc`: kamcmd's argument typing and output text, the CLI's exit status."""

from __future__ import annotations

import json

import pytest

from imc_sidecar.cli import main
from imc_sidecar.rpc import caller
from imc_sidecar.rpc.binrpc_codec import Struct
from imc_sidecar.rpc.caller import CallResult, RpcClientError
from imc_sidecar.rpc.caller_format import (
    format_fault,
    format_json,
    format_kamcmd,
    parse_arg,
    result_values,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12", 12),
        ("-7", -7),
        ("+3", 3),
        (" 5", 5),  # strtol skips leading white space
        ("3000000000", 3000000000),  # kept whole; BINRPC refuses it, JSON carries it
        ("2.5", 2.5),
        ("-2.5", -2.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("-1E-2", -0.01),
        ("0x10", 16.0),  # strtol stops at x; strtod reads hex
        ("-0x1p4", -16.0),
        ("inf", float("inf")),
        ("s:12", "12"),
        ("s:", ""),
        ("s:s:x", "s:x"),
        ("sip:chat-1@example.com", "sip:chat-1@example.com"),
        ("imc:", "imc:"),
        ("5 ", "5 "),  # trailing space: neither strtol nor strtod take it all
        ("1_000", "1_000"),  # Python would read it as a number, C does not
        ("", ""),  # kamcmd would send INT 0
        ("abc", "abc"),
    ],
)
def test_parse_arg_like_kamcmd(text: str, value: object) -> None:
    parsed = parse_arg(text)
    assert parsed == value and type(parsed) is type(value)


def test_nan_is_a_double() -> None:
    parsed = parse_arg("nan")
    assert isinstance(parsed, float) and parsed != parsed


def test_kamcmd_text_for_imc_list_members() -> None:
    # imc-reference.md §10.1, the live kamcmd output
    value = {
        "room": "sip:chat-pre@127.0.0.5",
        "members": ["sip:owner0@127.0.0.5", "sip:m2@127.0.0.5", "sip:m1@127.0.0.5"],
    }
    assert format_kamcmd([value]) == (
        "{\n"
        "\troom: sip:chat-pre@127.0.0.5\n"
        "\tmembers: {\n"
        "\t\tsip:owner0@127.0.0.5\n"
        "\t\tsip:m2@127.0.0.5\n"
        "\t\tsip:m1@127.0.0.5\n"
        "\t}\n"
        "}\n"
    )


def test_kamcmd_text_for_scalars_and_nesting() -> None:
    values: list[object] = [
        0,
        -3,
        2.5,
        2.0,
        "text",
        "",
        True,
        None,
        {"a": {"b": [1, [2]]}, "e": {}},
        [],
    ]
    assert format_kamcmd(values) == (
        "0\n-3\n2.500000\n2\ntext\n\n1\n<null string>\n"
        "{\n\ta: {\n\t\tb: {\n\t\t\t1\n\t\t\t{\n\t\t\t\t2\n\t\t\t}\n\t\t}\n\t}\n"
        "\te: {\n\t}\n}\n"
        "{\n}\n"
    )


def test_kamcmd_text_for_decoded_structs_keeps_mixed_members() -> None:
    value = Struct([("a", 1), (None, "plain")])
    assert format_kamcmd([value]) == "{\n\ta: 1\n\tplain\n}\n"


def test_empty_reply_prints_nothing() -> None:
    assert format_kamcmd([]) == ""


def test_fault_text() -> None:
    assert format_fault(500, "command foo.bar not found") == (
        "error: 500 - command foo.bar not found\n"
    )


@pytest.mark.parametrize(
    ("result", "values"),
    [
        ([{"room": "r"}, {"room": "s"}], [{"room": "r"}, {"room": "s"}]),
        ([], []),
        ({}, []),
        ({"room": "r", "count": 2}, [{"room": "r", "count": 2}]),
        ("imc:active_rooms = 0", ["imc:active_rooms = 0"]),
        ([1.0005, {"x": [2.0009]}], [1.0, {"x": [2.0]}]),  # BINRPC's three decimals
    ],
)
def test_result_values(result: object, values: list[object]) -> None:
    assert result_values(result) == values


def test_json_output() -> None:
    text = format_json([Struct([("a", 1)]), {"b": [Struct([(None, 2)])]}])
    assert json.loads(text) == [{"a": 1}, {"b": [[2]]}]
    assert format_json({"é": 1}) == '{\n  "é": 1\n}\n'


# -- the subcommand --------------------------------------------------------------------


def fake_call(result: CallResult | Exception, seen: list[tuple[object, ...]]) -> object:
    def call(address: str, method: str, params: list[object], **options: object) -> CallResult:
        seen.append((address, method, params, options))
        if isinstance(result, Exception):
            raise result
        return result

    return call


def test_rpc_subcommand_prints_like_kamcmd(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[tuple[object, ...]] = []
    monkeypatch.setattr(caller, "call", fake_call(CallResult(values=[{"a": 1}]), seen))
    monkeypatch.delenv("IMC_RPC_TOKEN", raising=False)
    assert main(["rpc", "imc.list_members", "sip:r@d", "-2", "s:3"]) == 0
    assert capsys.readouterr().out == "{\n\ta: 1\n}\n"
    assert seen == [
        (
            "http://127.0.0.1:5092/RPC",
            "imc.list_members",
            ["sip:r@d", -2, "3"],
            {"token": None, "timeout": 5.0},
        )
    ]


def test_rpc_subcommand_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[tuple[object, ...]] = []
    monkeypatch.setattr(caller, "call", fake_call(CallResult(json=[{"a": 1}]), seen))
    monkeypatch.setenv("IMC_RPC_TOKEN", "from-env")
    assert main(["rpc", "-s", "tcp:127.0.0.1:2049", "--json", "--timeout", "1", "m"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"a": 1}]
    assert seen[0][0] == "tcp:127.0.0.1:2049"
    assert seen[0][3] == {"token": "from-env", "timeout": 1.0}
    main(["rpc", "--token", "t", "m"])
    assert seen[1][3] == {"token": "t", "timeout": 5.0}


def test_rpc_subcommand_fault_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = CallResult(fault=(500, "Room not found"))
    monkeypatch.setattr(caller, "call", fake_call(fault, []))
    assert main(["rpc", "imc.list_members", "sip:nope@x"]) == 1
    assert capsys.readouterr().out == "error: 500 - Room not found\n"
    assert main(["rpc", "--json", "imc.list_members", "sip:nope@x"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "error": {"code": 500, "message": "Room not found"}
    }


def test_rpc_subcommand_transport_error_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(caller, "call", fake_call(RpcClientError("cannot connect"), []))
    assert main(["rpc", "core.version"]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and "cannot connect" in captured.err


def test_binrpc_refuses_params_it_cannot_carry() -> None:
    with pytest.raises(RpcClientError, match="s:2147483648"):
        caller.call("tcp:127.0.0.1:1", "m", [2**31])
    with pytest.raises(RpcClientError, match="double"):
        caller.call("tcp:127.0.0.1:1", "m", [1e300])
    with pytest.raises(RpcClientError, match="tcp:HOST:PORT"):
        caller.call("tcp:nowhere", "m", [])


def test_json_refuses_nan() -> None:
    with pytest.raises(RpcClientError, match="nan"):
        caller.call("udp:127.0.0.1:1", "m", [float("nan")])
