"""BINRPC codec: the wire bytes ctl and kamcmd use, limits, and every malformed-input path."""

from __future__ import annotations

import pytest

from imc_sidecar.rpc.binrpc_codec import (
    MAX_BODY,
    MAX_PARAMS,
    BinrpcError,
    ErrorKind,
    Packet,
    PacketReader,
    PacketType,
    Struct,
    decode_request,
    decode_values,
    double_text,
    encode_fault,
    encode_reply,
    encode_request,
    to_plain,
    wire_double,
)
from imc_sidecar.rpc.registry import RpcStruct


def body_of(packet: bytes) -> bytes:
    reader = PacketReader(max_body=1 << 24)
    reader.feed(packet)
    parsed = reader.next_packet()
    assert parsed is not None and reader.buffered == 0
    return parsed.body


def reply_body(*values: object) -> bytes:
    return body_of(encode_reply(1, values))


# -- header ----------------------------------------------------------------------------


def test_header_of_a_real_exchange() -> None:
    # From ecosystem.md §2.1: reply, 1-byte length 100, 4-byte cookie 0x27d91cc3.
    packet = encode_reply(0x27D91CC3, ["x" * 97])
    assert packet[:7] == bytes.fromhex("a1 13 64 27 d9 1c c3")
    assert len(packet) == 7 + 100


def test_header_lengths_are_minimal() -> None:
    assert encode_reply(0, []) == bytes.fromhex("a1 10 00 00")  # empty body, cookie 0
    assert encode_reply(0x1FF, [])[:5] == bytes.fromhex("a1 11 00 01 ff")
    long_reply = encode_reply(5, ["y" * 300])
    assert long_reply[:5] == bytes.fromhex("a1 14 01 30 05")  # 2-byte length 0x130


def test_fault_packet() -> None:
    packet = encode_fault(0x0C32BEC1, 500, "Room not found")
    assert packet[:2] == bytes((0xA1, 0x33))  # fault, 1-byte length, 4-byte cookie
    body = body_of(packet)
    assert body == bytes.fromhex("20 01 f4") + bytes((0x91, 15)) + b"Room not found\0"
    assert decode_values(body) == [500, "Room not found"]


def test_fault_text_is_cut_like_ctl() -> None:
    values = decode_values(body_of(encode_fault(1, 400, "x" * 1000)))
    assert values == [400, "x" * 255]
    # a cut never leaves half a UTF-8 character behind
    values = decode_values(body_of(encode_fault(1, 400, "é" * 200)))
    assert values == [400, "é" * 127]


# -- records (binrpc.h's examples and kamcmd captures) -----------------------------------


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, "00"),
        (7, "10 07"),
        (0x1234, "20 12 34"),
        (-1, "40 ff ff ff ff"),
        (-3, "40 ff ff ff fd"),
        (True, "10 01"),
        (False, "00"),
        ("abcdef", "71 61 62 63 64 65 66 00"),
        ("abcdefhij", "91 0a 61 62 63 64 65 66 68 69 6a 00"),
        ("", "11 00"),
        (None, "91 0e " + b"<null string>\0".hex()),
        (2.5, "22 09 c4"),
        (-2.5, "82 ff ff ff ff ff ff f6 3c"),  # what kamcmd sends for -2.5
        (0.0, "02"),
        (2**31, "91 0b " + b"2147483648\0".hex()),  # beyond ctl's 32-bit INT: digits
    ],
)
def test_scalar_records(value: object, wire: str) -> None:
    assert reply_body(value) == bytes.fromhex(wire)


def test_string_records_with_length_fields() -> None:
    assert reply_body("x" * 7) == bytes((0x91, 8)) + b"x" * 7 + b"\0"  # 8 with NUL: S=1
    assert reply_body("x" * 300)[:3] == bytes.fromhex("a1 01 2d")


def test_struct_example_from_binrpc_h() -> None:
    value = RpcStruct(intval=3, s="abc")
    assert reply_body(value) == bytes.fromhex(
        "03 75 696e7476616c 00 10 03 25 73 00 41 616263 00 83"
    )


def test_arrays_are_sent_as_struct_markers_like_ctl() -> None:
    assert reply_body([1, "a"]) == bytes.fromhex("03 10 01 21 61 00 83")
    assert reply_body([]) == bytes.fromhex("03 83")
    assert reply_body((1,)) == bytes.fromhex("03 10 01 83")


def test_one_call_struct_stops_after_the_first_container() -> None:
    members = RpcStruct(room="sip:r@d", members=["sip:a@d"], count=1)
    members.one_call = True
    assert to_plain(decode_values(reply_body(members))[0]) == {
        "room": "sip:r@d",
        "members": ["sip:a@d"],
    }
    members.one_call = False
    assert to_plain(decode_values(reply_body(members))[0]) == {
        "room": "sip:r@d",
        "members": ["sip:a@d"],
        "count": 1,
    }


def test_one_call_without_a_container_keeps_everything() -> None:
    room = RpcStruct(room="sip:r@d", members=2, owner="sip:o@d")
    room.one_call = True
    assert to_plain(decode_values(reply_body(room))[0]) == dict(room)


def test_plain_dicts_are_structs() -> None:
    assert to_plain(decode_values(reply_body({"a": {"b": 1}}))[0]) == {"a": {"b": 1}}


def test_values_that_cannot_be_sent() -> None:
    with pytest.raises(TypeError):
        encode_reply(1, [object()])
    deep: list[object] = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="nested"):
        encode_reply(1, [deep])


def test_cookie_and_body_ranges() -> None:
    with pytest.raises(ValueError):
        encode_reply(-1, [])
    with pytest.raises(ValueError):
        encode_reply(2**32, [])


# -- doubles ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.5, "2.500000"),
        (2.0, "2"),
        (-3.0, "-3"),
        (-0.0, "0"),
        (123.456, "123.456000"),
        (1e15, "1000000000000000"),
        (9000000000000.5, "9000000000000.500000"),
        (float("inf"), "inf"),
    ],
)
def test_double_text_matches_kamcmd(value: float, text: str) -> None:
    assert double_text(value) == text


def test_doubles_travel_as_truncated_fixed_point() -> None:
    assert decode_values(reply_body(0.0005, -0.0005, 123.4567, -0.001)) == [
        0.0,
        0.0,
        123.456,
        -0.001,
    ]
    assert wire_double(123.4567) == 123.456
    assert wire_double(1e300) == 1e300


def test_doubles_beyond_fixed_point_go_as_text() -> None:
    assert decode_values(reply_body(1e17, 1.5e300, float("nan"))) == [
        "100000000000000000",
        f"{1.5e300:.0f}",
        "nan",
    ]


def test_short_doubles_are_unsigned_like_kamcmd_reads_them() -> None:
    # 4 bytes ff…: kamcmd prints 4294967.295000; only 8-byte doubles are negative.
    assert decode_values(bytes.fromhex("42 ff ff ff ff")) == [4294967.295]
    with pytest.raises(BinrpcError) as caught:
        decode_values(bytes.fromhex("92") + bytes(9))
    assert caught.value.kind is ErrorKind.RECORD


def test_ints_keep_the_low_32_bits_like_ctl() -> None:
    assert decode_values(bytes.fromhex("50 ff ff ff ff ff")) == [-1]
    assert decode_values(bytes.fromhex("30 ff ff ff")) == [16777215]
    assert decode_values(bytes.fromhex("90 02 12 34")) == [0x1234]  # suboptimal but legal
    assert decode_values(bytes.fromhex("80")) == [0]


# -- requests --------------------------------------------------------------------------


def test_decodes_kamcmd_requests() -> None:
    # kamcmd x 2.5 s:-2.5 3000000000 (strtol's long, cut to a C int)
    packet = bytes.fromhex(
        "a1 03 11 0c 32 be c1 21 78 00 22 09 c4 51 2d 32 2e 35 00 40 b2 d0 5e 00"
    )
    reader = PacketReader()
    reader.feed(packet)
    parsed = reader.next_packet()
    assert parsed == Packet(PacketType.REQUEST, 0x0C32BEC1, packet[7:])
    assert decode_request(parsed.body) == ("x", [2.5, "-2.5", -1294967296])
    # kamcmd x -- -2.5 -7
    body = bytes.fromhex("21 78 00 82 ff ff ff ff ff ff f6 3c 40 ff ff ff f9")
    assert decode_request(body) == ("x", [-2.5, -7])


def test_a_failed_stream_keeps_nothing_more() -> None:
    # found by the fuzz campaign: a reader that had failed kept buffering what was fed
    reader = PacketReader()
    reader.feed(b"\xa2\x00\x00\x00")
    with pytest.raises(BinrpcError) as first:
        reader.next_packet()
    reader.feed(encode_request(1, "core.version", []))
    assert reader.buffered == 4
    with pytest.raises(BinrpcError) as again:
        reader.next_packet()
    assert again.value is first.value


def test_request_round_trip() -> None:
    packet = encode_request(77, "imc.list_members", ["sip:r@d", 3, -0.5])
    reader = PacketReader()
    reader.feed(packet)
    parsed = reader.next_packet()
    assert parsed is not None and parsed.type is PacketType.REQUEST and parsed.cookie == 77
    assert decode_request(parsed.body) == ("imc.list_members", ["sip:r@d", 3, -0.5])


def test_encode_request_limits() -> None:
    with pytest.raises(ValueError, match="too many"):
        encode_request(1, "m", [1] * (MAX_PARAMS + 1))
    with pytest.raises(TypeError):
        encode_request(1, "m", [True])


def test_bytes_records_read_as_strings() -> None:
    assert decode_request(bytes.fromhex("21 6d 00 36 61 62 63")) == ("m", ["abc"])


@pytest.mark.parametrize(
    ("body", "kind", "context"),
    [
        (b"", ErrorKind.END_OF_PACKET, "bad request method"),
        (bytes.fromhex("10 01"), ErrorKind.TYPE, "bad request method"),
        (bytes.fromhex("31 61 62 63"), ErrorKind.RECORD, "bad request method"),  # no NUL
        (bytes.fromhex("01"), ErrorKind.RECORD, "bad request method"),  # empty STR
        (bytes.fromhex("71 61 62"), ErrorKind.MORE_DATA, "bad request method"),
        (bytes.fromhex("f1 00"), ErrorKind.RECORD, "bad request method"),  # 7-byte length
        (bytes.fromhex("21 6d 00 03 10 01 83"), ErrorKind.TYPE, "bad request"),  # struct param
        (bytes.fromhex("21 6d 00 25 61 00 10 01"), ErrorKind.TYPE, "bad request"),  # AVP
        (bytes.fromhex("21 6d 00 0f"), ErrorKind.TYPE, "bad request"),  # unknown type
        (bytes.fromhex("21 6d 00 b1 ff ff 61"), ErrorKind.MORE_DATA, "bad request"),  # huge
    ],
)
def test_bad_requests(body: bytes, kind: ErrorKind, context: str) -> None:
    with pytest.raises(BinrpcError) as caught:
        decode_request(body)
    assert caught.value.kind is kind
    assert caught.value.fault_text == f"{context}: {kind.value}"


def test_too_many_params() -> None:
    body = bytes.fromhex("21 6d 00") + bytes(MAX_PARAMS)  # 256 INT zeros are fine
    assert decode_request(body) == ("m", [0] * MAX_PARAMS)
    with pytest.raises(BinrpcError) as caught:
        decode_request(body + b"\0")
    assert caught.value.kind is ErrorKind.OVERFLOW


# -- stream framing --------------------------------------------------------------------


def test_reader_byte_by_byte_and_back_to_back() -> None:
    stream = encode_request(1, "a", []) + encode_request(2, "b", [1]) + encode_reply(3, [])
    reader = PacketReader()
    packets: list[Packet] = []
    for byte in stream:
        reader.feed(bytes((byte,)))
        while (packet := reader.next_packet()) is not None:
            packets.append(packet)
    assert [(p.type, p.cookie) for p in packets] == [
        (PacketType.REQUEST, 1),
        (PacketType.REQUEST, 2),
        (PacketType.REPLY, 3),
    ]
    assert reader.buffered == 0


def test_reader_rejects_junk_without_a_cookie() -> None:
    reader = PacketReader()
    reader.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(BinrpcError) as caught:
        reader.next_packet()
    assert caught.value.cookie is None and caught.value.kind is ErrorKind.BAD_PACKET
    with pytest.raises(BinrpcError):  # sticky: the stream cannot be resynchronised
        reader.next_packet()


def test_reader_reports_a_bad_type_with_the_cookie() -> None:
    reader = PacketReader()
    reader.feed(bytes.fromhex("a1 22 00 01 02 03"))  # type 2 does not exist
    reader.feed(b"")
    with pytest.raises(BinrpcError) as caught:
        reader.next_packet()
    assert caught.value.cookie == 0x010203
    assert caught.value.fault_text == "bad request: corrupted packet"


def test_reader_waits_for_the_whole_header() -> None:
    reader = PacketReader()
    reader.feed(bytes.fromhex("a1 3f 00 00"))  # 4-byte length and cookie: 10-byte header
    assert reader.next_packet() is None
    reader.feed(bytes.fromhex("00 00 00 00 00 05"))
    assert reader.next_packet() == Packet(PacketType.FAULT, 5, b"")


def test_reader_refuses_a_body_over_the_limit() -> None:
    reader = PacketReader()
    reader.feed(bytes.fromhex("a1 08 00 80 01 07"))  # 3-byte length 0x8001 > 32 KiB
    with pytest.raises(BinrpcError) as caught:
        reader.next_packet()
    assert caught.value.kind is ErrorKind.OVERFLOW and caught.value.cookie == 7
    exact = PacketReader()
    exact.feed(encode_request(1, "m", ["x" * (MAX_BODY - 7)]))
    packet = exact.next_packet()
    assert packet is not None and len(packet.body) == MAX_BODY


# -- reply decoding --------------------------------------------------------------------


def test_decode_keeps_the_wire_shape() -> None:
    body = bytes.fromhex("03 25 61 00 10 01 10 02 03 83 83")  # {a: 1, 2, {}}
    (value,) = decode_values(body)
    assert value == Struct([("a", 1), (None, 2), (None, Struct())])
    assert to_plain(value) == [{"a": 1}, 2, {}]


def test_decode_arrays() -> None:
    (value,) = decode_values(bytes.fromhex("04 10 01 04 84 84"))
    assert value == Struct([(None, 1), (None, Struct(is_array=True))], is_array=True)
    assert to_plain(value) == [1, []]


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (bytes.fromhex("25 61 00 10 01"), ErrorKind.TYPE),  # AVP outside a struct
        (bytes.fromhex("83"), ErrorKind.RECORD),  # end without a start
        (bytes.fromhex("03 84"), ErrorKind.RECORD),  # mismatched end
        (bytes.fromhex("03 25 61 00 83"), ErrorKind.RECORD),  # name without a value
        (bytes.fromhex("03 25 61 00 25 62 00"), ErrorKind.TYPE),  # two names
        (bytes.fromhex("04 25 61 00 10 01 84"), ErrorKind.TYPE),  # name inside an array
        (bytes.fromhex("03 10 01"), ErrorKind.MORE_DATA),  # unterminated
        (bytes.fromhex("13 00 83"), ErrorKind.RECORD),  # a start marker with a length
        (bytes.fromhex("0e"), ErrorKind.TYPE),
    ],
)
def test_bad_reply_bodies(body: bytes, kind: ErrorKind) -> None:
    with pytest.raises(BinrpcError) as caught:
        decode_values(body)
    assert caught.value.kind is kind


def test_nesting_limit() -> None:
    assert decode_values(b"\x03" * 3 + b"\x83" * 3, max_depth=3)
    with pytest.raises(BinrpcError, match="nesting"):
        decode_values(b"\x03" * 4 + b"\x83" * 4, max_depth=3)
    with pytest.raises(BinrpcError):
        decode_values(b"\x03" * 100_000)


def test_non_utf8_bytes_survive_a_round_trip() -> None:
    (text,) = decode_values(bytes.fromhex("41 ff fe 41 00"))
    assert isinstance(text, str)
    assert reply_body(text) == bytes.fromhex("41 ff fe 41 00")
