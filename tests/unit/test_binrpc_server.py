"""The BINRPC listener's pure parts: answering one packet, and its addresses."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from imc_sidecar.rpc.binrpc import BinrpcAddress, handle_packet, parse_binrpc_address
from imc_sidecar.rpc.binrpc_codec import (
    Packet,
    PacketReader,
    PacketType,
    decode_values,
    encode_request,
    to_plain,
)
from imc_sidecar.rpc.registry import (
    Registry,
    RpcContext,
    RpcFault,
    RpcMethod,
    RpcReply,
    RpcStruct,
)

CONTEXT: RpcContext = object()  # type: ignore[assignment]  # the test methods ignore it


def _echo(_context: RpcContext, params: Sequence[object]) -> RpcReply:
    reply = RpcReply()
    for param in params:
        reply.add(param)  # type: ignore[arg-type]
    return reply


def _fault(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    raise RpcFault(404, "Room not found")


def _crash(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    raise ZeroDivisionError


def _unsendable(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    return RpcReply([object()])  # type: ignore[list-item]


def _members(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    struct = RpcStruct(room="sip:r@d", members=["sip:a@d"], count=1)
    struct.one_call = True
    return RpcReply([struct])


def _rooms(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    return RpcReply([RpcStruct(room="sip:r@d"), RpcStruct(room="sip:s@d")])


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    for name, handler in [
        ("echo", _echo),
        ("fault", _fault),
        ("crash", _crash),
        ("unsendable", _unsendable),
        ("members", _members),
    ]:
        registry.register(RpcMethod(name, handler, ""))
    registry.register(RpcMethod("rooms", _rooms, "", array=True))
    return registry


def answer(registry: Registry, packet: Packet) -> tuple[PacketType, int, list[object], bool]:
    data, close = handle_packet(packet, registry, CONTEXT)
    reader = PacketReader(max_body=1 << 24)
    reader.feed(data)
    reply = reader.next_packet()
    assert reply is not None and reader.buffered == 0
    return reply.type, reply.cookie, [to_plain(v) for v in decode_values(reply.body)], close


def request(cookie: int, method: str, *params: int | float | str) -> Packet:
    reader = PacketReader()
    reader.feed(encode_request(cookie, method, params))
    packet = reader.next_packet()
    assert packet is not None
    return packet


def test_reply_echoes_the_cookie_and_values(registry: Registry) -> None:
    assert answer(registry, request(0xDEADBEEF, "echo", 1, -2.5, "x")) == (
        PacketType.REPLY,
        0xDEADBEEF,
        [1, -2.5, "x"],
        False,
    )
    assert answer(registry, request(1, "echo")) == (PacketType.REPLY, 1, [], False)


def test_array_methods_send_every_value(registry: Registry) -> None:
    # BINRPC has no array wrapper: RET_ARRAY or not, every added value is sent
    assert answer(registry, request(2, "rooms"))[2] == [{"room": "sip:r@d"}, {"room": "sip:s@d"}]


def test_one_call_struct(registry: Registry) -> None:
    assert answer(registry, request(3, "members"))[2] == [
        {"room": "sip:r@d", "members": ["sip:a@d"]}
    ]


@pytest.mark.parametrize(
    ("method", "code", "text"),
    [
        ("no.such", 500, "command no.such not found"),
        ("fault", 404, "Room not found"),
        ("crash", 500, "internal server error"),
        ("unsendable", 500, "internal server error"),
    ],
)
def test_faults_keep_the_connection(
    registry: Registry, method: str, code: int, text: str
) -> None:
    assert answer(registry, request(4, method)) == (PacketType.FAULT, 4, [code, text], False)


def test_a_reply_or_fault_sent_to_us_closes(registry: Registry) -> None:
    for ptype in (PacketType.REPLY, PacketType.FAULT):
        packet = Packet(ptype, 5, b"")
        assert answer(registry, packet) == (
            PacketType.FAULT,
            5,
            [400, "bad request: corrupted packet"],
            True,
        )


def test_a_bad_method_record_closes_bad_params_do_not(registry: Registry) -> None:
    bad_method = Packet(PacketType.REQUEST, 6, bytes.fromhex("10 01"))
    assert answer(registry, bad_method) == (
        PacketType.FAULT,
        6,
        [400, "bad request method: record doesn't match type"],
        True,
    )
    bad_param = Packet(PacketType.REQUEST, 7, b"\x51echo\x00\x03\x83")
    assert answer(registry, bad_param) == (
        PacketType.FAULT,
        7,
        [400, "bad request: record doesn't match type"],
        False,
    )


def test_reply_too_big(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    from imc_sidecar.rpc import binrpc

    monkeypatch.setattr(binrpc, "MAX_REPLY_BODY", 100)
    assert answer(registry, request(8, "echo", "x" * 200)) == (
        PacketType.FAULT,
        8,
        [500, "internal server error: reply too big"],
        False,
    )


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("tcp:127.0.0.1:2049", BinrpcAddress("tcp", host="127.0.0.1", port=2049)),
        ("TCP:localhost:0", BinrpcAddress("tcp", host="localhost", port=0)),
        ("tcp:[::1]:5094", BinrpcAddress("tcp", host="::1", port=5094)),
        ("tcp:*:5094", BinrpcAddress("tcp", host="0.0.0.0", port=5094)),
        ("unix:/run/ctl.sock", BinrpcAddress("unix", path="/run/ctl.sock")),
        ("unixs:/run/ctl.sock", BinrpcAddress("unix", path="/run/ctl.sock")),
        ("/run/ctl.sock", BinrpcAddress("unix", path="/run/ctl.sock")),
    ],
)
def test_addresses(text: str, address: BinrpcAddress) -> None:
    assert parse_binrpc_address(text) == address


def test_address_text() -> None:
    assert str(BinrpcAddress("tcp", host="::1", port=1)) == "tcp:[::1]:1"
    assert str(BinrpcAddress("unix", path="/x")) == "unix:/x"


@pytest.mark.parametrize(
    "text",
    ["tcp:127.0.0.1", "tcp::1:2", "tcp:host:99999", "tcp:host:x", "udp:h:1", "unix:", "h:1"],
)
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_binrpc_address(text)
