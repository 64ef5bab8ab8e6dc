"""Property tests: the BINRPC decoder only raises BinrpcError, and encoding round-trips."""

from __future__ import annotations

import contextlib
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imc_sidecar.rpc.binrpc_codec import (
    BinrpcError,
    Packet,
    PacketReader,
    decode_request,
    decode_values,
    double_fits,
    double_text,
    encode_fault,
    encode_reply,
    encode_request,
    to_plain,
    wire_double,
)
from imc_sidecar.rpc.registry import RpcStruct

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
SCALAR = (
    st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, width=64)
    | TEXT
    | st.booleans()
    | st.none()
)


@st.composite
def rpc_struct(draw: st.DrawFn, children: st.SearchStrategy[object]) -> RpcStruct:
    struct = RpcStruct(draw(st.dictionaries(TEXT, children, max_size=4)))
    struct.one_call = draw(st.booleans())
    return struct


VALUE = st.recursive(
    SCALAR,
    lambda children: st.lists(children, max_size=4) | rpc_struct(children),
    max_leaves=20,
)


def expected(value: object) -> object:
    """What the peer reads back: ctl's types and quirks applied to `value`."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if -(2**31) <= value < 2**31 else str(value)
    if isinstance(value, float):
        return wire_double(value) if double_fits(value) else double_text(value)
    if value is None:
        return "<null string>"
    if isinstance(value, list):
        return [expected(item) for item in value] if value else {}
    if isinstance(value, RpcStruct):
        kept: dict[str, object] = {}
        for name, member in value.items():
            kept[name] = expected(member)
            if value.one_call and isinstance(member, list | dict):
                break
        return kept
    return value


def read_all(stream: bytes, chunks: list[int], max_body: int = 1 << 20) -> list[Packet]:
    reader = PacketReader(max_body=max_body)
    packets: list[Packet] = []
    position = 0
    for size in [*chunks, len(stream)]:
        reader.feed(stream[position : position + size])
        position += size
        while (packet := reader.next_packet()) is not None:
            packets.append(packet)
    return packets


@FAST
@given(st.lists(VALUE, max_size=5), st.integers(0, 2**32 - 1))
def test_replies_round_trip(values: list[object], cookie: int) -> None:
    (packet,) = read_all(encode_reply(cookie, values), [])
    assert packet.cookie == cookie
    decoded = [to_plain(value) for value in decode_values(packet.body)]
    assert decoded == [expected(value) for value in values]


@FAST
@given(
    TEXT,
    st.lists(st.integers(-(2**31), 2**31 - 1) | st.floats(-1e12, 1e12) | TEXT, max_size=8),
)
def test_requests_round_trip(method: str, params: list[int | float | str]) -> None:
    (packet,) = read_all(encode_request(9, method, params), [])
    name, decoded = decode_request(packet.body)
    assert name == method
    assert decoded == [wire_double(p) if isinstance(p, float) else p for p in params]


@FAST
@given(st.integers(-(2**31), 2**31 - 1), TEXT)
def test_faults_round_trip(code: int, message: str) -> None:
    (packet,) = read_all(encode_fault(3, code, message), [])
    decoded_code, text = decode_values(packet.body)
    assert decoded_code == code
    assert isinstance(text, str) and message.startswith(text) and len(text.encode()) <= 255


@FAST
@given(st.lists(st.lists(VALUE, max_size=3), min_size=1, max_size=4), st.data())
def test_framing_is_independent_of_chunking(
    replies: list[list[object]], data: st.DataObject
) -> None:
    stream = b"".join(encode_reply(n, values) for n, values in enumerate(replies))
    chunks = data.draw(st.lists(st.integers(0, 40), max_size=30))
    packets = read_all(stream, chunks)
    assert [p.cookie for p in packets] == list(range(len(replies)))


def only_binrpc_errors(stream: bytes, chunks: list[int]) -> None:
    try:
        packets = read_all(stream, chunks, max_body=4096)
    except BinrpcError:
        return
    for packet in packets:
        for decode in (decode_values, decode_request):
            with contextlib.suppress(BinrpcError):
                decode(packet.body)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 20), max_size=10))
def test_arbitrary_bytes_only_raise_binrpc_error(data: bytes, chunks: list[int]) -> None:
    only_binrpc_errors(data, chunks)
    only_binrpc_errors(b"\xa1" + data, chunks)  # past the magic byte more often


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bodies_only_raise_binrpc_error(body: bytes) -> None:
    for decode in (decode_values, decode_request):
        with contextlib.suppress(BinrpcError):
            decode(body)


@FAST
@given(st.lists(VALUE, min_size=1, max_size=3), st.data())
def test_mutated_packets_only_raise_binrpc_error(values: list[object], data: st.DataObject) -> None:
    packet = bytearray(encode_reply(1, values))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(packet) - 1))
        packet[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    only_binrpc_errors(bytes(packet[:cut]), [])
    only_binrpc_errors(bytes(packet), [])


def test_expected_covers_the_float_edges() -> None:
    assert expected(math.inf) == "inf" and expected(1e300) == double_text(1e300)
