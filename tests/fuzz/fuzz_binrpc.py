"""Target `binrpc`: the BINRPC decoder (rpc/binrpc_codec.py) and the pure core of the
kamcmd server behind it (rpc/binrpc.py handle_packet) with the real method registry.

The first two bytes seed the chunking; the rest is both a byte stream for PacketReader
and a body for the body decoders.  Holds:

* PacketReader, decode_values and decode_request raise only BinrpcError;
* the chunking changes nothing: the same packets, then the same error or leftover;
* a broken stream stays broken and keeps nothing more: the same error again, and a
  later `feed` does not grow the buffer;
* a decoded request has at most MAX_PARAMS scalar parameters and encodes back to the
  same method and parameters (floats aside: they are fixed point on the wire);
* every packet (the first MAX_ANSWERED of an input, one after another on one
  connection's state) gets an answer that is itself a well-formed reply or fault with
  the packet's cookie, no method raises (the server's "internal server error"), and a
  fault leaves the rooms and the statistics as they were.
"""

from __future__ import annotations

import math

from common import chunks, rpc_state
from rpc_support import ROOMS, Context

from imc_sidecar.rpc.binrpc import handle_packet
from imc_sidecar.rpc.binrpc_codec import (
    MAX_PARAMS,
    BinrpcError,
    Packet,
    PacketReader,
    PacketType,
    decode_request,
    decode_values,
    encode_request,
    to_plain,
)
from imc_sidecar.rpc.methods import build_registry

REGISTRY = build_registry()
# Packets of one input answered (the rest only framed): more copies of alike requests
# cost fixture time and find nothing new.
MAX_ANSWERED = 8

Read = tuple[list[Packet], BinrpcError | None, int]


def _read(pieces: list[bytes]) -> Read:
    reader = PacketReader()
    packets: list[Packet] = []
    for chunk in pieces:
        reader.feed(chunk)
        try:
            while (packet := reader.next_packet()) is not None:
                packets.append(packet)
        except BinrpcError as exc:
            _check_stays_broken(reader, exc)
            return packets, exc, reader.buffered
    return packets, None, reader.buffered


def _check_stays_broken(reader: PacketReader, error: BinrpcError) -> None:
    before = reader.buffered
    reader.feed(b"\xa1\x00\x00\x00")
    assert reader.buffered == before, "a failed stream keeps taking data"
    try:
        reader.next_packet()
    except BinrpcError as again:
        assert again is error
    else:
        raise AssertionError("a failed stream gave a packet")


def _summary(read: Read) -> tuple[list[Packet], str | None, int]:
    """What must not depend on the chunking (the leftover only while nothing failed:
    after an error the reader holds what had been fed up to it)."""
    packets, error, leftover = read
    return packets, None if error is None else str(error), leftover if error is None else -1


def _check_answer(packet: Packet, context: Context) -> None:
    before = rpc_state(context)
    answer, _close = handle_packet(packet, REGISTRY, context)
    reader = PacketReader(max_body=len(answer))
    reader.feed(answer)
    reply = reader.next_packet()
    assert reply is not None and reader.buffered == 0
    assert reply.cookie == packet.cookie
    assert reply.type in (PacketType.REPLY, PacketType.FAULT)
    values = decode_values(reply.body)
    if reply.type is PacketType.FAULT:
        assert isinstance(values[0], int) and isinstance(values[1], str), values
        assert values[1] != "internal server error", "a method raised"
        assert rpc_state(context) == before, "a refused request changed something"


def _check_bodies(body: bytes) -> None:
    try:
        for value in decode_values(body):
            to_plain(value)
    except BinrpcError:
        pass
    try:
        method, params = decode_request(body)
    except BinrpcError:
        return
    assert len(params) <= MAX_PARAMS
    if all(isinstance(p, int | str) for p in params):
        again = encode_request(0, method, params)
        reader = PacketReader()
        reader.feed(again)
        packet = reader.next_packet()
        assert packet is not None
        assert decode_request(packet.body) == (method, params)
    else:
        assert all(math.isfinite(p) for p in params if isinstance(p, float))


def one_input(data: bytes) -> None:
    seed, stream = data[:2], data[2:]
    whole = _read([stream])
    chunked = _read(chunks(seed, stream, (1, 2, 7, 64)))
    assert _summary(chunked) == _summary(whole)
    context = Context(ROOMS)
    for packet in whole[0][:MAX_ANSWERED]:
        _check_answer(packet, context)
    _check_bodies(stream)
