"""Async RPC methods: the registry, the JSON-RPC adapter and every transport await them,
and the sync methods answer exactly as before."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from rpc_support import ROOMS, Context

from imc_sidecar.rpc.binrpc import handle_packet, start_binrpc_server
from imc_sidecar.rpc.binrpc_codec import (
    PacketReader,
    PacketType,
    decode_values,
    encode_request,
    to_plain,
)
from imc_sidecar.rpc.datagram import start_datagram_server
from imc_sidecar.rpc.fifo import FifoServer
from imc_sidecar.rpc.http import make_app
from imc_sidecar.rpc.jsonrpc import answer_json, handle_json, start_json
from imc_sidecar.rpc.methods import build_registry
from imc_sidecar.rpc.registry import (
    Registry,
    RpcContext,
    RpcFault,
    RpcMethod,
    RpcReply,
    RpcStruct,
)
from imc_sidecar.settings import RpcAddress


async def _slow(_context: RpcContext, params: Sequence[object]) -> RpcReply:
    delay = params[0] if params and isinstance(params[0], float) else 0.0
    await asyncio.sleep(delay)
    return RpcReply([RpcStruct(done=True, slept=delay)])


async def _fault(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    await asyncio.sleep(0)
    raise RpcFault(404, "Nothing here")


async def _crash(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    await asyncio.sleep(0)
    raise RuntimeError("secret detail")


async def _pair(_context: RpcContext, _params: Sequence[object]) -> RpcReply:
    return RpcReply(["a", "b"])


def _registry() -> Registry:
    registry = build_registry()
    registry.register(RpcMethod("test.slow", _slow, "", is_async=True))
    registry.register(RpcMethod("test.fault", _fault, "", is_async=True))
    registry.register(RpcMethod("test.crash", _crash, "", is_async=True))
    registry.register(RpcMethod("test.pair", _pair, "", array=True, is_async=True))
    return registry


REGISTRY = _registry()
SLOW = b'{"jsonrpc":"2.0","method":"test.slow","params":[0.3],"id":1}'
VERSION = b'{"jsonrpc":"2.0","method":"core.version","id":2}'
SLOW_BODY = (b'{\n\t"jsonrpc":\t"2.0",\n\t"result":\t{\n\t\t"done":\ttrue,\n'
             b'\t\t"slept":\t0.300000\n\t},\n\t"id":\t1\n}')


# -- registry ---------------------------------------------------------------------------


async def test_registry_runs_async_methods_only_when_awaited() -> None:
    with pytest.raises(ValueError, match="is_async"):
        RpcMethod("x", _slow, "")
    context = Context(ROOMS)
    with pytest.raises(TypeError, match="async"):
        REGISTRY.call(context, "test.pair", [])
    reply = await REGISTRY.call_async(context, "test.pair", [])
    assert (reply.values, reply.array) == (["a", "b"], True)
    assert (await REGISTRY.call_async(context, "core.prints", ["x"])).values == ["x"]
    with pytest.raises(RpcFault, match="Nothing here"):
        await REGISTRY.call_async(context, "test.fault", [])


# -- JSON-RPC -----------------------------------------------------------------------------

SYNC_REQUESTS = [
    b'{"jsonrpc":"2.0","method":"imc.list_rooms","id":1}',
    b'{"jsonrpc":"2.0","method":"imc.list_members","params":["sip:chat-1@example.com"]}',
    b'{"jsonrpc":"2.0","method":"imc.list_members","params":[],"id":"x"}',
    b'{"jsonrpc":"2.0","method":"stats.fetchn","params":["imc:"],"id":1e300}',
    b'{"jsonrpc":"2.0","method":"no.such","id":1}',
    b'{"jsonrpc":"1.0","method":"core.version","id":1}',
    b'[{"jsonrpc":"2.0","method":"core.version"}]',
    b"not json",
    b"   ",
]


@pytest.mark.parametrize("text", SYNC_REQUESTS)
async def test_sync_methods_answer_at_once_and_the_same(text: bytes) -> None:
    context = Context(ROOMS)
    now = start_json(text, REGISTRY, context)
    assert isinstance(now, tuple)  # no coroutine: answered in this turn, as before
    assert now == handle_json(text, REGISTRY, context)
    assert now == await answer_json(text, REGISTRY, context)


async def test_async_envelopes_and_faults() -> None:
    context = Context(ROOMS)
    assert await answer_json(SLOW, REGISTRY, context) == (200, "OK", SLOW_BODY)
    status, reason, body = await answer_json(
        b'{"jsonrpc":"2.0","method":"test.pair","id":3}', REGISTRY, context)
    assert body == b'{\n\t"jsonrpc":\t"2.0",\n\t"result":\t["a", "b"],\n\t"id":\t3\n}'
    status, reason, body = await answer_json(
        b'{"jsonrpc":"2.0","method":"test.fault","id":4}', REGISTRY, context)
    assert (status, reason) == (404, "Nothing here")
    assert body is not None and b'"code":\t404' in body
    status, reason, body = await answer_json(
        b'{"jsonrpc":"2.0","method":"test.crash","id":5}', REGISTRY, context)
    assert (status, reason) == (500, "Internal Error")
    assert body is not None and b"-32603" in body and b"secret" not in body
    # The sync entry point cannot wait: a clear fault, no coroutine left behind.
    status, reason, _body = handle_json(SLOW, REGISTRY, context)
    assert (status, reason) == (500, "Method needs an asynchronous transport")


# -- transports -------------------------------------------------------------------------


async def test_http_awaits_async_methods_concurrently() -> None:
    client = TestClient(TestServer(make_app(REGISTRY, Context(ROOMS), None)))
    await client.start_server()
    try:
        async def post(data: bytes) -> tuple[float, bytes]:
            response = await client.post("/RPC", data=data)
            body = await response.read()
            return asyncio.get_running_loop().time(), body

        slow, fast = await asyncio.gather(post(SLOW), post(VERSION))
        assert slow[1] == SLOW_BODY
        assert b"imc-sidecar" in fast[1] and fast[0] < slow[0]
    finally:
        await client.close()


async def test_datagrams_reply_to_async_methods_without_blocking_others() -> None:
    server = await start_datagram_server(RpcAddress("udp", "127.0.0.1", 0), REGISTRY,
                                         Context(ROOMS))
    address = server.transport.get_extra_info("sockname")
    loop = asyncio.get_running_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_sendto(sock, SLOW, address)
            await loop.sock_sendto(sock, VERSION, address)
            async with asyncio.timeout(3):
                first = await loop.sock_recv(sock, 65535)
                second = await loop.sock_recv(sock, 65535)
        assert b'"id":\t2' in first  # the sync method did not wait for the slow one
        assert second == SLOW_BODY
    finally:
        server.close()


async def test_datagram_close_cancels_pending_replies() -> None:
    server = await start_datagram_server(RpcAddress("udp", "127.0.0.1", 0), REGISTRY,
                                         Context(ROOMS))
    address = server.transport.get_extra_info("sockname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(SLOW, address)
        await asyncio.sleep(0.05)
        tasks = set(server.protocol.tasks)
        assert len(tasks) == 1
        server.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(task.cancelled() for task in tasks)


async def test_fifo_awaits_async_methods(tmp_path: Path) -> None:
    server_path = tmp_path / "rpc.fifo"
    server = FifoServer(str(server_path), str(tmp_path), REGISTRY, Context(ROOMS))
    await server.start()
    try:
        reply_path = tmp_path / "reply_1"
        os.mkfifo(reply_path)
        loop = asyncio.get_running_loop()
        reader = loop.run_in_executor(None, reply_path.read_bytes)
        await asyncio.sleep(0.05)
        fd = os.open(server_path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, SLOW[:-1] + b',"reply_name":"reply_1"}')
        os.close(fd)
        async with asyncio.timeout(3):
            assert await reader == SLOW_BODY
    finally:
        await server.close()


def _binrpc_request(cookie: int, method: str, *params: int | float | str) -> bytes:
    return encode_request(cookie, method, params)


async def _binrpc_replies(reader: asyncio.StreamReader, count: int) -> list[tuple[int, object]]:
    packets = PacketReader()
    out: list[tuple[int, object]] = []
    async with asyncio.timeout(3):
        while len(out) < count:
            packets.feed(await reader.read(65536))
            while (packet := packets.next_packet()) is not None:
                values = [to_plain(v) for v in decode_values(packet.body)]
                kind = "fault" if packet.type is PacketType.FAULT else "reply"
                out.append((packet.cookie, (kind, values)))
    return out


async def test_binrpc_answers_in_request_order_across_async_methods() -> None:
    server = await start_binrpc_server("tcp:127.0.0.1:0", REGISTRY, Context(ROOMS))
    host, port = server.sockets[0].getsockname()[:2]
    try:
        reader, writer = await asyncio.open_connection(host, port)
        # Pipelined: a slow async call, a sync one, an async fault, then more sync.
        writer.write(_binrpc_request(1, "test.slow", 0.2) + _binrpc_request(2, "core.prints", "x")
                     + _binrpc_request(3, "test.fault") + _binrpc_request(4, "test.pair"))
        await writer.drain()
        replies = await _binrpc_replies(reader, 4)
        assert replies == [
            (1, ("reply", [{"done": 1, "slept": 0.2}])),
            (2, ("reply", ["x"])),
            (3, ("fault", [404, "Nothing here"])),
            (4, ("reply", ["a", "b"])),
        ]
        writer.write(_binrpc_request(5, "test.crash"))  # the connection is still usable
        assert await _binrpc_replies(reader, 1) == [
            (5, ("fault", [500, "internal server error"]))
        ]
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


def test_binrpc_sync_entry_point_refuses_async_methods() -> None:
    packets = PacketReader()
    packets.feed(_binrpc_request(9, "test.slow"))
    packet = packets.next_packet()
    assert packet is not None
    data, close = handle_packet(packet, REGISTRY, Context(ROOMS))
    packets.feed(data)
    reply = packets.next_packet()
    assert reply is not None and reply.type is PacketType.FAULT and not close
    assert [to_plain(v) for v in decode_values(reply.body)] == [
        500, "method needs an asynchronous transport"
    ]
